//! Reading a published task event: an A2A 1.0 `StreamResponse` with exactly one of `task`,
//! `statusUpdate`, `artifactUpdate`, `message`. The raw bytes are kept as published; the
//! parsed value is used to route and fold it.

use a2a::StreamResponse;
use serde_json::Value;

use super::params::{InvalidField, check_id};

const KINDS: [&str; 4] = ["task", "statusUpdate", "artifactUpdate", "message"];

/// A validated event: the parsed value and the task it belongs to.
#[derive(Debug, Clone)]
pub struct ParsedEvent {
    pub task_id: String,
    pub event: StreamResponse,
}

/// Validates one event. `at` prefixes field names (e.g. `[3]` for the fourth batch item).
pub fn parse_event(value: &Value, at: &str) -> Result<ParsedEvent, InvalidField> {
    let field = |name: &str| format!("{at}{}{name}", if at.is_empty() { "" } else { "." });
    let Value::Object(map) = value else {
        return Err(InvalidField::new(
            if at.is_empty() { "body" } else { at },
            "must be a JSON object (an A2A StreamResponse)",
        ));
    };
    let present: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    if let Some(unknown) = map.keys().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(InvalidField::new(
            field(unknown),
            "is not a StreamResponse field; expected exactly one of task, statusUpdate, artifactUpdate, message",
        ));
    }
    let kind = match present.as_slice() {
        [one] => *one,
        [] => {
            return Err(InvalidField::new(
                if at.is_empty() { "body" } else { at },
                "must have exactly one of task, statusUpdate, artifactUpdate, message; found none",
            ));
        }
        many => {
            return Err(InvalidField::new(
                if at.is_empty() { "body" } else { at },
                format!(
                    "must have exactly one of task, statusUpdate, artifactUpdate, message; found {}",
                    many.join(", ")
                ),
            ));
        }
    };
    let event: StreamResponse = serde_json::from_value(value.clone()).map_err(|e| {
        InvalidField::new(field(kind), format!("is not a valid A2A 1.0 {kind}: {e}"))
    })?;
    let task_id = match &event {
        StreamResponse::Task(task) => Some(task.id.clone()),
        StreamResponse::StatusUpdate(update) => Some(update.task_id.clone()),
        StreamResponse::ArtifactUpdate(update) => Some(update.task_id.clone()),
        StreamResponse::Message(message) => message.task_id.clone(),
    };
    let id_field = if kind == "task" { "id" } else { "taskId" };
    let task_id = task_id.filter(|id| !id.is_empty()).ok_or_else(|| {
        InvalidField::new(
            field(&format!("{kind}.{id_field}")),
            "is required: every event must name its task",
        )
    })?;
    check_id(&field(&format!("{kind}.{id_field}")), &task_id)?;
    Ok(ParsedEvent { task_id, event })
}

/// The A2A version whose shape a push body has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// A 1.0 `StreamResponse`.
    V1,
    /// A 0.3 Task or event (with `kind`), as 0.3 agents push.
    V03,
}

impl BodyShape {
    /// How error messages and notes name it.
    pub fn name(self) -> &'static str {
        match self {
            BodyShape::V1 => "A2A 1.0 StreamResponse",
            BodyShape::V03 => "A2A 0.3",
        }
    }
}

/// A push body as a peer agent sent it, read as the 1.0 event it is or stands for.
#[derive(Debug, Clone)]
pub struct PushBody {
    /// The 1.0 `StreamResponse` value (a 0.3 body converted).
    pub value: Value,
    pub shape: BodyShape,
    pub event: ParsedEvent,
}

impl PushBody {
    /// `task`, `statusUpdate`, `artifactUpdate` or `message`.
    pub fn kind(&self) -> &str {
        self.value
            .as_object()
            .and_then(|o| o.keys().next())
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Reads a push body: an A2A 1.0 `StreamResponse`, or a 0.3 Task/event normalised to one.
pub fn read_push_body(body: &[u8]) -> Result<PushBody, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let (value, shape) = match super::v03::to_stream_response(&value) {
        Some(converted) => (
            converted.map_err(|e| format!("the body is not a valid A2A 0.3 push: {e}"))?,
            BodyShape::V03,
        ),
        None => (value, BodyShape::V1),
    };
    let event = parse_event(&value, "")
        .map_err(|e| format!("the body is not a valid {}: {e}", shape.name()))?;
    Ok(PushBody {
        value,
        shape,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_is_accepted_with_its_task_id() {
        let cases = [
            json!({"task": {"id": "t1", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}}),
            json!({"statusUpdate": {"taskId": "t1", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}),
            json!({"artifactUpdate": {"taskId": "t1", "contextId": "c", "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}}}),
            json!({"message": {"messageId": "m", "taskId": "t1", "role": "ROLE_AGENT", "parts": [{"text": "hi"}]}}),
        ];
        for case in cases {
            assert_eq!(parse_event(&case, "").unwrap().task_id, "t1", "{case}");
        }
    }

    #[test]
    fn malformed_events_name_the_field() {
        let err = parse_event(
            &json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": []}}),
            "",
        )
        .unwrap_err();
        assert_eq!(err.field, "message.taskId");
        let err = parse_event(&json!({"task": {}, "message": {}}), "[2]").unwrap_err();
        assert_eq!(err.field, "[2]");
        assert!(err.reason.contains("found task, message"), "{}", err.reason);
        let err = parse_event(&json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "DONE"}}}), "").unwrap_err();
        assert_eq!(err.field, "statusUpdate");
        assert!(err.reason.contains("DONE"), "{}", err.reason);
        let err = parse_event(&json!({"bogus": 1}), "").unwrap_err();
        assert_eq!(err.field, "bogus");
        assert_eq!(parse_event(&json!([1]), "").unwrap_err().field, "body");
    }
}
