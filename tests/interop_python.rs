//! Interop with the official A2A Python SDK (`a2a-sdk==1.3.0`): its client creates, gets,
//! lists and deletes configs on a running hub over JSON-RPC and HTTP+JSON.
//!
//! Needs a Python with the SDK installed; `.ci/run` builds that venv and runs
//! `cargo test --test interop_python -- --ignored` with `A2A_INTEROP_PYTHON` pointing at it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::TestHub;

fn python() -> String {
    std::env::var("A2A_INTEROP_PYTHON")
        .expect("set A2A_INTEROP_PYTHON to a Python that has a2a-sdk==1.3.0 (see .ci/run)")
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn the_python_sdk_client_manages_configs_over_both_bindings() {
    let hub = TestHub::start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/push_config_client.py"
    );
    let run = tokio::process::Command::new(python())
        .arg(script)
        .arg(&hub.public)
        .arg("http://127.0.0.1:9/hook")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Python client finishes within 120s")
        .expect("the Python client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("interop: all checks passed"), "{stdout}");
    hub.stop().await;
}
