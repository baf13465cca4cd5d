//! Interop with the official A2A JS SDK (`@a2a-js/sdk@1.3.0`): an agent built with it pushes
//! to the hub after the hub registered itself there.
//!
//! Needs Node.js and `npm install` in `tests/interop/js`; `.ci/run` does that and runs
//! `cargo test --test integration -- --ignored interop_js::` with `A2A_INTEROP_NODE` set.

use crate::common;

#[tokio::test]
#[ignore = "needs Node.js and tests/interop/js/node_modules; run by .ci/run"]
async fn a_js_sdk_agent_pushes_to_the_hub_after_remote_registration() {
    let agent = common::js_sdk_agent();
    // The JS SDK sends Authorization and, when authentication is set, no token header.
    common::agent_pushes_after_remote_registration(agent, "JSONRPC", &[("authorization", true)])
        .await;
}

#[tokio::test]
#[ignore = "needs Node.js, tests/interop/js/node_modules and the Python SDK venv; run by .ci/run"]
async fn the_gateway_makes_a_js_sdk_agents_pushes_reliable() {
    let python = std::env::var("A2A_INTEROP_PYTHON").expect("set A2A_INTEROP_PYTHON (see .ci/run)");
    common::gateway_in_front_of(common::js_sdk_agent(), &python, "JSONRPC").await;
}
