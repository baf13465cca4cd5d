//! The admin listener: the event API, the task view, health and readiness. Guarded by
//! `server.admin_token` when one is set.

use std::sync::Arc;

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

use super::AppState;
use super::errors::{problem, problem_for};
use crate::a2a::params::{InvalidField, Params};
use crate::domain::push_configs::resolve_tenant;
use crate::domain::{Deliveries, deliveries, events, filters, health, origins, tasks};
use crate::inbound::{Inbound, subscriptions};
use crate::store::{DeliveryFilter, DeliveryState};
use crate::trace::TraceContext;

pub fn routes(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/events", post(publish_one))
        .route("/api/v1/events:batch", post(publish_batch))
        .route("/api/v1/tasks", get(search_tasks))
        .route("/api/v1/configs", get(list_configs))
        .route("/api/v1/tasks/{task_id}", get(task_view))
        .route("/api/v1/tasks/{task_id}/events", get(task_events))
        .route(
            "/api/v1/tasks/{task_id}/configs/{config_id}/health",
            get(config_health),
        )
        .route(
            "/api/v1/tasks/{task_id}/configs/{config_id}/filter",
            get(show_config_filter).put(set_config_filter),
        )
        .route(
            "/api/v1/tenant-defaults",
            get(show_tenant_defaults).put(set_tenant_defaults),
        )
        // `{configId}:enable`: the router cannot split a segment, the handler does.
        .route(
            "/api/v1/tasks/{task_id}/configs/{config_action}",
            post(config_action),
        )
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/deliveries:replay", post(replay_matching))
        .route("/api/v1/deliveries/{delivery_id}", get(show_delivery))
        .route("/api/v1/deliveries/{delivery_id}/replay", post(replay_one))
        .route("/api/v1/origins", get(list_origins))
        .route("/api/v1/origins/health", get(origin_health))
        .route("/api/v1/keys", get(list_keys))
        .route("/api/v1/operator/events", get(operator_events))
        .route(
            "/api/v1/subscriptions",
            post(create_subscription).get(list_subscriptions),
        )
        .route(
            "/api/v1/subscriptions/{id}",
            get(show_subscription)
                .patch(update_subscription_keys)
                .delete(delete_subscription),
        )
        .route(
            "/api/v1/subscriptions/{id}/events",
            get(subscription_events),
        )
        .route(
            "/api/v1/subscriptions/{id}/receipts",
            get(subscription_receipts),
        )
        .route("/api/v1/keys:rotate", post(rotate_keys))
        .route("/api/v1/backup", get(backup))
        .nest_service(
            "/mcp",
            crate::mcp::endpoint(
                state.inbound.clone(),
                state.settings.limits.max_body_bytes,
                state.shutdown.clone(),
            ),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_guard));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(super::console::routes())
        .fallback(|uri: axum::http::Uri| async move {
            let message = super::served_by(uri.path(), super::Listener::Public)
                .unwrap_or_else(|| "no such admin endpoint; see spec/openapi.yaml".to_string());
            problem(StatusCode::NOT_FOUND, message, None)
        })
        .with_state(state)
}

/// In front of every `/api/v1/` route: the `Host` must be one the hub answers to (DNS
/// rebinding), `Authorization: Bearer <server.admin_token>` when a token is configured, and a
/// POST must declare a JSON body (a browser's cross-site form or `text/plain` POST cannot).
async fn admin_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Err(reason) = super::guard::check_host(&state.settings, &state.public_base_url, headers)
    {
        return problem(StatusCode::BAD_REQUEST, reason, Some("Host"));
    }
    if let Some(expected) = &state.admin_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "the admin API needs Authorization: Bearer <server.admin_token>",
                None,
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    if request.method() == axum::http::Method::POST && !super::guard::is_json(headers) {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "admin API calls that change state must be sent with Content-Type: application/json (an empty body is fine where none is needed)",
            Some("Content-Type"),
        );
    }
    next.run(request).await
}

/// A query string read into `T`; one that does not fit (`after=abc` for a number) is a
/// problem+json 400 that names what is wrong, like every other bad request of the admin API.
struct AdminQuery<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for AdminQuery<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(AdminQuery(value)),
            Err(rejection) => Err(problem(
                StatusCode::BAD_REQUEST,
                rejection.body_text(),
                Some("query"),
            )),
        }
    }
}

#[derive(Deserialize)]
struct TenantQuery {
    tenant: Option<String>,
}

fn body_or_problem(
    state: &AppState,
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

/// The `?tenant=` and the body of a write request, or the problem answer for either.
fn tenant_and_body(
    state: &AppState,
    query: &TenantQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, Bytes), Response> {
    Ok((tenant_or_problem(query)?, body_or_problem(state, body)?))
}

/// The request's W3C trace context, read from its headers in place.
struct RequestTrace(Option<TraceContext>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestTrace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestTrace(TraceContext::from_headers(&parts.headers)))
    }
}

/// The request's `Idempotency-Key` header: absent, its text, or one that is not text.
struct IdempotencyKey(Result<Option<String>, ()>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(events::IDEMPOTENCY_KEY_HEADER);
        Ok(IdempotencyKey(match value {
            None => Ok(None),
            Some(value) => value.to_str().map(|v| Some(v.to_string())).map_err(|_| ()),
        }))
    }
}

async fn publish_one(
    State(state): State<AppState>,
    AdminQuery(query): AdminQuery<TenantQuery>,
    RequestTrace(trace): RequestTrace,
    IdempotencyKey(key): IdempotencyKey,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match tenant_and_body(&state, &query, body) {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let Ok(key) = key else {
        let field = InvalidField::new(
            events::IDEMPOTENCY_KEY_HEADER,
            "must be printable ASCII text",
        );
        return problem_for(&field.into());
    };
    let published = events::publish_one(
        &state.events,
        &tenant,
        &body,
        trace.as_ref(),
        key.as_deref(),
    )
    .await;
    match published {
        Ok(published) => {
            let replayed = published.replayed;
            let mut response = (StatusCode::ACCEPTED, Json(published)).into_response();
            if replayed {
                // The name other APIs with idempotency keys answer a replay with.
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => problem_for(&e),
    }
}

async fn publish_batch(
    State(state): State<AppState>,
    AdminQuery(query): AdminQuery<TenantQuery>,
    RequestTrace(trace): RequestTrace,
    IdempotencyKey(key): IdempotencyKey,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match tenant_and_body(&state, &query, body) {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    if !matches!(key, Ok(None)) {
        let field = InvalidField::new(
            events::IDEMPOTENCY_KEY_HEADER,
            "is for one event (POST /api/v1/events); in a batch, give each event its own \"idempotencyKey\" field",
        );
        return problem_for(&field.into());
    }
    match events::publish_batch(&state.events, &tenant, &body, trace.as_ref()).await {
        Ok(published) => {
            (StatusCode::ACCEPTED, Json(json!({ "events": published }))).into_response()
        }
        Err(e) => problem_for(&e),
    }
}

async fn task_view(
    State(deliveries): State<Deliveries>,
    Path(task_id): Path<String>,
    AdminQuery(query): AdminQuery<TenantQuery>,
) -> Response {
    let tenant = match tenant_or_problem(&query) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match tasks::view(&deliveries, &tenant, &task_id).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => problem_for(&e),
    }
}

/// `?tenant=&q=&state=&after=&limit=` of the listings across tasks: no `tenant` is every
/// tenant, `tenant=` the default one.
fn search_params(
    query: &std::collections::HashMap<String, String>,
) -> Result<tasks::Search, InvalidField> {
    let params = query_params(query.clone());
    let tenant = query
        .get("tenant")
        .map(|tenant| resolve_tenant(None, Some(tenant)))
        .transpose()?;
    Ok(tasks::Search {
        tenant,
        id_contains: params.string("q")?,
        state: params.string("state")?,
        after: params.string("after")?,
        limit: limit_param(&params)?,
    })
}

/// A listing's answer: the page, or the problem that says what to fix.
fn listing<T: serde::Serialize>(page: Result<T, crate::domain::DomainError>) -> Response {
    match page {
        Ok(page) => Json(page).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn search_tasks(
    State(deliveries): State<Deliveries>,
    AdminQuery(query): AdminQuery<std::collections::HashMap<String, String>>,
) -> Response {
    match search_params(&query) {
        Ok(search) => listing(tasks::search(&deliveries, search).await),
        Err(field) => field_problem(field),
    }
}

async fn list_configs(
    State(deliveries): State<Deliveries>,
    AdminQuery(query): AdminQuery<std::collections::HashMap<String, String>>,
) -> Response {
    match search_params(&query) {
        Ok(search) => listing(tasks::configs(&deliveries, search).await),
        Err(field) => field_problem(field),
    }
}

async fn task_events(
    State(deliveries): State<Deliveries>,
    Path(task_id): Path<String>,
    AdminQuery(query): AdminQuery<std::collections::HashMap<String, String>>,
) -> Response {
    let params = query_params(query);
    let parsed = (|| {
        let tenant = resolve_tenant(None, params.string("tenant")?.as_deref())?;
        let after = params
            .integer("after")?
            .map(|n| {
                u64::try_from(n).map_err(|_| {
                    InvalidField::new("after", "must be a sequence number (0 or more)")
                })
            })
            .transpose()?;
        let limit = limit_param(&params)?;
        Ok::<_, InvalidField>((tenant, after, limit))
    })();
    let (tenant, after, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(field) => return field_problem(field),
    };
    listing(tasks::events(&deliveries, &tenant, &task_id, after, limit).await)
}

async fn config_health(
    State(state): State<AppState>,
    Path((task_id, config_id)): Path<(String, String)>,
    AdminQuery(query): AdminQuery<TenantQuery>,
) -> Response {
    let tenant = match tenant_or_problem(&query) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let disable_after = state.settings.delivery.disable_after.0;
    let health = health::config_health(
        &state.deliveries,
        &tenant,
        &task_id,
        &config_id,
        disable_after,
    )
    .await;
    match health {
        Ok(mut health) => {
            let (origin, circuit) = state.scheduler.circuit_of(&health.url).await;
            let mut circuit = serde_json::to_value(circuit).unwrap_or_default();
            circuit["origin"] = json!(origin);
            health.circuit = Some(circuit);
            Json(health).into_response()
        }
        Err(e) => problem_for(&e),
    }
}

async fn show_config_filter(
    State(deliveries): State<Deliveries>,
    Path((task_id, config_id)): Path<(String, String)>,
    AdminQuery(query): AdminQuery<TenantQuery>,
) -> Response {
    let tenant = match tenant_or_problem(&query) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match filters::config_filter(&deliveries, &tenant, &task_id, &config_id).await {
        Ok(filter) => Json(filter).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn set_config_filter(
    State(state): State<AppState>,
    Path((task_id, config_id)): Path<(String, String)>,
    AdminQuery(query): AdminQuery<TenantQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match tenant_and_body(&state, &query, body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let set = filters::set_config_filter(&state.deliveries, &tenant, &task_id, &config_id, &body);
    match set.await {
        Ok(filter) => Json(filter).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn show_tenant_defaults(
    State(deliveries): State<Deliveries>,
    AdminQuery(query): AdminQuery<TenantQuery>,
) -> Response {
    let tenant = match tenant_or_problem(&query) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    match filters::tenant_defaults(&deliveries, &tenant).await {
        Ok(defaults) => Json(defaults).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn set_tenant_defaults(
    State(state): State<AppState>,
    AdminQuery(query): AdminQuery<TenantQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match tenant_and_body(&state, &query, body) {
        Ok(found) => found,
        Err(response) => return response,
    };
    match filters::set_tenant_defaults(&state.deliveries, &tenant, &body).await {
        Ok(defaults) => Json(defaults).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn backup(State(state): State<AppState>) -> Response {
    if !state.store.can_dump() {
        return problem(
            StatusCode::CONFLICT,
            "the hub's store is a PostgreSQL database: back it up with PostgreSQL's own tools (pg_dump, or your provider's snapshots)",
            None,
        );
    }
    let now = crate::store::now_ms();
    let body = axum::body::Body::from_stream(crate::backup::stream(state.store.clone(), now));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"a2a-push-hub-{now}.backup\""),
            ),
        ],
        body,
    )
        .into_response()
}

async fn list_origins(
    State(state): State<AppState>,
    AdminQuery(query): AdminQuery<std::collections::HashMap<String, String>>,
) -> Response {
    let params = query_params(query);
    let limit = match params.integer("limit") {
        Ok(limit) => limit.map_or(origins::DEFAULT_LIMIT, |n| {
            usize::try_from(n).unwrap_or(0).min(origins::MAX_LIMIT)
        }),
        Err(field) => return problem_for(&field.into()),
    };
    let listed = origins::list(&state.scheduler, limit).await;
    Json(json!({ "origins": listed })).into_response()
}

async fn origin_health(
    State(state): State<AppState>,
    AdminQuery(query): AdminQuery<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(url) = query.get("url") else {
        return problem(
            StatusCode::BAD_REQUEST,
            "url is required: the webhook URL or origin to report on, e.g. ?url=https://receiver.example",
            Some("url"),
        );
    };
    match origins::origin_health(&state.scheduler, url).await {
        Ok(health) => Json(health).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn config_action(
    State(deliveries): State<Deliveries>,
    Path((task_id, action)): Path<(String, String)>,
    AdminQuery(query): AdminQuery<TenantQuery>,
) -> Response {
    let tenant = match tenant_or_problem(&query) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let Some(config_id) = action.strip_suffix(":enable") else {
        return problem(
            StatusCode::NOT_FOUND,
            format!(
                "no action at {action:?}: POST /api/v1/tasks/{{taskId}}/configs/{{configId}}:enable resumes a suspended or disabled config"
            ),
            None,
        );
    };
    match health::enable_config(&deliveries, &tenant, &task_id, config_id).await {
        Ok(enabled) => Json(json!({
            "taskId": task_id,
            "configId": config_id,
            "state": "active",
            "was": enabled.was,
            "resumed": enabled.resumed.len(),
        }))
        .into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not ready: {e}"),
            None,
        ),
    }
}

fn field_problem(field: InvalidField) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        field.to_string(),
        Some(&field.field),
    )
}

/// Reads a delivery filter from query or body params (`taskId`, `configId`, `state`,
/// `createdAfter`, `createdBefore`); `default_state` applies when `state` is absent.
fn delivery_filter(
    tenant: String,
    params: &Params,
    default_state: Option<DeliveryState>,
) -> Result<DeliveryFilter, InvalidField> {
    let state = match params.string("state")? {
        Some(text) => Some(deliveries::parse_state("state", &text)?),
        None => default_state,
    };
    let time = |name: &str| -> Result<Option<u64>, InvalidField> {
        params
            .string(name)?
            .map(|t| deliveries::parse_time(name, &t))
            .transpose()
    };
    Ok(DeliveryFilter {
        tenant,
        task_id: params.string("taskId")?,
        config_id: params.string("configId")?,
        state,
        created_after_ms: time("createdAfter")?,
        created_before_ms: time("createdBefore")?,
    })
}

/// A listing's `limit`; one below 1 is refused by `page_limit`.
fn limit_param(params: &Params) -> Result<Option<usize>, InvalidField> {
    Ok(params
        .integer("limit")?
        .map(|n| usize::try_from(n).unwrap_or(0)))
}

fn query_params(query: std::collections::HashMap<String, String>) -> Params {
    let fields = query
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    Params::from_value(Some(serde_json::Value::Object(fields))).unwrap_or_default()
}

async fn list_deliveries(
    State(deliveries): State<Deliveries>,
    AdminQuery(query): AdminQuery<std::collections::HashMap<String, String>>,
) -> Response {
    let params = query_params(query);
    let parsed = (|| {
        let tenant = resolve_tenant(None, params.string("tenant")?.as_deref())?;
        let filter = delivery_filter(tenant, &params, None)?;
        let limit = limit_param(&params)?;
        let after = params.string("after")?;
        if let Some(cursor) = &after {
            uuid::Uuid::parse_str(cursor).map_err(|_| {
                InvalidField::new(
                    "after",
                    "is not a cursor this hub issued (use nextCursor from the previous page)",
                )
            })?;
        }
        Ok::<_, InvalidField>((filter, after, limit))
    })();
    let (filter, after, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(field) => return field_problem(field),
    };
    match deliveries::list(&deliveries, filter, after, limit).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn show_delivery(
    State(deliveries): State<Deliveries>,
    Path(delivery_id): Path<String>,
) -> Response {
    match deliveries::show(&deliveries, &delivery_id).await {
        Ok(detail) => Json(detail).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn replay_one(State(state): State<AppState>, Path(delivery_id): Path<String>) -> Response {
    match deliveries::replay_one(&state.deliveries, &delivery_id).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(json!({"deliveryId": id, "state": "pending"})),
        )
            .into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn replay_matching(
    State(state): State<AppState>,
    AdminQuery(query): AdminQuery<TenantQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match tenant_and_body(&state, &query, body) {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(e) => {
                return field_problem(InvalidField::new("body", format!("is not valid JSON: {e}")));
            }
        }
    };
    let filter = Params::from_value(Some(value)).and_then(|params| {
        params.only(&[
            "taskId",
            "configId",
            "state",
            "createdAfter",
            "createdBefore",
            "all",
        ])?;
        let all = params.boolean("all")?.unwrap_or(false);
        let filter = delivery_filter(tenant, &params, Some(DeliveryState::Dead))?;
        let narrowed = filter.task_id.is_some()
            || filter.config_id.is_some()
            || filter.created_after_ms.is_some()
            || filter.created_before_ms.is_some()
            || params.string("state")?.is_some();
        if !narrowed && !all {
            return Err(InvalidField::new(
                "body",
                "names no deliveries: give a filter (taskId, configId, state, createdAfter, createdBefore) or \"all\": true to replay every dead delivery",
            ));
        }
        Ok(filter)
    });
    let filter = match filter {
        Ok(filter) => filter,
        Err(field) => return field_problem(field),
    };
    match deliveries::replay_matching(&state.deliveries, filter).await {
        Ok(outcome) => (StatusCode::ACCEPTED, Json(outcome)).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let stats = state.scheduler.stats().await;
    let writer = state.store.writer_stats();
    let store = crate::metrics::StoreStats {
        writer: writer.as_deref(),
        file_bytes: state.store.file_bytes(),
    };
    let text = state.metrics.render(&stats, &store);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The keys in force and the JWKS receivers verify with (the document the public listener
/// serves at `/.well-known/jwks.json`: public keys only).
async fn list_keys(State(state): State<AppState>) -> Response {
    let keys = state.keyring.current();
    let now = crate::store::now_ms();
    Json(json!({"keys": keys.info(now), "jwks": keys.jwks(now)})).into_response()
}

async fn rotate_keys(State(state): State<AppState>) -> Response {
    match state.keyring.rotate().await {
        Ok(keys) => Json(json!({"keys": keys})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "key rotation failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("key rotation failed; the old keys stay in force: {e}"),
                None,
            )
        }
    }
}

async fn create_subscription(
    State(state): State<AppState>,
    AdminQuery(query): AdminQuery<TenantQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (tenant, body) = match tenant_and_body(&state, &query, body) {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return field_problem(InvalidField::new("body", format!("is not valid JSON: {e}")));
        }
    };
    let tenant = (!tenant.is_empty()).then_some(tenant);
    match subscriptions::create(&state.inbound, tenant.as_deref(), value).await {
        Ok(created) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn list_subscriptions(
    State(inbound): State<Arc<Inbound>>,
    AdminQuery(query): AdminQuery<std::collections::HashMap<String, String>>,
) -> Response {
    let params = query_params(query);
    let parsed = (|| {
        let limit = limit_param(&params)?;
        Ok::<_, InvalidField>((params.string("after")?, limit))
    })();
    let (after, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(field) => return field_problem(field),
    };
    match subscriptions::list(&inbound, after, limit).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn show_subscription(
    State(inbound): State<Arc<Inbound>>,
    Path(id): Path<String>,
) -> Response {
    match subscriptions::get(&inbound, &id).await {
        Ok(subscription) => Json(subscriptions::view(&inbound, &subscription)).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn update_subscription_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_problem(&state, body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return field_problem(InvalidField::new("body", format!("is not valid JSON: {e}")));
        }
    };
    match subscriptions::update_keys(&state.inbound, &id, value).await {
        Ok(updated) => Json(updated).into_response(),
        Err(e) => problem_for(&e),
    }
}

async fn delete_subscription(
    State(inbound): State<Arc<Inbound>>,
    Path(id): Path<String>,
) -> Response {
    match subscriptions::delete(&inbound, &id).await {
        Ok(deleted) => Json(deleted).into_response(),
        Err(e) => problem_for(&e),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn subscription_receipts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Response {
    if let Err(e) = subscriptions::get(&state.inbound, &id).await {
        return problem_for(&e);
    }
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    match state
        .store
        .receipts(id, page.after.unwrap_or(0), limit)
        .await
    {
        Ok(receipts) => Json(json!({ "receipts": receipts })).into_response(),
        Err(e) => problem_for(&e.into()),
    }
}

/// Accepted events as JSON (`?after=`), or as a Server-Sent Events stream with
/// `Accept: text/event-stream` (resumable with `Last-Event-ID`).
/// Whether a numbered list is asked for as an SSE stream, and after which sequence it starts
/// (`Last-Event-ID`, else `?after=`).
fn stream_or_page(
    headers: &axum::http::HeaderMap,
    page: &PageQuery,
) -> Result<(bool, u64), Response> {
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(id) => Some(id),
            None => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "Last-Event-ID must be the id of an event this stream sent (a whole number)",
                    Some("Last-Event-ID"),
                ));
            }
        },
    };
    Ok((wants_stream, last_event_id.or(page.after).unwrap_or(0)))
}

async fn subscription_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(e) = subscriptions::get(&state.inbound, &id).await {
        return problem_for(&e);
    }
    let (wants_stream, after) = match stream_or_page(&headers, &page) {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    if wants_stream {
        return super::sse::events(state, id, after).await.into_response();
    }
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    match state.store.inbound_events(id, after, limit).await {
        Ok(events) => {
            let next_after = events.last().map_or(after, |e| e.sequence);
            let events: Vec<_> = events.iter().map(super::sse::event_json).collect();
            Json(json!({ "events": events, "nextAfter": next_after })).into_response()
        }
        Err(e) => problem_for(&e.into()),
    }
}

/// The operator events (`GET /api/v1/operator/events`): a page after `?after=`, or an SSE
/// stream with `Accept: text/event-stream`.
async fn operator_events(
    State(state): State<AppState>,
    AdminQuery(page): AdminQuery<PageQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (wants_stream, after) = match stream_or_page(&headers, &page) {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    if wants_stream {
        let store = state.store.clone();
        let fetch = move |after| {
            let store = store.clone();
            async move {
                let events = store.operator_events(after, 100).await?;
                Ok(events
                    .into_iter()
                    .map(|e| (e.sequence, operator_event_json(e)))
                    .collect())
            }
        };
        return super::sse::stream(state, after, None, "operator-event", fetch).into_response();
    }
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    match state.store.operator_events(after, limit).await {
        Ok(events) => {
            let next_after = events.last().map_or(after, |e| e.sequence);
            let events: Vec<_> = events.into_iter().map(operator_event_json).collect();
            Json(json!({ "events": events, "nextAfter": next_after })).into_response()
        }
        Err(e) => problem_for(&e.into()),
    }
}

/// An operator event as the API shows it (its webhook delivery's id included, to follow it).
fn operator_event_json(event: crate::store::OperatorEvent) -> serde_json::Value {
    serde_json::to_value(event).unwrap_or_default()
}
