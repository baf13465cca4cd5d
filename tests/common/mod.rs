//! Shared harness for black-box tests, by concern: a hub in this process (`hub.rs`) or as a
//! child process (`process.rs`), a webhook receiver (`receiver.rs`), an SSE reader (`sse.rs`),
//! PostgreSQL (`database.rs`), an OTLP trace receiver (`otlp.rs`), fake agents (`agent.rs`, and `broken_agent.rs` for the probe), whole interop scenarios (`interop.rs`),
//! and what every test uses (below).

mod agent;
mod broken_agent;
mod database;
mod hub;
mod interop;
mod otlp;
mod process;
mod receiver;
mod sse;

pub use self::{
    agent::*, broken_agent::*, database::*, hub::*, interop::*, otlp::*, process::*, receiver::*,
    sse::*,
};

use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};

/// Every request of a test is bounded by this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Prometheus sample's value in `text` (0 when absent).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .unwrap()
}

/// A status update event for `task_id`.
pub fn status_event(task_id: &str, state: &str) -> Value {
    json!({"statusUpdate": {"taskId": task_id, "contextId": "ctx-1", "status": {"state": state}}})
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(deadline, check).await {
        Some(value) => value,
        None => panic!("timed out after {deadline:?} waiting for {what}"),
    }
}

/// Polls `check` until it returns `Some`; `None` after `deadline`, for a caller that explains
/// the timeout with what it finds then.
pub async fn poll_until<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Owned header pairs as the borrowed pairs `push` takes.
pub fn refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// Checks arrivals (in time order) against a cap of `rate` a second: at most `burst` + `rate`
/// (+2 for the network moving arrivals closer than their starts) within any second, and all
/// of them spread over at least what the rate allows, less `slack_s`.
pub fn assert_rate_capped(arrivals: &[Instant], rate: f64, burst: usize, slack_s: f64) {
    let most = (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|at| at.duration_since(arrivals[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most <= burst + rate as usize + 2,
        "{most} requests within one second"
    );
    let (count, first, last) = (arrivals.len(), arrivals[0], arrivals[arrivals.len() - 1]);
    let spread = last.duration_since(first);
    assert!(
        spread >= Duration::from_secs_f64((count - burst) as f64 / rate - slack_s),
        "{count} requests came within {spread:?}"
    );
}

/// Runs this build's command line; (succeeded, standard output as JSON, standard error).
pub async fn run_cli(args: &[&str]) -> (bool, Value, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        serde_json::from_slice(&output.stdout).unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}
