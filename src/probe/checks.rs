//! The checks a probe grades, each with an id, a level (MUST / SHOULD / MAY, with the A2A
//! section it rests on) and its evidence. `spec/probe-report.md` lists them all; every
//! function here reads only what the run observed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::observed::{
    ConfigCalls, EventFacts, Kind, Observed, acknowledged, event_key, failure_known_at, read_event,
};
use super::webhook::{Answered, Received};
use crate::agent_client::{CallError, Version, is_terminal};
use crate::signing::jwt;
use crate::signing::verify::{CapturedRequest, VerifyOptions, verify_request};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "SHOULD")]
    Should,
    #[serde(rename = "MAY")]
    May,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
        }
    }
}

/// One graded check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    /// Where the rule comes from.
    pub spec: &'static str,
    pub title: &'static str,
    pub result: Verdict,
    /// What the verdict rests on, secrets masked.
    pub evidence: Vec<String>,
    /// Indexes into the report's `received` list of the requests the evidence is about.
    pub requests: Vec<usize>,
}

/// A check's identity, as the catalog lists it.
struct Rule {
    id: &'static str,
    level: Level,
    spec: &'static str,
    title: &'static str,
}

/// Every check, in report order.
const RULES: &[Rule] = &[
    Rule {
        id: "card.push-notifications",
        level: Level::Must,
        spec: "A2A 1.0 §3.3.4, §4.3.1 (AgentCapabilities.pushNotifications)",
        title: "The agent card declares push-notification support",
    },
    Rule {
        id: "config.create",
        level: Level::Must,
        spec: "A2A 1.0 §3.1.7 CreateTaskPushNotificationConfig",
        title: "Creating a config answers the config: same id, URL and task",
    },
    Rule {
        id: "config.assigned-id",
        level: Level::Should,
        spec: "A2A 1.0 §3.1.7, §4.3.2 (TaskPushNotificationConfig.id)",
        title: "A config created without an id is given one",
    },
    Rule {
        id: "config.get",
        level: Level::Must,
        spec: "A2A 1.0 §3.1.8 GetTaskPushNotificationConfig",
        title: "Get returns the config that was created",
    },
    Rule {
        id: "config.list",
        level: Level::Must,
        spec: "A2A 1.0 §3.1.9 ListTaskPushNotificationConfigs",
        title: "List returns every config of the task",
    },
    Rule {
        id: "config.delete",
        level: Level::Must,
        spec: "A2A 1.0 §3.1.10 DeleteTaskPushNotificationConfig",
        title: "Delete removes the config: Get then says not found, List omits it",
    },
    Rule {
        id: "config.delete-idempotent",
        level: Level::Should,
        spec: "A2A 1.0 §3.1.10 (a repeated delete is not a server error)",
        title: "Deleting a config twice succeeds or says not found",
    },
    Rule {
        id: "config.credentials-hidden",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (credentials are secrets, stored securely), §13.4",
        title: "Config answers do not echo the token or credentials",
    },
    Rule {
        id: "delivery.at-least-once",
        level: Level::Must,
        spec: "A2A 1.0 §4.3.3 (MUST attempt delivery at least once for each configured webhook)",
        title: "Every registered webhook receives at least one push",
    },
    Rule {
        id: "delivery.post",
        level: Level::Must,
        spec: "A2A 1.0 §4.3.3 (the agent sends an HTTP POST)",
        title: "Pushes are POST requests",
    },
    Rule {
        id: "delivery.authorization",
        level: Level::Must,
        spec: "A2A 1.0 §4.3.3, §13.2 (MUST include the configured authentication)",
        title: "Authorization is exactly `{scheme} {credentials}` on every push",
    },
    Rule {
        id: "delivery.token",
        level: Level::Should,
        spec: "A2A 0.3 push guide (token in a header such as X-A2A-Notification-Token); 1.0 §4.3.3 leaves the header unnamed",
        title: "The configured token arrives on every push, in a token header",
    },
    Rule {
        id: "delivery.body",
        level: Level::Must,
        spec: "A2A 1.0 §4.3.3 (the body is a StreamResponse); 0.3 §9.5 (the Task)",
        title: "Every body is a valid push body for the registered version",
    },
    Rule {
        id: "delivery.task-id",
        level: Level::Must,
        spec: "A2A 1.0 §4.3.3, §13.2 (the receiver validates the task id)",
        title: "Every body is about the task the config belongs to",
    },
    Rule {
        id: "delivery.content-type",
        level: Level::Should,
        spec: "A2A 1.0.1 §4.3.3 (application/a2a+json; application/json in 1.0.0)",
        title: "Content-Type is application/a2a+json or application/json",
    },
    Rule {
        id: "delivery.a2a-version",
        level: Level::May,
        spec: "A2A 1.0 §3.6 (A2A-Version); not required on webhooks",
        title: "Pushes say their version in A2A-Version, matching the body",
    },
    Rule {
        id: "delivery.late-registration",
        level: Level::Must,
        spec: "A2A 1.0 §3.1.7, §4.3.3 (a config registered on a running task gets its updates)",
        title: "A config registered on a running task receives the updates after it",
    },
    Rule {
        id: "delivery.terminal-state",
        level: Level::Must,
        spec: "A2A 1.0 §4.3.3 (a POST when a task update occurs)",
        title: "The task's terminal state is pushed",
    },
    Rule {
        id: "delivery.every-state",
        level: Level::Should,
        spec: "A2A 1.0 §4.3.3 (every task update); A2A#1428",
        title: "Every state the task was seen in is pushed",
    },
    Rule {
        id: "delivery.order",
        level: Level::Should,
        spec: "A2A 1.0 §3.5.2 (events in the order generated)",
        title: "Pushes of a task arrive in order",
    },
    Rule {
        id: "delivery.after-terminal",
        level: Level::Should,
        spec: "A2A 1.0 §4.4 (a terminal task has no further updates)",
        title: "Nothing new is pushed after the terminal state",
    },
    Rule {
        id: "delivery.no-duplicates",
        level: Level::May,
        spec: "A2A 1.0 §4.3.3 (duplicates may occur; receivers de-duplicate)",
        title: "An acknowledged push is not sent again",
    },
    Rule {
        id: "retry.after-5xx",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (SHOULD retry with exponential backoff)",
        title: "A push answered 500 is retried",
    },
    Rule {
        id: "retry.backoff",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (exponential backoff)",
        title: "Retries of a push answered 503 twice come at growing intervals",
    },
    Rule {
        id: "retry.retry-after",
        level: Level::May,
        spec: "RFC 9110 §10.2.3 Retry-After (A2A is silent)",
        title: "A retry after 429 waits at least Retry-After",
    },
    Rule {
        id: "retry.stops-on-410",
        level: Level::May,
        spec: "Standard Webhooks (410 Gone disables the endpoint; A2A is silent)",
        title: "After 410 Gone the webhook is not called again",
    },
    Rule {
        id: "delivery.timeout",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (reasonable timeout, recommended 10-30 s)",
        title: "A webhook that never answers is given up after 10-30 s",
    },
    Rule {
        id: "retry.after-timeout",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (retry with backoff)",
        title: "A push that timed out is retried",
    },
    Rule {
        id: "retry.after-reset",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (retry with backoff)",
        title: "A push whose connection was reset is retried",
    },
    Rule {
        id: "ssrf.loopback",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (reject localhost)",
        title: "A webhook URL on loopback is refused",
    },
    Rule {
        id: "ssrf.link-local",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (reject link-local, e.g. cloud metadata)",
        title: "A webhook URL on the link-local metadata address is refused",
    },
    Rule {
        id: "ssrf.private",
        level: Level::Should,
        spec: "A2A 1.0 §13.2 (reject private IP ranges)",
        title: "A webhook URL in a private network is refused",
    },
    Rule {
        id: "signature.webhook",
        level: Level::May,
        spec: "Standard Webhooks; A2A push guide (verify the source)",
        title: "Signed pushes verify against the agent's JWKS",
    },
    Rule {
        id: "signature.jwt",
        level: Level::May,
        spec: "A2A push guide: JWT + JWKS (Bearer without credentials)",
        title: "A Bearer config without credentials gets a JWT that verifies, for this webhook and task",
    },
];

/// The ids of every check, in report order.
#[cfg(test)]
pub fn ids() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|r| r.id)
}

/// Where A2A 0.3 asks less than 1.0: the level and section a 0.3 registration is graded by.
const V03_RULES: &[(&str, Level, &str)] = &[(
    "delivery.authorization",
    Level::Should,
    "A2A 0.3 §6.8, §9.5 (authentication is described for 0.3 senders, not required)",
)];

/// Replaces every secret in `text` with `****`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut masked = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        masked = masked.replace(secret.as_str(), "****");
    }
    masked
}

/// `#3 inline +1.204s → 200`: a request named in evidence.
pub fn describe(index: usize, request: &Received) -> String {
    format!(
        "#{} {} +{:.3}s {}",
        index + 1,
        request.scenario.as_deref().unwrap_or("(unknown path)"),
        request.at.as_secs_f64(),
        answered_text(&request.answered)
    )
}

pub fn answered_text(answered: &Answered) -> String {
    match answered {
        Answered::Status {
            status,
            retry_after_s: Some(s),
        } => format!("answered {status} (Retry-After: {s})"),
        Answered::Status { status, .. } => format!("answered {status}"),
        Answered::Reset => "connection reset".to_string(),
        Answered::Hang {
            gave_up_after: Some(after),
            ..
        } => format!("held; the agent gave up after {:.1}s", after.as_secs_f64()),
        Answered::Hang {
            held_to_limit: true,
            ..
        } => "held to the limit, then answered 200".to_string(),
        Answered::Hang { .. } => "held".to_string(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// What one grading function found.
struct Finding {
    result: Verdict,
    evidence: Vec<String>,
    requests: Vec<usize>,
}

fn pass(evidence: impl Into<String>) -> Finding {
    Finding {
        result: Verdict::Pass,
        evidence: vec![evidence.into()],
        requests: vec![],
    }
}

fn fail(evidence: impl Into<String>) -> Finding {
    Finding {
        result: Verdict::Fail,
        evidence: vec![evidence.into()],
        requests: vec![],
    }
}

fn skip(evidence: impl Into<String>) -> Finding {
    Finding {
        result: Verdict::Skip,
        evidence: vec![evidence.into()],
        requests: vec![],
    }
}

/// Passes when `problems` is empty; otherwise fails listing them (with their requests).
fn judged(problems: Vec<(usize, String)>, ok: String) -> Finding {
    if problems.is_empty() {
        return pass(ok);
    }
    Finding {
        result: Verdict::Fail,
        requests: problems.iter().map(|(i, _)| *i).collect(),
        evidence: problems
            .into_iter()
            .map(|(_, text)| text)
            .take(20)
            .collect(),
    }
}

/// Grades every check.
pub fn grade(observed: &Observed) -> Vec<Check> {
    let secrets = observed.secrets();
    let mut findings: HashMap<&'static str, Finding> = HashMap::new();
    findings.insert("card.push-notifications", card(observed));
    config_checks(observed, &mut findings);
    delivery_checks(observed, &mut findings);
    retry_checks(observed, &mut findings);
    for attempt in &observed.ssrf {
        let finding = match &attempt.result {
            Err(e) if e.status.is_some() => {
                pass(format!("{} ({}) refused: {e}", attempt.url, attempt.what))
            }
            Err(e) => skip(format!(
                "no answer to the registration of {}: {e}",
                attempt.url
            )),
            Ok(_) => fail(format!(
                "{} ({}) accepted as a webhook URL (the probe deleted it again)",
                attempt.url, attempt.what
            )),
        };
        findings.insert(attempt.check_id, finding);
    }
    signature_checks(observed, &mut findings);
    RULES
        .iter()
        .map(|rule| {
            let finding = findings
                .remove(rule.id)
                .unwrap_or_else(|| skip("not graded: the scenario it needs did not run"));
            let (level, spec) = match V03_RULES.iter().find(|(id, ..)| *id == rule.id) {
                Some((_, level, spec)) if observed.version == Version::V03 => (*level, *spec),
                _ => (rule.level, rule.spec),
            };
            Check {
                id: rule.id,
                level,
                spec,
                title: rule.title,
                result: finding.result,
                evidence: finding.evidence.iter().map(|e| mask(e, &secrets)).collect(),
                requests: finding.requests,
            }
        })
        .collect()
}

fn card(observed: &Observed) -> Finding {
    match observed.card.push_notifications {
        Some(true) => pass(format!(
            "{}: capabilities.pushNotifications is true",
            observed.card.card_url
        )),
        Some(false) => fail(format!(
            "{}: capabilities.pushNotifications is false",
            observed.card.card_url
        )),
        None => fail(format!(
            "{}: capabilities.pushNotifications is absent",
            observed.card.card_url
        )),
    }
}

fn config_checks(observed: &Observed, findings: &mut HashMap<&'static str, Finding>) {
    let Some(calls) = &observed.config_calls else {
        let why = observed
            .scenario("late")
            .and_then(|s| s.error.clone())
            .unwrap_or_else(|| "the late scenario did not run".to_string());
        for id in [
            "config.create",
            "config.assigned-id",
            "config.get",
            "config.list",
            "config.delete",
            "config.delete-idempotent",
            "config.credentials-hidden",
        ] {
            findings.insert(id, skip(why.clone()));
        }
        return;
    };
    let same = |config: &Value| -> Vec<String> {
        let mut wrong = Vec::new();
        if config["id"].as_str() != Some(calls.late_id.as_str()) {
            wrong.push(format!(
                "id is {} (asked for {:?})",
                config["id"], calls.late_id
            ));
        }
        if config["url"].as_str() != Some(calls.late_url.as_str()) {
            wrong.push(format!(
                "url is {} (asked for {:?})",
                config["url"], calls.late_url
            ));
        }
        if let Some(task) = config["taskId"].as_str().filter(|t| !t.is_empty()) {
            if task != calls.task_id {
                wrong.push(format!(
                    "taskId is {task:?} (the task is {:?})",
                    calls.task_id
                ));
            }
        }
        wrong
    };
    let call_failed = |what: &str, e: &CallError| fail(format!("{what} failed: {e}"));
    findings.insert(
        "config.create",
        match &calls.created {
            Ok(config) => match same(config).as_slice() {
                [] => pass(format!(
                    "answered id {:?}, the URL and the task",
                    calls.late_id
                )),
                wrong => fail(format!(
                    "the answer differs from the request: {}",
                    wrong.join("; ")
                )),
            },
            Err(e) => call_failed("CreateTaskPushNotificationConfig", e),
        },
    );
    findings.insert(
        "config.assigned-id",
        match &calls.created_without_id {
            Ok(config) => match config["id"].as_str().filter(|id| !id.is_empty()) {
                Some(id) => pass(format!("the agent assigned id {id:?}")),
                None => fail(format!("the answer has no id: {config}")),
            },
            Err(e) => call_failed("creating a config without an id", e),
        },
    );
    findings.insert("config.get", get_check(calls, &same));
    findings.insert("config.list", list_check(calls));
    findings.insert("config.delete", delete_check(calls));
    findings.insert(
        "config.delete-idempotent",
        match &calls.deleted_again {
            None => skip("the first delete did not run"),
            Some(Ok(())) => pass("the second delete succeeded"),
            Some(Err(e)) if e.is_not_found() => {
                pass(format!("the second delete said not found: {e}"))
            }
            Some(Err(e)) => fail(format!("the second delete failed: {e}")),
        },
    );
    let token = observed
        .scenario("late")
        .and_then(|s| s.target.token.clone())
        .unwrap_or_default();
    let mut echoed = Vec::new();
    let mut answers: Vec<(&str, String)> = Vec::new();
    if let Ok(v) = &calls.created {
        answers.push(("Create", v.to_string()));
    }
    if let Ok(v) = &calls.got {
        answers.push(("Get", v.to_string()));
    }
    if let Ok(v) = &calls.listed {
        answers.push(("List", Value::Array(v.clone()).to_string()));
    }
    for (method, text) in &answers {
        if !token.is_empty() && text.contains(&token) {
            echoed.push(*method);
        }
    }
    findings.insert(
        "config.credentials-hidden",
        if answers.is_empty() {
            skip("no config answer to look at")
        } else if echoed.is_empty() {
            pass(format!(
                "the token is absent from the {} answers",
                answers.len()
            ))
        } else {
            fail(format!(
                "the configured token is echoed back by {}",
                echoed.join(", ")
            ))
        },
    );
}

fn ids_of(configs: &[Value]) -> Vec<String> {
    configs
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect()
}

fn get_check(calls: &ConfigCalls, same_as_late: &dyn Fn(&Value) -> Vec<String>) -> Finding {
    let late = match &calls.got {
        Ok(config) => match same_as_late(config).as_slice() {
            [] => format!("Get {:?} answered it", calls.late_id),
            wrong => {
                return fail(format!(
                    "Get {:?} answered a different config: {}",
                    calls.late_id,
                    wrong.join("; ")
                ));
            }
        },
        Err(e) => return fail(format!("GetTaskPushNotificationConfig failed: {e}")),
    };
    match &calls.got_doomed {
        None => pass(late),
        Some(Ok(config)) if config["id"].as_str() == Some(calls.doomed_id.as_str()) => {
            pass(format!("{late}; Get {:?} answered it", calls.doomed_id))
        }
        Some(Ok(config)) => fail(format!(
            "Get {:?} answered config {} instead: the config id is not honoured",
            calls.doomed_id, config["id"]
        )),
        Some(Err(e)) => fail(format!(
            "Get {:?} (the task's second config) failed: {e}",
            calls.doomed_id
        )),
    }
}

fn list_check(calls: &ConfigCalls) -> Finding {
    let listed = match &calls.listed {
        Ok(listed) => ids_of(listed),
        Err(e) => return fail(format!("ListTaskPushNotificationConfigs failed: {e}")),
    };
    let mut expected = vec![calls.late_id.clone()];
    if calls.created_doomed.is_ok() {
        expected.push(calls.doomed_id.clone());
    }
    expected.extend(calls.extra_id.clone());
    let missing: Vec<&String> = expected.iter().filter(|id| !listed.contains(id)).collect();
    if missing.is_empty() {
        pass(format!("List answered {listed:?}"))
    } else {
        fail(format!("List answered {listed:?}, without {missing:?}"))
    }
}

fn delete_check(calls: &ConfigCalls) -> Finding {
    let doomed = &calls.doomed_id;
    if let Err(e) = &calls.created_doomed {
        return skip(format!("the config to delete could not be created: {e}"));
    }
    let mut problems = Vec::new();
    match &calls.deleted {
        Some(Ok(())) => {}
        Some(Err(e)) => return fail(format!("Delete of {doomed:?} failed: {e}")),
        None => return skip("the delete did not run"),
    }
    match &calls.got_after_delete {
        Some(Ok(config)) if config["id"].as_str() == Some(doomed.as_str()) => {
            problems.push(format!("Get after the delete still answers {config}"))
        }
        Some(Ok(config)) => problems.push(format!(
            "Get after the delete answers another config ({}) instead of not found",
            config["id"]
        )),
        Some(Err(e)) if !e.is_not_found() => problems.push(format!(
            "Get after the delete failed otherwise than not found: {e}"
        )),
        _ => {}
    }
    match &calls.listed_after_delete {
        Some(Ok(listed)) if ids_of(listed).contains(doomed) => {
            problems.push(format!("List after the delete still has {doomed:?}"))
        }
        Some(Err(e)) => problems.push(format!("List after the delete failed: {e}")),
        _ => {}
    }
    if problems.is_empty() {
        pass(format!(
            "{doomed:?} deleted: Get says not found, List omits it"
        ))
    } else {
        fail(problems.join("; "))
    }
}

/// Each request of the scenarios that registered a webhook, with its event when it reads.
struct Pushes<'a> {
    all: Vec<(usize, &'a Received, Result<EventFacts, String>)>,
}

impl<'a> Pushes<'a> {
    fn of(
        &self,
        scenario: &str,
    ) -> impl Iterator<Item = &(usize, &'a Received, Result<EventFacts, String>)> {
        let scenario = scenario.to_string();
        self.all
            .iter()
            .filter(move |(_, r, _)| r.scenario.as_deref() == Some(scenario.as_str()))
    }
}

/// Rank of a state in the task lifecycle; never lower in a later push.
fn rank(state: &str) -> u8 {
    match state {
        "TASK_STATE_SUBMITTED" => 0,
        s if is_terminal(s) => 2,
        _ => 1,
    }
}

fn delivery_checks(observed: &Observed, findings: &mut HashMap<&'static str, Finding>) {
    let pushes = Pushes {
        all: observed
            .received
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scenario.is_some())
            .map(|(i, r)| (i, r, read_event(&r.body)))
            .collect(),
    };
    let ran: Vec<_> = observed
        .scenarios
        .iter()
        .filter(|s| s.task_id.is_some() && s.error.is_none())
        .collect();
    if ran.is_empty() {
        return;
    }
    let mut silent = Vec::new();
    for scenario in &ran {
        if pushes.of(scenario.name).next().is_none() {
            silent.push(scenario.name);
        }
    }
    findings.insert(
        "delivery.at-least-once",
        if silent.is_empty() {
            pass(format!(
                "each of the {} webhooks received pushes",
                ran.len()
            ))
        } else {
            fail(format!(
                "no push arrived at the webhook of: {}",
                silent.join(", ")
            ))
        },
    );
    let problems = pushes
        .all
        .iter()
        .filter(|(_, r, _)| r.method != "POST")
        .map(|(i, r, _)| {
            (
                *i,
                format!("{}: {} instead of POST", describe(*i, r), r.method),
            )
        })
        .collect();
    findings.insert(
        "delivery.post",
        judged(
            problems,
            format!("all {} pushes are POST", pushes.all.len()),
        ),
    );

    // Authorization and token.
    let mut auth_problems = Vec::new();
    let mut auth_seen = 0;
    let mut token_problems = Vec::new();
    let mut token_names: HashSet<String> = HashSet::new();
    let mut token_seen = 0;
    for scenario in &ran {
        let target = &scenario.target;
        for (i, r, _) in pushes.of(scenario.name) {
            if let Some((scheme, Some(credentials))) = &target.authentication {
                auth_seen += 1;
                let expected = format!("{scheme} {credentials}");
                match r.header("authorization") {
                    None => auth_problems
                        .push((*i, format!("{}: no Authorization header", describe(*i, r)))),
                    Some(v) if v == expected => {}
                    Some(_) => auth_problems.push((
                        *i,
                        format!(
                            "{}: Authorization is not `{scheme} ****` as configured",
                            describe(*i, r)
                        ),
                    )),
                }
            }
            if let Some(token) = &target.token {
                token_seen += 1;
                let sent = ["X-A2A-Notification-Token", "A2A-Notification-Token"]
                    .into_iter()
                    .find_map(|name| r.header(name).map(|v| (name, v)));
                match sent {
                    Some((name, value)) if value == token => {
                        token_names.insert(name.to_string());
                    }
                    Some((name, _)) => token_problems.push((
                        *i,
                        format!(
                            "{}: {name} does not carry the configured token",
                            describe(*i, r)
                        ),
                    )),
                    None => token_problems.push((
                        *i,
                        format!(
                            "{}: no token header{}",
                            describe(*i, r),
                            if target.authentication.is_some() {
                                " (the config has both a token and authentication)"
                            } else {
                                ""
                            }
                        ),
                    )),
                }
            }
        }
    }
    findings.insert(
        "delivery.authorization",
        if auth_seen == 0 {
            skip("no push arrived for a config with authentication")
        } else {
            judged(
                auth_problems,
                format!(
                    "Authorization matched on all {auth_seen} pushes of configs with authentication"
                ),
            )
        },
    );
    let mut names: Vec<_> = token_names.into_iter().collect();
    names.sort();
    findings.insert(
        "delivery.token",
        if token_seen == 0 {
            skip("no push arrived for a config with a token")
        } else {
            judged(
                token_problems,
                format!(
                    "the token arrived on all {token_seen} pushes, as {}",
                    names.join(" and ")
                ),
            )
        },
    );

    // Bodies, task ids, headers.
    let expected_shape = observed.version.as_str();
    let mut body_problems = Vec::new();
    let mut task_problems = Vec::new();
    let mut type_problems = Vec::new();
    let mut types: HashSet<String> = HashSet::new();
    let mut version_problems = Vec::new();
    for scenario in &ran {
        let task_id = scenario.task_id.as_deref().unwrap_or_default();
        for (i, r, event) in pushes.of(scenario.name) {
            match event {
                Err(e) => body_problems.push((*i, format!("{}: {e}", describe(*i, r)))),
                Ok(event) => {
                    if event.shape != expected_shape {
                        body_problems.push((*i, format!(
                            "{}: an A2A {} body for a config registered over A2A {expected_shape}",
                            describe(*i, r), event.shape
                        )));
                    }
                    if event.task_id != task_id {
                        task_problems.push((
                            *i,
                            format!(
                                "{}: task {:?}, expected {task_id:?}",
                                describe(*i, r),
                                event.task_id
                            ),
                        ));
                    }
                    match r.header("a2a-version") {
                        Some(v) if v.trim() == event.shape => {}
                        Some(v) => version_problems.push((
                            *i,
                            format!(
                                "{}: A2A-Version {v:?} with an A2A {} body",
                                describe(*i, r),
                                event.shape
                            ),
                        )),
                        None => version_problems
                            .push((*i, format!("{}: no A2A-Version header", describe(*i, r)))),
                    }
                }
            }
            let media = r.header("content-type").map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
            match media.as_deref() {
                Some(m @ ("application/a2a+json" | "application/json")) => {
                    types.insert(m.to_string());
                }
                Some(other) => {
                    type_problems.push((*i, format!("{}: Content-Type {other}", describe(*i, r))))
                }
                None => type_problems.push((*i, format!("{}: no Content-Type", describe(*i, r)))),
            }
        }
    }
    let total = pushes.all.len();
    findings.insert(
        "delivery.body",
        judged(
            body_problems,
            format!("all {total} bodies are valid A2A {expected_shape} push bodies"),
        ),
    );
    findings.insert(
        "delivery.task-id",
        judged(
            task_problems,
            format!("all {total} bodies name their config's task"),
        ),
    );
    let mut types: Vec<_> = types.into_iter().collect();
    types.sort();
    findings.insert(
        "delivery.content-type",
        judged(type_problems, format!("Content-Type: {}", types.join(", "))),
    );
    findings.insert(
        "delivery.a2a-version",
        judged(
            version_problems,
            format!("A2A-Version matched the body on all {total} pushes"),
        ),
    );

    // The late registration.
    findings.insert(
        "delivery.late-registration",
        match observed.scenario("late") {
            Some(late) if late.error.is_none() => match late.registered_at {
                None => skip("the config was not registered"),
                Some(at) => {
                    let after: Vec<_> = pushes.of("late").filter(|(_, r, _)| r.at >= at).collect();
                    match after.first() {
                        Some((i, r, _)) => Finding {
                            result: Verdict::Pass,
                            evidence: vec![format!("registered at +{:.3}s; first push {}", at.as_secs_f64(), describe(*i, r))],
                            requests: vec![*i],
                        },
                        None if late.states_seen.first().is_some_and(|s| is_terminal(s)) => {
                            skip("the task had finished before the config was registered")
                        }
                        None => fail(format!(
                            "registered at +{:.3}s on a task in {}; nothing arrived (the task ended {})",
                            at.as_secs_f64(),
                            late.states_seen.first().map(String::as_str).unwrap_or("an unknown state"),
                            late.final_state().unwrap_or("in an unknown state")
                        )),
                    }
                }
            },
            Some(late) => skip(late.error.clone().unwrap_or_default()),
            None => skip("the late scenario did not run"),
        },
    );

    // States, order, terminal, duplicates: on the scenarios whose webhook answered 200.
    let plain: Vec<_> = ran
        .iter()
        .filter(|s| matches!(s.kind, Kind::Plain | Kind::Late | Kind::Jwt))
        .collect();
    let mut terminal_problems = Vec::new();
    let mut terminal_ok = Vec::new();
    let mut state_problems = Vec::new();
    for scenario in &plain {
        let pushed: Vec<String> = pushes
            .of(scenario.name)
            .filter_map(|(_, _, e)| e.as_ref().ok()?.state.clone())
            .collect();
        match scenario.final_state() {
            Some(state) if is_terminal(state) => {
                if pushed.iter().any(|s| s == state) {
                    terminal_ok.push(format!("{}: {state}", scenario.name));
                } else {
                    terminal_problems.push((
                        0,
                        format!(
                            "{}: the task ended {state}, never pushed (pushed: {pushed:?})",
                            scenario.name
                        ),
                    ));
                }
            }
            other => terminal_problems.push((
                0,
                format!(
                    "{}: the task did not finish within the timeout (last seen {})",
                    scenario.name,
                    other.unwrap_or("in no state")
                ),
            )),
        }
        if scenario.kind != Kind::Late {
            let missing: Vec<&String> = scenario
                .states_seen
                .iter()
                .filter(|s| s.as_str() != "TASK_STATE_UNSPECIFIED" && !pushed.contains(s))
                .collect();
            if !missing.is_empty() {
                state_problems.push((0, format!(
                    "{}: the task was seen in {missing:?} but no push said so (pushed: {pushed:?})",
                    scenario.name
                )));
            }
        }
    }
    findings.insert(
        "delivery.terminal-state",
        without_indexes(judged(
            terminal_problems,
            format!("pushed: {}", terminal_ok.join("; ")),
        )),
    );
    findings.insert(
        "delivery.every-state",
        without_indexes(judged(
            state_problems,
            "every state GetTask showed was pushed".to_string(),
        )),
    );

    let mut order_problems = Vec::new();
    let mut after_terminal = Vec::new();
    let mut duplicates = Vec::new();
    for scenario in &ran {
        let mut first_seen: Vec<(usize, &Received, Option<String>)> = Vec::new();
        let mut keys: HashSet<Vec<u8>> = HashSet::new();
        let mut acked: HashSet<Vec<u8>> = HashSet::new();
        for (i, r, event) in pushes.of(scenario.name) {
            let key = event_key(r);
            if acked.contains(&key) && scenario.kind != Kind::Fault {
                duplicates.push((
                    *i,
                    format!(
                        "{}: the same event again after it was acknowledged",
                        describe(*i, r)
                    ),
                ));
            }
            if acknowledged(r) {
                acked.insert(key.clone());
            }
            if keys.insert(key) {
                first_seen.push((*i, r, event.as_ref().ok().and_then(|e| e.state.clone())));
            }
        }
        let mut highest: Option<(u8, String)> = None;
        let mut terminal_at: Option<usize> = None;
        for (i, r, state) in &first_seen {
            if let Some(at) = terminal_at {
                after_terminal.push((
                    *i,
                    format!(
                        "{}: a new push after the terminal state (pushed as #{})",
                        describe(*i, r),
                        at + 1
                    ),
                ));
            }
            let Some(state) = state else { continue };
            if let Some((rank_before, before)) = &highest {
                if rank(state) < *rank_before {
                    order_problems.push((
                        *i,
                        format!("{}: {state} arrived after {before}", describe(*i, r)),
                    ));
                }
            }
            if highest.as_ref().is_none_or(|(r, _)| rank(state) >= *r) {
                highest = Some((rank(state), state.clone()));
            }
            if is_terminal(state) && terminal_at.is_none() {
                terminal_at = Some(*i);
            }
        }
    }
    findings.insert(
        "delivery.order",
        judged(
            order_problems,
            "no push reported an earlier state than one before it".to_string(),
        ),
    );
    findings.insert(
        "delivery.after-terminal",
        judged(
            after_terminal,
            "nothing new followed a terminal state".to_string(),
        ),
    );
    findings.insert(
        "delivery.no-duplicates",
        judged(
            duplicates,
            "no acknowledged push was sent again".to_string(),
        ),
    );
}

fn without_indexes(mut finding: Finding) -> Finding {
    finding.requests.clear();
    finding
}

/// The attempts of the first event pushed to a fault scenario.
fn first_event_attempts<'a>(
    observed: &'a Observed,
    scenario: &'a str,
) -> Vec<(usize, &'a Received)> {
    let requests: Vec<_> = observed.requests_of(scenario).collect();
    let Some((_, first)) = requests.first() else {
        return vec![];
    };
    let key = event_key(first);
    requests
        .into_iter()
        .filter(|(_, r)| event_key(r) == key)
        .collect()
}

fn attempt_list(attempts: &[(usize, &Received)]) -> String {
    attempts
        .iter()
        .map(|(i, r)| describe(*i, r))
        .collect::<Vec<_>>()
        .join("; ")
}

fn ran_fault(observed: &Observed, name: &str) -> Result<(), Finding> {
    match observed.scenario(name) {
        None => Err(skip("the scenario did not run")),
        Some(s) if s.error.is_some() => Err(skip(s.error.clone().unwrap_or_default())),
        Some(_) if observed.requests_of(name).next().is_none() => {
            Err(skip("no push arrived, so there was nothing to fail"))
        }
        Some(_) => Ok(()),
    }
}

fn with_requests(mut finding: Finding, attempts: &[(usize, &Received)]) -> Finding {
    finding.requests = attempts.iter().map(|(i, _)| *i).collect();
    finding
}

/// Grades "the failed first attempt was retried". A copy of the event that arrived before the
/// agent could know of the failure (while a hung request was still held) was sent alongside
/// the failed attempt, not after it, so it is no retry.
fn retried(observed: &Observed, scenario: &str, failure: &str) -> Finding {
    if let Err(finding) = ran_fault(observed, scenario) {
        return finding;
    }
    let attempts = first_event_attempts(observed, scenario);
    let failed_at = failure_known_at(attempts[0].1).unwrap_or(attempts[0].1.at);
    let retry = attempts[1..].iter().find(|(_, r)| r.at >= failed_at);
    let finding = match retry {
        Some((_, retry)) => pass(format!(
            "retried {} after the {failure}: {}",
            secs(retry.at - failed_at),
            attempt_list(&attempts)
        )),
        None => fail(format!(
            "not retried within {} after the {failure}: {}",
            secs(observed.retry_wait),
            attempt_list(&attempts)
        )),
    };
    with_requests(finding, &attempts)
}

fn retry_checks(observed: &Observed, findings: &mut HashMap<&'static str, Finding>) {
    findings.insert("retry.after-5xx", retried(observed, "error-500", "500"));
    findings.insert("retry.after-reset", retried(observed, "reset", "reset"));

    findings.insert("retry.backoff", match ran_fault(observed, "error-503") {
        Err(finding) => finding,
        Ok(()) => {
            let attempts = first_event_attempts(observed, "error-503");
            let finding = if attempts.len() < 3 {
                fail(format!(
                    "{} attempt(s) within {} of the last 503; growing intervals need two retries: {}",
                    attempts.len(),
                    secs(observed.retry_wait),
                    attempt_list(&attempts)
                ))
            } else {
                let first = attempts[1].1.at.saturating_sub(attempts[0].1.at);
                let second = attempts[2].1.at.saturating_sub(attempts[1].1.at);
                let text = format!("intervals {} then {}: {}", secs(first), secs(second), attempt_list(&attempts));
                // Growing means clearly longer: a constant interval plus jitter is not backoff.
                if second > first.mul_f64(1.3) && second > first + Duration::from_millis(100) {
                    pass(text)
                } else {
                    fail(text)
                }
            };
            with_requests(finding, &attempts)
        }
    });

    findings.insert(
        "retry.retry-after",
        match ran_fault(observed, "throttled-429") {
            Err(finding) => finding,
            Ok(()) => {
                let attempts = first_event_attempts(observed, "throttled-429");
                let asked = match attempts[0].1.answered {
                    Answered::Status {
                        retry_after_s: Some(s),
                        ..
                    } => Duration::from_secs(u64::from(s)),
                    _ => Duration::ZERO,
                };
                let finding = match attempts.get(1) {
                    None => skip(format!(
                        "not retried within {}, so no wait to grade",
                        secs(observed.retry_wait)
                    )),
                    Some((_, retry)) => {
                        let waited = retry.at.saturating_sub(attempts[0].1.at);
                        // 50 ms for the two clocks' reading of one instant.
                        let text = format!(
                            "asked {}, waited {}: {}",
                            secs(asked),
                            secs(waited),
                            attempt_list(&attempts)
                        );
                        if waited + Duration::from_millis(50) >= asked {
                            pass(text)
                        } else {
                            fail(text)
                        }
                    }
                };
                with_requests(finding, &attempts)
            }
        },
    );

    findings.insert(
        "retry.stops-on-410",
        match ran_fault(observed, "gone-410") {
            Err(finding) => finding,
            Ok(()) => {
                let requests: Vec<_> = observed.requests_of("gone-410").collect();
                let finding = if requests.len() == 1 {
                    pass(format!(
                        "one request, answered 410, and nothing after it within {}",
                        secs(observed.retry_wait)
                    ))
                } else {
                    fail(format!(
                        "{} more request(s) after the first 410: {}",
                        requests.len() - 1,
                        attempt_list(&requests)
                    ))
                };
                with_requests(finding, &requests)
            }
        },
    );

    let hang = ran_fault(observed, "hang").map(|()| first_event_attempts(observed, "hang"));
    findings.insert("delivery.timeout", match &hang {
        Err(finding) => Finding { result: finding.result, evidence: finding.evidence.clone(), requests: vec![] },
        Ok(attempts) => {
            let (i, first) = attempts[0];
            let finding = match first.answered {
                Answered::Hang { gave_up_after: Some(after), .. } => {
                    let text = format!("gave up after {} (recommended: 10-30 s): {}", secs(after), describe(i, first));
                    if after >= Duration::from_millis(9_500) && after <= Duration::from_secs(31) { pass(text) } else { fail(text) }
                }
                _ if observed.hang_limit < Duration::from_secs(31) => skip(format!(
                    "the probe held the request {} and the agent still waited; a hang limit past 30 s grades it",
                    secs(observed.hang_limit)
                )),
                _ => fail(format!("still waiting after {}: {}", secs(observed.hang_limit), describe(i, first))),
            };
            with_requests(finding, &attempts[..1])
        }
    });
    findings.insert(
        "retry.after-timeout",
        match &hang {
            Err(finding) => Finding {
                result: finding.result,
                evidence: finding.evidence.clone(),
                requests: vec![],
            },
            Ok(attempts) => match attempts[0].1.answered {
                Answered::Hang {
                    gave_up_after: Some(_),
                    ..
                } => retried(observed, "hang", "timeout"),
                _ => skip("the agent did not give up the held request, so it had nothing to retry"),
            },
        },
    );
}

fn signature_checks(observed: &Observed, findings: &mut HashMap<&'static str, Finding>) {
    let signed: Vec<(usize, &Received)> = observed
        .received
        .iter()
        .enumerate()
        .filter(|(_, r)| r.scenario.is_some() && r.header("webhook-signature").is_some())
        .collect();
    let jwt_scenario = observed.scenario("jwt");
    let jwt_requests: Vec<(usize, &Received)> = observed.requests_of("jwt").collect();
    let bearer_jwts = jwt_requests
        .iter()
        .filter(|(_, r)| r.header("authorization").is_some())
        .count();
    let jwks = match &observed.jwks {
        Some(Ok((url, document))) => Ok((url.as_str(), document)),
        Some(Err(e)) => Err(e.clone()),
        None => Err("no JWKS was fetched".to_string()),
    };
    let captured = |r: &Received| CapturedRequest {
        headers: r.headers.clone(),
        body: r.body.clone(),
    };
    findings.insert(
        "signature.webhook",
        if signed.is_empty() {
            skip("no push carried webhook-signature (no A2A SDK signs pushes)")
        } else {
            match &jwks {
                Err(e) => fail(format!(
                    "{} pushes are signed, but the keys are unavailable: {e}",
                    signed.len()
                )),
                Ok((url, document)) => {
                    let mut problems = Vec::new();
                    for (i, r) in &signed {
                        let options = VerifyOptions {
                            jwks: Some((*document).clone()),
                            tolerance_s: 300,
                            now_s: r.unix_s,
                            ..VerifyOptions::default()
                        };
                        let checks = verify_request(&captured(r), &options);
                        match checks
                            .iter()
                            .find(|c| c.name.starts_with("webhook-signature"))
                        {
                            Some(c) if c.passed => {}
                            Some(c) => {
                                problems.push((*i, format!("{}: {}", describe(*i, r), c.detail)))
                            }
                            None => problems.push((
                                *i,
                                format!(
                                    "{}: signed, but {url} has no Ed25519 key",
                                    describe(*i, r)
                                ),
                            )),
                        }
                    }
                    judged(
                        problems,
                        format!(
                            "all {} signed pushes verify (v1a, keys from {url})",
                            signed.len()
                        ),
                    )
                }
            }
        },
    );
    findings.insert(
        "signature.jwt",
        match jwt_scenario {
            None => skip("the scenario did not run"),
            Some(s) if s.error.is_some() => skip(s.error.clone().unwrap_or_default()),
            Some(_) if jwt_requests.is_empty() => skip("no push arrived"),
            Some(_) if bearer_jwts == 0 => skip(
                "no Authorization header for a Bearer scheme without credentials (the A2A SDKs send none)",
            ),
            Some(scenario) => match &jwks {
                Err(e) => fail(format!("JWTs arrived, but the keys are unavailable: {e}")),
                Ok((url, document)) => {
                    let mut problems = Vec::new();
                    let task_id = scenario.task_id.clone().unwrap_or_default();
                    for (i, r) in &jwt_requests {
                        let token = r
                            .header("authorization")
                            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                            .filter(|t| t.matches('.').count() == 2);
                        let Some(token) = token else {
                            problems.push((*i, format!("{}: Authorization is not a Bearer JWT", describe(*i, r))));
                            continue;
                        };
                        let expect = jwt::Expectations {
                            audience: Some(&scenario.target.url),
                            issuer: None,
                            leeway_s: 60,
                        };
                        match jwt::verify(token, document, &expect, &r.body, r.unix_s) {
                            Ok(claims) if claims.task_id == task_id => {}
                            Ok(claims) => problems.push((*i, format!("{}: taskId claim {:?}, expected {task_id:?}", describe(*i, r), claims.task_id))),
                            // Not the hub's claim set: the A2A samples' profile (iat and body hash).
                            Err(hub_profile) => match jwt::verify_sample(token, document, &r.body, 300, r.unix_s) {
                                Ok(_) => {}
                                Err(e) => problems.push((*i, format!("{}: {hub_profile}; as the A2A samples' profile: {e}", describe(*i, r)))),
                            },
                        }
                    }
                    judged(problems, format!("all {} JWTs verify against {url}: audience this webhook, taskId this task, body hash, lifetime", jwt_requests.len()))
                }
            },
        },
    );
}

/// `true` when a MUST check failed: the probe's exit status.
pub fn must_failed(checks: &[Check]) -> bool {
    checks
        .iter()
        .any(|c| c.level == Level::Must && c.result == Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_client::{CardFacts, PushTarget};
    use crate::probe::observed::Scenario;

    #[test]
    fn ids_are_unique_and_masking_hides_every_secret() {
        let ids: Vec<_> = ids().collect();
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(ids.len(), unique.len());
        assert_eq!(
            mask("Bearer abc and abc", &["abc".to_string(), String::new()]),
            "Bearer **** and ****"
        );
    }

    #[test]
    fn the_report_spec_lists_every_check_with_its_level() {
        let spec = include_str!("../../spec/probe-report.md");
        for rule in RULES {
            let row = format!("| `{}` | {} |", rule.id, rule.level.as_str());
            assert!(spec.contains(&row), "spec/probe-report.md lacks {row}");
        }
        let rows = spec
            .lines()
            .filter(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                cells.len() > 3 && ["MUST", "SHOULD", "MAY"].contains(&cells[2])
            })
            .count();
        assert_eq!(
            rows,
            RULES.len(),
            "spec/probe-report.md lists a check the probe does not grade"
        );
    }

    /// A hung push and a copy of it that arrived while the first was still held, then (in the
    /// second case) one more after the agent gave up.
    fn hang_observed(after_give_up: bool) -> Observed {
        let scenario = Scenario {
            name: "hang",
            kind: Kind::Fault,
            target: PushTarget {
                id: None,
                url: "http://127.0.0.1:1/probe/hang".to_string(),
                token: None,
                authentication: None,
            },
            task_id: Some("t".to_string()),
            error: None,
            states_seen: vec![],
            registered_at: None,
        };
        let push = |at_ms: u64, answered: Answered| Received {
            scenario: Some("hang".to_string()),
            at: Duration::from_millis(at_ms),
            unix_s: 0,
            method: "POST".to_string(),
            path: "/probe/hang".to_string(),
            headers: vec![],
            body: br#"{"id":"t","status":{"state":"working"}}"#.to_vec(),
            answered,
        };
        let mut received = vec![
            push(
                100,
                Answered::Hang {
                    gave_up_after: Some(Duration::from_secs(10)),
                    held_to_limit: false,
                },
            ),
            push(
                110,
                Answered::Status {
                    status: 200,
                    retry_after_s: None,
                },
            ),
        ];
        if after_give_up {
            received.push(push(
                10_600,
                Answered::Status {
                    status: 200,
                    retry_after_s: None,
                },
            ));
        }
        Observed {
            card: CardFacts {
                card_url: String::new(),
                name: String::new(),
                push_notifications: Some(true),
                streaming: None,
            },
            version: Version::V03,
            scenarios: vec![scenario],
            received,
            config_calls: None,
            ssrf: vec![],
            jwks: None,
            retry_wait: Duration::from_secs(4),
            hang_limit: Duration::from_secs(15),
            secrets: vec![],
        }
    }

    #[test]
    fn a_copy_sent_while_the_first_push_hung_is_no_retry() {
        let concurrent = retried(&hang_observed(false), "hang", "timeout");
        assert_eq!(
            concurrent.result,
            Verdict::Fail,
            "{:?}",
            concurrent.evidence
        );
        let retried_later = retried(&hang_observed(true), "hang", "timeout");
        assert_eq!(retried_later.result, Verdict::Pass);
        assert!(
            retried_later.evidence[0].starts_with("retried 0.5s after the timeout"),
            "{:?}",
            retried_later.evidence
        );
    }

    #[test]
    fn states_rank_in_lifecycle_order() {
        assert!(rank("TASK_STATE_SUBMITTED") < rank("TASK_STATE_WORKING"));
        assert!(rank("TASK_STATE_INPUT_REQUIRED") < rank("TASK_STATE_COMPLETED"));
        assert_eq!(rank("TASK_STATE_FAILED"), rank("TASK_STATE_CANCELED"));
    }

    #[test]
    fn version_names_read_both_ways() {
        assert_eq!(Version::V03.as_str(), "0.3");
        assert_eq!(
            crate::agent_client::state_from_v03("input-required"),
            "TASK_STATE_INPUT_REQUIRED"
        );
    }
}
