//! HTTP routers: the public listener (A2A JSON-RPC and HTTP+JSON push-config methods) and
//! the admin listener (event API, task view, health). Handlers stay thin: extract, call a
//! `crate::domain` function, map the result to the binding's answer.

// Early returns of a ready `Response` are the axum idiom; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

mod admin;
mod auth;
mod card;
mod console;
mod errors;
mod gateway;
mod gateway_configs;
mod guard;
mod inbound;
mod jsonrpc;
mod rest;
mod sse;
mod state;

pub use state::{AppState, Shared};

use axum::Router;
use axum::http::HeaderMap;
use tower_http::trace::TraceLayer;

/// Routes of the public listener.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .route("/", axum::routing::post(jsonrpc::handle))
        .route("/.well-known/jwks.json", axum::routing::get(jwks))
        .route(
            "/inbound/{id}",
            axum::routing::post(inbound::receive).get(inbound::answer_challenge),
        )
        .route(
            "/.well-known/agent-card.json",
            axum::routing::get(card::agent_card),
        )
        .merge(rest::routes().merge(rest::routes_v03()).route_layer(
            axum::middleware::from_fn_with_state(state.clone(), auth::rest_guard),
        ))
        .fallback(gateway::fallback)
        .with_state(state)
        .layer(TraceLayer::new_for_http())
}

/// The hub's public signing keys. Clients may cache it briefly; after a rotation the old keys
/// stay listed for the grace period, so a cached copy keeps verifying.
async fn jwks(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let document = state.keyring.current().jwks(crate::store::now_ms());
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=60")],
        axum::Json(document),
    )
        .into_response()
}

/// The hub's two listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

/// For a path this listener does not serve but `other` does, a message saying so: a request
/// sent to the wrong port is the commonest first mistake.
pub fn served_by(path: &str, other: Listener) -> Option<String> {
    let admin_path = path.starts_with("/api/")
        || path.starts_with("/console")
        || matches!(path, "/metrics" | "/healthz" | "/readyz");
    let public_path = path == "/"
        || ["/inbound/", "/.well-known/", "/tasks/", "/v1/", "/message:"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
    match other {
        Listener::Admin if admin_path => Some(format!(
            "{path} is served by the admin listener (server.admin_listen, 127.0.0.1:8081 by default), not this public one"
        )),
        Listener::Public if public_path => Some(format!(
            "{path} is served by the public listener (server.public_listen, 127.0.0.1:8080 by default), not this admin one"
        )),
        _ => None,
    }
}

/// Routes of the admin listener.
pub fn admin_router(state: AppState) -> Router {
    admin::routes(state).layer(TraceLayer::new_for_http())
}

/// The `A2A-Version` a request asks for: the header, else the `A2A-Version` query parameter.
fn requested_version<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<String> {
    if let Some(value) = headers.get("a2a-version") {
        return Some(value.to_str().unwrap_or("<not text>").to_string());
    }
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.eq_ignore_ascii_case("a2a-version"))
        .map(|(_, value)| value.to_string())
}
