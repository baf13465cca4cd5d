//! `a2a-push-hub probe`: grades how an A2A agent pushes task updates (docs/PROBE.md;
//! `spec/probe-report.md`).
//!
//! The probe is a real client of the agent: it reads the card, starts several tasks, each
//! with its own webhook on the probe's listener, registers configs inline and on a running
//! task, exercises the config methods, and answers the pushes as each scenario's fault plan
//! says (500, 503, 429 with `Retry-After`, 410, a hang, a reset). It then grades what arrived
//! (`checks`) and writes a report (`report`). Outbound requests go through the SSRF guard,
//! which lets private addresses through only when the operator says so.

use crate::agent_client as agent;
mod checks;
mod observed;
mod report;
mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use agent::{Binding, MessageSpec, Version};
pub use checks::{Check, Level, Verdict};
pub use report::Report;

use agent::{Agent, PushTarget};
use observed::{ConfigCalls, Kind, Observed, Scenario, SsrfAttempt, failure_known_at};
use webhook::{Answered, Fault, Plan, Webhook};

/// How long a scenario's webhook must stay quiet before the probe stops listening for it.
const SETTLE: Duration = Duration::from_millis(1500);
/// How often the probe asks the agent for a task's state.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// What a throttled answer asks the agent to wait.
const RETRY_AFTER_S: u32 = 2;

/// What to probe and how.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The agent's base URL or its agent card's URL.
    pub agent_url: String,
    /// `None`: the first the card offers (JSON-RPC first).
    pub binding: Option<Binding>,
    /// `None`: the newest the card offers.
    pub version: Option<Version>,
    pub message: MessageSpec,
    /// Sent on every request to the agent (its own credentials); never reported.
    pub headers: Vec<(String, String)>,
    pub webhook_listen: SocketAddr,
    /// How the agent reaches the webhook listener, when not at its own address.
    pub webhook_url: Option<String>,
    /// How long a task may take to finish.
    pub task_timeout: Duration,
    /// How long after a failed push the probe waits for its retry.
    pub retry_wait: Duration,
    /// How long a held push is held before the probe answers it.
    pub hang_limit: Duration,
    /// Where the agent's signing keys are (default: `/.well-known/jwks.json` at its origin).
    pub jwks_url: Option<String>,
    /// Lets the probe reach an agent (and its JWKS) on a private or loopback address.
    pub allow_private_networks: bool,
}

/// Why a probe could not run at all (the checks never started).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Agent(String),
    #[error("cannot listen for pushes on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// One call the probe made, for the report's timeline.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub at: Duration,
    pub scenario: &'static str,
    pub call: String,
    pub outcome: String,
}

struct Context {
    agent: Agent,
    webhook: Webhook,
    options: ProbeOptions,
    started: Instant,
    calls: Mutex<Vec<CallRecord>>,
    /// Every token and credential handed to the agent, to mask in the report.
    secrets: Mutex<Vec<String>>,
}

impl Context {
    /// A new random token or credential, remembered so that the report masks it.
    fn secret(&self, kind: &str) -> String {
        let secret = format!("probe-{kind}-{}", uuid::Uuid::new_v4().simple());
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(secret.clone());
        secret
    }

    /// Makes a call to the agent and records it for the timeline, timed from its start.
    async fn timed<T>(
        &self,
        scenario: &'static str,
        call: &str,
        future: impl std::future::Future<Output = Result<T, agent::CallError>>,
        show: impl Fn(&T) -> String,
    ) -> Result<T, agent::CallError> {
        let at = self.started.elapsed();
        let result = future.await;
        let outcome = match &result {
            Ok(value) => show(value),
            Err(e) => format!("error: {e}"),
        };
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(CallRecord {
                at,
                scenario,
                call: call.to_string(),
                outcome,
            });
        result
    }

    async fn send(
        &self,
        scenario: &'static str,
        push: Option<&PushTarget>,
    ) -> Result<Value, String> {
        self.timed(
            scenario,
            "SendMessage",
            self.agent.send_message(&self.options.message, push),
            |task| format!("task {} in {}", task["id"], task["status"]["state"]),
        )
        .await
        .map_err(|e| format!("SendMessage failed: {e}"))
    }

    /// Polls the task until it is terminal or the timeout passes; returns the states seen.
    async fn follow(&self, scenario: &'static str, task: &Value) -> Vec<String> {
        let task_id = task["id"].as_str().unwrap_or_default();
        let mut states: Vec<String> = task["status"]["state"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .collect();
        let deadline = Instant::now() + self.options.task_timeout;
        let mut last_error = None;
        while !states.last().is_some_and(|s| agent::is_terminal(s)) && Instant::now() < deadline {
            tokio::time::sleep(POLL_EVERY).await;
            match self.agent.get_task(task_id).await {
                Ok(task) => {
                    if let Some(state) = task["status"]["state"].as_str() {
                        if states.last().map(String::as_str) != Some(state) {
                            states.push(state.to_string());
                        }
                    }
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        if let Some(error) = last_error {
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(CallRecord {
                    at: self.started.elapsed(),
                    scenario,
                    call: "GetTask".to_string(),
                    outcome: format!("error (while following the task): {error}"),
                });
        }
        states
    }

    /// Listens until the scenario's webhook has been quiet long enough: `SETTLE` after the
    /// last request, and the retry wait after the last failure, with no request held.
    async fn settle(&self, scenario: &str) {
        let deadline = Instant::now() + self.options.retry_wait + self.options.hang_limit + SETTLE;
        loop {
            let next_arrival = self.webhook.next_arrival();
            let received: Vec<_> = self
                .webhook
                .received()
                .into_iter()
                .filter(|r| r.scenario.as_deref() == Some(scenario))
                .collect();
            let held = received.iter().any(|r| {
                matches!(
                    r.answered,
                    Answered::Hang {
                        gave_up_after: None,
                        held_to_limit: false
                    }
                )
            });
            let now = self.started.elapsed();
            let quiet_until = received
                .iter()
                .map(|r| r.at + SETTLE)
                .chain(
                    received
                        .iter()
                        .filter_map(failure_known_at)
                        .map(|at| at + self.options.retry_wait),
                )
                .max()
                .unwrap_or(now + SETTLE);
            if (!held && now >= quiet_until) || Instant::now() >= deadline {
                return;
            }
            let wake = if held {
                deadline
            } else {
                (self.started + quiet_until).min(deadline)
            };
            let _ = tokio::time::timeout_at(wake.into(), next_arrival).await;
        }
    }
}

/// A scenario whose config is given inline with the message.
struct Inline {
    name: &'static str,
    kind: Kind,
    plan: Plan,
    token: bool,
    authentication: Option<(&'static str, bool)>,
}

fn inline_scenarios() -> Vec<Inline> {
    let status = |status: u16, retry_after_s: Option<u32>| Fault::Status {
        status,
        retry_after_s,
    };
    let fault = |name, plan| Inline {
        name,
        kind: Kind::Fault,
        plan,
        token: true,
        authentication: None,
    };
    vec![
        Inline {
            name: "inline",
            kind: Kind::Plain,
            plan: Plan::ok(),
            token: true,
            authentication: Some(("Bearer", true)),
        },
        Inline {
            name: "jwt",
            kind: Kind::Jwt,
            plan: Plan::ok(),
            token: false,
            authentication: Some(("Bearer", false)),
        },
        fault("error-500", Plan::first(vec![status(500, None)])),
        fault(
            "error-503",
            Plan::first(vec![status(503, None), status(503, None)]),
        ),
        fault(
            "throttled-429",
            Plan::first(vec![status(429, Some(RETRY_AFTER_S))]),
        ),
        fault("gone-410", Plan::always(status(410, None))),
        fault("hang", Plan::first(vec![Fault::Hang])),
        fault("reset", Plan::first(vec![Fault::Reset])),
    ]
}

async fn run_inline(context: Arc<Context>, spec: Inline) -> Scenario {
    let url = context.webhook.scenario_url(spec.name, spec.plan);
    let target = PushTarget {
        id: None,
        url,
        token: spec.token.then(|| context.secret("token")),
        authentication: spec.authentication.map(|(scheme, credentials)| {
            (
                scheme.to_string(),
                credentials.then(|| context.secret("credentials")),
            )
        }),
    };
    let mut scenario = Scenario {
        name: spec.name,
        kind: spec.kind,
        target,
        task_id: None,
        error: None,
        states_seen: vec![],
        registered_at: None,
    };
    match context.send(spec.name, Some(&scenario.target)).await {
        Err(e) => scenario.error = Some(e),
        Ok(task) => {
            scenario.task_id = task["id"].as_str().map(str::to_string);
            scenario.states_seen = context.follow(spec.name, &task).await;
            context.settle(spec.name).await;
        }
    }
    scenario
}

/// A task started without a config; one registered while it runs, and the config methods.
async fn run_late(context: Arc<Context>) -> (Scenario, Option<ConfigCalls>) {
    let context = context.as_ref();
    let late_url = context.webhook.scenario_url("late", Plan::ok());
    let extra_url = context.webhook.scenario_url("extra", Plan::ok());
    let late_id = "probe-late".to_string();
    let mut scenario = Scenario {
        name: "late",
        kind: Kind::Late,
        target: PushTarget {
            id: Some(late_id.clone()),
            url: late_url.clone(),
            token: Some(context.secret("token")),
            authentication: None,
        },
        task_id: None,
        error: None,
        states_seen: vec![],
        registered_at: None,
    };
    let task = match context.send("late", None).await {
        Ok(task) => task,
        Err(e) => {
            scenario.error = Some(e);
            return (scenario, None);
        }
    };
    let task_id = task["id"].as_str().unwrap_or_default().to_string();
    scenario.task_id = Some(task_id.clone());
    scenario.states_seen = task["status"]["state"]
        .as_str()
        .map(str::to_string)
        .into_iter()
        .collect();
    let agent = &context.agent;
    let task_ref = task_id.as_str();
    let show_config = |c: &Value| format!("config {}", c["id"]);
    let create = |target: PushTarget, label: &'static str| async move {
        context
            .timed(
                "late",
                label,
                agent.create_config(task_ref, &target),
                show_config,
            )
            .await
    };
    let get = |id: String, label: &'static str| async move {
        context
            .timed("late", label, agent.get_config(task_ref, &id), show_config)
            .await
    };
    let list = || {
        context.timed(
            "late",
            "ListTaskPushNotificationConfigs",
            agent.list_configs(task_ref),
            |l| format!("{} configs", l.len()),
        )
    };
    let delete = |id: String, label: &'static str| async move {
        context
            .timed("late", label, agent.delete_config(task_ref, &id), |_| {
                "deleted".to_string()
            })
            .await
    };
    scenario.registered_at = Some(context.started.elapsed());
    let created = create(scenario.target.clone(), "CreateTaskPushNotificationConfig").await;
    let extra = PushTarget {
        id: None,
        url: extra_url,
        token: Some(context.secret("token")),
        authentication: None,
    };
    let created_without_id =
        create(extra.clone(), "CreateTaskPushNotificationConfig (no id)").await;
    let doomed_id = "probe-doomed".to_string();
    let doomed = PushTarget {
        id: Some(doomed_id.clone()),
        ..extra
    };
    let created_doomed = create(doomed, "CreateTaskPushNotificationConfig (to delete)").await;
    let got = get(late_id.clone(), "GetTaskPushNotificationConfig").await;
    let listed = list().await;
    let extra_id = created_without_id
        .as_ref()
        .ok()
        .and_then(|c| c["id"].as_str())
        .filter(|id| !id.is_empty() && *id != late_id)
        .map(str::to_string);
    let mut calls = ConfigCalls {
        task_id: task_id.clone(),
        late_id,
        late_url,
        created,
        created_without_id,
        extra_id: extra_id.clone(),
        doomed_id: doomed_id.clone(),
        created_doomed,
        got,
        got_doomed: None,
        listed,
        deleted: None,
        got_after_delete: None,
        listed_after_delete: None,
        deleted_again: None,
    };
    if calls.created_doomed.is_ok() {
        let name = || doomed_id.clone();
        calls.got_doomed = Some(get(name(), "GetTaskPushNotificationConfig (to delete)").await);
        calls.deleted = Some(delete(name(), "DeleteTaskPushNotificationConfig").await);
        calls.got_after_delete = Some(get(name(), "GetTaskPushNotificationConfig (deleted)").await);
        calls.listed_after_delete = Some(list().await);
        calls.deleted_again =
            Some(delete(name(), "DeleteTaskPushNotificationConfig (again)").await);
    }
    if let Some(extra_id) = &extra_id {
        // Not graded: only so that the agent stops pushing there.
        let _ = agent.delete_config(&task_id, extra_id).await;
    }
    if calls.created.is_err() {
        scenario.error = Some("the config could not be registered".to_string());
    } else {
        let mut states = context.follow("late", &task).await;
        states.retain(|s| scenario.states_seen.first() != Some(s));
        scenario.states_seen.extend(states);
        context.settle("late").await;
    }
    (scenario, Some(calls))
}

/// Webhook URLs the agent should refuse to register.
const SSRF_URLS: [(&str, &str, &str); 3] = [
    ("ssrf.loopback", "loopback", "http://127.0.0.1:9/probe"),
    (
        "ssrf.link-local",
        "link-local cloud metadata",
        "http://169.254.169.254/latest/meta-data/",
    ),
    (
        "ssrf.private",
        "private network",
        "http://10.255.255.1/probe",
    ),
];

async fn run_ssrf(context: Arc<Context>) -> Vec<SsrfAttempt> {
    let task = context.send("ssrf", None).await;
    let mut attempts = Vec::new();
    for (n, (check_id, what, url)) in SSRF_URLS.into_iter().enumerate() {
        let result = match &task {
            Err(e) => Err(agent::CallError {
                status: None,
                code: None,
                message: e.clone(),
            }),
            Ok(task) => {
                let task_id = task["id"].as_str().unwrap_or_default();
                let target = PushTarget {
                    id: Some(format!("probe-ssrf-{n}")),
                    url: url.to_string(),
                    token: Some(context.secret("token")),
                    authentication: None,
                };
                let result = context
                    .timed(
                        "ssrf",
                        &format!("CreateTaskPushNotificationConfig ({what})"),
                        context.agent.create_config(task_id, &target),
                        |_| "accepted".to_string(),
                    )
                    .await;
                if result.is_ok() {
                    // Accepted: take it back at once, so the agent pushes there as little as possible.
                    let _ = context
                        .agent
                        .delete_config(task_id, &format!("probe-ssrf-{n}"))
                        .await;
                }
                result
            }
        };
        attempts.push(SsrfAttempt {
            check_id,
            what,
            url,
            result,
        });
    }
    attempts
}

/// Runs every scenario against the agent and grades what arrived.
pub async fn run(options: ProbeOptions) -> Result<Report, ProbeError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let policy = Arc::new(crate::ssrf::Policy::from_settings(
        &crate::config::SecuritySettings {
            allow_private_networks: options.allow_private_networks,
            ..Default::default()
        },
    ));
    let client = crate::delivery::client::GuardedClient::new(
        policy,
        concat!("a2a-push-hub-probe/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(|e| ProbeError::Agent(e.to_string()))?;
    let (mut agent, card) = Agent::discover(
        client.clone(),
        &options.agent_url,
        options.headers.clone(),
        options.binding,
        options.version,
    )
    .await
    .map_err(|e| {
        ProbeError::Agent(
            if e.contains("refused") && !options.allow_private_networks {
                format!(
                    "{e} (an agent on a private or loopback address needs --allow-private-networks)"
                )
            } else {
                e
            },
        )
    })?;
    // The held push may keep the agent from answering until it gives up on it.
    agent.call_timeout = options.hang_limit + Duration::from_secs(10);
    let webhook = Webhook::start(
        options.webhook_listen,
        options.webhook_url.as_deref(),
        options.hang_limit,
        started,
    )
    .await
    .map_err(|e| ProbeError::Listen(options.webhook_listen, e))?;
    let version = agent.version;
    let binding = agent.binding;
    let endpoint = agent.endpoint.clone();
    let webhook_base = webhook.base();
    let context = Arc::new(Context {
        agent,
        webhook,
        options: options.clone(),
        started,
        calls: Mutex::new(Vec::new()),
        // The agent's own credentials: masked too, should the agent echo them in an answer.
        secrets: Mutex::new(
            options
                .headers
                .iter()
                .filter(|(name, _)| crate::secret::is_credential_header(name))
                // `Bearer abc`: abc alone is the secret too.
                .flat_map(|(_, value)| {
                    [Some(value.as_str()), value.split_once(' ').map(|(_, c)| c)]
                })
                .flatten()
                .map(str::to_string)
                .collect(),
        ),
    });

    let mut inline = tokio::task::JoinSet::new();
    for spec in inline_scenarios() {
        inline.spawn(run_inline(context.clone(), spec));
    }
    let late = tokio::spawn(run_late(context.clone()));
    let ssrf = tokio::spawn(run_ssrf(context.clone()));
    let mut scenarios = Vec::new();
    while let Some(done) = inline.join_next().await {
        scenarios.push(done.map_err(|e| ProbeError::Agent(format!("a scenario failed: {e}")))?);
    }
    let (late, config_calls) = late
        .await
        .map_err(|e| ProbeError::Agent(format!("the late scenario failed: {e}")))?;
    scenarios.push(late);
    let order: Vec<&str> = ["inline", "late", "jwt"]
        .into_iter()
        .chain(inline_scenarios().iter().skip(2).map(|s| s.name))
        .collect();
    scenarios.sort_by_key(|s| order.iter().position(|n| *n == s.name));
    let ssrf = ssrf
        .await
        .map_err(|e| ProbeError::Agent(format!("the SSRF scenario failed: {e}")))?;
    context.webhook.stop();

    let received = context.webhook.received();
    let wants_keys = received.iter().any(|r| {
        r.scenario.is_some()
            && (r.header("webhook-signature").is_some()
                || (r.scenario.as_deref() == Some("jwt") && r.header("authorization").is_some()))
    });
    let jwks = if wants_keys {
        let url = options.jwks_url.clone().unwrap_or_else(|| {
            let origin = url::Url::parse(&options.agent_url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            format!("{origin}/.well-known/jwks.json")
        });
        Some(
            client
                .fetch_json(&url, 1024 * 1024)
                .await
                .map(|a| (url.clone(), a.body))
                .map_err(|e| e.to_string()),
        )
    } else {
        None
    };
    let observed = Observed {
        card,
        version,
        scenarios,
        received,
        config_calls,
        ssrf,
        jwks,
        retry_wait: options.retry_wait,
        hang_limit: options.hang_limit,
        secrets: context
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    };
    let checks = checks::grade(&observed);
    let calls = context
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Report::new(report::Run {
        options: &options,
        started_at,
        duration: started.elapsed(),
        endpoint,
        binding,
        webhook_base,
        observed: &observed,
        calls,
        checks,
    }))
}
