//! A2A 0.3 wire shapes, converted to the hub's 1.0 model. The only place that knows 0.3 JSON:
//! `kind` discriminators, lower-case kebab task states, `user`/`agent` roles, parts with
//! `kind`, `mimeType`.

use serde_json::{Map, Value, json};

use super::params::InvalidField;

fn state_to_v1(state: &str) -> Option<&'static str> {
    Some(match state {
        "submitted" => "TASK_STATE_SUBMITTED",
        "working" => "TASK_STATE_WORKING",
        "input-required" => "TASK_STATE_INPUT_REQUIRED",
        "completed" => "TASK_STATE_COMPLETED",
        "canceled" => "TASK_STATE_CANCELED",
        "failed" => "TASK_STATE_FAILED",
        "rejected" => "TASK_STATE_REJECTED",
        "auth-required" => "TASK_STATE_AUTH_REQUIRED",
        "unknown" => "TASK_STATE_UNSPECIFIED",
        _ => return None,
    })
}

fn role_to_v1(role: &str) -> Option<&'static str> {
    match role {
        "user" => Some("ROLE_USER"),
        "agent" => Some("ROLE_AGENT"),
        _ => None,
    }
}

fn part_to_v1(part: &Value, at: &str) -> Result<Value, InvalidField> {
    let kind = part["kind"].as_str().unwrap_or_default();
    let mut out = Map::new();
    match kind {
        "text" => {
            out.insert("text".into(), part["text"].clone());
        }
        "data" => {
            out.insert("data".into(), part["data"].clone());
        }
        "file" => {
            let file = &part["file"];
            if let Some(uri) = file["uri"].as_str() {
                out.insert("url".into(), json!(uri));
            } else if let Some(bytes) = file["bytes"].as_str() {
                out.insert("raw".into(), json!(bytes));
            } else {
                return Err(InvalidField::new(
                    format!("{at}.file"),
                    "needs `uri` or `bytes`",
                ));
            }
            if let Some(mime) = file["mimeType"].as_str() {
                out.insert("mediaType".into(), json!(mime));
            }
            if let Some(name) = file["name"].as_str() {
                out.insert("filename".into(), json!(name));
            }
        }
        other => {
            return Err(InvalidField::new(
                format!("{at}.kind"),
                format!("is {other:?}; a 0.3 part is text, file or data"),
            ));
        }
    }
    if let Some(metadata) = part.get("metadata") {
        out.insert("metadata".into(), metadata.clone());
    }
    Ok(Value::Object(out))
}

fn parts_to_v1(parts: &Value, at: &str) -> Result<Value, InvalidField> {
    let parts = parts
        .as_array()
        .ok_or_else(|| InvalidField::new(at, "must be an array of parts"))?;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| part_to_v1(p, &format!("{at}[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Copies `value` without the 0.3-only keys, then applies `fix` to the copy.
fn object_without(value: &Value, drop: &[&str]) -> Map<String, Value> {
    value
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !drop.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn message_to_v1(message: &Value, at: &str) -> Result<Value, InvalidField> {
    let mut out = object_without(message, &["kind"]);
    let role = message["role"].as_str().unwrap_or_default();
    let role = role_to_v1(role)
        .ok_or_else(|| InvalidField::new(format!("{at}.role"), "must be user or agent"))?;
    out.insert("role".into(), json!(role));
    out.insert(
        "parts".into(),
        parts_to_v1(&message["parts"], &format!("{at}.parts"))?,
    );
    Ok(Value::Object(out))
}

fn status_to_v1(status: &Value, at: &str) -> Result<Value, InvalidField> {
    let mut out = object_without(status, &[]);
    let state = status["state"].as_str().unwrap_or_default();
    let state = state_to_v1(state).ok_or_else(|| {
        InvalidField::new(
            format!("{at}.state"),
            format!("{state:?} is not a 0.3 task state"),
        )
    })?;
    out.insert("state".into(), json!(state));
    if let Some(message) = status.get("message").filter(|m| !m.is_null()) {
        out.insert(
            "message".into(),
            message_to_v1(message, &format!("{at}.message"))?,
        );
    }
    Ok(Value::Object(out))
}

fn artifact_to_v1(artifact: &Value, at: &str) -> Result<Value, InvalidField> {
    let mut out = object_without(artifact, &[]);
    out.insert(
        "parts".into(),
        parts_to_v1(&artifact["parts"], &format!("{at}.parts"))?,
    );
    Ok(Value::Object(out))
}

/// Converts a 0.3 push body (a Task, a status or artifact update, or a Message, each with
/// `kind`) into a 1.0 `StreamResponse` value. `None` when the body is not 0.3-shaped.
pub fn to_stream_response(body: &Value) -> Option<Result<Value, InvalidField>> {
    let kind = body.get("kind")?.as_str()?;
    let converted = match kind {
        "task" => (|| {
            let mut task = object_without(body, &["kind"]);
            task.insert("status".into(), status_to_v1(&body["status"], "status")?);
            if let Some(history) = body["history"].as_array() {
                let history = history
                    .iter()
                    .enumerate()
                    .map(|(i, m)| message_to_v1(m, &format!("history[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                task.insert("history".into(), Value::Array(history));
            }
            if let Some(artifacts) = body["artifacts"].as_array() {
                let artifacts = artifacts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| artifact_to_v1(a, &format!("artifacts[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                task.insert("artifacts".into(), Value::Array(artifacts));
            }
            Ok(json!({"task": task}))
        })(),
        "status-update" => (|| {
            let mut update = object_without(body, &["kind", "final"]);
            update.insert("status".into(), status_to_v1(&body["status"], "status")?);
            Ok(json!({"statusUpdate": update}))
        })(),
        "artifact-update" => (|| {
            let mut update = object_without(body, &["kind"]);
            update.insert(
                "artifact".into(),
                artifact_to_v1(&body["artifact"], "artifact")?,
            );
            Ok(json!({"artifactUpdate": update}))
        })(),
        "message" => message_to_v1(body, "message").map(|m| json!({"message": m})),
        other => Err(InvalidField::new(
            "kind",
            format!("{other:?} is not a 0.3 push body kind"),
        )),
    };
    Some(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_03_task_becomes_a_10_task_event() {
        let body = json!({"kind": "task", "id": "t1", "contextId": "c1",
            "status": {"state": "input-required", "message": {"kind": "message", "messageId": "m1", "role": "agent",
                "parts": [{"kind": "text", "text": "which one?"}]}},
            "artifacts": [{"artifactId": "a", "parts": [{"kind": "file", "file": {"uri": "https://x/y.pdf", "mimeType": "application/pdf", "name": "y.pdf"}},
                {"kind": "data", "data": {"k": 1}}]}],
            "history": [{"kind": "message", "messageId": "m0", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}]});
        let v1 = to_stream_response(&body).unwrap().unwrap();
        let parsed: a2a::StreamResponse = serde_json::from_value(v1.clone()).unwrap();
        let a2a::StreamResponse::Task(task) = parsed else {
            panic!("{v1}")
        };
        assert_eq!(task.status.state, a2a::TaskState::InputRequired);
        assert_eq!(
            v1["task"]["artifacts"][0]["parts"][0],
            json!({"url": "https://x/y.pdf", "mediaType": "application/pdf", "filename": "y.pdf"})
        );
        assert_eq!(v1["task"]["history"][0]["role"], "ROLE_USER");
    }

    #[test]
    fn version_0_3_events_convert_and_bad_ones_name_the_field() {
        let status = json!({"kind": "status-update", "taskId": "t", "contextId": "c", "final": true, "status": {"state": "completed"}});
        let v1 = to_stream_response(&status).unwrap().unwrap();
        assert_eq!(
            v1,
            json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}})
        );
        let artifact = json!({"kind": "artifact-update", "taskId": "t", "contextId": "c", "append": true,
            "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "x"}]}});
        assert!(
            serde_json::from_value::<a2a::StreamResponse>(
                to_stream_response(&artifact).unwrap().unwrap()
            )
            .is_ok()
        );
        let bad = json!({"kind": "status-update", "taskId": "t", "contextId": "c", "status": {"state": "done"}});
        assert_eq!(
            to_stream_response(&bad).unwrap().unwrap_err().field,
            "status.state"
        );
        assert!(
            to_stream_response(&json!({"statusUpdate": {}})).is_none(),
            "1.0 bodies are not 0.3"
        );
    }
}
