//! The MCP bridge at `/mcp` on the admin listener: its guards over plain HTTP, and the
//! official MCP Python SDK (`mcp` on PyPI) as its client, delegating to an agent built on the
//! official A2A Python SDK (`tests/interop/python/mcp_client.py`), in both protocol revisions
//! a client may negotiate.
//!
//! The SDK tests need the Python venv (`.ci/run` builds it) and run with
//! `cargo test --test integration -- --ignored mcp::` and `A2A_INTEROP_PYTHON` set.

use crate::common;

use std::time::Duration;

use common::TestHub;
use reqwest::StatusCode;

const ADMIN_TOKEN: &str = "mcp-admin-token-7b2d";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;

async fn initialize(hub: &TestHub, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = hub
        .http
        .post(format!("{}/mcp", hub.admin))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_mcp_endpoint_needs_the_admin_token_its_host_and_no_origin() {
    let hub = TestHub::start_with(|s| {
        s.server.admin_token = a2a_push_hub::config::Secret::new(ADMIN_TOKEN);
    })
    .await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");

    let answered = initialize(&hub, &[("authorization", &bearer)]).await;
    assert_eq!(answered.status(), StatusCode::OK);
    let body = answered.text().await.unwrap();
    assert!(
        body.contains(r#""serverInfo":{"name":"a2a-push-hub""#),
        "{body}"
    );
    assert!(
        body.contains("untrusted"),
        "the instructions say how to read agent text: {body}"
    );

    let no_token = initialize(&hub, &[]).await;
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let wrong_token = initialize(&hub, &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong_token.status(), StatusCode::UNAUTHORIZED);
    // A web page (any Origin) may not drive it, even with the token.
    let from_a_page = initialize(
        &hub,
        &[
            ("authorization", &bearer),
            ("origin", "http://127.0.0.1:1234"),
        ],
    )
    .await;
    assert_eq!(from_a_page.status(), StatusCode::FORBIDDEN);
    // DNS rebinding: a foreign Host is refused.
    let rebound = initialize(
        &hub,
        &[("authorization", &bearer), ("host", "attacker.example")],
    )
    .await;
    assert_eq!(rebound.status(), StatusCode::BAD_REQUEST);
    hub.stop().await;
}

/// Runs the Python SDK client against a hub in front of nothing, delegating to the Python
/// A2A SDK agent; `mode` is `legacy` (initialize, 2025-11-25) or `auto` (discovery, which
/// settles on 2026-07-28).
async fn python_client(mode: &str, admin_token: Option<&str>) {
    let hub = TestHub::start_with(|s| {
        if let Some(token) = admin_token {
            s.server.admin_token = a2a_push_hub::config::Secret::new(token);
        }
    })
    .await;
    let (_agent, port) = common::start_listening(common::python_sdk_agent()).await;
    let python = std::env::var("A2A_INTEROP_PYTHON")
        .expect("set A2A_INTEROP_PYTHON to the venv's python (see .ci/run)");
    let mut client = tokio::process::Command::new(python);
    client
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/python/mcp_client.py"
        ))
        .arg(format!("{}/mcp", hub.admin))
        .arg(admin_token.unwrap_or_default())
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(mode);
    common::run_client(client, "the MCP client", Duration::from_secs(240)).await;
    hub.stop().await;
}

#[tokio::test]
#[ignore = "needs the Python venv with mcp and a2a-sdk; run by .ci/run"]
async fn the_python_mcp_sdk_delegates_waits_and_replies_over_the_initialize_handshake() {
    python_client("legacy", None).await;
}

#[tokio::test]
#[ignore = "needs the Python venv with mcp and a2a-sdk; run by .ci/run"]
async fn the_python_mcp_sdk_delegates_waits_and_replies_over_2026_07_28_with_the_admin_token() {
    python_client("auto", Some(ADMIN_TOKEN)).await;
}

/// The scenarios of the MCP conformance suite that test a server as such. The suite's other
/// server scenarios call the fixtures of its reference server (tools such as
/// `test_simple_text`, `test://` resources, prompts, sampling and elicitation round trips),
/// which a bridge with its own tools does not have; docs/MCP.md lists them.
const CONFORMANCE_SCENARIOS: [&str; 6] = [
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "resources-list",
    "dns-rebinding-protection",
];

#[tokio::test]
#[ignore = "needs the MCP conformance suite from npm; run by .ci/run"]
async fn the_mcp_conformance_suite_passes_its_server_scenarios() {
    let node = std::env::var("A2A_INTEROP_NODE").expect("set A2A_INTEROP_NODE (see .ci/run)");
    let suite = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/mcp-conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"
    );
    let hub = TestHub::start().await;
    for scenario in CONFORMANCE_SCENARIOS {
        let mut suite_run = tokio::process::Command::new(&node);
        suite_run
            .arg(suite)
            .args(["server", "--url", &format!("{}/mcp", hub.admin)])
            .args(["--scenario", scenario]);
        let what = format!("conformance scenario {scenario}");
        common::run_client(suite_run, &what, Duration::from_secs(120)).await;
    }
    hub.stop().await;
}

#[tokio::test]
#[ignore = "needs the Python venv with mcp and a2a-sdk; run by .ci/run"]
async fn the_stdio_face_notifies_the_session_of_each_push_as_a_channel_event() {
    let hub = TestHub::start_with(|s| {
        s.server.admin_token = a2a_push_hub::config::Secret::new(ADMIN_TOKEN);
    })
    .await;
    let (_agent, port) = common::start_listening(common::python_sdk_agent()).await;
    let python = std::env::var("A2A_INTEROP_PYTHON")
        .expect("set A2A_INTEROP_PYTHON to the venv's python (see .ci/run)");
    let mut host = tokio::process::Command::new(python);
    host.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/mcp_stdio_client.py"
    ))
    .arg(env!("CARGO_BIN_EXE_a2a-push-hub"))
    .arg(&hub.admin)
    .arg(ADMIN_TOKEN)
    .arg(format!("http://127.0.0.1:{port}/"));
    common::run_client(host, "the MCP host", Duration::from_secs(240)).await;
    hub.stop().await;
}
