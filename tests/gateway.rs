//! Gateway mode against a scripted upstream agent over real HTTP: proxying, the swap of
//! inline push configs for the hub's intake, task checks, the rewritten card, and an
//! unreachable agent. (The official SDKs as real peers: `tests/interop_python.rs`.)

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Receiver, Reply, TestHub, fast_delivery, push, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn json_reply(body: Value) -> Reply {
    let mut reply = Reply::ok().header("content-type", "application/json");
    reply.body = body.to_string();
    reply
}

/// A hub in front of `agent`, with fast delivery and `adjust` on top.
async fn hub_in_front_of(
    agent: &Receiver,
    adjust: impl FnOnce(&mut a2a_push_hub::Settings) + Send + 'static,
) -> TestHub {
    let upstream = agent.url("/");
    TestHub::start_with(move |s| {
        fast_delivery(s);
        s.gateway.upstream = upstream;
        adjust(s);
    })
    .await
}

/// Pushes `event` as the agent would to the push config the hub gave it (its `url` and
/// `token`); the intake's status.
async fn push_to(hub: &TestHub, config: &Value, event: &Value) -> StatusCode {
    let token = config["token"].as_str().unwrap();
    push(
        &hub.http,
        config["url"].as_str().unwrap(),
        &[("x-a2a-notification-token", token)],
        event.to_string(),
    )
    .await
    .0
}

/// An upstream agent: knows task `t1`, starts task `t-new` on SendMessage, echoes configs.
async fn scripted_agent() -> Receiver {
    scripted_agent_refusing(0).await
}

/// The same agent, refusing its first `refusals` push-config registrations.
async fn scripted_agent_refusing(refusals: usize) -> Receiver {
    let agent = Receiver::start_on("127.0.0.1").await;
    let base = agent.url("");
    let refused = AtomicUsize::new(0);
    agent.script(move |r| {
        if r.path == "/.well-known/agent-card.json" {
            return json_reply(json!({"name": "scripted", "capabilities": {"streaming": false, "pushNotifications": true},
                "supportedInterfaces": [{"url": format!("{base}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]}));
        }
        if let Some(task) = r.path.strip_prefix("/tasks/") {
            return match task {
                "t1" => json_reply(json!({"id": "t1", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}})),
                _ => Reply::status(404),
            };
        }
        let request = r.json();
        let id = request["id"].clone();
        let result = match request["method"].as_str().unwrap_or_default() {
            "GetTask" if request["params"]["id"] == "t1" && r.header("authorization") != "Bearer intruder" => {
                json!({"id": "t1", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}})
            }
            "GetTask" => return json_reply(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": "task not found"}})),
            "SendMessage" if request["params"]["message"]["parts"][0]["text"] == "refuse" => {
                return json_reply(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "not today"}}));
            }
            "SendMessage" => json!({"task": {"id": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}}),
            "CreateTaskPushNotificationConfig"
                if refused.fetch_add(1, Ordering::SeqCst) < refusals =>
            {
                return json_reply(
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "store unavailable"}}),
                );
            }
            "CreateTaskPushNotificationConfig" => request["params"].clone(),
            _ => json!({"tasks": []}),
        };
        json_reply(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    });
    agent
}

#[tokio::test]
async fn inline_configs_are_swapped_for_the_intake_and_the_agents_pushes_become_reliable_deliveries()
 {
    let agent = scripted_agent().await;
    let receiver = Receiver::start().await;
    receiver.script(|r| {
        if r.attempt == 1 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    });
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"returnImmediately": true, "taskPushNotificationConfig": {
            "url": receiver.url("/client-hook"), "token": "client-token", "authentication": {"scheme": "Bearer", "credentials": "client-secret"}}}}});
    let (status, answer) = hub
        .rpc_raw(
            send.to_string(),
            &[("A2A-Version", "1.0"), ("authorization", "Bearer caller")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["result"]["task"]["id"], "t-new",
        "the agent's answer passes through: {answer}"
    );

    let forwarded = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "SendMessage")
        .unwrap();
    assert_eq!(
        forwarded.header("authorization"),
        "Bearer caller",
        "the caller's own headers reach the agent"
    );
    let swapped = &forwarded.json()["params"]["configuration"]["taskPushNotificationConfig"];
    let intake_url = swapped["url"].as_str().unwrap().to_string();
    let intake_token = swapped["token"].as_str().unwrap().to_string();
    assert!(
        intake_url.starts_with(&format!("{}/inbound/", hub.public)),
        "{swapped}"
    );
    assert!(
        !forwarded.body.windows(13).any(|w| w == b"client-secret"),
        "the client's credentials never reach the agent"
    );
    assert!(
        !String::from_utf8_lossy(&forwarded.body).contains("client-hook"),
        "nor its webhook URL"
    );

    // The agent pushes the way SDKs do: once, unsigned, with the token it was given.
    let event = json!({"statusUpdate": {"taskId": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}});
    let (status, _) = push(
        &hub.http,
        &intake_url,
        &[("x-a2a-notification-token", "wrong")],
        event.to_string(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the intake requires its token"
    );
    let (status, _) = push(
        &hub.http,
        &intake_url,
        &[("x-a2a-notification-token", intake_token.as_str())],
        event.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let delivered = receiver.wait_for(2, WAIT).await;
    let last = &delivered[1];
    assert_eq!(last.path, "/client-hook");
    assert_eq!(last.attempt, 2, "retried after the receiver failed");
    assert_eq!(last.header("authorization"), "Bearer client-secret");
    assert_eq!(last.header("x-a2a-notification-token"), "client-token");
    assert_eq!(last.sequence(), 1);
    assert!(last.header("webhook-signature").starts_with("v1a,"));
    assert_eq!(last.json(), event);
    let metrics = hub.metrics().await;
    let answered = common::metric_value(
        &metrics,
        "a2a_push_hub_gateway_upstream_requests_total{outcome=\"answered\"}",
    );
    assert!(
        answered >= 1.0,
        "the SendMessage the agent answered: {answered}"
    );
    assert!(metrics.contains("a2a_push_hub_gateway_upstream_duration_seconds_count"));
    hub.stop().await;
}

#[tokio::test]
async fn config_methods_check_the_task_with_the_agent_and_a_late_config_gets_the_snapshot_first() {
    let agent = scripted_agent().await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let missing = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "nope", "url": receiver.url("/x")}),
        )
        .await;
    assert_eq!(missing["error"]["code"], -32001, "{missing}");
    let (status, body) = hub
        .rest(
            reqwest::Method::GET,
            "/tasks/nope/pushNotificationConfigs",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "id": "late", "url": receiver.url("/late")}),
    )
    .await;
    let first = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        first.json()["task"]["status"]["state"],
        "TASK_STATE_WORKING",
        "the current snapshot first"
    );
    let registered = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "CreateTaskPushNotificationConfig")
        .unwrap();
    assert!(
        registered.json()["params"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/inbound/", hub.public))
    );
    let listed = hub
        .rpc_ok("ListTaskPushNotificationConfigs", json!({"taskId": "t1"}))
        .await;
    assert_eq!(listed["configs"][0]["id"], "late");
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "ListTaskPushNotificationConfigs", "params": {"taskId": "t1"}});
    let (_, intruder) = hub
        .rpc_raw(body.to_string(), &[("authorization", "Bearer intruder")])
        .await;
    assert_eq!(
        intruder["error"]["code"], -32001,
        "a task the agent does not show this caller is not found: {intruder}"
    );

    let (_, card) = hub
        .rest(reqwest::Method::GET, "/.well-known/agent-card.json", None)
        .await;
    assert_eq!(card["capabilities"]["pushNotifications"], true);
    assert_eq!(
        card["supportedInterfaces"][0]["url"],
        format!("{}/", hub.public)
    );
    let other = hub.rpc("ListTasks", json!({})).await;
    assert_eq!(
        other["result"],
        json!({"tasks": []}),
        "other methods are proxied: {other}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_unreachable_agent_is_a_clear_error_in_each_binding() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let hub = TestHub::start_with(|s| s.gateway.upstream = format!("http://{closed}/")).await;
    let answer = hub.rpc("GetTask", json!({"id": "t"})).await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    let (status, body) = hub.rest(reqwest::Method::GET, "/tasks/t", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let created = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t", "url": "http://127.0.0.1:9/x"}),
        )
        .await;
    assert_eq!(created["error"]["code"], -32603, "{created}");
    let send = json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"taskPushNotificationConfig": {"url": "http://127.0.0.1:9/x"}}});
    let sent = hub.rpc("SendMessage", send).await;
    assert_eq!(sent["error"]["code"], -32603, "{sent}");
    let (_, listed) = hub.admin_get("/api/v1/subscriptions").await;
    assert_eq!(
        listed["subscriptions"],
        json!([]),
        "no intake is left for requests the agent never took"
    );
    let metrics = hub.metrics().await;
    let unreachable = common::metric_value(
        &metrics,
        "a2a_push_hub_gateway_upstream_requests_total{outcome=\"unreachable\"}",
    );
    assert!(
        unreachable >= 4.0,
        "every call to the agent counted: {unreachable}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_agent_without_push_support_is_followed_through_subscribe_to_task() {
    let agent = Receiver::start_on("127.0.0.1").await;
    agent.script(|r| {
        if r.path == "/.well-known/agent-card.json" {
            return json_reply(json!({"name": "no-push", "capabilities": {"streaming": true, "pushNotifications": false}}));
        }
        let request = r.json();
        let id = request["id"].clone();
        match request["method"].as_str().unwrap_or_default() {
            "SubscribeToTask" => {
                let events = [
                    json!({"task": {"id": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}),
                    json!({"artifactUpdate": {"taskId": "t-new", "contextId": "c", "artifact": {"artifactId": "a", "parts": [{"text": "42"}]}}}),
                    json!({"statusUpdate": {"taskId": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}}),
                ];
                let mut reply = Reply::ok().header("content-type", "text/event-stream");
                reply.body = events
                    .iter()
                    .map(|e| format!("data: {}\n\n", json!({"jsonrpc": "2.0", "id": id, "result": e})))
                    .collect();
                reply
            }
            _ => json_reply(json!({"jsonrpc": "2.0", "id": id, "result": {"task": {"id": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}}})),
        }
    });
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let send = common::send_with_inline_config(&receiver.url("/hook"));
    let client_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (_, answer) = hub
        .rpc_raw(send.to_string(), &[("traceparent", client_trace)])
        .await;
    assert_eq!(answer["result"]["task"]["id"], "t-new");
    let forwarded = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "SendMessage")
        .unwrap();
    assert!(
        forwarded.json()["params"]["configuration"]
            .get("taskPushNotificationConfig")
            .is_none(),
        "no config goes to an agent that cannot push"
    );
    let got = receiver.wait_for(3, WAIT).await;
    for request in &got {
        assert_eq!(
            request.header("traceparent").split('-').nth(1),
            Some("0af7651916cd43dd8448eb211c80319c"),
            "what the follow publishes is in the client's trace"
        );
    }
    let kinds: Vec<String> = got
        .iter()
        .map(|r| r.json().as_object().unwrap().keys().next().unwrap().clone())
        .collect();
    assert_eq!(kinds, ["task", "artifactUpdate", "statusUpdate"]);
    assert_eq!(
        got.iter().map(|r| r.sequence()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        agent
            .received()
            .iter()
            .any(|r| r.json()["method"] == "SubscribeToTask"
                && r.header("traceparent") == client_trace),
        "the follow calls the agent in the client's trace"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_03_inline_config_is_swapped_too_and_its_webhook_gets_03_tasks() {
    let agent = scripted_agent().await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {
        "message": {"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "hi"}]},
        "configuration": {"blocking": false, "pushNotificationConfig": {"url": receiver.url("/old-client"), "token": "tok-03",
            "authentication": {"schemes": ["Bearer"], "credentials": "cred-03"}}}}});
    let (_, answer) = hub.rpc_raw(send.to_string(), &[]).await;
    assert!(answer.get("result").is_some(), "{answer}");
    let forwarded = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "message/send")
        .unwrap();
    let swapped = forwarded.json()["params"]["configuration"]["pushNotificationConfig"].clone();
    assert!(
        swapped["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/inbound/", hub.public)),
        "{swapped}"
    );
    assert!(!forwarded.json().to_string().contains("cred-03"));
    // A 0.3 agent pushes the whole Task in 0.3 JSON.
    let pushed =
        json!({"kind": "task", "id": "t-new", "contextId": "c", "status": {"state": "working"}});
    assert_eq!(push_to(&hub, &swapped, &pushed).await, StatusCode::OK);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["kind"], "task");
    assert_eq!(got[0].json()["status"]["state"], "working");
    assert_eq!(got[0].header("authorization"), "Bearer cred-03");
    assert_eq!(got[0].header("a2a-version"), "0.3");
    hub.stop().await;
}

#[tokio::test]
async fn an_intake_goes_once_retention_has_purged_its_task_and_stays_while_the_task_runs() {
    let agent = scripted_agent().await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |s| {
        s.retention.finished_tasks = a2a_push_hub::config::HumanDuration(Duration::from_secs(2));
    })
    .await;
    let send = common::send_with_inline_config(&receiver.url("/client-hook"));
    let (status, _) = hub
        .rpc_raw(send.to_string(), &[("A2A-Version", "1.0")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let forwarded = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "SendMessage")
        .unwrap();
    let swapped = &forwarded.json()["params"]["configuration"]["taskPushNotificationConfig"];
    let intake_url = swapped["url"].as_str().unwrap().to_string();
    let token = swapped["token"].as_str().unwrap().to_string();
    let subscription = format!(
        "/api/v1/subscriptions/{}",
        intake_url.rsplit('/').next().unwrap()
    );
    let agent_pushes = |state: &str| {
        let (hub, url, token) = (&hub, intake_url.clone(), token.clone());
        let event = json!({"statusUpdate": {"taskId": "t-new", "contextId": "c", "status": {"state": state}}});
        async move {
            push(
                &hub.http,
                &url,
                &[("x-a2a-notification-token", token.as_str())],
                event.to_string(),
            )
            .await
            .0
        }
    };
    assert_eq!(agent_pushes("TASK_STATE_WORKING").await, StatusCode::OK);
    receiver.wait_for(1, WAIT).await;

    // Two tasks finished after the intake was made are purged one after the other: the sweep
    // that purged the first has looked at the intake, older than retention by then.
    for other in ["other-1", "other-2"] {
        hub.publish(json!({"statusUpdate": {"taskId": other, "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}}))
            .await;
        wait_until(WAIT, &format!("{other} to be purged"), || async {
            let (status, _) = hub.admin_get(&format!("/api/v1/tasks/{other}")).await;
            (status == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
    }
    let (status, _) = hub.admin_get(&subscription).await;
    assert_eq!(status, StatusCode::OK, "the intake of a running task stays");

    assert_eq!(agent_pushes("TASK_STATE_COMPLETED").await, StatusCode::OK);
    receiver.wait_for(2, WAIT).await;
    wait_until(WAIT, "the task and its intake to be purged", || async {
        let (task, _) = hub.admin_get("/api/v1/tasks/t-new").await;
        let (intake, _) = hub.admin_get(&subscription).await;
        (task == StatusCode::NOT_FOUND && intake == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert_eq!(
        agent_pushes("TASK_STATE_COMPLETED").await,
        StatusCode::NOT_FOUND,
        "a late push to a removed intake is refused as unknown"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_registration_the_agent_refused_is_tried_again_when_the_config_is_created_again() {
    let agent = scripted_agent_refusing(1).await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let create = json!({"taskId": "t1", "id": "late", "url": receiver.url("/late")});
    let refused = hub
        .rpc("CreateTaskPushNotificationConfig", create.clone())
        .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{refused}"
    );
    hub.rpc_ok("CreateTaskPushNotificationConfig", create).await;
    let registrations: Vec<_> = agent
        .received()
        .into_iter()
        .filter(|r| r.json()["method"] == "CreateTaskPushNotificationConfig")
        .collect();
    assert_eq!(registrations.len(), 2, "the hub registered itself again");
    let intake_url = registrations[1].json()["params"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let token = registrations[1].json()["params"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let event = json!({"statusUpdate": {"taskId": "t1", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}});
    let (status, _) = push(
        &hub.http,
        &intake_url,
        &[("x-a2a-notification-token", token.as_str())],
        event.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the agent's pushes reach the hub");
    // The config got the task's snapshot once, when it was first stored; then the agent's push.
    let delivered = receiver.wait_for(2, WAIT).await;
    assert!(
        delivered[0].json().get("task").is_some(),
        "{:?}",
        delivered[0].json()
    );
    assert_eq!(delivered[1].json(), event, "and then the client's webhook");
    assert_eq!(
        delivered.len(),
        2,
        "storing the config again sends no second snapshot"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_task_followed_for_an_agent_that_does_not_push_is_followed_again_after_a_restart() {
    let agent = common::SilentFirstAgent::start(vec![
        json!({"task": {"id": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}),
        json!({"statusUpdate": {"taskId": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}}),
    ])
    .await;
    let receiver = Receiver::start().await;
    let store = tempfile::tempdir().unwrap();
    let start = || {
        let store = store.path().join("store");
        hub_in_front_of(&agent.agent, move |s| s.store.path = store)
    };
    let hub = start().await;
    let send = common::send_with_inline_config(&receiver.url("/hook"));
    let (_, answer) = hub.rpc_raw(send.to_string(), &[]).await;
    assert_eq!(answer["result"]["task"]["id"], "t-new");
    wait_until(WAIT, "the hub to subscribe to the task", || async {
        (agent.subscribed() == 1).then_some(())
    })
    .await;
    // The first stream stays silent: the hub is stopped while it waits.
    hub.stop().await;

    let hub = start().await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(agent.subscribed(), 2, "subscribed again");
    assert_eq!(
        got[0].json()["task"]["status"]["state"],
        "TASK_STATE_WORKING"
    );
    assert_eq!(
        got[1].json()["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED",
        "what the agent streamed after the restart reached the webhook"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_send_the_agent_refuses_leaves_no_intake_behind() {
    let agent = scripted_agent().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "refuse"}]},
        "configuration": {"taskPushNotificationConfig": {"url": "http://127.0.0.1:9/x"}}}});
    let (status, answer) = hub
        .rpc_raw(send.to_string(), &[("A2A-Version", "1.0")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["error"]["message"], "not today",
        "the agent's answer passes through: {answer}"
    );
    let swapped = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "SendMessage")
        .unwrap();
    assert!(
        swapped.json()["params"]["configuration"]["taskPushNotificationConfig"]["url"]
            .as_str()
            .is_some_and(|url| url.contains("/inbound/")),
        "the agent was offered an intake"
    );
    let (_, listed) = hub.admin_get("/api/v1/subscriptions").await;
    assert_eq!(listed["subscriptions"], json!([]), "and it is gone again");
    hub.stop().await;
}

#[tokio::test]
async fn the_card_keeps_absent_fields_absent_and_carries_an_etag_the_hub_answers_304_for() {
    let agent = Receiver::start().await;
    let base = agent.url("");
    agent.script(move |r| {
        if r.path != "/.well-known/agent-card.json" {
            return Reply::status(404);
        }
        json_reply(json!({"name": "cached", "version": "1", "capabilities": {},
            "supportedInterfaces": [{"url": format!("{base}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]}))
        .header("cache-control", "public, max-age=120")
        .header("etag", "\"the-agents-own\"")
    });
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let url = format!("{}/.well-known/agent-card.json", hub.public);
    let first = hub.http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(
        etag, "\"the-agents-own\"",
        "the tag is of the bytes the hub serves"
    );
    assert_eq!(first.headers()["cache-control"], "public, max-age=120");
    let card: Value = first.json().await.unwrap();
    assert!(
        !card.to_string().contains("null"),
        "no field is added as null: {card}"
    );
    assert!(card.get("additionalInterfaces").is_none() && card.get("url").is_none());
    assert_eq!(card["capabilities"]["pushNotifications"], true);

    let again = hub
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = hub
        .http
        .get(&url)
        .header("if-none-match", "\"the-agents-own\"")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "the agent's tag is not the hub's"
    );
    assert!(
        agent
            .received()
            .iter()
            .all(|r| r.headers.get("if-none-match").is_none()),
        "the client's validators are the hub's business, not the agent's"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_standalone_card_has_an_etag_too() {
    let hub = TestHub::start().await;
    let url = format!("{}/.well-known/agent-card.json", hub.public);
    let first = hub.http.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let card: Value = first.json().await.unwrap();
    assert_eq!(
        card["supportedInterfaces"][0]["url"],
        format!("{}/", hub.public)
    );
    let again = hub
        .http
        .get(&url)
        .header("if-none-match", format!("W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    hub.stop().await;
}

#[tokio::test]
async fn a_config_created_on_a_running_task_gets_the_snapshot_alone_and_other_configs_never_see_it()
{
    let agent = scripted_agent().await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    for id in ["first", "second"] {
        hub.rpc_ok(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": id, "url": receiver.url(&format!("/{id}"))}),
        )
        .await;
    }
    let registration = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "CreateTaskPushNotificationConfig")
        .unwrap()
        .json();
    let event = json!({"statusUpdate": {"taskId": "t1", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}});
    assert_eq!(
        push_to(&hub, &registration["params"], &event).await,
        StatusCode::OK
    );
    let all = receiver.wait_for(4, WAIT).await;
    for path in ["/first", "/second"] {
        let got: Vec<(String, u64)> = all
            .iter()
            .filter(|r| r.path == path)
            .map(|r| {
                let kind = r.json().as_object().unwrap().keys().next().unwrap().clone();
                (kind, r.sequence())
            })
            .collect();
        assert_eq!(
            got,
            [("task".to_string(), 0), ("statusUpdate".to_string(), 1)],
            "{path}: its own snapshot, then the task's events with no gap"
        );
    }
    assert_eq!(all.len(), 4, "nothing more");
    hub.stop().await;
}

/// An agent whose task `t1` is working until the hub registers its intake, and completed from
/// then on; what the registration carried (the intake's URL and token), once it came.
async fn agent_completing_at_registration() -> (Receiver, Arc<Mutex<Option<Value>>>) {
    let completed = AtomicBool::new(false);
    let registration = Arc::new(Mutex::new(None::<Value>));
    let agent = Receiver::start_on("127.0.0.1").await;
    let registered = registration.clone();
    agent.script(move |r| {
        if r.path == "/.well-known/agent-card.json" {
            return json_reply(json!({"name": "completes", "capabilities": {"streaming": false, "pushNotifications": true}}));
        }
        let request = r.json();
        let id = request["id"].clone();
        let state = if completed.load(Ordering::SeqCst) { "TASK_STATE_COMPLETED" } else { "TASK_STATE_WORKING" };
        let result = match request["method"].as_str().unwrap_or_default() {
            "GetTask" => json!({"id": "t1", "contextId": "c", "status": {"state": state}}),
            "CreateTaskPushNotificationConfig" => {
                completed.store(true, Ordering::SeqCst);
                *registered.lock().unwrap() = Some(request["params"].clone());
                request["params"].clone()
            }
            _ => json!({"tasks": []}),
        };
        json_reply(json!({"jsonrpc": "2.0", "id": id, "result": result}))
    });
    (agent, registration)
}

/// Each arrival's kind of event and the state it carries.
fn kinds_and_states(arrived: &[common::Received]) -> Vec<(String, String)> {
    arrived
        .iter()
        .map(|r| {
            let body = r.json();
            let (kind, event) = body.as_object().unwrap().iter().next().unwrap();
            let state = event["status"]["state"].as_str().unwrap();
            (kind.clone(), state.to_string())
        })
        .collect()
}

fn pair(kind: &str, state: &str) -> (String, String) {
    (kind.to_string(), state.to_string())
}

#[tokio::test]
async fn a_change_the_agent_pushes_just_after_the_hub_registers_is_delivered_once() {
    // The agent pushes the completion 100 ms after it (SDKs push as the task moves). The hub
    // sees the change at the agent before the push arrives; it must not publish it as well.
    let (agent, registration) = agent_completing_at_registration().await;
    let receiver = Receiver::start().await;
    let hub = Arc::new(hub_in_front_of(&agent, |_| {}).await);
    let creating = {
        let (hub, url) = (hub.clone(), receiver.url("/hook"));
        tokio::spawn(async move {
            hub.rpc_ok(
                "CreateTaskPushNotificationConfig",
                json!({"taskId": "t1", "id": "late", "url": url}),
            )
            .await
        })
    };
    let intake = wait_until(WAIT, "the hub registers its intake", || {
        let registered = registration.lock().unwrap().clone();
        async move { registered }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let completion = json!({"statusUpdate": {"taskId": "t1", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}});
    assert_eq!(push_to(&hub, &intake, &completion).await, StatusCode::OK);
    creating.await.unwrap();
    assert_eq!(
        kinds_and_states(&receiver.wait_for(2, WAIT).await),
        [
            pair("task", "TASK_STATE_WORKING"),
            pair("statusUpdate", "TASK_STATE_COMPLETED")
        ],
        "the snapshot, then the agent's push"
    );
    // The config's answer came after the hub decided; had it published the change, that
    // would be the task's second event.
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["lastSequence"], 1, "{view}");
    Arc::into_inner(hub).unwrap().stop().await;
}

#[tokio::test]
async fn a_change_made_while_the_hub_registers_that_the_agent_never_pushes_is_published() {
    let (agent, _) = agent_completing_at_registration().await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "id": "late", "url": receiver.url("/hook")}),
    )
    .await;
    assert_eq!(
        kinds_and_states(&receiver.wait_for(2, WAIT).await),
        [
            pair("task", "TASK_STATE_WORKING"),
            pair("task", "TASK_STATE_COMPLETED")
        ],
        "the snapshot, then the task as the agent shows it after the registration"
    );
    hub.stop().await;
}

/// An agent that does not push. Each SendMessage starts the task its message id names, which
/// waits for its client (`input-required`) until `answered` holds, then is completed; every
/// SubscribeToTask stream ends at once, as SDKs do for a task waiting for its client, so the
/// hub learns where the task is by GetTask.
async fn agent_whose_tasks_wait_for_their_client(answered: Arc<AtomicBool>) -> Receiver {
    let agent = Receiver::start().await;
    agent.script(move |r| {
        if r.path == "/.well-known/agent-card.json" {
            return json_reply(json!({"name": "no-push", "capabilities": {"streaming": true, "pushNotifications": false}}));
        }
        let request = r.json();
        let id = request["id"].clone();
        let state = if answered.load(Ordering::SeqCst) {
            "TASK_STATE_COMPLETED"
        } else {
            "TASK_STATE_INPUT_REQUIRED"
        };
        let params = &request["params"];
        let task_id = params["message"]["messageId"]
            .as_str()
            .or(params["id"].as_str())
            .unwrap_or_default();
        let task = json!({"id": task_id, "contextId": "c", "status": {"state": state}});
        match request["method"].as_str().unwrap_or_default() {
            "SubscribeToTask" => Reply::ok().header("content-type", "text/event-stream"),
            "GetTask" => json_reply(json!({"jsonrpc": "2.0", "id": id, "result": task})),
            _ => json_reply(json!({"jsonrpc": "2.0", "id": id, "result": {"task": task}})),
        }
    });
    agent
}

#[tokio::test]
async fn a_task_of_an_agent_that_does_not_push_is_caught_up_when_its_stream_ends_at_input_required()
{
    let answered = Arc::new(AtomicBool::new(false));
    let agent = agent_whose_tasks_wait_for_their_client(answered.clone()).await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let (_, sent) = hub
        .rpc_raw(
            common::send_with_inline_config(&receiver.url("/hook"))
                .to_string()
                .replace("\"m\"", "\"m-ask\""),
            &[],
        )
        .await;
    assert_eq!(sent["result"]["task"]["id"], "m-ask", "{sent}");
    let first = receiver.wait_for(1, WAIT).await;
    assert_eq!(
        first[0].json()["task"]["status"]["state"],
        "TASK_STATE_INPUT_REQUIRED",
        "the task as it stands, though the stream carried nothing"
    );
    answered.store(true, Ordering::SeqCst);
    let all = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(
        all[1].json()["task"]["status"]["state"],
        "TASK_STATE_COMPLETED",
        "the client's answer went on at the agent; the hub catches up"
    );
    hub.stop().await;
}

#[tokio::test]
async fn configs_under_an_agent_interface_path_of_several_segments_are_the_hubs() {
    let agent = Receiver::start().await;
    let base = agent.url("");
    agent.script(move |r| match r.path.as_str() {
        "/.well-known/agent-card.json" => json_reply(json!({"name": "deep", "capabilities": {"pushNotifications": true},
            "supportedInterfaces": [{"url": format!("{base}/a2a/rest"), "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}]})),
        "/a2a/rest/tasks/t1" => json_reply(json!({"id": "t1", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}})),
        path if path.starts_with("/a2a/rest/tasks/t1/pushNotificationConfigs") => {
            json_reply(json!({"id": "hub-intake", "taskId": "t1", "url": "x"}))
        }
        _ => Reply::status(404),
    });
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let base = format!("{}/a2a/rest/tasks/t1/pushNotificationConfigs", hub.public);
    let created = hub
        .http
        .post(&base)
        .header("content-type", "application/json")
        .body(json!({"id": "deep", "url": receiver.url("/deep")}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let listed: Value = hub
        .http
        .get(&base)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["configs"][0]["id"], "deep", "{listed}");
    let got = hub.http.get(format!("{base}/deep")).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let deleted = hub
        .http
        .delete(format!("{base}/deep"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = hub.http.get(format!("{base}/deep")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(
        agent
            .received()
            .iter()
            .all(|r| r.path != "/a2a/rest/tasks/t1/pushNotificationConfigs/deep"),
        "the hub answered them itself"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_agents_pushes_join_the_trace_of_the_clients_request() {
    const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let agent = scripted_agent().await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |_| {}).await;
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"returnImmediately": true, "taskPushNotificationConfig": {
            "url": receiver.url("/client-hook")}}}});
    let traceparent = format!("00-{CLIENT_TRACE}-b7ad6b7169203331-01");
    let (status, _) = hub
        .rpc_raw(
            send.to_string(),
            &[
                ("A2A-Version", "1.0"),
                ("traceparent", traceparent.as_str()),
                ("tracestate", "client=1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let forwarded = agent
        .received()
        .into_iter()
        .find(|r| r.json()["method"] == "SendMessage")
        .unwrap();
    assert_eq!(
        forwarded.header("traceparent"),
        traceparent,
        "the agent is called in the client's trace"
    );
    let swapped = &forwarded.json()["params"]["configuration"]["taskPushNotificationConfig"];
    let (intake_url, intake_token) = (
        swapped["url"].as_str().unwrap().to_string(),
        swapped["token"].as_str().unwrap().to_string(),
    );

    // Like the official SDKs, the agent pushes without any trace header, twice.
    for state in ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"] {
        let event = json!({"statusUpdate": {"taskId": "t-new", "contextId": "c", "status": {"state": state}}});
        let (status, _) = push(
            &hub.http,
            &intake_url,
            &[("x-a2a-notification-token", intake_token.as_str())],
            event.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let delivered = receiver.wait_for(2, WAIT).await;
    for request in &delivered {
        let fields: Vec<&str> = request.header("traceparent").split('-').collect();
        assert_eq!(fields.len(), 4, "{:?}", request.header("traceparent"));
        assert_eq!(fields[1], CLIENT_TRACE, "the push joins the client's trace");
        assert_ne!(fields[2], "b7ad6b7169203331", "as a span of its own");
        assert_eq!(request.header("tracestate"), "client=1");
    }
    hub.stop().await;
}

#[tokio::test]
async fn at_gateway_max_follows_a_send_or_config_that_would_add_a_follow_is_refused_and_nothing_is_kept()
 {
    // Each task waits for its client, so its follow keeps running until `finished` holds.
    let finished = Arc::new(AtomicBool::new(false));
    let agent = agent_whose_tasks_wait_for_their_client(finished.clone()).await;
    let receiver = Receiver::start().await;
    let hub = hub_in_front_of(&agent, |s| s.gateway.max_follows = 1).await;
    let send = |task: &str| {
        common::send_with_inline_config(&receiver.url("/hook"))
            .to_string()
            .replace("\"m\"", &format!("\"{task}\""))
    };
    let sends_of = |task: &str| {
        agent
            .received()
            .iter()
            .filter(|r| {
                r.json()["method"] == "SendMessage"
                    && r.json()["params"]["message"]["messageId"] == task
            })
            .count()
    };

    let (_, first) = hub.rpc_raw(send("t-first"), &[]).await;
    assert_eq!(first["result"]["task"]["id"], "t-first", "{first}");
    receiver.wait_for(1, WAIT).await;
    assert!(
        hub.metrics()
            .await
            .lines()
            .any(|l| l == "a2a_push_hub_gateway_follows 1"),
        "the follow is counted"
    );

    let (status, refused) = hub.rpc_raw(send("t-second"), &[]).await;
    assert_eq!(status, StatusCode::OK, "JSON-RPC errors travel in a 200");
    assert_eq!(refused["error"]["code"], -32603, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gateway.max_follows") && message.contains("retry"),
        "the error says which limit and what to do: {message}"
    );
    assert_eq!(sends_of("t-second"), 0, "nothing reached the agent");
    // A config on another task the agent runs would add a follow: refused in both bindings,
    // and not stored.
    let create = |task: &str, hook: &str| {
        json!({"jsonrpc": "2.0", "id": 2, "method": "CreateTaskPushNotificationConfig",
            "params": {"taskId": task, "url": receiver.url(hook)}})
        .to_string()
    };
    let (_, created) = hub
        .rpc_raw(create("t-other", "/other"), &[("A2A-Version", "1.0")])
        .await;
    assert_eq!(created["error"]["code"], -32603, "{created}");
    let rest = hub
        .http
        .post(format!(
            "{}/tasks/t-other/pushNotificationConfigs",
            hub.public
        ))
        .header("A2A-Version", "1.0")
        .json(&json!({"url": receiver.url("/other-rest")}))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::SERVICE_UNAVAILABLE);
    let configs = hub
        .rpc_ok(
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "t-other"}),
        )
        .await;
    assert_eq!(
        configs["configs"].as_array().map_or(0, Vec::len),
        0,
        "a refused config is not stored: {configs}"
    );
    // One more config on the task followed already adds no follow: taken.
    let (_, second) = hub
        .rpc_raw(create("t-first", "/second"), &[("A2A-Version", "1.0")])
        .await;
    assert!(second.get("error").is_none(), "{second}");

    // Once the first task finishes its follow ends, and the next send is taken.
    finished.store(true, Ordering::SeqCst);
    let third = wait_until(WAIT, "a send taken once the follow ended", || async {
        let (_, answer) = hub.rpc_raw(send("t-third"), &[]).await;
        (answer["result"]["task"]["id"] == "t-third").then_some(answer)
    })
    .await;
    assert_eq!(sends_of("t-third"), 1, "{third}");
    hub.stop().await;
}
