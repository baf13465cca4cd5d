//! The health of an origin (scheme://host:port) across every config that points at it, as
//! this node sees it: attempts, success rate and latency over the last 5 minutes and hour,
//! its last success and failing streak, its circuit, and what waits in its lanes.

use serde::Serialize;

use super::DomainError;
use super::deliveries::rfc3339;
use super::health::{LastFailure, Latency, Window};
use crate::a2a::params::InvalidField;
use crate::delivery::origins::{OriginRecord, Tally, origin_of};
use crate::delivery::scheduler::{OriginQueue, SchedulerHandle};
use crate::store::now_ms;

/// The windows an origin's attempts are summed over, by name.
const WINDOWS: [(&str, u64); 2] = [("5m", 300_000), ("1h", 3_600_000)];
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OriginHealth {
    pub origin: String,
    /// Whether this node has attempted it since it started (the most recent origins only:
    /// `crate::delivery::origins::MAX_TRACKED`).
    pub tracked: bool,
    /// Attempts in the last 5 minutes and hour; latency percentiles are the upper bounds of
    /// histogram buckets (1, 2, 5, 10, 20, 50 … 30,000 ms), never above the longest seen.
    pub windows: serde_json::Map<String, serde_json::Value>,
    pub last_attempt_at: Option<String>,
    pub last_success_at: Option<String>,
    /// Failed attempts since the last success, at any config of the origin.
    pub consecutive_failures: u64,
    pub failing_since: Option<String>,
    pub last_failure: Option<LastFailure>,
    pub circuit: serde_json::Value,
    pub in_flight: usize,
    pub pending: OriginPending,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OriginPending {
    /// Deliveries waiting in the origin's lanes on this node.
    pub count: u64,
    /// When the longest-waiting lane head was due.
    pub oldest_due_at: Option<String>,
}

fn window(tally: &Tally) -> Window {
    let latency = tally.latency_at(0.5).map(|p50| Latency {
        p50,
        p90: tally.latency_at(0.9).unwrap_or(p50),
        p99: tally.latency_at(0.99).unwrap_or(p50),
        max: tally.max_latency_ms,
    });
    Window::new(tally.attempts as usize, tally.succeeded as usize, latency)
}

fn health_of(
    origin: String,
    record: Option<OriginRecord>,
    queue: OriginQueue,
    now: u64,
) -> OriginHealth {
    let record_or_empty = record.clone().unwrap_or_default();
    let windows = WINDOWS
        .iter()
        .map(|(name, span)| {
            let tally = record_or_empty.window(now, *span);
            let value = serde_json::to_value(window(&tally)).unwrap_or_default();
            (name.to_string(), value)
        })
        .collect();
    let mut circuit = serde_json::to_value(&queue.circuit).unwrap_or_default();
    circuit["origin"] = serde_json::json!(origin);
    OriginHealth {
        tracked: record.is_some(),
        windows,
        last_attempt_at: record.as_ref().map(|r| rfc3339(r.last_attempt_ms)),
        last_success_at: record_or_empty.last_success_ms.map(rfc3339),
        consecutive_failures: record_or_empty.consecutive_failures,
        failing_since: record_or_empty.failing_since_ms.map(rfc3339),
        last_failure: record_or_empty.last_failure.map(|f| LastFailure {
            at: rfc3339(f.at_ms),
            error_class: f.class.to_string(),
            status: f.status,
        }),
        circuit,
        in_flight: queue.in_flight,
        pending: OriginPending {
            count: queue.pending,
            oldest_due_at: queue.oldest_due_ms.map(rfc3339),
        },
        origin,
    }
}

/// The health of the origin of `url` (a webhook URL or an origin).
pub async fn origin_health(
    scheduler: &SchedulerHandle,
    url: &str,
) -> Result<OriginHealth, DomainError> {
    let parsed = url::Url::parse(url).map_err(|e| {
        InvalidField::new(
            "url",
            format!("is not a URL ({e}); give a webhook URL or an origin such as https://receiver.example"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(InvalidField::new("url", "must be an http or https URL").into());
    }
    let origin = origin_of(url);
    let record = scheduler.origin_stats().get(&origin);
    let queue = scheduler
        .origin_queues(vec![origin.clone()])
        .await
        .pop()
        .unwrap_or_default();
    Ok(health_of(origin, record, queue, now_ms()))
}

/// The origins this node attempted, the most recent first.
pub async fn list(scheduler: &SchedulerHandle, limit: usize) -> Vec<OriginHealth> {
    let mut tracked = scheduler.origin_stats().all();
    tracked.truncate(limit);
    let origins: Vec<String> = tracked.iter().map(|(o, _)| o.clone()).collect();
    let queues = scheduler.origin_queues(origins).await;
    let now = now_ms();
    tracked
        .into_iter()
        .zip(queues)
        .map(|((origin, record), queue)| health_of(origin, Some(record), queue, now))
        .collect()
}
