//! A2A 0.3 wire shapes, converted to the hub's 1.0 model. The only place that knows 0.3 JSON:
//! `kind` discriminators, lower-case kebab task states, `user`/`agent` roles, parts with
//! `kind`, `mimeType`.

use serde_json::{Map, Value, json};

use super::params::InvalidField;
use super::push_config::ConfigView;

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

fn state_from_v1(state: &str) -> &'static str {
    match state {
        "TASK_STATE_SUBMITTED" => "submitted",
        "TASK_STATE_WORKING" => "working",
        "TASK_STATE_INPUT_REQUIRED" => "input-required",
        "TASK_STATE_COMPLETED" => "completed",
        "TASK_STATE_CANCELED" => "canceled",
        "TASK_STATE_FAILED" => "failed",
        "TASK_STATE_REJECTED" => "rejected",
        "TASK_STATE_AUTH_REQUIRED" => "auth-required",
        _ => "unknown",
    }
}

fn part_from_v1(part: &Value) -> Value {
    let mut out = Map::new();
    if let Some(text) = part.get("text") {
        out.insert("kind".into(), json!("text"));
        out.insert("text".into(), text.clone());
    } else if let Some(data) = part.get("data") {
        out.insert("kind".into(), json!("data"));
        out.insert("data".into(), data.clone());
    } else {
        let mut file = Map::new();
        if let Some(url) = part.get("url") {
            file.insert("uri".into(), url.clone());
        }
        if let Some(raw) = part.get("raw") {
            file.insert("bytes".into(), raw.clone());
        }
        if let Some(media) = part.get("mediaType") {
            file.insert("mimeType".into(), media.clone());
        }
        if let Some(name) = part.get("filename") {
            file.insert("name".into(), name.clone());
        }
        out.insert("kind".into(), json!("file"));
        out.insert("file".into(), Value::Object(file));
    }
    if let Some(metadata) = part.get("metadata") {
        out.insert("metadata".into(), metadata.clone());
    }
    Value::Object(out)
}

fn parts_from_v1(parts: &Value) -> Value {
    Value::Array(
        parts
            .as_array()
            .map(|p| p.iter().map(part_from_v1).collect())
            .unwrap_or_default(),
    )
}

fn message_from_v1(message: &Value) -> Value {
    let mut out = object_without(message, &[]);
    out.insert("kind".into(), json!("message"));
    let role = match message["role"].as_str() {
        Some("ROLE_USER") => "user",
        _ => "agent",
    };
    out.insert("role".into(), json!(role));
    out.insert("parts".into(), parts_from_v1(&message["parts"]));
    Value::Object(out)
}

/// A 1.0 `Task` as a 0.3 `Task` (what 0.3 webhooks receive on every trigger).
pub fn task_from_v1(task: &Value) -> Value {
    let mut out = object_without(task, &[]);
    out.insert("kind".into(), json!("task"));
    let mut status = object_without(&task["status"], &[]);
    status.insert(
        "state".into(),
        json!(state_from_v1(
            task["status"]["state"].as_str().unwrap_or_default()
        )),
    );
    if let Some(message) = task["status"].get("message").filter(|m| m.is_object()) {
        status.insert("message".into(), message_from_v1(message));
    }
    out.insert("status".into(), Value::Object(status));
    if let Some(history) = task["history"].as_array() {
        out.insert(
            "history".into(),
            Value::Array(history.iter().map(message_from_v1).collect()),
        );
    }
    if let Some(artifacts) = task["artifacts"].as_array() {
        let artifacts = artifacts
            .iter()
            .map(|a| {
                let mut artifact = object_without(a, &[]);
                artifact.insert("parts".into(), parts_from_v1(&a["parts"]));
                Value::Object(artifact)
            })
            .collect();
        out.insert("artifacts".into(), Value::Array(artifacts));
    }
    Value::Object(out)
}

/// Reads a 0.3 `PushNotificationConfig` (`{id?, url, token?, authentication?: {schemes,
/// credentials?}}`) into the hub's create input.
pub fn config_input(
    task_id: Option<String>,
    config: &super::params::Params,
) -> Result<super::push_config::ConfigInput, InvalidField> {
    let url = config.required_string("url")?;
    let id = config.string("id")?;
    if let Some(id) = &id {
        super::params::check_id("pushNotificationConfig.id", id)?;
    }
    let token = config.string("token")?;
    let authentication = match config.object("authentication")? {
        None => None,
        Some(auth) => {
            let schemes: Vec<String> = auth
                .raw_array("schemes")?
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            let scheme = schemes.first().cloned().ok_or_else(|| {
                InvalidField::new(
                    "pushNotificationConfig.authentication.schemes",
                    "needs at least one scheme",
                )
            })?;
            Some(super::push_config::Authentication {
                scheme,
                credentials: auth.string("credentials")?.map(crate::secret::Secret::new),
                schemes_v03: schemes,
            })
        }
    };
    // Header safety and size limits are the same as for 1.0 configs.
    let mut as_v1 = serde_json::json!({"url": url});
    if let Some(id) = &id {
        as_v1["id"] = json!(id);
    }
    if let Some(token) = &token {
        as_v1["token"] = json!(token);
    }
    if let Some(auth) = &authentication {
        as_v1["authentication"] = json!({"scheme": auth.scheme});
    }
    let mut input =
        super::push_config::config_input(&super::params::Params::from_value(Some(as_v1))?)?;
    input.task_id = task_id;
    input.authentication = authentication;
    Ok(input)
}

/// A stored config as a 0.3 `PushNotificationConfig`, secrets omitted.
pub fn render_config(config: ConfigView<'_>) -> Value {
    let mut out = json!({"id": config.id, "url": config.url});
    if let Some(auth) = config.authentication {
        let schemes = if auth.schemes_v03.is_empty() {
            vec![auth.scheme.clone()]
        } else {
            auth.schemes_v03.clone()
        };
        out["authentication"] = json!({"schemes": schemes});
    }
    out
}

/// `TaskPushNotificationConfig` of the 0.3 JSON-RPC binding.
pub fn render_task_config(config: ConfigView<'_>) -> Value {
    json!({"taskId": config.task_id, "pushNotificationConfig": render_config(config)})
}

/// `TaskPushNotificationConfig` of the 0.3 REST (proto JSON) binding.
pub fn render_named_config(config: ConfigView<'_>) -> Value {
    json!({"name": format!("tasks/{}/pushNotificationConfigs/{}", config.task_id, config.id), "pushNotificationConfig": render_config(config)})
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

    #[test]
    fn a_10_task_becomes_the_03_task_and_back() {
        let v1 = json!({"id": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_INPUT_REQUIRED", "timestamp": "2026-11-28T10:00:00Z",
                "message": {"messageId": "m1", "role": "ROLE_AGENT", "parts": [{"text": "which one?"}]}},
            "artifacts": [{"artifactId": "a", "parts": [{"url": "https://x/y.pdf", "mediaType": "application/pdf", "filename": "y.pdf"}, {"data": {"k": 1}}]}],
            "history": [{"messageId": "m0", "role": "ROLE_USER", "parts": [{"text": "hi"}]}]});
        let v03 = task_from_v1(&v1);
        let golden = json!({"kind": "task", "id": "t1", "contextId": "c1",
            "status": {"state": "input-required", "timestamp": "2026-11-28T10:00:00Z",
                "message": {"kind": "message", "messageId": "m1", "role": "agent", "parts": [{"kind": "text", "text": "which one?"}]}},
            "artifacts": [{"artifactId": "a", "parts": [{"kind": "file", "file": {"uri": "https://x/y.pdf", "mimeType": "application/pdf", "name": "y.pdf"}}, {"kind": "data", "data": {"k": 1}}]}],
            "history": [{"kind": "message", "messageId": "m0", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}]});
        assert_eq!(v03, golden);
        assert_eq!(
            to_stream_response(&v03).unwrap().unwrap(),
            json!({"task": v1}),
            "the round trip is lossless"
        );
    }

    #[test]
    fn a_03_config_keeps_its_schemes_and_answers_without_secrets() {
        let params = super::super::params::Params::from_value(Some(
            json!({"id": "c", "url": "https://x/hook", "token": "tok",
            "authentication": {"schemes": ["Bearer", "Basic"], "credentials": "cred"}}),
        ))
        .unwrap();
        let input = config_input(Some("t".into()), &params).unwrap();
        let auth = input.authentication.clone().unwrap();
        assert_eq!(
            (auth.scheme.as_str(), auth.schemes_v03.len()),
            ("Bearer", 2)
        );
        let record = ConfigView {
            tenant: "",
            task_id: "t",
            id: "c",
            url: &input.url,
            authentication: Some(&auth),
        };
        assert_eq!(
            render_task_config(record),
            json!({"taskId": "t", "pushNotificationConfig": {"id": "c", "url": "https://x/hook",
            "authentication": {"schemes": ["Bearer", "Basic"]}}})
        );
        assert_eq!(
            render_named_config(record)["name"],
            "tasks/t/pushNotificationConfigs/c"
        );
    }
}
