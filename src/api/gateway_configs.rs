//! What gateway mode adds to the push-config methods of every binding (`jsonrpc.rs`,
//! `rest.rs`): the task must exist at the agent for the caller, and a config created on a
//! running task gets the task's snapshot first, then the agent is made to push the task to the
//! hub (or the hub follows it). Also the answer every binding gives for an unreachable agent.

use std::sync::Arc;
use std::time::Duration;

use a2a::{A2AError, error_code};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::errors::{rest_response, to_a2a};
use crate::a2a::version::WireVersion;
use crate::domain::{DomainError, events};
use crate::gateway::{Gateway, follow, intake, upstream};
use crate::store::PublishedEvent;
use crate::trace::TraceContext;

/// The A2A error for an agent the hub cannot reach.
pub(super) fn unreachable(reason: &str) -> A2AError {
    A2AError::internal(format!(
        "the agent behind this hub is unreachable: {reason}"
    ))
}

/// The REST-binding answer for an unreachable agent.
pub(super) fn unreachable_rest(error: &upstream::UpstreamError) -> Response {
    tracing::warn!(%error, "upstream agent unreachable");
    let (status, body) = crate::a2a::errors::rest_error_with_status(
        &unreachable(&error.to_string()),
        upstream::unreachable_status().as_u16(),
    );
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        Json(body),
    )
        .into_response()
}

/// Before a config is created on a task of an agent that does not push, which makes the hub
/// follow the task: refused while this node follows `gateway.max_follows` other tasks, before
/// the config is stored.
pub(super) async fn room_to_follow(
    gateway: &Gateway,
    tenant: &str,
    task_id: &str,
) -> Result<(), A2AError> {
    if gateway.agent_pushes().await {
        return Ok(());
    }
    gateway
        .followers
        .room(Some((tenant, task_id)))
        .await
        .map_err(|full| A2AError::internal(full.to_string()))
}

/// The REST-binding answer when the hub follows as many tasks as it may: 503, retry later.
pub(super) fn follows_full_rest(error: &A2AError) -> Response {
    rest_response(error, Some(StatusCode::SERVICE_UNAVAILABLE))
}

/// Checks with the agent that the task exists for this caller.
async fn task_for_caller(
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
    rest_prefix: Option<&str>,
    version: WireVersion,
) -> Result<Value, A2AError> {
    let found = match rest_prefix {
        Some(prefix) => upstream::get_task_rest(gateway, headers, prefix, task_id).await,
        None => upstream::get_task(gateway, headers, tenant, task_id, version).await,
    };
    match found {
        Ok(Some(task)) => Ok(task),
        Ok(None) => Err(A2AError::new(
            error_code::TASK_NOT_FOUND,
            format!("task {task_id:?} does not exist at the agent for this caller"),
        )),
        Err(e) => Err(unreachable(&e.to_string())),
    }
}

/// Before a push-config method: the task must exist for the caller at the agent.
pub async fn before_config_method(
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
    rest_prefix: Option<&str>,
    version: WireVersion,
) -> Result<(), A2AError> {
    task_for_caller(gateway, headers, tenant, task_id, rest_prefix, version)
        .await
        .map(|_| ())
}

/// The config a created config is, named from the answer the hub gives its client.
pub struct CreatedConfig<'a> {
    pub tenant: &'a str,
    pub task_id: &'a str,
    pub config_id: &'a str,
}

/// After a config was created on an existing task: the new config gets the task's current
/// snapshot (it alone: the task's other configs have seen every state), then the agent is made
/// to push the task to the hub.
pub async fn after_config_created(
    state: &AppState,
    gateway: &Arc<Gateway>,
    headers: &HeaderMap,
    created: CreatedConfig<'_>,
    rest_prefix: Option<&str>,
    version: WireVersion,
) -> Result<(), A2AError> {
    let CreatedConfig {
        tenant,
        task_id,
        config_id,
    } = created;
    // The snapshot goes first, so the new config's lane starts with it…
    let before = task_for_caller(gateway, headers, tenant, task_id, rest_prefix, version).await?;
    let trace = TraceContext::from_headers(headers);
    let seen = events::snapshot_to_config(
        &state.events,
        tenant,
        task_id,
        config_id,
        &before,
        trace.clone(),
    )
    .await
    .map_err(|e| to_a2a(&e))?;
    if !gateway.agent_pushes().await {
        follow::follow(gateway, headers, tenant, task_id).await;
        return Ok(());
    }
    intake::ensure_agent_pushes(gateway, headers, tenant, task_id)
        .await
        .map_err(|e| to_a2a(&e))?;
    // …and if the task moved while the hub registered itself, and no push tells of it, the
    // agent will never push that change: it is published as the task's event, for every config.
    let after = task_for_caller(gateway, headers, tenant, task_id, rest_prefix, version).await?;
    if after != before && !push_arrives(state, tenant, task_id, seen).await? {
        let snapshot = json!({"task": after}).to_string();
        let published: Result<PublishedEvent, DomainError> = events::publish_one(
            &state.events,
            tenant,
            snapshot.as_bytes(),
            trace.as_ref(),
            None,
        )
        .await;
        published.map_err(|e| to_a2a(&e))?;
    }
    Ok(())
}

/// How long a change seen at the agent just after the hub registered may take to arrive as the
/// agent's own push. A change made after the registration is pushed (the SDKs push inline, as
/// the task moves); publishing it too would put a second copy of it behind the first, and
/// after a terminal state a receiver would see a push it must not get.
const PUSH_GRACE: Duration = Duration::from_secs(1);

/// Whether a push of the task arrives (its last sequence moves past `seen`) within
/// `PUSH_GRACE`.
async fn push_arrives(
    state: &AppState,
    tenant: &str,
    task_id: &str,
    seen: u64,
) -> Result<bool, A2AError> {
    let deadline = tokio::time::Instant::now() + PUSH_GRACE;
    loop {
        let newest = state
            .store
            .get_task(tenant.to_string(), task_id.to_string())
            .await
            .map_err(|e| to_a2a(&e.into()))?
            .map_or(0, |t| t.last_sequence);
        if newest != seen {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
