//! Interop with the last 0.3 release of the official Python SDK (`a2a-sdk==0.3.26`): its
//! client manages configs over 0.3 JSON-RPC and 0.3 REST, and the deliveries a 0.3 webhook
//! gets parse with its own 0.3 `Task` model and carry its token.
//!
//! Needs its own venv; `.ci/run` builds it and sets `A2A_INTEROP_PYTHON03`.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::TestHub;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

fn python03() -> String {
    std::env::var("A2A_INTEROP_PYTHON03")
        .expect("set A2A_INTEROP_PYTHON03 to a Python with a2a-sdk==0.3.26 (see .ci/run)")
}

#[tokio::test]
#[ignore = "needs the a2a-sdk 0.3 venv; run by .ci/run"]
async fn the_03_sdk_manages_configs_and_its_webhook_parses_every_delivery() {
    let receiver_script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python03/task_receiver.py"
    );
    let mut receiver = tokio::process::Command::new(python03())
        .args([receiver_script, "tok-03"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the receiver answers")
            .unwrap()
            .expect("the receiver runs")
    };
    let port: u16 = next_line()
        .await
        .strip_prefix("LISTENING ")
        .unwrap()
        .parse()
        .unwrap();

    let hub = TestHub::start_with(common::fast_delivery).await;
    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python03/push_config_client.py"
    );
    let run = tokio::process::Command::new(python03())
        .args([client, &hub.public, &format!("http://127.0.0.1:{port}")])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("interop-03: all checks passed"));
    let tasks: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("TASK "))
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(tasks.len(), 2);

    for task in &tasks {
        for state in ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"] {
            hub.publish(json!({"statusUpdate": {"taskId": task, "contextId": "c", "status": {"state": state}}})).await;
        }
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let record: Value = serde_json::from_str(&next_line().await).unwrap();
        assert_eq!(
            record["ok"], true,
            "the 0.3 webhook refused a delivery: {record}"
        );
        seen.push((
            record["path"].as_str().unwrap().to_string(),
            record["state"].as_str().unwrap().to_string(),
        ));
    }
    for binding in ["jsonrpc", "rest"] {
        let states: Vec<&str> = seen
            .iter()
            .filter(|(p, _)| p == &format!("/deliver-{binding}"))
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(states, ["working", "completed"], "{binding}: {seen:?}");
    }
    hub.stop().await;
}
