//! The MCP bridge (docs/MCP.md): an MCP server on the admin listener at `/mcp` (Streamable
//! HTTP, the official Rust SDK `rmcp`) through which an LLM agent delegates tasks to remote A2A
//! agents and follows them as the agents push: the hub is the tasks' webhook, verifies every
//! push (`crate::inbound`), and answers the tools from what it accepted. The tools and the
//! resources are `tools.rs`; delegating itself is `crate::inbound::delegations`.
//!
//! Everything a peer agent wrote is untrusted input to a model: tool results name it as such,
//! and summaries quote at most a bounded, fenced excerpt of it.

mod tools;

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::inbound::Inbound;

pub use tools::Bridge;

/// The `/mcp` endpoint. It sits behind the admin guard (`Host`, the admin token); here it
/// refuses any request that carries an `Origin` (no web page may drive it), bounds request
/// bodies, and ends its streams when the hub shuts down.
pub fn service(
    inbound: Arc<Inbound>,
    max_body_bytes: usize,
    shutdown: CancellationToken,
) -> StreamableHttpService<Bridge, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        // The admin guard checks `Host` against the names the hub answers to.
        .disable_allowed_hosts()
        .enforce_origin_validation()
        .with_max_request_body_bytes(max_body_bytes)
        .with_cancellation_token(shutdown.child_token());
    StreamableHttpService::new(
        move || Ok(Bridge::new(inbound.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}
