//! The A2A JSON-RPC binding at `POST /`: the envelope (parse, validate, dispatch) and the
//! four push-config methods of A2A 1.0.

use a2a::{A2AError, JsonRpcId, JsonRpcResponse, error_code, methods};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::errors::{invalid_params, to_a2a};
use super::requested_version;
use crate::a2a::errors::jsonrpc_error;
use crate::a2a::params::Params;
use crate::a2a::push_config::{
    ConfigAddress, config_address, config_input, list_request, render, render_list,
};
use crate::a2a::v03;
use crate::a2a::version::{WireVersion, negotiate, of_method};
use crate::domain::{DomainError, push_configs};

/// The push-config methods the hub answers itself, gateway or not.
const PUSH_CONFIG_METHODS: [&str; 4] = [
    methods::CREATE_PUSH_CONFIG,
    methods::GET_PUSH_CONFIG,
    methods::LIST_PUSH_CONFIGS,
    methods::DELETE_PUSH_CONFIG,
];

const V03_SET: &str = "tasks/pushNotificationConfig/set";
const V03_GET: &str = "tasks/pushNotificationConfig/get";
const V03_LIST: &str = "tasks/pushNotificationConfig/list";
const V03_DELETE: &str = "tasks/pushNotificationConfig/delete";
/// The A2A 0.3 push-config methods.
const V03_PUSH_CONFIG_METHODS: [&str; 4] = [V03_SET, V03_GET, V03_LIST, V03_DELETE];

/// A2A methods that exist but that this hub answers only in gateway mode.
const AGENT_METHODS: [&str; 7] = [
    methods::SEND_MESSAGE,
    methods::SEND_STREAMING_MESSAGE,
    methods::GET_TASK,
    methods::LIST_TASKS,
    methods::CANCEL_TASK,
    methods::SUBSCRIBE_TO_TASK,
    methods::GET_EXTENDED_AGENT_CARD,
];

fn reply(status: StatusCode, response: JsonRpcResponse) -> Response {
    (status, Json(response)).into_response()
}

fn fail(id: JsonRpcId, error: A2AError) -> Response {
    reply(StatusCode::OK, jsonrpc_error(id, &error))
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(reason) = super::guard::check_host(&state.settings, &state.public_base_url, &headers)
    {
        return reply(
            StatusCode::BAD_REQUEST,
            jsonrpc_error(JsonRpcId::Null, &A2AError::invalid_request(reason)),
        );
    }
    if !super::guard::is_json(&headers) {
        let error = A2AError::new(
            error_code::CONTENT_TYPE_NOT_SUPPORTED,
            "JSON-RPC requests must be sent with Content-Type: application/json",
        );
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            jsonrpc_error(JsonRpcId::Null, &error),
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let error = A2AError::invalid_request(format!(
                "request body is larger than the limit of {} bytes",
                state.settings.limits.max_body_bytes
            ));
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                jsonrpc_error(JsonRpcId::Null, &error),
            );
        }
        Err(rejection) => {
            return fail(
                JsonRpcId::Null,
                A2AError::invalid_request(rejection.body_text()),
            );
        }
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return fail(
                JsonRpcId::Null,
                A2AError::parse_error(format!("request is not valid JSON: {e}")),
            );
        }
    };
    let (id, method, params) = match envelope(request) {
        Ok(parts) => parts,
        Err((id, error)) => return fail(id, error),
    };
    let requested = requested_version(&headers, query.as_deref());
    let version = match negotiate(requested.as_deref(), of_method(&method)) {
        Ok(version) => version,
        Err(unsupported) => {
            return fail(
                id,
                A2AError::new(error_code::VERSION_NOT_SUPPORTED, unsupported.to_string()),
            );
        }
    };
    if of_method(&method) != version {
        return fail(
            id,
            A2AError::new(
                error_code::METHOD_NOT_FOUND,
                format!(
                    "{method} is an A2A {} method; the request asks for A2A {}",
                    of_method(&method).as_str(),
                    version.as_str()
                ),
            ),
        );
    }
    if let Some(gateway) = state.gateway.clone() {
        if !PUSH_CONFIG_METHODS.contains(&method.as_str())
            && !V03_PUSH_CONFIG_METHODS.contains(&method.as_str())
        {
            let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            return super::gateway::jsonrpc(&state, &gateway, &headers, body, request, id, &method)
                .await;
        }
        let address = Params::from_value(params.clone()).ok();
        let task_field = if version == WireVersion::V0_3 && method != V03_SET {
            "id"
        } else {
            "taskId"
        };
        let task_id = address
            .as_ref()
            .and_then(|p| p.string(task_field).ok().flatten());
        let tenant = address
            .as_ref()
            .and_then(|p| p.string("tenant").ok().flatten())
            .unwrap_or_default();
        let caller = match super::auth::authenticate(&state, &headers).await {
            Ok(caller) => caller,
            Err(why) => return super::auth::jsonrpc_refusal(&state, id, &why),
        };
        if let (methods::CREATE_PUSH_CONFIG | V03_SET, Some(task_id)) = (method.as_str(), &task_id)
        {
            if let Err(error) =
                super::gateway_configs::room_to_follow(&gateway, &tenant, task_id).await
            {
                return fail(id, error);
            }
        }
        if let Some(task_id) = &task_id {
            if let Err(error) = super::gateway_configs::before_config_method(
                &gateway, &headers, &tenant, task_id, None, version,
            )
            .await
            {
                return fail(id, error);
            }
        }
        let result = match dispatch(&state, caller.as_deref(), &method, params, version).await {
            Ok(result) => result,
            Err(error) => return fail(id, error),
        };
        // The created config's id, from the answer: flat in 1.0, nested in 0.3.
        let config_id = result
            .get("id")
            .or_else(|| result.pointer("/pushNotificationConfig/id"))
            .and_then(Value::as_str);
        if let (methods::CREATE_PUSH_CONFIG | V03_SET, Some(task_id), Some(config_id)) =
            (method.as_str(), &task_id, config_id)
        {
            let created = super::gateway_configs::CreatedConfig {
                tenant: &tenant,
                task_id,
                config_id,
            };
            if let Err(error) = super::gateway_configs::after_config_created(
                &state, &gateway, &headers, created, None, version,
            )
            .await
            {
                return fail(id, error);
            }
        }
        return reply(StatusCode::OK, JsonRpcResponse::success(id, result));
    }
    let caller = match super::auth::authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(why) => return super::auth::jsonrpc_refusal(&state, id, &why),
    };
    match dispatch(&state, caller.as_deref(), &method, params, version).await {
        Ok(result) => reply(StatusCode::OK, JsonRpcResponse::success(id, result)),
        Err(error) => fail(id, error),
    }
}

/// Checks the JSON-RPC 2.0 envelope and splits it into id, method and params.
fn envelope(request: Value) -> Result<(JsonRpcId, String, Option<Value>), (JsonRpcId, A2AError)> {
    let invalid =
        |id: JsonRpcId, message: &str| (id, A2AError::invalid_request(message.to_string()));
    let mut object = match request {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(invalid(
                JsonRpcId::Null,
                "batch requests are not supported; send one request per HTTP call",
            ));
        }
        _ => {
            return Err(invalid(
                JsonRpcId::Null,
                "a JSON-RPC request must be a JSON object",
            ));
        }
    };
    let id = match object.remove("id") {
        Some(Value::String(s)) => JsonRpcId::String(s),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => JsonRpcId::Number(n),
            None => {
                return Err(invalid(
                    JsonRpcId::Null,
                    "`id` must be a string or a whole number",
                ));
            }
        },
        Some(Value::Null) => JsonRpcId::Null,
        None => {
            return Err(invalid(
                JsonRpcId::Null,
                "`id` is required (notifications are not supported)",
            ));
        }
        Some(_) => {
            return Err(invalid(
                JsonRpcId::Null,
                "`id` must be a string or a whole number",
            ));
        }
    };
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(invalid(id, "`jsonrpc` must be \"2.0\""));
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => return Err(invalid(id, "`method` must be a string")),
        None => return Err(invalid(id, "`method` is required")),
    };
    Ok((id, method, object.remove("params")))
}

async fn dispatch(
    state: &AppState,
    caller: Option<&str>,
    method: &str,
    params: Option<Value>,
    version: WireVersion,
) -> Result<Value, A2AError> {
    if version == WireVersion::V0_3 {
        return dispatch_v03(state, caller, method, params).await;
    }
    let params = Params::from_value(params).map_err(|e| invalid_params(&e))?;
    let domain = |e: DomainError| to_a2a(&e);
    let field = |e| invalid_params(&e);
    match method {
        methods::CREATE_PUSH_CONFIG => {
            let input = config_input(&params).map_err(field)?;
            let config = push_configs::create(&state.configs, caller, None, None, input, version)
                .await
                .map_err(domain)?;
            Ok(json!(render(config.view())))
        }
        methods::GET_PUSH_CONFIG => {
            let address = config_address(&params).map_err(field)?;
            let config = push_configs::get(&state.configs, caller, None, address)
                .await
                .map_err(domain)?;
            Ok(json!(render(config.view())))
        }
        methods::LIST_PUSH_CONFIGS => {
            let request = list_request(&params).map_err(field)?;
            let page = push_configs::list(&state.configs, caller, None, request)
                .await
                .map_err(domain)?;
            Ok(render_list(
                page.configs.iter().map(|c| c.view()),
                page.next_page_token.as_deref(),
            ))
        }
        methods::DELETE_PUSH_CONFIG => {
            let address = config_address(&params).map_err(field)?;
            push_configs::delete(&state.configs, caller, None, address)
                .await
                .map_err(domain)?;
            Ok(Value::Null)
        }
        other if AGENT_METHODS.contains(&other) => Err(A2AError::unsupported_operation(format!(
            "{other} is an agent method; this hub serves only the push-notification config methods unless it runs in gateway mode in front of an agent"
        ))),
        other => Err(A2AError::method_not_found(other)),
    }
}

/// The A2A 0.3 push-config methods, with their 0.3 params and results.
async fn dispatch_v03(
    state: &AppState,
    caller: Option<&str>,
    method: &str,
    params: Option<Value>,
) -> Result<Value, A2AError> {
    let params = Params::from_value(params).map_err(|e| invalid_params(&e))?;
    let domain = |e: DomainError| to_a2a(&e);
    let field = |e| invalid_params(&e);
    let tenant = params.string("tenant").map_err(field)?;
    match method {
        V03_SET => {
            let task_id = params.required_string("taskId").map_err(field)?;
            let config = params
                .object("pushNotificationConfig")
                .map_err(field)?
                .ok_or_else(|| {
                    invalid_params(&crate::a2a::params::InvalidField::new(
                        "pushNotificationConfig",
                        "is required",
                    ))
                })?;
            let mut input = v03::config_input(Some(task_id), &config).map_err(field)?;
            input.tenant = tenant;
            let config =
                push_configs::create(&state.configs, caller, None, None, input, WireVersion::V0_3)
                    .await
                    .map_err(domain)?;
            Ok(v03::render_task_config(config.view()))
        }
        V03_GET => {
            let task_id = params.required_string("id").map_err(field)?;
            let config = match params.string("pushNotificationConfigId").map_err(field)? {
                Some(config_id) => {
                    let address = ConfigAddress {
                        tenant,
                        task_id,
                        id: config_id,
                    };
                    push_configs::get(&state.configs, caller, None, address)
                        .await
                        .map_err(domain)?
                }
                None => {
                    // Without a config id: the config named like the task, else the first.
                    let all = list_all(state, caller, tenant, &task_id)
                        .await
                        .map_err(domain)?;
                    let chosen = all
                        .iter()
                        .find(|c| c.id == task_id)
                        .or(all.first())
                        .cloned();
                    chosen.ok_or_else(|| {
                        A2AError::new(
                            error_code::TASK_NOT_FOUND,
                            format!("task {task_id:?} has no push notification config"),
                        )
                    })?
                }
            };
            Ok(v03::render_task_config(config.view()))
        }
        V03_LIST => {
            let task_id = params.required_string("id").map_err(field)?;
            let all = list_all(state, caller, tenant, &task_id)
                .await
                .map_err(domain)?;
            Ok(Value::Array(
                all.iter()
                    .map(|c| v03::render_task_config(c.view()))
                    .collect(),
            ))
        }
        V03_DELETE => {
            let task_id = params.required_string("id").map_err(field)?;
            let config_id = params
                .required_string("pushNotificationConfigId")
                .map_err(field)?;
            push_configs::delete(
                &state.configs,
                caller,
                None,
                ConfigAddress {
                    tenant,
                    task_id,
                    id: config_id,
                },
            )
            .await
            .map_err(domain)?;
            Ok(Value::Null)
        }
        "message/send" | "message/stream" | "tasks/get" | "tasks/cancel" | "tasks/resubscribe" => {
            Err(A2AError::unsupported_operation(format!(
                "{method} is an agent method; this hub serves only the push-notification config methods unless it runs in gateway mode in front of an agent"
            )))
        }
        other => Err(A2AError::method_not_found(other)),
    }
}

/// Every config of a task, page after page (0.3 `list` has no pagination).
async fn list_all(
    state: &AppState,
    caller: Option<&str>,
    tenant: Option<String>,
    task_id: &str,
) -> Result<Vec<crate::store::ConfigRecord>, DomainError> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let request = crate::a2a::push_config::ListRequest {
            tenant: tenant.clone(),
            task_id: task_id.to_string(),
            page_size: Some(push_configs::MAX_PAGE_SIZE as i64),
            page_token: token,
        };
        let page = push_configs::list(&state.configs, caller, None, request).await?;
        all.extend(page.configs);
        match page.next_page_token {
            Some(next) if all.len() < 10_000 => token = Some(next),
            _ => return Ok(all),
        }
    }
}
