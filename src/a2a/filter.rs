//! Which events a push config receives. The A2A push config has no such field, so the filter
//! is the hub's own, set per config (or as a tenant's default for new configs) on the admin
//! API. An event a filter holds back is recorded as a skipped delivery and keeps its sequence
//! number, so a receiver sees the gap and the `x-a2a-push-filter` header tells it why.

use a2a::{StreamResponse, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::params::InvalidField;

/// Largest `match` pattern, as JSON text.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Deepest nesting of a `match` pattern.
const MAX_PATTERN_DEPTH: usize = 8;
/// Most values in one `$in` list.
const MAX_IN_VALUES: usize = 64;
/// Most items of an array in a pattern; each is looked for among every item of the event's
/// array, and arrays inside arrays are refused, so matching stays linear in the event.
const MAX_ARRAY_ITEMS: usize = 16;

/// A config's event filter, stored and answered in the shape the admin API takes:
/// `{"events": "all" | "state_changes" | "terminal"}` or `{"match": PATTERN}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "Value", try_from = "Value")]
pub enum EventFilter {
    /// Every event (the default).
    #[default]
    All,
    /// Events that change the task's state: the first state a task reports and every
    /// different one after it. Messages and artifact updates are skipped.
    StateChanges,
    /// State changes into a terminal state or one that waits for the client
    /// (`input-required`, `auth-required`).
    Terminal,
    /// Events whose published JSON matches a pattern (see [`matches`]).
    Match(Value),
}

/// What a filter looks at: the event and the task's state before and after it.
pub struct EventChange<'a> {
    pub event: &'a StreamResponse,
    /// `None`: the task had no state yet (this is its first event).
    pub before: Option<TaskState>,
    pub after: TaskState,
    /// The event as published, parsed on demand (only a `match` filter reads it).
    pub body: &'a serde_json::value::RawValue,
    /// The body parsed, once for every config with a `match` filter.
    pub parsed: std::cell::OnceCell<Option<Value>>,
}

impl<'a> EventChange<'a> {
    pub fn new(
        event: &'a StreamResponse,
        before: Option<TaskState>,
        after: TaskState,
        body: &'a serde_json::value::RawValue,
    ) -> Self {
        EventChange {
            event,
            before,
            after,
            body,
            parsed: std::cell::OnceCell::new(),
        }
    }

    fn json(&self) -> Option<&Value> {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.body.get()).ok())
            .as_ref()
    }
}

impl EventFilter {
    /// Reads a filter as the admin API takes it; the error names the field to fix.
    pub fn parse(value: &Value) -> Result<Self, InvalidField> {
        const SHAPE: &str =
            r#"must be {"events": "all" | "state_changes" | "terminal"} or {"match": {…}}"#;
        let Value::Object(map) = value else {
            return Err(InvalidField::new("body", SHAPE));
        };
        if let Some(unknown) = map.keys().find(|k| *k != "events" && *k != "match") {
            return Err(InvalidField::new(
                unknown.as_str(),
                format!("is not a filter field; the body {SHAPE}"),
            ));
        }
        match (map.get("events"), map.get("match")) {
            (Some(events), None) => match events.as_str() {
                Some("all") => Ok(EventFilter::All),
                Some("state_changes") => Ok(EventFilter::StateChanges),
                Some("terminal") => Ok(EventFilter::Terminal),
                _ => Err(InvalidField::new(
                    "events",
                    "must be \"all\", \"state_changes\" or \"terminal\"",
                )),
            },
            (None, Some(pattern)) => {
                check_pattern(pattern, "match", 1)?;
                let size = serde_json::to_vec(pattern).map_or(usize::MAX, |b| b.len());
                if size > MAX_PATTERN_BYTES {
                    return Err(InvalidField::new(
                        "match",
                        format!("is {size} bytes as JSON; at most {MAX_PATTERN_BYTES} are allowed"),
                    ));
                }
                Ok(EventFilter::Match(pattern.clone()))
            }
            _ => Err(InvalidField::new("body", SHAPE)),
        }
    }

    /// The filter as the admin API answers it.
    pub fn to_json(&self) -> Value {
        match self {
            EventFilter::Match(pattern) => serde_json::json!({ "match": pattern }),
            other => serde_json::json!({ "events": other.name() }),
        }
    }

    pub fn is_all(&self) -> bool {
        *self == EventFilter::All
    }

    /// Its short name: `all`, `state_changes`, `terminal` or `match`.
    pub fn name(&self) -> &'static str {
        match self {
            EventFilter::All => "all",
            EventFilter::StateChanges => "state_changes",
            EventFilter::Terminal => "terminal",
            EventFilter::Match(_) => "match",
        }
    }

    /// Whether the config receives the event.
    pub fn passes(&self, change: &EventChange<'_>) -> bool {
        let changed_state = || {
            matches!(
                change.event,
                StreamResponse::Task(_) | StreamResponse::StatusUpdate(_)
            ) && change.before.as_ref() != Some(&change.after)
        };
        match self {
            EventFilter::All => true,
            EventFilter::StateChanges => changed_state(),
            EventFilter::Terminal => {
                changed_state()
                    && (change.after.is_terminal()
                        || matches!(
                            &change.after,
                            TaskState::InputRequired | TaskState::AuthRequired
                        ))
            }
            EventFilter::Match(pattern) => {
                change.json().is_some_and(|event| matches(pattern, event))
            }
        }
    }
}

impl From<EventFilter> for Value {
    fn from(filter: EventFilter) -> Value {
        filter.to_json()
    }
}

impl TryFrom<Value> for EventFilter {
    type Error = String;
    fn try_from(value: Value) -> Result<Self, String> {
        EventFilter::parse(&value).map_err(|e| format!("{} {}", e.field, e.reason))
    }
}

/// Checks a pattern's depth, operators and `$in` sizes; `at` is its path for the error.
fn check_pattern(pattern: &Value, at: &str, depth: usize) -> Result<(), InvalidField> {
    if depth > MAX_PATTERN_DEPTH {
        return Err(InvalidField::new(
            at,
            format!("nests deeper than {MAX_PATTERN_DEPTH} levels"),
        ));
    }
    match pattern {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => {
            if map.len() != 1 {
                return Err(InvalidField::new(
                    at,
                    "must be one operator ($in or $exists) alone, not mixed with other keys",
                ));
            }
            match map.iter().next() {
                Some((op, Value::Array(values))) if op == "$in" => {
                    if values.is_empty() || values.len() > MAX_IN_VALUES {
                        return Err(InvalidField::new(
                            format!("{at}.$in"),
                            format!("must list 1 to {MAX_IN_VALUES} values"),
                        ));
                    }
                    Ok(())
                }
                Some((op, Value::Bool(_))) if op == "$exists" => Ok(()),
                Some((op, _)) if op == "$in" => Err(InvalidField::new(
                    format!("{at}.$in"),
                    "must be an array of values",
                )),
                Some((op, _)) if op == "$exists" => Err(InvalidField::new(
                    format!("{at}.$exists"),
                    "must be true or false",
                )),
                Some((op, _)) => Err(InvalidField::new(
                    format!("{at}.{op}"),
                    "is not an operator; the operators are $in and $exists",
                )),
                None => Ok(()),
            }
        }
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, value)| check_pattern(value, &format!("{at}.{key}"), depth + 1)),
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_ITEMS {
                return Err(InvalidField::new(
                    at,
                    format!(
                        "has {} items; a pattern's array may have at most {MAX_ARRAY_ITEMS}",
                        items.len()
                    ),
                ));
            }
            items.iter().enumerate().try_for_each(|(i, item)| {
                let at = format!("{at}[{i}]");
                if contains_array(item) {
                    return Err(InvalidField::new(
                        at,
                        "holds an array: a pattern's arrays cannot nest (match the inner array's items through an object)",
                    ));
                }
                check_pattern(item, &at, depth + 1)
            })
        }
        _ => Ok(()),
    }
}

/// Whether a pattern holds an array to match item by item (a `$in` list is compared whole).
fn contains_array(value: &Value) -> bool {
    match value {
        Value::Array(_) => true,
        Value::Object(map) if map.contains_key("$in") => false,
        Value::Object(map) => map.values().any(contains_array),
        _ => false,
    }
}

/// Whether `value` matches `pattern`: an object pattern needs each of its keys in the value,
/// matching; an array pattern needs each of its items to match some item of the value's
/// array; `{"$in": [..]}` needs the value to equal one of the list; `{"$exists": false}`
/// matches only where the key is absent (see the object case); anything else must be equal.
pub fn matches(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(ops) if ops.len() == 1 && ops.contains_key("$in") => ops["$in"]
            .as_array()
            .is_some_and(|values| values.contains(value)),
        Value::Object(ops) if ops.len() == 1 && ops.contains_key("$exists") => {
            ops["$exists"].as_bool() != Some(false)
        }
        Value::Object(fields) => {
            let Value::Object(object) = value else {
                return false;
            };
            fields.iter().all(|(key, wanted)| match object.get(key) {
                Some(found) => matches(wanted, found),
                None => wanted.get("$exists").and_then(Value::as_bool) == Some(false),
            })
        }
        Value::Array(items) => {
            let Value::Array(found) = value else {
                return false;
            };
            items
                .iter()
                .all(|item| found.iter().any(|candidate| matches(item, candidate)))
        }
        scalar => scalar == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(event: Value, before: Option<TaskState>, after: TaskState) -> bool {
        let parsed: StreamResponse = serde_json::from_value(event.clone()).unwrap();
        let body = serde_json::value::to_raw_value(&event).unwrap();
        let filter = EventFilter::parse(&json!({"events": "state_changes"})).unwrap();
        filter.passes(&EventChange::new(&parsed, before, after, &body))
    }

    fn status(state: &str) -> Value {
        json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": state}}})
    }

    #[test]
    fn state_changes_pass_only_a_different_state() {
        assert!(change(
            status("TASK_STATE_WORKING"),
            None,
            TaskState::Working
        ));
        assert!(!change(
            status("TASK_STATE_WORKING"),
            Some(TaskState::Working),
            TaskState::Working
        ));
        let artifact = json!({"artifactUpdate": {"taskId": "t", "contextId": "c",
            "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}}});
        assert!(!change(
            artifact,
            Some(TaskState::Working),
            TaskState::Working
        ));
    }

    #[test]
    fn patterns_match_subsets_with_in_and_exists() {
        let event = json!({"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_FAILED"},
            "metadata": {"tags": ["a", "b"]}}});
        let yes = [
            json!({"statusUpdate": {"status": {"state": {"$in": ["TASK_STATE_FAILED", "TASK_STATE_REJECTED"]}}}}),
            json!({"statusUpdate": {"metadata": {"tags": ["b"]}}}),
            json!({"statusUpdate": {"metadata": {"tags": [{"$in": ["b", "c"]}]}}}),
            json!({"statusUpdate": {"taskId": {"$exists": true}, "final": {"$exists": false}}}),
            json!({}),
        ];
        let no = [
            json!({"statusUpdate": {"status": {"state": "TASK_STATE_COMPLETED"}}}),
            json!({"artifactUpdate": {"$exists": true}}),
            json!({"statusUpdate": {"metadata": {"tags": ["c"]}}}),
            json!({"statusUpdate": {"taskId": {"$exists": false}}}),
        ];
        for pattern in yes {
            assert!(matches(&pattern, &event), "{pattern}");
        }
        for pattern in no {
            assert!(!matches(&pattern, &event), "{pattern}");
        }
    }

    #[test]
    fn bad_filters_name_what_to_fix() {
        let cases = [
            (json!({"events": "some"}), "events"),
            (json!({"event": "all"}), "event"),
            (json!({"events": "all", "match": {}}), "body"),
            (json!({"match": {"a": {"$gt": 1}}}), "match.a.$gt"),
            (json!({"match": {"a": {"$in": []}}}), "match.a.$in"),
            (json!({"match": {"a": {"$in": [1], "b": 2}}}), "match.a"),
            (json!({"match": {"a": [[1]]}}), "match.a[0]"),
            (json!({"match": {"a": [{"b": [1]}]}}), "match.a[0]"),
            (json!({"match": {"a": vec![1; 17]}}), "match.a"),
            (json!([1]), "body"),
        ];
        for (body, field) in cases {
            let error = EventFilter::parse(&body).unwrap_err();
            assert_eq!(error.field, field, "{body}");
        }
        let deep = (0..10).fold(json!(1), |inner, _| json!({ "a": inner }));
        assert_eq!(
            EventFilter::parse(&json!({ "match": deep }))
                .unwrap_err()
                .field,
            "match.a.a.a.a.a.a.a.a"
        );
    }

    #[test]
    fn a_filter_round_trips_through_its_stored_json() {
        for body in [
            json!({"events": "terminal"}),
            json!({"match": {"statusUpdate": {"final": true}}}),
            json!({"match": {"statusUpdate": {"metadata": {"tags": [{"$in": ["b"]}]}}}}),
        ] {
            let filter = EventFilter::parse(&body).unwrap();
            let stored = serde_json::to_string(&filter).unwrap();
            assert_eq!(
                serde_json::from_str::<EventFilter>(&stored).unwrap(),
                filter
            );
            assert_eq!(filter.to_json(), body);
        }
    }
}
