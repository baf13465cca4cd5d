//! Talking to the agent behind the gateway: proxying requests as they are (streams
//! included), and the hub's own calls made with the caller's credentials (`GetTask`, and
//! registering the hub's intake as the task's webhook).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::Gateway;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and those the client recomputes.
const NOT_FORWARDED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "proxy-authorization",
];

fn forwarded(name: &HeaderName) -> bool {
    !NOT_FORWARDED.contains(&name.as_str())
}

/// Why the agent could not be used; the edge maps it to the binding's error.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream agent is unreachable: {0}")]
    Unreachable(String),
}

/// Sends the request to the agent and streams its answer back, status and headers intact.
pub async fn proxy(
    gateway: &Gateway,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Response, UpstreamError> {
    let url = gateway.url_for(path_and_query);
    let checked = gateway
        .client
        .check_destination(&url)
        .map_err(|refusal| UpstreamError::Unreachable(format!("{url} is refused: it {refusal}")))?;
    let mut request = gateway.client.http().request(method, checked).body(body);
    for (name, value) in headers.iter().filter(|(name, _)| forwarded(name)) {
        request = request.header(name, value);
    }
    let started = std::time::Instant::now();
    let sent = request.send().await;
    let metrics = &gateway.services.metrics;
    metrics.upstream_request(
        sent.as_ref().ok().map(|r| r.status().as_u16()),
        started.elapsed(),
    );
    let response =
        sent.map_err(|e| UpstreamError::Unreachable(crate::delivery::client::error_chain(&e)))?;
    let mut out = Response::builder().status(response.status());
    for (name, value) in response
        .headers()
        .iter()
        .filter(|(name, _)| forwarded(name))
    {
        out = out.header(name, value);
    }
    out.body(Body::from_stream(response.bytes_stream()))
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))
}

/// Counts a call the hub made to the agent (`a2a_push_hub_gateway_upstream_*`).
fn observed<E: std::fmt::Display>(
    gateway: &Gateway,
    started: std::time::Instant,
    answer: Result<crate::delivery::client::JsonAnswer, E>,
) -> Result<crate::delivery::client::JsonAnswer, UpstreamError> {
    let status = answer.as_ref().ok().map(|a| a.status);
    gateway
        .services
        .metrics
        .upstream_request(status, started.elapsed());
    answer.map_err(|e| UpstreamError::Unreachable(e.to_string()))
}

/// The caller's end-to-end headers, for calls the hub makes on the caller's behalf, with
/// `A2A-Version: 1.0` unless the caller named a version.
fn caller_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut owned: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            forwarded(name) && name.as_str() != "content-type" && name.as_str() != "accept"
        })
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect();
    if !owned.iter().any(|(n, _)| n == "a2a-version") {
        owned.push(("a2a-version".to_string(), "1.0".to_string()));
    }
    owned
}

/// Calls a JSON-RPC method at the agent with the caller's credentials; `Ok(Err(error))` when
/// the agent answered with a JSON-RPC error.
pub async fn call(
    gateway: &Gateway,
    headers: &HeaderMap,
    method: &str,
    params: Value,
) -> Result<Result<Value, Value>, UpstreamError> {
    let body = json!({"jsonrpc": "2.0", "id": uuid::Uuid::new_v4().to_string(), "method": method, "params": params});
    let owned = caller_headers(headers);
    let all: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let started = std::time::Instant::now();
    let answer = gateway
        .client
        .exchange_json(
            reqwest::Method::POST,
            gateway.upstream.as_str(),
            &all,
            Some(&body),
            8 * 1024 * 1024,
        )
        .await;
    let answer = observed(gateway, started, answer)?;
    if let Some(error) = answer.body.get("error") {
        return Ok(Err(error.clone()));
    }
    Ok(Ok(answer
        .body
        .get("result")
        .cloned()
        .unwrap_or(Value::Null)))
}

/// The task as the agent shows it to this caller, or `None` when it does not exist for them.
pub async fn get_task(
    gateway: &Gateway,
    headers: &HeaderMap,
    tenant: &str,
    task_id: &str,
    version: crate::a2a::version::WireVersion,
) -> Result<Option<Value>, UpstreamError> {
    let mut params = json!({"id": task_id, "historyLength": 0});
    if !tenant.is_empty() {
        params["tenant"] = json!(tenant);
    }
    let method = match version {
        crate::a2a::version::WireVersion::V0_3 => "tasks/get",
        crate::a2a::version::WireVersion::V1_0 => "GetTask",
    };
    Ok(call(gateway, headers, method, params).await?.ok())
}

/// The status code for a proxy failure: the agent could not be reached.
pub fn unreachable_status() -> StatusCode {
    StatusCode::BAD_GATEWAY
}

/// The task over the agent's HTTP+JSON binding at `prefix` (the interface's path), or `None`.
pub async fn get_task_rest(
    gateway: &Gateway,
    headers: &HeaderMap,
    prefix: &str,
    task_id: &str,
) -> Result<Option<Value>, UpstreamError> {
    let url = gateway.url_for(&format!("{prefix}/tasks/{task_id}"));
    let owned = caller_headers(headers);
    let all: Vec<(&str, &str)> = owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let started = std::time::Instant::now();
    let answer = gateway
        .client
        .exchange_json(reqwest::Method::GET, &url, &all, None, 8 * 1024 * 1024)
        .await;
    let answer = observed(gateway, started, answer)?;
    Ok((200..300).contains(&answer.status).then_some(answer.body))
}
