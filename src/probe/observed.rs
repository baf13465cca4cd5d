//! What a probe run saw: the scenarios it drove, the config calls it made, the pushes that
//! arrived. The checks grade this; nothing here judges.

use std::time::Duration;

use serde_json::Value;

use super::webhook::{Answered, Received};
use crate::a2a::event::{BodyShape, read_push_body};
use crate::agent_client::{CallError, CardFacts, PushTarget, Version};

/// What the webhook of a scenario does, which decides what its checks look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answers 200: the config and delivery checks.
    Plain,
    /// The config registered on the running task.
    Late,
    /// A `Bearer` scheme without credentials: room for the agent's own JWT.
    Jwt,
    /// Faults on chosen attempts.
    Fault,
}

/// One task the probe drove, with the config it registered for it.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub kind: Kind,
    pub target: PushTarget,
    pub task_id: Option<String>,
    /// Why the scenario could not run (the send or the registration failed).
    pub error: Option<String>,
    /// States GetTask reported while the probe waited, in order, without repeats.
    pub states_seen: Vec<String>,
    /// When the config was registered (the late scenario), since the probe started.
    pub registered_at: Option<Duration>,
}

impl Scenario {
    pub fn final_state(&self) -> Option<&str> {
        self.states_seen.last().map(String::as_str)
    }
}

/// The push-config method calls of the late scenario, with their answers.
#[derive(Debug, Clone)]
pub struct ConfigCalls {
    pub task_id: String,
    pub late_id: String,
    pub late_url: String,
    pub created: Result<Value, CallError>,
    pub created_without_id: Result<Value, CallError>,
    /// The id the agent assigned to the config created without one.
    pub extra_id: Option<String>,
    /// A config created to be deleted: `config.delete` and `config.delete-idempotent`.
    pub doomed_id: String,
    pub created_doomed: Result<Value, CallError>,
    pub got: Result<Value, CallError>,
    /// Get of the config to delete, before the delete: a second id to look up.
    pub got_doomed: Option<Result<Value, CallError>>,
    pub listed: Result<Vec<Value>, CallError>,
    pub deleted: Option<Result<(), CallError>>,
    pub got_after_delete: Option<Result<Value, CallError>>,
    pub listed_after_delete: Option<Result<Vec<Value>, CallError>>,
    pub deleted_again: Option<Result<(), CallError>>,
}

/// One attempt to register a webhook the agent should refuse.
#[derive(Debug, Clone)]
pub struct SsrfAttempt {
    pub check_id: &'static str,
    pub what: &'static str,
    pub url: &'static str,
    pub result: Result<Value, CallError>,
}

/// Everything a run saw.
pub struct Observed {
    pub card: CardFacts,
    pub version: Version,
    pub scenarios: Vec<Scenario>,
    pub received: Vec<Received>,
    pub config_calls: Option<ConfigCalls>,
    pub ssrf: Vec<SsrfAttempt>,
    /// The JWKS the signatures were checked against, or why there is none; `None` when no
    /// request was signed.
    pub jwks: Option<Result<(String, Value), String>>,
    pub retry_wait: Duration,
    pub hang_limit: Duration,
    /// Every token and credential the probe made up for the agent.
    pub secrets: Vec<String>,
}

impl Observed {
    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// Requests that arrived for a scenario, with their index in `received`.
    pub fn requests_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (usize, &'a Received)> + 'a {
        self.received
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.scenario.as_deref() == Some(name))
    }

    /// Every secret the probe handed to the agent (tokens, credentials), to mask.
    pub fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

/// An event as a push body carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFacts {
    /// `task`, `statusUpdate`, `artifactUpdate` or `message`.
    pub kind: String,
    pub task_id: String,
    /// The task state it reports, for `task` and `statusUpdate`.
    pub state: Option<String>,
    /// "1.0" or "0.3": the shape of the body.
    pub shape: &'static str,
}

/// Reads a push body as the A2A 1.0 `StreamResponse` or the 0.3 Task/event it must be.
pub fn read_event(body: &[u8]) -> Result<EventFacts, String> {
    let push = read_push_body(body)?;
    let kind = push.kind().to_string();
    let inner = &push.value[&kind];
    if push.shape == BodyShape::V1 {
        // 0.3-only fields inside a 1.0 body fail the conformance kit's schema check.
        if let Some(field) = ["kind", "final"].iter().find(|f| inner.get(**f).is_some()) {
            return Err(format!(
                "{kind}.{field} is an A2A 0.3 field; a 1.0 StreamResponse has none"
            ));
        }
    }
    Ok(EventFacts {
        state: inner["status"]["state"]
            .as_str()
            .map(crate::agent_client::state_from_v03),
        kind,
        task_id: push.event.task_id,
        shape: match push.shape {
            BodyShape::V1 => "1.0",
            BodyShape::V03 => "0.3",
        },
    })
}

/// What identifies one event across its attempts: the `webhook-id` when the agent sends one,
/// else the exact body.
pub fn event_key(request: &Received) -> Vec<u8> {
    match request.header("webhook-id") {
        Some(id) => format!("webhook-id:{id}").into_bytes(),
        None => request.body.clone(),
    }
}

/// Whether the webhook acknowledged the request (a 2xx answer).
pub fn acknowledged(request: &Received) -> bool {
    matches!(request.answered, Answered::Status { status, .. } if (200..300).contains(&status))
}

/// When the agent knew the attempt failed: the answer's time, or when it gave up a hang.
pub fn failure_known_at(request: &Received) -> Option<Duration> {
    match &request.answered {
        Answered::Status { status, .. } if !(200..300).contains(status) => Some(request.at),
        Answered::Reset => Some(request.at),
        Answered::Hang {
            gave_up_after: Some(after),
            ..
        } => Some(request.at + *after),
        _ => None,
    }
}
