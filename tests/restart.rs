//! Restart safety: the real binary is SIGKILLed while the receiver holds its requests open;
//! after a restart on the same store, every delivery completes, in order per lane.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{HubProcess, Receiver, Reply, http_client, status_event, wait_until};
use serde_json::{Value, json};

#[tokio::test]
async fn attempts_in_flight_at_a_crash_are_made_again_after_restart() {
    let receiver = Receiver::start().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    receiver.script(move |_| Reply::ok().hold(held.clone()));
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let http = http_client();

    let mut hub = HubProcess::spawn_on(&data_dir);
    let tasks = ["r1", "r2", "r3"];
    for task in tasks {
        let created: Value = http
            .post(format!("http://{}/", hub.public))
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig",
                "params": {"taskId": task, "url": receiver.url(&format!("/{task}"))}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(created.get("result").is_some(), "{created}");
        for state in [
            "TASK_STATE_WORKING",
            "TASK_STATE_INPUT_REQUIRED",
            "TASK_STATE_COMPLETED",
        ] {
            let response = http
                .post(format!("http://{}/api/v1/events", hub.admin))
                .header("content-type", "application/json")
                .body(status_event(task, state).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        }
    }
    // Each lane's first delivery is in flight and held open by the receiver.
    let held_requests = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert!(held_requests.iter().all(|r| r.sequence() == 1));
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    drop(hub);

    receiver.script(|_| Reply::ok());
    release.notify_waiters();
    let restarted = HubProcess::spawn_on(&data_dir);
    for task in tasks {
        wait_until(
            Duration::from_secs(30),
            &format!("every delivery of {task}"),
            || {
                let (http, admin) = (http.clone(), restarted.admin);
                async move {
                    let view: Value = http
                        .get(format!("http://{admin}/api/v1/tasks/{task}"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    (view["deliveries"]["delivered"] == 3).then_some(())
                }
            },
        )
        .await;
        let path = format!("/{task}");
        let order: Vec<u64> = receiver
            .received()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.sequence())
            .collect();
        assert_eq!(
            order,
            [1, 1, 2, 3],
            "{task}: the held attempt, its repeat after restart, then the rest in order"
        );
    }
}

#[tokio::test]
async fn a_gateways_accepted_pushes_are_delivered_after_a_crash() {
    let agent = Receiver::start().await;
    agent.script(|r| {
        if r.path == "/.well-known/agent-card.json" {
            let mut card = Reply::ok().header("content-type", "application/json");
            card.body = json!({"name": "pushing", "capabilities": {"pushNotifications": true}}).to_string();
            return card;
        }
        let id = r.json()["id"].clone();
        let mut reply = Reply::ok().header("content-type", "application/json");
        reply.body = json!({"jsonrpc": "2.0", "id": id, "result": {"task": {"id": "gw-task", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}}}).to_string();
        reply
    });
    let receiver = Receiver::start().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    receiver.script(move |_| Reply::ok().hold(held.clone()));
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let http = http_client();
    let spawn = || {
        let mut command = common::hub_command(&data_dir);
        command.args(["--upstream", &agent.url("/")]);
        HubProcess::spawn(command).expect("the gateway starts")
    };
    let mut hub = spawn();
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"taskPushNotificationConfig": {"url": receiver.url("/hook")}}}});
    let answer: Value = http
        .post(format!("http://{}/", hub.public))
        .json(&send)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["task"]["id"], "gw-task");
    let sent = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "SendMessage")
        .unwrap();
    let swapped = sent.json()["params"]["configuration"]["taskPushNotificationConfig"].clone();
    let (intake, token) = (
        swapped["url"].as_str().unwrap().to_string(),
        swapped["token"].as_str().unwrap().to_string(),
    );
    for state in ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"] {
        let event = json!({"statusUpdate": {"taskId": "gw-task", "contextId": "c", "status": {"state": state}}});
        let response = http
            .post(&intake)
            .header("x-a2a-notification-token", &token)
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    receiver.wait_for(1, Duration::from_secs(20)).await;
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    drop(hub);
    receiver.script(|_| Reply::ok());
    release.notify_waiters();
    let _restarted = spawn();
    let got = common::wait_until(
        Duration::from_secs(30),
        "both events delivered after the restart",
        || {
            let receiver = receiver.clone();
            async move {
                let sequences: Vec<u64> =
                    receiver.received().iter().map(|r| r.sequence()).collect();
                sequences.ends_with(&[1, 2]).then_some(sequences)
            }
        },
    )
    .await;
    assert_eq!(
        got,
        [1, 1, 2],
        "the held attempt, its repeat after the restart, then the next event"
    );
}
