//! A push config's health, as an operator asks "is this webhook working?": its recent
//! attempts (success rate and latency over the last hour and day), its failing streak and
//! when it will be suspended, its held and pending deliveries; and enabling a suspended
//! config again.

use serde::Serialize;

use std::time::Duration;

use super::DomainError;
use super::deliveries::{Deliveries, rfc3339};
use crate::store::{AttemptRecord, ConfigHealthData, ConfigState, Enabled, HEALTH_SAMPLE, now_ms};

/// The windows a health answer sums attempts over, by name.
const WINDOWS: [(&str, u64); 2] = [("1h", 3_600_000), ("24h", 86_400_000)];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigHealth {
    pub tenant: String,
    pub task_id: String,
    pub config_id: String,
    /// `active`, `suspended` (failing for `delivery.disable_after`: deliveries held) or
    /// `disabled` (the receiver answered 410 Gone).
    pub state: ConfigState,
    /// Whether deliveries are held (`suspended`) or stopped (`disabled`).
    pub disabled: bool,
    /// Which events it receives (`PUT …/filter`).
    pub filter: serde_json::Value,
    /// Failed attempts since the last success.
    pub consecutive_failures: u64,
    pub failing_since: Option<String>,
    pub last_failure: Option<LastFailure>,
    /// When a config failing since `failingSince` will be suspended, if it goes on failing.
    pub suspends_at: Option<String>,
    pub last_success_at: Option<String>,
    /// Attempts in the last hour and day, among the attempts of the config's newest
    /// deliveries (`sample`).
    pub windows: serde_json::Map<String, serde_json::Value>,
    pub sample: Sample,
    pub pending: Pending,
    /// The origin's circuit on the node that answers (filled in by the caller that has the
    /// scheduler).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit: Option<serde_json::Value>,
    /// The webhook URL, to find its origin's circuit; never answered.
    #[serde(skip)]
    pub url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastFailure {
    pub at: String,
    /// `http_status`, `timeout`, `connect`, … (as in the attempt log).
    pub error_class: String,
    pub status: Option<u16>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// The config's newest deliveries looked at (at most 200), and their attempts.
    pub deliveries: usize,
    pub attempts: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub count: usize,
    pub oldest: Option<OldestPending>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OldestPending {
    pub delivery_id: String,
    pub sequence: u64,
    pub created_at: String,
    pub attempts: u32,
    pub next_attempt_at: String,
}

/// Attempts of one window.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Window {
    pub attempts: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// `succeeded / attempts`; absent without attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// How long receivers took to answer (attempts that got an answer), in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
}

impl Window {
    pub(super) fn new(attempts: usize, succeeded: usize, latency_ms: Option<Latency>) -> Window {
        Window {
            attempts,
            succeeded,
            failed: attempts - succeeded,
            success_rate: (attempts > 0)
                .then(|| (succeeded as f64 / attempts as f64 * 1000.0).round() / 1000.0),
            latency_ms,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

fn succeeded(attempt: &AttemptRecord) -> bool {
    attempt.error_class == "success"
}

fn window(attempts: &[&AttemptRecord], since_ms: u64) -> Window {
    let inside: Vec<&&AttemptRecord> = attempts
        .iter()
        .filter(|a| a.started_at_ms >= since_ms)
        .collect();
    let ok = inside.iter().filter(|a| succeeded(a)).count();
    let mut answered: Vec<u64> = inside
        .iter()
        .filter(|a| a.status.is_some())
        .map(|a| a.duration_ms)
        .collect();
    answered.sort_unstable();
    let at = |p: f64| answered[((answered.len() as f64 * p) as usize).min(answered.len() - 1)];
    let latency = (!answered.is_empty()).then(|| Latency {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: answered[answered.len() - 1],
    });
    Window::new(inside.len(), ok, latency)
}

fn health_of(data: ConfigHealthData, disable_after: Duration, now: u64) -> ConfigHealth {
    let attempts: Vec<&AttemptRecord> = data.recent.iter().flat_map(|(_, a)| a).collect();
    let windows = WINDOWS
        .iter()
        .map(|(name, span)| {
            let value = serde_json::to_value(window(&attempts, now.saturating_sub(*span)))
                .unwrap_or_default();
            (name.to_string(), value)
        })
        .collect();
    let last_success_ms = attempts
        .iter()
        .filter(|a| succeeded(a))
        .map(|a| a.started_at_ms + a.duration_ms)
        .max();
    // A streak a later success did not end (see `FailingStreak`) is over.
    let streak = data
        .streak
        .filter(|s| last_success_ms.is_none_or(|ok| ok < s.last_failure_at_ms));
    let last_success_at = last_success_ms.map(rfc3339);
    let config = data.config;
    let suspends_at = streak
        .as_ref()
        .filter(|_| config.state == ConfigState::Active && !disable_after.is_zero())
        .map(|s| rfc3339(s.since_ms + disable_after.as_millis() as u64));
    ConfigHealth {
        disabled: config.state != ConfigState::Active,
        filter: config.filter.to_json(),
        state: config.state,
        consecutive_failures: streak.as_ref().map_or(0, |s| s.failures),
        failing_since: streak.as_ref().map(|s| rfc3339(s.since_ms)),
        last_failure: streak.as_ref().map(|s| LastFailure {
            at: rfc3339(s.last_failure_at_ms),
            error_class: s.last_class.clone(),
            status: s.last_status,
        }),
        suspends_at,
        last_success_at,
        windows,
        sample: Sample {
            deliveries: data.recent.len().min(HEALTH_SAMPLE as usize),
            attempts: attempts.len(),
        },
        pending: Pending {
            count: data.pending,
            oldest: data.oldest_pending.map(|d| OldestPending {
                delivery_id: d.id,
                sequence: d.sequence,
                created_at: rfc3339(d.created_at_ms),
                attempts: d.attempts,
                next_attempt_at: rfc3339(d.next_attempt_at_ms),
            }),
        },
        circuit: None,
        url: config.url,
        tenant: config.tenant,
        task_id: config.task_id,
        config_id: config.id,
    }
}

fn no_config(task_id: &str, config_id: &str) -> DomainError {
    DomainError::NotFound(format!(
        "task {task_id:?} has no push config {config_id:?} in this hub"
    ))
}

/// The config's health; `disable_after` is `delivery.disable_after`.
pub async fn config_health(
    deliveries: &Deliveries,
    tenant: &str,
    task_id: &str,
    config_id: &str,
    disable_after: Duration,
) -> Result<ConfigHealth, DomainError> {
    let data = deliveries
        .store
        .config_health(tenant.into(), task_id.into(), config_id.into())
        .await?
        .ok_or_else(|| no_config(task_id, config_id))?;
    Ok(health_of(data, disable_after, now_ms()))
}

/// Makes a suspended or disabled config active again; its held deliveries resume in order.
pub async fn enable_config(
    deliveries: &Deliveries,
    tenant: &str,
    task_id: &str,
    config_id: &str,
) -> Result<Enabled, DomainError> {
    deliveries
        .store
        .enable_config(tenant.into(), task_id.into(), config_id.into())
        .await?
        .ok_or_else(|| no_config(task_id, config_id))
}
