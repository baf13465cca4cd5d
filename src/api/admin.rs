//! The admin listener: the event API, the task view, health and readiness. Guarded by
//! `server.admin_token` when one is set.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::errors::{problem, problem_for};
use crate::domain::push_configs::resolve_tenant;
use crate::domain::{HubState, events, tasks};

pub fn routes(state: HubState) -> Router {
    let api = Router::new()
        .route("/api/v1/events", post(publish_one))
        .route("/api/v1/events:batch", post(publish_batch))
        .route("/api/v1/tasks/{task_id}", get(task_view))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_token,
        ));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            problem(
                StatusCode::NOT_FOUND,
                "no such admin endpoint; see spec/openapi.yaml",
                None,
            )
        })
        .with_state(state)
}

/// Requires `Authorization: Bearer <server.admin_token>` when a token is configured.
async fn require_admin_token(
    State(state): State<HubState>,
    request: Request,
    next: Next,
) -> Response {
    let expected = state.settings.server.admin_token.expose();
    if expected.is_empty() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "the admin API needs Authorization: Bearer <server.admin_token>",
        None,
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

fn body_or_problem(
    state: &HubState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Response> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is larger than limits.max_body_bytes ({} bytes)",
                    state.settings.limits.max_body_bytes
                ),
                Some("body"),
            )
        } else {
            problem(rejection.status(), rejection.body_text(), Some("body"))
        }
    })
}

fn tenant_or_problem(query: &TenantQuery) -> Result<String, Response> {
    resolve_tenant(None, query.tenant.as_deref()).map_err(|field| {
        problem(
            StatusCode::BAD_REQUEST,
            field.to_string(),
            Some(&field.field),
        )
    })
}

async fn publish_one(
    State(state): State<HubState>,
    Query(query): Query<TenantQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match (tenant_or_problem(&query), body_or_problem(&state, body)) {
        (Ok(tenant), Ok(body)) => (tenant, body),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    match events::publish_one(&state, &tenant, &body).await {
        Ok(published) => (StatusCode::ACCEPTED, Json(published)).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn publish_batch(
    State(state): State<HubState>,
    Query(query): Query<TenantQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match (tenant_or_problem(&query), body_or_problem(&state, body)) {
        (Ok(tenant), Ok(body)) => (tenant, body),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    match events::publish_batch(&state, &tenant, &body).await {
        Ok(published) => {
            (StatusCode::ACCEPTED, Json(json!({ "events": published }))).into_response()
        }
        Err(e) => problem_for(&e),
    }
}

async fn task_view(
    State(state): State<HubState>,
    Path(task_id): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Response {
    let tenant = match tenant_or_problem(&query) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match tasks::view(&state, &tenant, &task_id).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<HubState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not ready: {e}"),
            None,
        ),
    }
}
