//! Following a task of an agent that does not push (its card does not declare push support):
//! the hub subscribes to the task (`SubscribeToTask`, a Server-Sent Events stream) and publishes
//! every event it streams, exactly as if the agent had pushed it.
//!
//! Follows are stored (`FollowRecord`), so a restart picks them up again, and on a store that
//! several nodes share each follow is leased to one node at a time: the keeper renews this
//! node's leases every third of `store.lane_lease`, takes the follows whose node stopped
//! renewing, and stops those another node took. A follow that resumes subscribes again; the
//! agent sends the task as it stands first, which is published like any event, so a webhook
//! may see a state twice but never misses one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Gateway;
use crate::config::Secret;
use crate::domain::events;
use crate::store::{FollowRecord, now_ms};
use crate::trace::TraceContext;

/// Reconnects after the stream ends before the task did.
const MAX_RECONNECTS: u32 = 3;
/// Most time one follower runs.
const MAX_FOLLOW: Duration = Duration::from_secs(24 * 3600);

/// The follows this node runs: each with the token that stops it and when it started. Each
/// holds a stream open at the agent, so at most `limit` run at once (`gateway.max_follows`).
pub struct Followers {
    running: Mutex<HashMap<(String, String), (CancellationToken, Instant)>>,
    tasks: TaskTracker,
    limit: usize,
}

/// Why a task cannot be followed now.
#[derive(Debug, thiserror::Error)]
#[error(
    "the hub already follows {0} tasks of the agent, the most it follows at once \
     (gateway.max_follows); nothing was stored, retry when one of them has finished"
)]
pub struct FollowsFull(pub usize);

impl Followers {
    pub fn new(limit: usize) -> Followers {
        Followers {
            running: Mutex::default(),
            tasks: TaskTracker::new(),
            limit,
        }
    }

    /// How many more follows may run now.
    async fn room_left(&self) -> usize {
        self.limit.saturating_sub(self.running.lock().await.len())
    }

    /// Whether the hub may follow `task` (tenant, task id; `None`: a task the agent has yet to
    /// start): yes below the limit, or when it follows that task already. Checked before a
    /// request that would make the hub follow a task reaches the agent. Requests checked at the
    /// same moment may together go past the limit; the follows beyond it wait, stored, for a
    /// running one to end.
    pub async fn room(&self, task: Option<(&str, &str)>) -> Result<(), FollowsFull> {
        let running = self.running.lock().await;
        let followed = task.is_some_and(|(tenant, task_id)| {
            running.contains_key(&(tenant.to_string(), task_id.to_string()))
        });
        if followed || running.len() < self.limit {
            Ok(())
        } else {
            Err(FollowsFull(self.limit))
        }
    }

    /// Waits for every follower of this node to stop (after the hub's shutdown began).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The task state an event carries, if any.
fn state_of(event: &Value) -> &str {
    event["statusUpdate"]["status"]["state"]
        .as_str()
        .or(event["task"]["status"]["state"].as_str())
        .unwrap_or_default()
}

fn is_terminal(event: &Value) -> bool {
    matches!(
        state_of(event),
        "TASK_STATE_COMPLETED"
            | "TASK_STATE_FAILED"
            | "TASK_STATE_CANCELED"
            | "TASK_STATE_REJECTED"
    )
}

/// A task waiting for its client (`input-required`, `auth-required`): agents end its stream,
/// and it goes on when the client sends the next message.
fn is_interrupted(event: &Value) -> bool {
    matches!(
        state_of(event),
        "TASK_STATE_INPUT_REQUIRED" | "TASK_STATE_AUTH_REQUIRED"
    )
}

/// Whether the agent gets this header of the caller's: its credentials and extensions.
/// The caller's headers a follow keeps and sends the agent: its credentials, and its trace
/// context, which the events the follow publishes join too.
fn passed_on(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "traceparent" | "tracestate" | "baggage"
    ) || name.starts_with("x-")
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, Secret)> {
    headers
        .iter()
        .filter(|(name, _)| passed_on(name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), Secret::new(value.to_str().ok()?))))
        .collect()
}

fn header_map(kept: &[(String, Secret)]) -> HeaderMap {
    kept.iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value.expose()).ok()?,
            ))
        })
        .collect()
}

/// Starts following `task_id` unless this node or another already does.
pub async fn follow(gateway: &Arc<Gateway>, headers: &HeaderMap, tenant: &str, task_id: &str) {
    let follow = FollowRecord {
        tenant: tenant.to_string(),
        task_id: task_id.to_string(),
        headers: kept_headers(headers),
        node: gateway.node.clone(),
        lease_until_ms: now_ms() + lease_ms(gateway),
    };
    match gateway.services.store.start_follow(follow.clone()).await {
        Ok(true) => run_follow(gateway, follow).await,
        Ok(false) => {}
        Err(e) => {
            // Followed all the same, only not kept across a restart.
            tracing::warn!(task_id, error = %e, "cannot record a follow of the agent's task");
            run_follow(gateway, follow).await;
        }
    }
}

fn lease_ms(gateway: &Gateway) -> u64 {
    gateway.services.lane_lease.as_millis() as u64
}

/// Runs a follow this node holds, unless it runs already or `gateway.max_follows` run: then it
/// stays stored, held by this node, and the keeper starts it once one of them has ended.
async fn run_follow(gateway: &Arc<Gateway>, follow: FollowRecord) {
    let key = (follow.tenant.clone(), follow.task_id.clone());
    let stop = CancellationToken::new();
    {
        let mut running = gateway.followers.running.lock().await;
        if running.contains_key(&key) {
            return;
        }
        if running.len() >= gateway.followers.limit {
            tracing::warn!(
                task_id = key.1,
                limit = gateway.followers.limit,
                "the hub follows as many tasks as gateway.max_follows allows; this one waits for one of them to end"
            );
            return;
        }
        running.insert(key.clone(), (stop.clone(), Instant::now()));
        gateway.services.metrics.follows_running(running.len());
    }
    let gateway = gateway.clone();
    let shutdown = gateway.services.shutdown.clone();
    let tasks = gateway.followers.tasks.clone();
    tasks.spawn(async move {
        let headers = header_map(&follow.headers);
        let run = run(&gateway, &headers, &key.0, &key.1);
        let ended = tokio::select! {
            _ = tokio::time::timeout(MAX_FOLLOW, run) => true,
            _ = shutdown.cancelled() => false,
            _ = stop.cancelled() => false,
        };
        // Forgotten in the store before here, so the keeper cannot start it again meanwhile.
        if ended {
            let (tenant, task_id) = key.clone();
            if let Err(e) = gateway
                .services
                .store
                .end_follow(tenant, task_id.clone(), gateway.node.clone())
                .await
            {
                tracing::warn!(task_id, error = %e, "cannot forget a follow that ended");
            }
        }
        let mut running = gateway.followers.running.lock().await;
        running.remove(&key);
        gateway.services.metrics.follows_running(running.len());
    });
}

/// Keeps this node's follows: renews their leases, runs the follows it takes over (all of
/// them at start on a store of its own: the previous run's), stops those it lost. At shutdown
/// it waits for its followers to stop, then gives their leases up, so that the next start or
/// another node follows at once.
pub fn keep(gateway: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let lease = gateway.services.lane_lease;
        let mut every = tokio::time::interval(lease / 3);
        let mut take_all = !gateway.services.store.shared();
        loop {
            tokio::select! {
                _ = gateway.services.shutdown.cancelled() => {
                    gateway.followers.stopped().await;
                    // A lease that ends now: the follows stay stored for whoever comes next.
                    let released = gateway.services.store.hold_follows(gateway.node.clone(), 0, false, 0).await;
                    if let Err(e) = released {
                        tracing::warn!(error = %e, "cannot give up the follows; they move when their leases run out");
                    }
                    break;
                }
                _ = every.tick() => {}
            }
            let asked = Instant::now();
            // Only as many of other nodes' follows as this node can run: the rest stay free for
            // a node with room.
            let room = gateway.followers.room_left().await;
            let held = gateway
                .services
                .store
                .hold_follows(
                    gateway.node.clone(),
                    now_ms() + lease_ms(&gateway),
                    take_all,
                    room,
                )
                .await;
            let held = match held {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the follows of agents' tasks");
                    continue;
                }
            };
            take_all = false;
            gateway.services.metrics.follow_renewal();
            let keys: HashSet<(String, String)> = held
                .iter()
                .map(|f| (f.tenant.clone(), f.task_id.clone()))
                .collect();
            for (key, (stop, started)) in gateway.followers.running.lock().await.iter() {
                // A follow started after the store was asked is not in its answer yet.
                if *started < asked && !keys.contains(key) {
                    tracing::info!(task_id = key.1, "another node follows the task now");
                    stop.cancel();
                }
            }
            for follow in held {
                run_follow(&gateway, follow).await;
            }
        }
    })
}

/// Longest wait between two looks at a task waiting for its client.
const MAX_INTERRUPTED_WAIT: Duration = Duration::from_secs(30);

async fn run(gateway: &Gateway, headers: &HeaderMap, tenant: &str, task_id: &str) {
    let mut attempt = 0;
    let mut waiting = Duration::from_secs(1);
    loop {
        match stream_once(gateway, headers, tenant, task_id).await {
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
        // Whatever the stream missed (it may refuse a task that finished meanwhile, or end at
        // an interrupted state): the task as it stands, when the hub has not seen it so.
        match catch_up(gateway, headers, tenant, task_id).await {
            Ok(Some(task)) if is_terminal(&task) => return,
            Ok(Some(task)) if is_interrupted(&task) => {
                // Its client answers through the gateway when it likes: keep looking, slower,
                // without using up the reconnects.
                tokio::time::sleep(waiting).await;
                waiting = (waiting * 2).min(MAX_INTERRUPTED_WAIT);
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(task_id, error = %e, "cannot read the agent's task"),
        }
        if attempt >= MAX_RECONNECTS {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
        attempt += 1;
    }
}

/// Reads the task at the agent and publishes it (`{"task": …}`) when its status differs from
/// the one the hub folded last; returns it as an event.
async fn catch_up(
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
) -> Result<Option<Value>, String> {
    let version = crate::a2a::version::WireVersion::V1_0;
    let Some(task) = super::upstream::get_task(gateway, headers, tenant, task_id, version)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let event = json!({ "task": task });
    let known = gateway
        .services
        .store
        .get_task(tenant.to_string(), task_id.to_string())
        .await
        .map_err(|e| e.to_string())?
        .and_then(|t| serde_json::to_value(&t.task.status).ok());
    // Both sides through the same type, so spelling differences do not count as a change.
    let fetched = serde_json::from_value::<a2a::TaskStatus>(event["task"]["status"].clone())
        .ok()
        .and_then(|status| serde_json::to_value(status).ok());
    if fetched.is_none() || known != fetched {
        if let Err(e) = events::publish_one(
            &gateway.services.events,
            tenant,
            event.to_string().as_bytes(),
            TraceContext::from_headers(headers).as_ref(),
            None,
        )
        .await
        {
            tracing::warn!(task_id, error = %e, "the agent's task could not be published");
        }
    }
    Ok(Some(event))
}

/// Reads one `SubscribeToTask` stream; `Ok(true)` once the task reached a terminal state.
async fn stream_once(
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
    for (name, value) in headers.iter().filter(|(n, _)| passed_on(n.as_str())) {
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
            if let Err(e) = events::publish_one(
                &gateway.services.events,
                tenant,
                event.to_string().as_bytes(),
                TraceContext::from_headers(headers).as_ref(),
                None,
            )
            .await
            {
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
