//! The A2A HTTP+JSON (REST) binding of the push-config methods, at
//! `/tasks/{taskId}/pushNotificationConfigs[/{configId}]` and under a `/{tenant}` prefix.

use std::collections::HashMap;

use a2a::{A2AError, error_code};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::Caller;
use super::errors::{invalid_params, rest_response, to_a2a};
use super::requested_version;
use crate::a2a::params::{InvalidField, Params};
use crate::a2a::push_config::{
    ConfigAddress, ListRequest, config_input, list_request, render, render_list,
};
use crate::a2a::version::{WireVersion, negotiate};
use crate::domain::push_configs;

pub fn routes() -> Router<AppState> {
    let collection = get(list).post(create);
    let item = get(get_one).delete(delete);
    Router::new()
        .route(
            "/tasks/{task_id}/pushNotificationConfigs",
            collection.clone(),
        )
        .route(
            "/tasks/{task_id}/pushNotificationConfigs/{config_id}",
            item.clone(),
        )
        .route(
            "/{tenant}/tasks/{task_id}/pushNotificationConfigs",
            collection,
        )
        .route(
            "/{tenant}/tasks/{task_id}/pushNotificationConfigs/{config_id}",
            item,
        )
}

/// Path parameters of every route; `tenant` and `config_id` only where the route has them.
#[derive(serde::Deserialize)]
pub struct PathParams {
    tenant: Option<String>,
    task_id: String,
    config_id: Option<String>,
}

impl PathParams {
    /// In gateway mode the path prefix is the agent interface's path (its tenant, if it has
    /// one) and the hub keeps configs in the default tenant; otherwise it is the hub's tenant.
    fn scope(&self, state: &AppState) -> (Option<String>, Option<String>) {
        match state.gateway {
            Some(_) => (
                None,
                Some(
                    self.tenant
                        .as_ref()
                        .map(|t| format!("/{t}"))
                        .unwrap_or_default(),
                ),
            ),
            None => (self.tenant.clone(), None),
        }
    }
}

/// In gateway mode: the task must exist for the caller at the agent.
async fn gateway_check(
    state: &AppState,
    headers: &HeaderMap,
    path: &PathParams,
) -> Result<(), Response> {
    let (Some(gateway), (_, Some(prefix))) = (&state.gateway, path.scope(state)) else {
        return Ok(());
    };
    super::gateway_configs::before_config_method(
        gateway,
        headers,
        "",
        &path.task_id,
        Some(&prefix),
        WireVersion::V1_0,
    )
    .await
    .map_err(|error| rest_response(&error, None))
}

fn version(headers: &HeaderMap, query: Option<&str>) -> Result<WireVersion, Response> {
    let refuse = |message: String| {
        rest_response(
            &A2AError::new(error_code::VERSION_NOT_SUPPORTED, message),
            None,
        )
    };
    match negotiate(
        requested_version(headers, query).as_deref(),
        WireVersion::V1_0,
    ) {
        Ok(WireVersion::V1_0) => Ok(WireVersion::V1_0),
        Ok(WireVersion::V0_3) => Err(refuse(
            "these paths are the A2A 1.0 binding; A2A 0.3 is served under /v1/".to_string(),
        )),
        Err(unsupported) => Err(refuse(unsupported.to_string())),
    }
}

fn field_error(error: InvalidField) -> Response {
    rest_response(&invalid_params(&error), None)
}

fn domain_error(error: crate::domain::DomainError) -> Response {
    let a2a = to_a2a(&error);
    let status = matches!(error, crate::domain::DomainError::Store(_))
        .then_some(StatusCode::SERVICE_UNAVAILABLE);
    rest_response(&a2a, status)
}

async fn create(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathParams>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let version = match version(&headers, query.as_deref()) {
        Ok(v) => v,
        Err(response) => return response,
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let error = A2AError::invalid_request(format!(
                "request body is larger than the limit of {} bytes",
                state.settings.limits.max_body_bytes
            ));
            return rest_response(&error, Some(StatusCode::PAYLOAD_TOO_LARGE));
        }
        Err(rejection) => {
            return rest_response(&A2AError::invalid_request(rejection.body_text()), None);
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return rest_response(
                &A2AError::parse_error(format!("request body is not valid JSON: {e}")),
                None,
            );
        }
    };
    let input = match Params::from_value(Some(value)).and_then(|p| config_input(&p)) {
        Ok(input) => input,
        Err(e) => return field_error(e),
    };
    if let Err(response) = gateway_check(&state, &headers, &path).await {
        return response;
    }
    if let Some(gateway) = &state.gateway {
        if let Err(error) = super::gateway_configs::room_to_follow(gateway, "", &path.task_id).await
        {
            return super::gateway_configs::follows_full_rest(&error);
        }
    }
    let (tenant, prefix) = path.scope(&state);
    let config = match push_configs::create(
        &state.configs,
        caller.as_deref(),
        tenant.as_deref(),
        Some(&path.task_id),
        input,
        version,
    )
    .await
    {
        Ok(config) => config,
        Err(e) => return domain_error(e),
    };
    if let (Some(gateway), Some(prefix)) = (&state.gateway, prefix) {
        let created = super::gateway_configs::CreatedConfig {
            tenant: "",
            task_id: &path.task_id,
            config_id: &config.id,
        };
        if let Err(error) = super::gateway_configs::after_config_created(
            &state,
            gateway,
            &headers,
            created,
            Some(&prefix),
            WireVersion::V1_0,
        )
        .await
        {
            return rest_response(&error, None);
        }
    }
    Json(render(config.view())).into_response()
}

/// The config a path names, in the tenant the caller passes beside it.
fn config_address(task_id: String, config_id: Option<String>) -> ConfigAddress {
    ConfigAddress {
        tenant: None,
        task_id,
        id: config_id.unwrap_or_default(),
    }
}

/// A list request from the query string (`pageSize`, `pageToken`, in either spelling); the
/// path's task id wins over one in the query.
fn list_request_from_query(
    task_id: &str,
    query: HashMap<String, String>,
) -> Result<ListRequest, Response> {
    let mut fields: Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    fields.insert("taskId".to_string(), json!(task_id));
    fields.remove("task_id");
    Params::from_value(Some(Value::Object(fields)))
        .and_then(|p| list_request(&p))
        .map_err(field_error)
}

async fn get_one(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathParams>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(response) = version(&headers, query.as_deref()) {
        return response;
    }
    if let Err(response) = gateway_check(&state, &headers, &path).await {
        return response;
    }
    let (tenant, _) = path.scope(&state);
    let address = config_address(path.task_id, path.config_id);
    match push_configs::get(
        &state.configs,
        caller.as_deref(),
        tenant.as_deref(),
        address,
    )
    .await
    {
        Ok(config) => Json(render(config.view())).into_response(),
        Err(e) => domain_error(e),
    }
}

async fn list(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathParams>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = version(&headers, raw_query.as_deref()) {
        return response;
    }
    if let Err(response) = gateway_check(&state, &headers, &path).await {
        return response;
    }
    let (tenant, _) = path.scope(&state);
    let request = match list_request_from_query(&path.task_id, query) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match push_configs::list(
        &state.configs,
        caller.as_deref(),
        tenant.as_deref(),
        request,
    )
    .await
    {
        Ok(page) => Json(render_list(
            page.configs.iter().map(|c| c.view()),
            page.next_page_token.as_deref(),
        ))
        .into_response(),
        Err(e) => domain_error(e),
    }
}

async fn delete(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathParams>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(response) = version(&headers, query.as_deref()) {
        return response;
    }
    if let Err(response) = gateway_check(&state, &headers, &path).await {
        return response;
    }
    let (tenant, _) = path.scope(&state);
    let address = config_address(path.task_id, path.config_id);
    match push_configs::delete(
        &state.configs,
        caller.as_deref(),
        tenant.as_deref(),
        address,
    )
    .await
    {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => domain_error(e),
    }
}

/// A push-config path under an agent interface whose path has several segments (gateway
/// mode, e.g. `/a2a/rest/tasks/{taskId}/pushNotificationConfigs`), which the routes above —
/// one optional segment before `/tasks/` — do not match: `(prefix, task, config)`.
pub fn prefixed_config_path(path: &str) -> Option<(String, String, Option<String>)> {
    let (prefix, rest) = path.split_once("/tasks/")?;
    let prefix = prefix.trim_start_matches('/');
    if prefix.is_empty() || prefix == "v1" {
        return None;
    }
    let mut parts = rest.split('/');
    let task_id = parts.next().filter(|t| !t.is_empty())?.to_string();
    if parts.next()? != "pushNotificationConfigs" {
        return None;
    }
    let config_id = parts.next().filter(|c| !c.is_empty()).map(str::to_string);
    if parts.next().is_some() {
        return None;
    }
    Some((prefix.to_string(), task_id, config_id))
}

/// Answers a push-config call on a path `prefixed_config_path` recognised, as the routes above
/// would, after the same checks.
pub async fn prefixed(
    state: AppState,
    parts: axum::http::request::Parts,
    body: Bytes,
    (prefix, task_id, config_id): (String, String, Option<String>),
) -> Response {
    let caller = match super::auth::rest_caller(&state, &parts.method, &parts.headers).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let has_config = config_id.is_some();
    let path = Path(PathParams {
        tenant: Some(prefix),
        task_id,
        config_id,
    });
    let raw_query = RawQuery(parts.uri.query().map(str::to_string));
    let headers = parts.headers.clone();
    let (state, caller) = (State(state), Extension(caller));
    match (&parts.method, has_config) {
        (&axum::http::Method::POST, false) => {
            create(state, caller, path, headers, raw_query, Ok(body)).await
        }
        (&axum::http::Method::GET, false) => {
            let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
                .unwrap_or_else(|_| Query(HashMap::new()));
            list(state, caller, path, headers, raw_query, query).await
        }
        (&axum::http::Method::GET, true) => get_one(state, caller, path, headers, raw_query).await,
        (&axum::http::Method::DELETE, true) => {
            delete(state, caller, path, headers, raw_query).await
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// Anything else on the public listener.
pub async fn not_found(path: &str) -> Response {
    let message = match super::served_by(path, super::Listener::Admin) {
        Some(hint) => hint,
        None => "no such endpoint: this hub serves JSON-RPC at POST / and push-notification configs at /tasks/{taskId}/pushNotificationConfigs".to_string(),
    };
    let error = A2AError::new(error_code::METHOD_NOT_FOUND, message);
    rest_response(&error, Some(StatusCode::NOT_FOUND))
}

/// The A2A 0.3 HTTP+JSON binding under `/v1/` (proto JSON of `a2a.v1`).
pub fn routes_v03() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tasks/{task_id}/pushNotificationConfigs",
            get(list_v03).post(create_v03),
        )
        .route(
            "/v1/tasks/{task_id}/pushNotificationConfigs/{config_id}",
            get(get_v03).delete(delete_v03),
        )
}

#[derive(serde::Deserialize)]
pub struct PathV03 {
    task_id: String,
    config_id: Option<String>,
}

/// The `/v1/` paths are 0.3; a header naming another version is refused.
async fn check_v03(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    task_id: &str,
) -> Result<(), Response> {
    match negotiate(
        requested_version(headers, query).as_deref(),
        WireVersion::V0_3,
    ) {
        Ok(WireVersion::V0_3) => {}
        Ok(other) => {
            let message = format!(
                "the /v1/ paths are the A2A 0.3 binding; A2A {} is served without the /v1/ prefix",
                other.as_str()
            );
            return Err(rest_response(
                &A2AError::new(error_code::VERSION_NOT_SUPPORTED, message),
                None,
            ));
        }
        Err(unsupported) => {
            return Err(rest_response(
                &A2AError::new(error_code::VERSION_NOT_SUPPORTED, unsupported.to_string()),
                None,
            ));
        }
    }
    if let Some(gateway) = &state.gateway {
        super::gateway_configs::before_config_method(
            gateway,
            headers,
            "",
            task_id,
            Some("/v1"),
            WireVersion::V0_3,
        )
        .await
        .map_err(|error| rest_response(&error, None))?;
    }
    Ok(())
}

async fn create_v03(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathV03>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(response) = check_v03(&state, &headers, query.as_deref(), &path.task_id).await {
        return response;
    }
    if let Some(gateway) = &state.gateway {
        if let Err(error) = super::gateway_configs::room_to_follow(gateway, "", &path.task_id).await
        {
            return super::gateway_configs::follows_full_rest(&error);
        }
    }
    let Ok(body) = body else {
        return rest_response(
            &A2AError::invalid_request("the request body could not be read (too large?)"),
            Some(StatusCode::PAYLOAD_TOO_LARGE),
        );
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return rest_response(
                &A2AError::parse_error(format!("request body is not valid JSON: {e}")),
                None,
            );
        }
    };
    // Both create bodies seen in the wild: {parent, configId, config: {name, pushNotificationConfig}}
    // and the bare {name, pushNotificationConfig}.
    let (outer, named) = if value.get("config").is_some() {
        (Some(&value), &value["config"])
    } else {
        (None, &value)
    };
    let parsed = Params::from_value(Some(named.clone())).and_then(|p| {
        let push = p
            .object("pushNotificationConfig")?
            .ok_or_else(|| InvalidField::new("pushNotificationConfig", "is required"))?;
        let mut input = crate::a2a::v03::config_input(Some(path.task_id.clone()), &push)?;
        if input.id.is_none() {
            input.id = outer
                .and_then(|o| o["configId"].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string);
        }
        Ok(input)
    });
    let input = match parsed {
        Ok(input) => input,
        Err(e) => return field_error(e),
    };
    let config = match push_configs::create(
        &state.configs,
        caller.as_deref(),
        None,
        Some(&path.task_id),
        input,
        WireVersion::V0_3,
    )
    .await
    {
        Ok(config) => config,
        Err(e) => return domain_error(e),
    };
    if let Some(gateway) = &state.gateway {
        let created = super::gateway_configs::CreatedConfig {
            tenant: "",
            task_id: &path.task_id,
            config_id: &config.id,
        };
        if let Err(error) = super::gateway_configs::after_config_created(
            &state,
            gateway,
            &headers,
            created,
            Some("/v1"),
            WireVersion::V0_3,
        )
        .await
        {
            return rest_response(&error, None);
        }
    }
    Json(crate::a2a::v03::render_named_config(config.view())).into_response()
}

async fn get_v03(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathV03>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(response) = check_v03(&state, &headers, query.as_deref(), &path.task_id).await {
        return response;
    }
    let address = config_address(path.task_id, path.config_id);
    match push_configs::get(&state.configs, caller.as_deref(), None, address).await {
        Ok(config) => Json(crate::a2a::v03::render_named_config(config.view())).into_response(),
        Err(e) => domain_error(e),
    }
}

async fn list_v03(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathV03>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = check_v03(&state, &headers, raw_query.as_deref(), &path.task_id).await {
        return response;
    }
    let request = match list_request_from_query(&path.task_id, query) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match push_configs::list(&state.configs, caller.as_deref(), None, request).await {
        Ok(page) => Json(json!({
            "configs": page.configs.iter().map(|c| crate::a2a::v03::render_named_config(c.view())).collect::<Vec<_>>(),
            "nextPageToken": page.next_page_token.unwrap_or_default(),
        }))
        .into_response(),
        Err(e) => domain_error(e),
    }
}

async fn delete_v03(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(path): Path<PathV03>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(response) = check_v03(&state, &headers, query.as_deref(), &path.task_id).await {
        return response;
    }
    let address = config_address(path.task_id, path.config_id);
    match push_configs::delete(&state.configs, caller.as_deref(), None, address).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => domain_error(e),
    }
}
