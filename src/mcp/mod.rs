//! The MCP bridge (docs/MCP.md): an MCP server on the admin listener at `/mcp` (Streamable
//! HTTP, the official Rust SDK `rmcp`) through which an LLM agent delegates tasks to remote A2A
//! agents and follows them as the agents push: the hub is the tasks' webhook, verifies every
//! push (`crate::inbound`), and answers the tools from what it accepted. The tools and the
//! resources are `tools.rs`; delegating itself is `crate::inbound::delegations`.
//!
//! Everything a peer agent wrote is untrusted input to a model: tool results name it as such,
//! and summaries quote at most a bounded, fenced excerpt of it.

pub mod stdio;
mod tools;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::inbound::Inbound;

pub use tools::Bridge;

/// The `/mcp` endpoint. It sits behind the admin guard (`Host` is one the hub answers to, the
/// admin token); here it refuses a request whose `Origin` is another site (a web page may
/// not drive it), bounds request bodies, and ends its streams when the hub shuts down.
pub fn endpoint(
    inbound: Arc<Inbound>,
    max_body_bytes: usize,
    shutdown: CancellationToken,
) -> axum::Router {
    let config = StreamableHttpServerConfig::default()
        // The admin guard checks `Host`; `same_origin` checks `Origin` against it.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(max_body_bytes)
        .with_cancellation_token(shutdown.child_token());
    let service: StreamableHttpService<Bridge, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Bridge::new(inbound.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn(same_origin))
}

/// An `Origin`, when a request has one, must be the endpoint's own (`http(s)://` + `Host`):
/// MCP clients send none, a browser sends the page's, and only the hub's own pages are
/// allowed to call.
async fn same_origin(request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let own = origin.to_str().ok().is_some_and(|origin| {
            ["http://", "https://"]
                .iter()
                .any(|scheme| origin.strip_prefix(scheme) == Some(host))
        });
        if !own {
            return (
                StatusCode::FORBIDDEN,
                "the MCP endpoint refuses requests from other origins (Origin must be this endpoint's own)",
            )
                .into_response();
        }
    }
    next.run(request).await
}
