//! Whole scenarios with the official SDKs as peers, shared by the Python and JS interop tests.

use serde_json::{Value, json};
use std::time::Duration;

use super::*;

/// An SDK agent (started by `agent`, printing `LISTENING <port>`, serving JSON-RPC at `/` and,
/// for HTTP+JSON, REST at `/rest`) runs a task that waits for a webhook; the hub registers
/// itself there; every later push must be accepted with `expected_checks`, streamed, and
/// forwarded; deleting the subscription removes the registration at the agent.
pub async fn agent_pushes_after_remote_registration(
    agent: tokio::process::Command,
    binding: &str,
    expected_checks: &[(&str, bool)],
) {
    let (_agent, port) = start_listening(agent).await;
    let agent = format!("http://127.0.0.1:{port}");
    let forward = Receiver::start().await;
    let hub = TestHub::start().await;
    let started: Value = hub
        .http
        .post(format!("{agent}/"))
        .header("A2A-Version", "1.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": "1", "method": "SendMessage", "params": {
            "message": {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hello"}]},
            "configuration": {"returnImmediately": true}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_id = started["result"]["task"]["id"]
        .as_str()
        .expect("the agent started a task")
        .to_string();
    let agent_url = if binding == "JSONRPC" {
        format!("{agent}/")
    } else {
        format!("{agent}/rest")
    };
    let created = create_subscription(
        &hub,
        json!({"taskId": task_id, "agent": {"url": agent_url, "binding": binding},
            "authentication": {"scheme": "Bearer"}, "forwardTo": forward.url("/local")}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert!(created["agent"]["remoteConfigId"].is_string(), "{created}");
    let stream_url = format!("{}/api/v1/subscriptions/{id}/events", hub.admin);
    let mut stream = SseReader::open(&hub.http, &stream_url, None).await;
    let first = stream.next(Duration::from_secs(30)).await.1;
    let second = stream.next(Duration::from_secs(30)).await.1;
    assert!(
        first["event"]["artifactUpdate"]["artifact"]["parts"][0]["text"] == "42",
        "{first}"
    );
    assert_eq!(
        second["event"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{second}"
    );
    drop(stream);
    let (_, receipts) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/receipts"))
        .await;
    for receipt in receipts["receipts"].as_array().unwrap() {
        assert_eq!(receipt["verdict"], "accepted", "{receipt}");
        let checks: Vec<(&str, bool)> = receipt["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["passed"].as_bool().unwrap()))
            .collect();
        assert_eq!(checks, expected_checks, "{receipt}");
    }
    let forwarded = forward.wait_for(2, Duration::from_secs(30)).await;
    assert!(
        forwarded[0].json()["artifactUpdate"].is_object()
            && forwarded[1].json()["statusUpdate"].is_object()
    );

    let response = hub
        .http
        .delete(format!("{}/api/v1/subscriptions/{id}", hub.admin))
        .send()
        .await
        .unwrap();
    let deleted: Value = response.json().await.unwrap();
    assert!(
        deleted["remote"].as_str().unwrap().contains("was deleted"),
        "{deleted}"
    );
    let listed: Value = hub
        .http
        .post(format!("{agent}/"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": "2", "method": "ListTaskPushNotificationConfigs", "params": {"taskId": task_id}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let remaining = listed["result"]["configs"].as_array().map_or(0, Vec::len);
    assert_eq!(
        remaining, 0,
        "the registration is gone at the agent: {listed}"
    );
    hub.stop().await;
}

/// The hub as a gateway in front of an SDK agent (started by `agent`, printing `LISTENING
/// <port>`), driven by the Python SDK client (`python`) over `binding`: inline configs, a
/// config created later, a streaming send; a receiver that fails twice still gets every event
/// in order with the hub's headers; the agent never sees the client's webhooks.
pub async fn gateway_in_front_of(agent: tokio::process::Command, python: &str, binding: &str) {
    let (_agent, port) = start_listening(agent).await;
    let upstream = format!("http://127.0.0.1:{port}/");
    let receiver = Receiver::start().await;
    // Every delivery fails twice before it is accepted.
    receiver.script(|r| {
        if r.attempt <= 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let otlp = OtlpReceiver::http().await;
    let collector = otlp.url();
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.gateway.upstream = upstream.clone();
        s.telemetry.otlp_endpoint = collector;
    })
    .await;
    let (_, card) = hub
        .rest(reqwest::Method::GET, "/.well-known/agent-card.json", None)
        .await;
    assert_eq!(card["capabilities"]["pushNotifications"], true);
    assert!(
        card["supportedInterfaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["url"].as_str().unwrap().starts_with(&hub.public)),
        "{card}"
    );
    // The SDK's own card, field for field: the hub adds none (a `null` would fail card checks).
    let agents: Value = hub
        .http
        .get(format!("{upstream}.well-known/agent-card.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields = |card: &Value| {
        card.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&card), fields(&agents), "{card}");

    let hub_url = if binding == "JSONRPC" {
        format!("{}/", hub.public)
    } else {
        format!("{}/rest", hub.public)
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/gateway_client.py"
    );
    let run = tokio::process::Command::new(python)
        .args([script, &hub_url, binding, &receiver.url("")])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the client finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tasks: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    let kinds = |path: &str| {
        let path = path.to_string();
        let receiver = receiver.clone();
        move || {
            let accepted: Vec<Received> = receiver
                .received()
                .into_iter()
                .filter(|r| r.path == path && r.attempt == 3)
                .collect();
            accepted
        }
    };
    for (path, task) in [
        ("/inline", &tasks["inline"]),
        ("/stream", &tasks["stream"]),
        ("/late", &tasks["late"]),
    ] {
        let delivered = kinds(path);
        let got = wait_until(
            Duration::from_secs(60),
            &format!("every event of {path}"),
            || {
                let got = delivered();
                let completed = |r: &Received| {
                    let body = r.json();
                    body["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
                        || body["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
                };
                async move { got.iter().any(completed).then(|| got.clone()) }
            },
        )
        .await;
        let sequences: Vec<u64> = got.iter().map(|r| r.sequence()).collect();
        let mut sorted = sequences.clone();
        sorted.sort();
        assert_eq!(sequences, sorted, "{path}: in order");
        for r in &got {
            let body = r.json();
            let task_id = body["task"]["id"]
                .as_str()
                .or(body["statusUpdate"]["taskId"].as_str())
                .or(body["artifactUpdate"]["taskId"].as_str());
            assert_eq!(task_id, task.as_str(), "{path}: {body}");
            assert!(
                r.header("webhook-signature").starts_with("v1a,"),
                "{path}: the hub's headers"
            );
            // The agent's pushes carry no trace header; each joins the trace of the client
            // request that gave the task its webhook (gateway_client.py's trace ids).
            let trace = match path {
                "/inline" => 1,
                "/late" => 2,
                _ => 3,
            };
            let traceparent = r.header("traceparent");
            assert_eq!(
                traceparent.split('-').nth(1),
                Some(format!("{trace:032x}").as_str()),
                "{path}: in the client's trace: {traceparent:?}"
            );
        }
        if path == "/late" {
            assert!(
                got[0].json()["task"].is_object(),
                "the snapshot comes first for a late config: {}",
                got[0].json()
            );
            assert_eq!(got[0].header("x-a2a-notification-token"), "tok-late");
        } else {
            assert_eq!(
                got[0].header("authorization"),
                format!("Bearer cred-{}", &path[1..])
            );
            assert!(
                got.iter().any(|r| r.json()["artifactUpdate"].is_object()),
                "{path}: the artifact arrives"
            );
        }
    }
    // The exported spans tell the same story: for each client, the agent's pushes were
    // received into the client's trace (under the client's span, as the agent sent no
    // context), and each attempt to the client's webhook is a span of that trace.
    for trace in 1..=3u32 {
        let trace_id = format!("{trace:032x}");
        let client_span = format!("{trace:016x}");
        wait_until(
            Duration::from_secs(20),
            &format!("trace {trace}: a receive span under the client's span, and sends"),
            || {
                let spans = otlp.trace(&trace_id);
                let received = spans
                    .iter()
                    .any(|s| s.name.starts_with("receive") && s.parent_span_id == client_span);
                let sent = spans.iter().any(|s| s.name.starts_with("send"));
                async move { (received && sent).then_some(()) }
            },
        )
        .await;
    }
    // The agent never saw the client's webhooks or credentials: only the hub's intake.
    for task in ["inline", "late", "stream"] {
        let listed: Value = hub
            .http
            .post(&upstream)
            .header("A2A-Version", "1.0")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ListTaskPushNotificationConfigs", "params": {"taskId": tasks[task]}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let configs = listed["result"]["configs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!configs.is_empty(), "{listed}");
        for config in configs {
            assert!(
                config["url"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{}/inbound/", hub.public)),
                "{config}"
            );
            assert!(!config.to_string().contains("cred-"), "{config}");
        }
    }
    // Config methods on a task the agent does not have: TaskNotFound.
    let missing = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "no-such-task", "url": receiver.url("/x")}),
        )
        .await;
    assert_eq!(missing["error"]["code"], -32001, "{missing}");
    hub.stop().await;
}

/// The agent built on the Python SDK (`tests/interop/python/agent_server.py`), run by the
/// Python that `A2A_INTEROP_PYTHON` names.
pub fn python_sdk_agent() -> tokio::process::Command {
    let python = std::env::var("A2A_INTEROP_PYTHON")
        .expect("set A2A_INTEROP_PYTHON to a Python that has a2a-sdk==1.3.0 (see .ci/run)");
    let mut agent = tokio::process::Command::new(python);
    agent.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/agent_server.py"
    ));
    agent
}

/// The agent built on the JS SDK (`tests/interop/js/js_agent.mjs`), run by the node that
/// `A2A_INTEROP_NODE` names.
pub fn js_sdk_agent() -> tokio::process::Command {
    let node = std::env::var("A2A_INTEROP_NODE")
        .expect("set A2A_INTEROP_NODE to a node binary (see .ci/run)");
    let mut agent = tokio::process::Command::new(node);
    agent.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/js/js_agent.mjs"
    ));
    agent
}
