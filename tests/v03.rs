//! A2A 0.3 beside 1.0: the 0.3 push-config methods (JSON-RPC and `/v1/` REST), per-config wire
//! versions (a 0.3 webhook gets the whole Task in 0.3 JSON), and version negotiation.

use crate::common;

use std::time::Duration;

use common::{Receiver, TestHub, fast_delivery, status_event};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn rpc03(hub: &TestHub, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": "v03", "method": method, "params": params});
    let (status, response) = hub.rpc_raw(body.to_string(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    response
}

#[tokio::test]
async fn the_03_jsonrpc_methods_round_trip_with_03_shapes() {
    let hub = TestHub::start().await;
    let set = rpc03(
        &hub,
        "tasks/pushNotificationConfig/set",
        json!({"taskId": "t1", "pushNotificationConfig": {
        "id": "cfg-1", "url": "http://127.0.0.1:9/a", "token": "tok-SECRET",
        "authentication": {"schemes": ["Bearer", "Basic"], "credentials": "cred-SECRET"}}}),
    )
    .await;
    assert_eq!(
        set["result"],
        json!({"taskId": "t1", "pushNotificationConfig": {"id": "cfg-1", "url": "http://127.0.0.1:9/a",
        "authentication": {"schemes": ["Bearer", "Basic"]}}}),
        "{set}"
    );
    rpc03(&hub, "tasks/pushNotificationConfig/set", json!({"taskId": "t1", "pushNotificationConfig": {"id": "t1", "url": "http://127.0.0.1:9/b"}})).await;

    let named = rpc03(
        &hub,
        "tasks/pushNotificationConfig/get",
        json!({"id": "t1", "pushNotificationConfigId": "cfg-1"}),
    )
    .await;
    assert_eq!(named["result"]["pushNotificationConfig"]["id"], "cfg-1");
    let default = rpc03(
        &hub,
        "tasks/pushNotificationConfig/get",
        json!({"id": "t1"}),
    )
    .await;
    assert_eq!(
        default["result"]["pushNotificationConfig"]["id"], "t1",
        "without a config id: the one named like the task"
    );
    let listed = rpc03(
        &hub,
        "tasks/pushNotificationConfig/list",
        json!({"id": "t1"}),
    )
    .await;
    assert_eq!(
        listed["result"].as_array().unwrap().len(),
        2,
        "a bare array: {listed}"
    );
    assert!(!listed.to_string().contains("SECRET"));
    let deleted = rpc03(
        &hub,
        "tasks/pushNotificationConfig/delete",
        json!({"id": "t1", "pushNotificationConfigId": "cfg-1"}),
    )
    .await;
    assert_eq!(deleted["result"], Value::Null);
    assert!(deleted.get("error").is_none());
    let missing = rpc03(
        &hub,
        "tasks/pushNotificationConfig/get",
        json!({"id": "t1", "pushNotificationConfigId": "cfg-1"}),
    )
    .await;
    assert_eq!(missing["error"]["code"], -32001);
    let bad = rpc03(&hub, "tasks/pushNotificationConfig/set", json!({"taskId": "t1", "pushNotificationConfig": {"url": "http://127.0.0.1:9/a", "authentication": {"schemes": []}}})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    hub.stop().await;
}

#[tokio::test]
async fn the_03_rest_binding_accepts_both_create_bodies_and_answers_proto_json() {
    let hub = TestHub::start().await;
    let wrapped = json!({"parent": "tasks/t1", "configId": "cfg-w", "config": {"name": "tasks/t1/pushNotificationConfigs/cfg-w",
        "pushNotificationConfig": {"url": "http://127.0.0.1:9/w", "token": "t"}}});
    let (status, created) = hub
        .rest(
            Method::POST,
            "/v1/tasks/t1/pushNotificationConfigs",
            Some(wrapped),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        created,
        json!({"name": "tasks/t1/pushNotificationConfigs/cfg-w", "pushNotificationConfig": {"id": "cfg-w", "url": "http://127.0.0.1:9/w"}})
    );
    let bare = json!({"name": "tasks/t1/pushNotificationConfigs/cfg-b", "pushNotificationConfig": {"id": "cfg-b", "url": "http://127.0.0.1:9/b"}});
    let (status, _) = hub
        .rest(
            Method::POST,
            "/v1/tasks/t1/pushNotificationConfigs",
            Some(bare),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = hub
        .rest(Method::GET, "/v1/tasks/t1/pushNotificationConfigs", None)
        .await;
    assert_eq!(listed["configs"].as_array().unwrap().len(), 2);
    assert_eq!(listed["nextPageToken"], "");
    let (status, got) = hub
        .rest(
            Method::GET,
            "/v1/tasks/t1/pushNotificationConfigs/cfg-b",
            None,
        )
        .await;
    assert_eq!(
        (status, got["name"].as_str()),
        (
            StatusCode::OK,
            Some("tasks/t1/pushNotificationConfigs/cfg-b")
        )
    );
    let (status, _) = hub
        .rest(
            Method::DELETE,
            "/v1/tasks/t1/pushNotificationConfigs/cfg-b",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = hub
        .rest(
            Method::GET,
            "/v1/tasks/t1/pushNotificationConfigs/cfg-b",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn a_03_and_a_10_webhook_on_one_task_each_get_their_own_shape_in_the_same_order() {
    let old = Receiver::start().await;
    let new = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    rpc03(&hub, "tasks/pushNotificationConfig/set", json!({"taskId": "t1", "pushNotificationConfig": {"url": old.url("/old"), "token": "tok-03"}})).await;
    hub.create_config("t1", &new.url("/new")).await;
    hub.publish(
        json!({"task": {"id": "t1", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"},
        "history": [{"messageId": "m0", "role": "ROLE_USER", "parts": [{"text": "hi"}]}]}}),
    )
    .await;
    hub.publish(json!({"artifactUpdate": {"taskId": "t1", "contextId": "c", "artifact": {"artifactId": "a", "parts": [{"text": "42"}]}}})).await;
    hub.publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    let old_got = old.wait_for(3, WAIT).await;
    let new_got = new.wait_for(3, WAIT).await;
    assert_eq!(
        old_got.iter().map(|r| r.sequence()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        new_got.iter().map(|r| r.sequence()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for r in &old_got {
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("a2a-version"), "0.3");
        assert_eq!(r.header("x-a2a-notification-token"), "tok-03");
        assert_eq!(
            r.json()["kind"],
            "task",
            "a 0.3 webhook gets the whole Task"
        );
    }
    assert_eq!(old_got[0].json()["status"]["state"], "submitted");
    assert_eq!(old_got[0].json()["history"][0]["role"], "user");
    assert_eq!(
        old_got[1].json()["artifacts"][0]["parts"][0],
        json!({"kind": "text", "text": "42"})
    );
    assert_eq!(old_got[2].json()["status"]["state"], "completed");
    assert_eq!(
        new_got[2].json(),
        status_event("t1", "TASK_STATE_COMPLETED"),
        "a 1.0 webhook keeps getting StreamResponse"
    );
    assert_eq!(new_got[0].header("a2a-version"), "1.0");
    hub.stop().await;
}

#[tokio::test]
async fn versions_not_served_get_the_right_error_in_every_binding() {
    let hub = TestHub::start().await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/pushNotificationConfig/list", "params": {"id": "t"}}).to_string();
    let (_, answer) = hub.rpc_raw(body.clone(), &[("A2A-Version", "2.0")]).await;
    assert_eq!(answer["error"]["code"], -32009);
    let (_, answer) = hub.rpc_raw(body, &[("A2A-Version", "1.0")]).await;
    assert_eq!(
        answer["error"]["code"], -32601,
        "a 0.3 method asked for as 1.0: {answer}"
    );
    for path in [
        "/tasks/t/pushNotificationConfigs",
        "/v1/tasks/t/pushNotificationConfigs",
    ] {
        let response = hub
            .http
            .get(format!("{}{path}", hub.public))
            .header("A2A-Version", "2.0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body.to_string().contains("VERSION_NOT_SUPPORTED"),
            "{path}: {body}"
        );
    }
    let response = hub
        .http
        .get(format!("{}/v1/tasks/t/pushNotificationConfigs", hub.public))
        .header("A2A-Version", "1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "the /v1/ paths are 0.3"
    );
    hub.stop().await;
}
