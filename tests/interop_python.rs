//! Interop with the official A2A Python SDK (`a2a-sdk==1.3.0`): its client creates, gets,
//! lists and deletes configs on a running hub over JSON-RPC and HTTP+JSON, and a receiver
//! built on it parses every delivery with the SDK's own parser.
//!
//! Needs a Python with the SDK installed; `.ci/run` builds that venv and runs
//! `cargo test --test integration -- --ignored interop_python::` with `A2A_INTEROP_PYTHON` pointing at it.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::TestHub;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

fn python() -> String {
    std::env::var("A2A_INTEROP_PYTHON")
        .expect("set A2A_INTEROP_PYTHON to a Python that has a2a-sdk==1.3.0 (see .ci/run)")
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn the_python_sdk_client_manages_configs_over_both_bindings() {
    let hub = TestHub::start().await;
    run_push_config_client(&hub, &[]).await;
    hub.stop().await;
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn the_python_sdk_client_manages_configs_with_an_api_key_and_sees_only_its_own_tasks() {
    let hub = TestHub::start_with(|s| {
        s.server.public_auth = a2a_push_hub::config::PublicAuth::ApiKeys;
        s.server.api_keys = [("alice", "alice-key-0001"), ("bob", "bob-key-0002")]
            .into_iter()
            .map(|(principal, key)| a2a_push_hub::config::ApiKey {
                principal: principal.to_string(),
                sha256: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes())
                    .as_ref()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            })
            .collect();
    })
    .await;
    let output = run_push_config_client(&hub, &["alice-key-0001", "bob-key-0002"]).await;
    assert!(output.contains("the hub answers 401"), "{output}");
    assert!(
        output.contains("another principal is told the task does not exist"),
        "{output}"
    );
    hub.stop().await;
}

/// Runs the Python SDK client's push-config scenario against `hub`; returns what it printed.
async fn run_push_config_client(hub: &TestHub, api_keys: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/push_config_client.py"
    );
    let run = tokio::process::Command::new(python())
        .arg(script)
        .arg(&hub.public)
        .arg("http://127.0.0.1:9/hook")
        .args(api_keys)
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
    stdout.into_owned()
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn a_receiver_built_on_the_python_sdk_parses_every_delivery() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/webhook_receiver.py"
    );
    let mut receiver = tokio::process::Command::new(python())
        .args([script, "tok-interop", "Bearer cred-interop"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the Python receiver starts");
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let next_line = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the Python receiver answers within 60s")
            .unwrap()
            .expect("the Python receiver is running")
    };
    let listening = next_line(&mut lines).await;
    let port: u16 = listening
        .strip_prefix("LISTENING ")
        .unwrap()
        .parse()
        .unwrap();

    let hub = TestHub::start().await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "py-task", "url": format!("http://127.0.0.1:{port}/hook"), "token": "tok-interop",
            "authentication": {"scheme": "Bearer", "credentials": "cred-interop"}}),
    )
    .await;
    let events = [
        json!({"task": {"id": "py-task", "contextId": "ctx", "status": {"state": "TASK_STATE_SUBMITTED"},
            "history": [{"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}]}}),
        json!({"statusUpdate": {"taskId": "py-task", "contextId": "ctx", "status": {"state": "TASK_STATE_WORKING",
            "timestamp": "2026-11-28T03:03:35.125841Z",
            "message": {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "working"}]}}}}),
        json!({"artifactUpdate": {"taskId": "py-task", "contextId": "ctx", "lastChunk": true,
            "artifact": {"artifactId": "a1", "name": "answer", "parts": [{"text": "42", "mediaType": "text/plain"}]}}}),
        json!({"statusUpdate": {"taskId": "py-task", "contextId": "ctx", "status": {"state": "TASK_STATE_COMPLETED"},
            "metadata": {"source": "interop"}}}),
    ];
    for event in &events {
        hub.publish(event.clone()).await;
    }
    let mut seen = Vec::new();
    for _ in 0..events.len() {
        let record: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
        assert_eq!(
            record["ok"], true,
            "the SDK receiver refused a delivery: {record}"
        );
        assert_eq!(record["taskId"], "py-task");
        seen.push((
            record["sequence"].as_u64().unwrap(),
            record["kind"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        seen,
        [
            (1, "task".to_string()),
            (2, "status_update".to_string()),
            (3, "artifact_update".to_string()),
            (4, "status_update".to_string())
        ]
    );
    hub.stop().await;
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn independent_python_verifiers_accept_every_signature_across_a_rotation() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let hub = TestHub::start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/signature_verifier.py"
    );
    let jwks_url = format!("{}/.well-known/jwks.json", hub.public);
    let mut verifier = tokio::process::Command::new(python())
        .args([script, SECRET, &jwks_url, &hub.public])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the Python verifier starts");
    let mut lines = BufReader::new(verifier.stdout.take().unwrap()).lines();
    let next_line = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the Python verifier answers within 60s")
            .unwrap()
            .expect("the Python verifier is running")
    };
    let port: u16 = next_line(&mut lines)
        .await
        .strip_prefix("LISTENING ")
        .unwrap()
        .parse()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/hooks/a2a");
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "signed", "url": url, "token": SECRET, "authentication": {"scheme": "Bearer"}}),
    )
    .await;
    let mut records = Vec::new();
    for (i, state) in ["TASK_STATE_WORKING", "TASK_STATE_INPUT_REQUIRED"]
        .into_iter()
        .enumerate()
    {
        hub.publish(common::status_event("signed", state)).await;
        let record: Value = serde_json::from_str(&next_line(&mut lines).await).unwrap();
        assert_eq!(record["sequence"], i as u64 + 1, "{record}");
        records.push(record);
    }
    let (status, _, _) = hub.admin_post("/api/v1/keys:rotate", "").await;
    assert_eq!(status, 200);
    for state in ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"] {
        hub.publish(common::status_event("signed", state)).await;
        records.push(serde_json::from_str(&next_line(&mut lines).await).unwrap());
    }
    for record in &records {
        assert_eq!(
            record["ok"], true,
            "an independent verifier refused a delivery: {record}"
        );
    }
    assert_eq!(
        records[3]["v1aSignatures"], 2,
        "after the rotation both keys co-sign"
    );
    hub.stop().await;
}

/// The Python SDK agent, registered over `binding`; the Python SDK sends both the token and
/// the Authorization header, and both must match.
async fn python_agent_over(binding: &str) {
    let agent = common::python_sdk_agent();
    common::agent_pushes_after_remote_registration(
        agent,
        binding,
        &[("token", true), ("authorization", true)],
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn a_python_sdk_agent_pushes_to_the_hub_registered_over_jsonrpc() {
    python_agent_over("JSONRPC").await;
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn a_python_sdk_agent_pushes_to_the_hub_registered_over_http_json() {
    python_agent_over("HTTP+JSON").await;
}

/// The Python SDK agent behind the gateway.
async fn gateway_in_front_of_the_python_agent(binding: &str) {
    let agent = common::python_sdk_agent();
    common::gateway_in_front_of(agent, &python(), binding).await;
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn the_gateway_makes_a_python_sdk_agents_pushes_reliable_over_jsonrpc() {
    gateway_in_front_of_the_python_agent("JSONRPC").await;
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn the_gateway_makes_a_python_sdk_agents_pushes_reliable_over_http_json() {
    gateway_in_front_of_the_python_agent("HTTP+JSON").await;
}

/// Runs the A2A samples' push sender (`sample_push_sender.py`) once; returns its output.
async fn sample_sender(args: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/sample_push_sender.py"
    );
    let run = tokio::process::Command::new(python())
        .arg(script)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the sender finishes within 60s")
        .expect("the sender runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn the_a2a_samples_sender_is_verified_in_both_body_spellings_and_tampering_staleness_and_replay_are_refused()
 {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().to_str().unwrap();
    sample_sender(&["keys", dir]).await;
    let jwks = std::fs::read_to_string(folder.path().join("jwks.json")).unwrap();
    let peer = common::Receiver::start().await;
    peer.script(move |_| {
        let mut reply = common::Reply::ok().header("content-type", "application/json");
        reply.body = jwks.clone();
        reply
    });
    let hub = TestHub::start().await;
    let created = common::create_subscription(
        &hub,
        json!({"jwksUrl": peer.url("/.well-known/jwks.json"), "jwtProfile": "a2a-samples"}),
    )
    .await;
    let (id, url) = (
        created["id"].as_str().unwrap().to_string(),
        created["url"].as_str().unwrap().to_string(),
    );
    let record = folder.path().join("sent.json");
    let record = record.to_str().unwrap();
    let push = |mode: &'static str| {
        let url = url.clone();
        let record = record.to_string();
        let dir = dir.to_string();
        async move { sample_sender(&["push", &dir, &url, mode, &record]).await }
    };
    assert_eq!(sample_sender(&["verify", &url]).await.trim(), "verified");
    assert!(
        push("httpx")
            .await
            .starts_with("200 {\"sequence\":1,\"status\":\"accepted\"}")
    );
    assert!(
        push("replay").await.contains("\"duplicate\""),
        "the same token again"
    );
    assert!(push("spaced").await.contains("\"accepted\""));
    assert!(push("tampered").await.starts_with("401"));
    assert!(push("stale").await.starts_with("401"));

    let (_, receipts) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/receipts"))
        .await;
    let jwt_details: Vec<String> = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "jwt")
                .map(|c| c["detail"].as_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        jwt_details[0].starts_with("RS256 JWT valid (a2a-samples profile)")
            && jwt_details[0].ends_with("the raw bytes"),
        "{jwt_details:?}"
    );
    assert!(
        jwt_details[2].ends_with("the body re-spelled compactly"),
        "{jwt_details:?}"
    );
    assert!(
        jwt_details[3].contains("request_body_sha256 does not match"),
        "{jwt_details:?}"
    );
    assert!(jwt_details[4].contains("old"), "{jwt_details:?}");
    let (_, events) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/events"))
        .await;
    let accepted = events["events"].as_array().unwrap();
    assert_eq!(accepted.len(), 2, "{events}");
    assert!(
        accepted[1]["event"]
            .to_string()
            .contains("Grüße — 進行中 ✓"),
        "{events}"
    );
    hub.stop().await;
}
