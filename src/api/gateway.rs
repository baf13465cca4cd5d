//! The public listener in gateway mode: the parts of the agent's interface the hub answers or
//! rewrites, and the proxy for everything else.

use std::sync::Arc;

use a2a::{A2AError, JsonRpcId, error_code, methods};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::errors::{invalid_params, to_a2a};
use super::gateway_configs::{unreachable, unreachable_rest};
use crate::a2a::errors::jsonrpc_error;
use crate::a2a::params::Params;
use crate::a2a::push_config::config_input;
use crate::a2a::version::WireVersion;
use crate::gateway::{Gateway, follow, intake, upstream};

fn rpc(id: JsonRpcId, error: A2AError) -> Response {
    (StatusCode::OK, Json(jsonrpc_error(id, &error))).into_response()
}

/// How a send request came: where it goes at the agent, its tenant, its JSON-RPC id (`None`
/// for HTTP+JSON) and its A2A version.
pub struct Sent<'a> {
    pub path_and_query: &'a str,
    pub tenant: &'a str,
    pub jsonrpc_id: Option<JsonRpcId>,
    pub version: WireVersion,
}

/// Where a send request carries its inline push config, by version and binding (0.3 REST uses
/// the proto field name `pushNotification`); the first is where the hub puts its intake.
fn inline_keys(version: WireVersion, jsonrpc: bool) -> &'static [&'static str] {
    match (version, jsonrpc) {
        (WireVersion::V1_0, _) => &[
            "taskPushNotificationConfig",
            "task_push_notification_config",
        ],
        (WireVersion::V0_3, true) => &["pushNotificationConfig"],
        (WireVersion::V0_3, false) => &["pushNotification", "pushNotificationConfig"],
    }
}

/// `SendMessage` / `SendStreamingMessage` (JSON-RPC) and `message:send|stream` (REST): the
/// inline push config is swapped for an intake; the rest goes to the agent unchanged.
pub async fn send(
    state: &AppState,
    gateway: &Arc<Gateway>,
    headers: &HeaderMap,
    mut body: Value,
    how: Sent<'_>,
) -> Response {
    let Sent {
        path_and_query,
        tenant,
        jsonrpc_id,
        version,
    } = how;
    let fail = |error: A2AError| match &jsonrpc_id {
        Some(id) => rpc(id.clone(), error),
        None => {
            let (status, body) = crate::a2a::errors::rest_error(&error);
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                Json(body),
            )
                .into_response()
        }
    };
    let params = if jsonrpc_id.is_some() {
        &mut body["params"]
    } else {
        &mut body
    };
    let inline = params
        .get_mut("configuration")
        .and_then(|c| c.as_object_mut())
        .and_then(|c| {
            inline_keys(version, jsonrpc_id.is_some())
                .iter()
                .find_map(|key| c.remove(*key))
        });
    let mut opened = None;
    let pushes = inline.is_none() || gateway.agent_pushes().await;
    if !pushes {
        if let Err(full) = gateway.followers.room(None).await {
            let error = A2AError::internal(full.to_string());
            return match &jsonrpc_id {
                Some(id) => rpc(id.clone(), error),
                None => super::gateway_configs::follows_full_rest(&error),
            };
        }
    }
    if let Some(inline) = inline {
        let parsed = Params::from_value(Some(inline)).and_then(|p| match version {
            WireVersion::V0_3 => crate::a2a::v03::config_input(None, &p),
            WireVersion::V1_0 => config_input(&p),
        });
        let input = match parsed {
            Ok(input) => input,
            Err(field) => return fail(invalid_params(&field)),
        };
        let intake =
            match intake::open(gateway, headers, tenant, None, Some((input, version))).await {
                Ok(intake) => intake,
                Err(e) => return fail(to_a2a(&e)),
            };
        // An agent that pushes gets the intake instead; one that does not is followed.
        if pushes {
            params["configuration"][inline_keys(version, jsonrpc_id.is_some())[0]] =
                intake.config(None);
        }
        opened = Some(intake.subscription_id);
    }
    let bytes = body.to_string().into_bytes();
    let response =
        match upstream::proxy(gateway, Method::POST, path_and_query, headers, bytes).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "upstream agent unreachable");
                discard_intake(state, opened).await;
                return fail(unreachable(&error.to_string()));
            }
        };
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !response.status().is_success() {
        discard_intake(state, opened).await;
        return response;
    }
    let Some(subscription_id) = opened else {
        return response;
    };
    if streaming {
        // Streams pass through as they stream; the intake binds the task at its first push,
        // or, for an agent that does not push, the stream's first event names it.
        if pushes {
            return response;
        }
        return sniff_task(state, gateway, headers, tenant, subscription_id, response);
    }
    // A non-streaming answer names the task: store the client's config for it now.
    let (parts, answer) = response.into_parts();
    let Ok(answer) = axum::body::to_bytes(answer, 64 * 1024 * 1024).await else {
        return fail(unreachable("the agent's answer could not be read"));
    };
    if let Ok(value) = serde_json::from_slice::<Value>(&answer) {
        let result = if jsonrpc_id.is_some() {
            &value["result"]
        } else {
            &value
        };
        if jsonrpc_id.is_some() && value.get("error").is_some() {
            discard_intake(state, Some(subscription_id.clone())).await;
        }
        let task_id = result["task"]["id"]
            .as_str()
            .or_else(|| result["message"]["taskId"].as_str());
        if let (Some(task_id), Ok(Some(subscription))) =
            (task_id, state.store.get_subscription(subscription_id).await)
        {
            if let Err(e) =
                crate::inbound::intake::bind_client_config(&state.inbound, &subscription, task_id)
                    .await
            {
                tracing::error!(error = %e, "could not store the client's inline config");
            }
            if !pushes {
                follow::follow(gateway, headers, tenant, task_id).await;
            }
        }
    }
    Response::from_parts(parts, axum::body::Body::from(answer))
}

/// Removes the intake opened for a request the agent did not take: no task will ever be
/// pushed to it.
async fn discard_intake(state: &AppState, opened: Option<String>) {
    let Some(subscription_id) = opened else {
        return;
    };
    if let Err(e) = state.store.delete_subscription(subscription_id).await {
        tracing::warn!(error = %e, "cannot remove the intake of a request the agent refused");
    }
}

/// The task id of the first event in a JSON-RPC or REST Server-Sent Events text, if any yet.
fn first_task_id(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|data| {
            let value: Value = serde_json::from_str(data.trim()).ok()?;
            let event = value.get("result").unwrap_or(&value);
            event["task"]["id"]
                .as_str()
                .or(event["statusUpdate"]["taskId"].as_str())
                .or(event["artifactUpdate"]["taskId"].as_str())
                .or(event["message"]["taskId"].as_str())
                .map(str::to_string)
        })
}

/// Passes a streamed answer through untouched while reading its first event's task id, then
/// stores the client's config for that task and follows it.
fn sniff_task(
    state: &AppState,
    gateway: &Arc<Gateway>,
    headers: &HeaderMap,
    tenant: &str,
    subscription_id: String,
    response: Response,
) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = response.into_parts();
    let (state, gateway, headers, tenant) = (
        state.clone(),
        gateway.clone(),
        headers.clone(),
        tenant.to_string(),
    );
    let mut seen = String::new();
    let mut found = false;
    let stream = body.into_data_stream().map(move |chunk| {
        if let (Ok(bytes), false) = (&chunk, found) {
            if seen.len() < 1024 * 1024 {
                seen.push_str(&String::from_utf8_lossy(bytes));
            }
            if let Some(task_id) = first_task_id(&seen) {
                found = true;
                let (state, gateway, headers, tenant, subscription_id) =
                    (state.clone(), gateway.clone(), headers.clone(), tenant.clone(), subscription_id.clone());
                tokio::spawn(async move {
                    if let Ok(Some(subscription)) = state.store.get_subscription(subscription_id).await {
                        if let Err(e) = crate::inbound::intake::bind_client_config(&state.inbound, &subscription, &task_id).await {
                            tracing::error!(error = %e, "could not store the client's inline config");
                        }
                    }
                    follow::follow(&gateway, &headers, &tenant, &task_id).await;
                });
            }
        }
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// Everything the hub does not answer itself goes to the agent; REST message sends get their
/// inline config swapped first.
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let Some(gateway) = state.gateway.clone() else {
        return super::rest::not_found(request.uri().path()).await;
    };
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let limit = state.settings.limits.max_body_bytes;
    let Ok(bytes): Result<Bytes, _> = axum::body::to_bytes(body, limit).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({"error": {"code": 413, "status": "INVALID_ARGUMENT", "message": format!("request body is larger than the limit of {limit} bytes")}}))).into_response();
    };
    if let Some(route) = super::rest::prefixed_config_path(parts.uri.path()) {
        return super::rest::prefixed(state, parts, bytes, route).await;
    }
    if parts.method == Method::POST && !bytes.is_empty() && !super::guard::is_json(&parts.headers) {
        // Every HTTP+JSON body is JSON: anything else is refused as the binding says, before
        // the agent sees it.
        let error = A2AError::new(
            error_code::CONTENT_TYPE_NOT_SUPPORTED,
            "HTTP+JSON request bodies must be sent with Content-Type: application/json",
        );
        return super::errors::rest_response(&error, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let path = parts.uri.path();
    let is_send = parts.method == Method::POST
        && (path.ends_with("/message:send") || path.ends_with("/message:stream"));
    if is_send {
        if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
            // `/v1/message:send` is the 0.3 REST binding.
            let version = if path.starts_with("/v1/") {
                WireVersion::V0_3
            } else {
                WireVersion::V1_0
            };
            let how = Sent {
                path_and_query: &path_and_query,
                tenant: "",
                jsonrpc_id: None,
                version,
            };
            return send(&state, &gateway, &parts.headers, value, how).await;
        }
    }
    upstream::proxy(
        &gateway,
        parts.method,
        &path_and_query,
        &parts.headers,
        bytes.to_vec(),
    )
    .await
    .unwrap_or_else(|error| unreachable_rest(&error))
}

/// JSON-RPC in gateway mode for the methods the hub does not answer itself.
pub async fn jsonrpc(
    state: &AppState,
    gateway: &Arc<Gateway>,
    headers: &HeaderMap,
    raw: Bytes,
    request: Value,
    id: JsonRpcId,
    method: &str,
) -> Response {
    if method == "message/send" || method == "message/stream" {
        let tenant = request["params"]["tenant"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let how = Sent {
            path_and_query: "",
            tenant: &tenant,
            jsonrpc_id: Some(id),
            version: WireVersion::V0_3,
        };
        return send(state, gateway, headers, request, how).await;
    }
    if method == methods::SEND_MESSAGE || method == methods::SEND_STREAMING_MESSAGE {
        let tenant = request["params"]["tenant"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let how = Sent {
            path_and_query: "",
            tenant: &tenant,
            jsonrpc_id: Some(id),
            version: WireVersion::V1_0,
        };
        return send(state, gateway, headers, request, how).await;
    }
    match upstream::proxy(gateway, Method::POST, "", headers, raw.to_vec()).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, "upstream agent unreachable");
            rpc(id, unreachable(&error.to_string()))
        }
    }
}
