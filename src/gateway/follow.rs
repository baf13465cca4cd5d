//! Following a task of an agent that does not push (its card does not declare push support):
//! the hub subscribes to the task (`SubscribeToTask`, a Server-Sent Events stream) and publishes
//! every event it streams, exactly as if the agent had pushed it.
//!
//! Followers live in memory: a restart ends them (the events already published are durable).

use std::collections::HashSet;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::Gateway;
use crate::domain::{HubState, events};

/// Reconnects after the stream ends before the task did.
const MAX_RECONNECTS: u32 = 3;
/// Most time one follower runs.
const MAX_FOLLOW: Duration = Duration::from_secs(24 * 3600);

/// Tasks followed now, so each is followed once.
#[derive(Default)]
pub struct Followers {
    tasks: Mutex<HashSet<(String, String)>>,
}

fn is_terminal(event: &Value) -> bool {
    let state = event["statusUpdate"]["status"]["state"]
        .as_str()
        .or(event["task"]["status"]["state"].as_str())
        .unwrap_or_default();
    matches!(
        state,
        "TASK_STATE_COMPLETED"
            | "TASK_STATE_FAILED"
            | "TASK_STATE_CANCELED"
            | "TASK_STATE_REJECTED"
    )
}

/// Starts following `task_id` unless it already is.
pub async fn follow(
    state: &HubState,
    gateway: &std::sync::Arc<Gateway>,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
) {
    let key = (tenant.to_string(), task_id.to_string());
    if !gateway.followers.tasks.lock().await.insert(key.clone()) {
        return;
    }
    let (state, gateway, headers) = (state.clone(), gateway.clone(), headers.clone());
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let run = run(&state, &gateway, &headers, &key.0, &key.1);
        tokio::select! {
            _ = tokio::time::timeout(MAX_FOLLOW, run) => {}
            _ = shutdown.cancelled() => {}
        }
        gateway.followers.tasks.lock().await.remove(&key);
    });
}

async fn run(
    state: &HubState,
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
) {
    for attempt in 0..=MAX_RECONNECTS {
        match stream_once(state, gateway, headers, tenant, task_id).await {
            Ok(true) => return,
            Ok(false) => tracing::info!(
                task_id,
                attempt,
                "the agent's task stream ended early; reconnecting"
            ),
            Err(e) => {
                tracing::warn!(task_id, attempt, error = %e, "cannot follow the agent's task")
            }
        }
        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
    }
}

/// Reads one `SubscribeToTask` stream; `Ok(true)` once the task reached a terminal state.
async fn stream_once(
    state: &HubState,
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
) -> Result<bool, String> {
    let mut params = json!({"id": task_id});
    if !tenant.is_empty() {
        params["tenant"] = json!(tenant);
    }
    let body = json!({"jsonrpc": "2.0", "id": uuid::Uuid::new_v4().to_string(), "method": "SubscribeToTask", "params": params});
    let mut request = gateway
        .client
        .http()
        .post(
            gateway
                .client
                .check_destination(gateway.upstream.as_str())
                .map_err(|e| e.to_string())?,
        )
        .header("accept", "text/event-stream")
        .header("a2a-version", "1.0")
        .json(&body);
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| *n == "authorization" || n.as_str().starts_with("x-"))
    {
        request = request.header(name, value);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| crate::delivery::client::error_chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("the agent answered {}", response.status()));
    }
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.is_empty() {
                continue;
            }
            let message: Value = serde_json::from_str(&data)
                .map_err(|e| format!("the agent streamed something that is not JSON: {e}"))?;
            if let Some(error) = message.get("error") {
                return Err(format!("the agent refused SubscribeToTask: {error}"));
            }
            let event = message.get("result").cloned().unwrap_or(message);
            if let Err(e) = events::publish_one(state, tenant, event.to_string().as_bytes()).await {
                tracing::warn!(task_id, error = %e, "a streamed event could not be published");
            }
            if is_terminal(&event) {
                return Ok(true);
            }
        }
        if buffer.len() > 16 * 1024 * 1024 {
            return Err("the agent streamed an event larger than 16 MiB".to_string());
        }
    }
    Ok(false)
}
