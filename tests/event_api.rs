//! The event API on the admin listener: publishing, sequence numbers, folding, deliveries
//! per active config, validation, batch atomicity, body limits and the admin token.

use crate::common;

use common::{TestHub, status_event};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const HOOK: &str = "http://127.0.0.1:9/hook";

#[tokio::test]
async fn a_published_event_gets_the_next_sequence_and_one_delivery_per_active_config() {
    let hub = TestHub::start().await;
    let a = hub.create_config("t1", HOOK).await;
    let b = hub.create_config("t1", HOOK).await;
    hub.create_config("other-task", HOOK).await;

    let first = hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    assert_eq!(first["taskId"], "t1");
    assert_eq!(first["sequence"], 1);
    uuid::Uuid::parse_str(first["eventId"].as_str().unwrap()).unwrap();
    let mut configs: Vec<&str> = first["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["configId"].as_str().unwrap())
        .collect();
    configs.sort();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort();
    assert_eq!(configs, expected);

    let second = hub
        .publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    assert_eq!(second["sequence"], 2);
    let elsewhere = hub.publish(status_event("t2", "TASK_STATE_WORKING")).await;
    assert_eq!(elsewhere["sequence"], 1, "sequences are per task");
    assert_eq!(
        elsewhere["deliveries"],
        json!([]),
        "a task without configs gets no deliveries"
    );

    let (status, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["lastSequence"], 2);
    assert_eq!(view["terminal"], true);
    assert_eq!(view["task"]["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(view["deliveries"]["pending"], 4);
    hub.stop().await;
}

#[tokio::test]
async fn the_task_view_folds_every_kind_of_event() {
    let hub = TestHub::start().await;
    hub.publish(
        json!({"task": {"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_SUBMITTED"},
        "history": [{"messageId": "m0", "role": "ROLE_USER", "parts": [{"text": "hello"}]}]}}),
    )
    .await;
    hub.publish(json!({"statusUpdate": {"taskId": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_WORKING",
        "message": {"messageId": "m1", "role": "ROLE_AGENT", "parts": [{"text": "working"}]}}}}))
        .await;
    for (text, append) in [("part one ", false), ("part two", true)] {
        hub.publish(
            json!({"artifactUpdate": {"taskId": "t1", "contextId": "c1", "append": append,
            "artifact": {"artifactId": "answer", "parts": [{"text": text}]}}}),
        )
        .await;
    }
    hub.publish(json!({"message": {"messageId": "m2", "taskId": "t1", "role": "ROLE_AGENT", "parts": [{"text": "fyi"}]}}))
        .await;
    hub.publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;

    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    let task = &view["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
    let history: Vec<&str> = task["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["m0", "m2", "m1"],
        "messages join history; the old status message moves there last"
    );
    assert_eq!(
        task["artifacts"][0]["parts"],
        json!([{"text": "part one "}, {"text": "part two"}])
    );
    assert_eq!(view["lastSequence"], 6);
    assert_eq!(view["terminal"], true);
    hub.stop().await;
}

#[tokio::test]
async fn malformed_events_are_400_problems_that_name_the_field() {
    let hub = TestHub::start().await;
    let cases: [(&str, &str); 7] = [
        ("{not json", "body"),
        ("[1]", "body"),
        ("{}", "body"),
        (r#"{"task": {}, "statusUpdate": {}}"#, "body"),
        (
            r#"{"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": []}}"#,
            "message.taskId",
        ),
        (
            r#"{"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "FINISHED"}}}"#,
            "statusUpdate",
        ),
        (
            r#"{"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}, "extra": 1}"#,
            "extra",
        ),
    ];
    for (body, field) in cases {
        let (status, content_type, problem) = hub.admin_post("/api/v1/events", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["field"], field, "{body}: {problem}");
        assert_eq!(problem["status"], 400);
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    let (status, _) = hub.admin_get("/api/v1/tasks/t").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    hub.stop().await;
}

#[tokio::test]
async fn one_bad_item_rejects_the_whole_batch_and_stores_nothing() {
    let hub = TestHub::start().await;
    hub.create_config("t1", HOOK).await;
    let batch = json!([
        status_event("t1", "TASK_STATE_WORKING"),
        status_event("t1", "TASK_STATE_INPUT_REQUIRED"),
        {"statusUpdate": {"taskId": "t1", "status": {"state": "TASK_STATE_WORKING"}}},
    ]);
    let (status, _, problem) = hub
        .admin_post("/api/v1/events:batch", batch.to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "[2].statusUpdate", "{problem}");
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["lastSequence"], 0, "{view}");
    assert_eq!(view["deliveries"]["pending"], 0);

    let good = json!([
        status_event("t1", "TASK_STATE_WORKING"),
        status_event("t2", "TASK_STATE_WORKING"),
        status_event("t1", "TASK_STATE_COMPLETED")
    ]);
    let (status, _, accepted) = hub
        .admin_post("/api/v1/events:batch", good.to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let sequences: Vec<(String, u64)> = accepted["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["taskId"].as_str().unwrap().to_string(),
                e["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sequences,
        [
            ("t1".to_string(), 1),
            ("t2".to_string(), 1),
            ("t1".to_string(), 2)
        ]
    );
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["deliveries"]["pending"], 2);
    hub.stop().await;
}

#[tokio::test]
async fn batches_must_hold_between_one_and_a_thousand_events() {
    let hub = TestHub::start_with(|s| s.limits.max_body_bytes = 4 * 1024 * 1024).await;
    let (status, _, problem) = hub.admin_post("/api/v1/events:batch", "[]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().contains("at least one"),
        "{problem}"
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|i| status_event(&format!("t{i}"), "TASK_STATE_WORKING"))
        .collect();
    let (status, _, problem) = hub
        .admin_post("/api/v1/events:batch", Value::Array(too_many).to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().contains("1000"),
        "{problem}"
    );
    let (status, _, problem) = hub
        .admin_post(
            "/api/v1/events:batch",
            status_event("t", "TASK_STATE_WORKING").to_string(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an object is not a batch: {problem}"
    );
    let thousand: Vec<Value> = (0..1000)
        .map(|i| status_event(&format!("t{}", i % 10), "TASK_STATE_WORKING"))
        .collect();
    let (status, _, accepted) = hub
        .admin_post("/api/v1/events:batch", Value::Array(thousand).to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(accepted["events"].as_array().unwrap().len(), 1000);
    let (_, view) = hub.admin_get("/api/v1/tasks/t3").await;
    assert_eq!(view["lastSequence"], 100);
    hub.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let hub = TestHub::start_with(|s| s.limits.max_body_bytes = 2048).await;
    let big = json!({"message": {"messageId": "m", "taskId": "t", "role": "ROLE_AGENT", "parts": [{"text": "x".repeat(4000)}]}});
    let (status, content_type, problem) = hub.admin_post("/api/v1/events", big.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(content_type, "application/problem+json");
    assert!(
        problem["detail"].as_str().unwrap().contains("2048"),
        "{problem}"
    );
    let (status, _, _) = hub
        .admin_post("/api/v1/events:batch", format!("[{big}]"))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    hub.stop().await;
}

#[tokio::test]
async fn events_and_configs_are_scoped_by_tenant() {
    let hub = TestHub::start().await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"tenant": "acme", "taskId": "t1", "url": HOOK}),
    )
    .await;
    let default_tenant = hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    assert_eq!(
        default_tenant["deliveries"],
        json!([]),
        "acme's config is not the default tenant's"
    );
    let (status, _, acme) = hub
        .admin_post(
            "/api/v1/events?tenant=acme",
            status_event("t1", "TASK_STATE_WORKING").to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(acme["sequence"], 1, "acme's t1 is a different task");
    assert_eq!(acme["deliveries"].as_array().unwrap().len(), 1);
    let (_, view) = hub.admin_get("/api/v1/tasks/t1?tenant=acme").await;
    assert_eq!(view["tenant"], "acme");
    assert_eq!(view["deliveries"]["pending"], 1);
    hub.stop().await;
}

#[tokio::test]
async fn deleting_a_config_cancels_its_undelivered_deliveries() {
    let hub = TestHub::start().await;
    let config = hub.create_config("t1", HOOK).await;
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    hub.rpc_ok(
        "DeleteTaskPushNotificationConfig",
        json!({"taskId": "t1", "id": config}),
    )
    .await;
    let after = hub
        .publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    assert_eq!(after["deliveries"], json!([]));
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["deliveries"]["pending"], 0);
    assert_eq!(view["deliveries"]["canceled"], 1);
    hub.stop().await;
}

#[tokio::test]
async fn the_admin_token_guards_the_api_but_not_health() {
    let hub = TestHub::start_with(|s| {
        s.server.admin_token = a2a_push_hub::config::Secret::new("admin-s3cret")
    })
    .await;
    let (status, _, problem) = hub
        .admin_post(
            "/api/v1/events",
            status_event("t", "TASK_STATE_WORKING").to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!problem.to_string().contains("admin-s3cret"));
    for token in ["wrong", "admin-s3cre", "admin-s3cretX"] {
        let response = hub
            .http
            .get(format!("{}/api/v1/tasks/t", hub.admin))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
    }
    let response = hub
        .http
        .post(format!("{}/api/v1/events", hub.admin))
        .header("content-type", "application/json")
        .bearer_auth("admin-s3cret")
        .body(status_event("t", "TASK_STATE_WORKING").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(hub.admin_get("/healthz").await.0, StatusCode::OK);
    assert_eq!(hub.admin_get("/readyz").await.0, StatusCode::OK);
    hub.stop().await;
}

#[tokio::test]
async fn events_are_not_served_on_the_public_listener() {
    let hub = TestHub::start().await;
    let response = hub
        .http
        .post(format!("{}/api/v1/events", hub.public))
        .header("content-type", "application/json")
        .body(status_event("t", "TASK_STATE_WORKING").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (status, _) = hub.admin_get("/api/v1/tasks/t").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

/// POSTs `body` to the admin listener's `path` with extra `headers`; status, headers, JSON.
async fn post_with(
    hub: &TestHub,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = hub
        .http
        .post(format!("{}{path}", hub.admin))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_publish_retried_with_its_idempotency_key_is_answered_as_the_first_and_delivered_once() {
    let receiver = common::Receiver::start().await;
    let hub = TestHub::start_with(common::fast_delivery).await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    let key = [("Idempotency-Key", "publish-7f3a")];
    let first_trace = (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    let (status, headers, first) = post_with(
        &hub,
        "/api/v1/events",
        &[key[0], first_trace],
        r#"{"statusUpdate": {"taskId": "t1", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}"#.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    assert!(first.get("replayed").is_none(), "{first}");

    // The retry: the same event spelled differently, in another span of the same trace.
    let retry_trace = (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
    );
    let (status, headers, again) = post_with(
        &hub,
        "/api/v1/events",
        &[key[0], retry_trace],
        r#"{"statusUpdate":{"status":{"state":"TASK_STATE_WORKING"},"contextId":"c","taskId":"t1"}}"#
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["replayed"], true);
    for field in ["eventId", "taskId", "sequence", "deliveries"] {
        assert_eq!(
            again[field], first[field],
            "{field}: the first answer again"
        );
    }

    // One delivery for the two publishes: the next event is the second to arrive.
    hub.publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    let received = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        received.iter().map(|r| r.sequence()).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        received[0].header("traceparent")[..35],
        first_trace.1[..35],
        "delivered in the first publish's trace"
    );
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["lastSequence"], 2);
    let metrics = hub.metrics().await;
    assert_eq!(
        common::metric_value(&metrics, "a2a_push_hub_events_replayed_total"),
        1.0
    );
    assert_eq!(
        common::metric_value(&metrics, "a2a_push_hub_events_published_total"),
        2.0
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_used_for_another_event_is_a_409_that_stores_nothing() {
    let hub = TestHub::start().await;
    let key = [("Idempotency-Key", "k-1")];
    let (status, _, first) = post_with(
        &hub,
        "/api/v1/events",
        &key,
        status_event("t1", "TASK_STATE_WORKING").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, headers, problem) = post_with(
        &hub,
        "/api/v1/events",
        &key,
        status_event("t1", "TASK_STATE_COMPLETED").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem["field"], "Idempotency-Key");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(first["eventId"].as_str().unwrap()) && detail.contains("sequence 1"),
        "names the event the key stands for: {detail}"
    );
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["lastSequence"], 1);
    assert_eq!(view["task"]["status"]["state"], "TASK_STATE_WORKING");

    // Keys are per tenant.
    let (status, _, other) = post_with(
        &hub,
        "/api/v1/events?tenant=other",
        &key,
        status_event("t1", "TASK_STATE_COMPLETED").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{other}");
    assert_eq!(other["sequence"], 1);
    assert!(other.get("replayed").is_none());
    hub.stop().await;
}

#[tokio::test]
async fn each_event_of_a_batch_has_its_own_idempotency_key() {
    let receiver = common::Receiver::start().await;
    let hub = TestHub::start_with(common::fast_delivery).await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    let keyed = |key: &str, state: &str| {
        let mut event = status_event("t1", state);
        event["idempotencyKey"] = json!(key);
        event
    };
    let first_batch = json!([
        keyed("a", "TASK_STATE_SUBMITTED"),
        keyed("b", "TASK_STATE_WORKING")
    ]);
    let (status, _, first) =
        post_with(&hub, "/api/v1/events:batch", &[], first_batch.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");

    // The batch resent after a timeout, with one event more.
    let resent = json!([
        keyed("a", "TASK_STATE_SUBMITTED"),
        keyed("b", "TASK_STATE_WORKING"),
        keyed("c", "TASK_STATE_COMPLETED")
    ]);
    let (status, _, again) = post_with(&hub, "/api/v1/events:batch", &[], resent.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let events = again["events"].as_array().unwrap();
    for i in 0..2 {
        assert_eq!(events[i]["eventId"], first["events"][i]["eventId"]);
        assert_eq!(events[i]["replayed"], true);
    }
    assert_eq!(events[2]["sequence"], 3);
    assert!(events[2].get("replayed").is_none());

    // Receivers get each event once, without the hub's field.
    let received = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        received.iter().map(|r| r.sequence()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        received[2].json(),
        status_event("t1", "TASK_STATE_COMPLETED")
    );

    // A key taken by another event, stored or in the same batch: 409, nothing stored.
    for (batch, field) in [
        (
            json!([
                keyed("d", "TASK_STATE_WORKING"),
                keyed("a", "TASK_STATE_FAILED")
            ]),
            "[1].idempotencyKey",
        ),
        (
            json!([
                keyed("e", "TASK_STATE_WORKING"),
                keyed("e", "TASK_STATE_FAILED")
            ]),
            "[1].idempotencyKey",
        ),
    ] {
        let (status, _, problem) =
            post_with(&hub, "/api/v1/events:batch", &[], batch.to_string()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert_eq!(problem["field"], field);
    }
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["lastSequence"], 3);

    // The header keys one event; a batch's events carry their own.
    let (status, _, problem) = post_with(
        &hub,
        "/api/v1/events:batch",
        &[("Idempotency-Key", "whole-batch")],
        json!([status_event("t1", "TASK_STATE_WORKING")]).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "Idempotency-Key");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("idempotencyKey")
    );
    hub.stop().await;
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400s_that_say_what_a_key_is() {
    let hub = TestHub::start().await;
    let long = "k".repeat(256);
    let event = status_event("t1", "TASK_STATE_WORKING");
    let mut with_field = event.clone();
    with_field["idempotencyKey"] = json!("field-key");
    let mut numeric = event.clone();
    numeric["idempotencyKey"] = json!(42);
    for (headers, body, field) in [
        (
            vec![("Idempotency-Key", "")],
            event.clone(),
            "Idempotency-Key",
        ),
        (
            vec![("Idempotency-Key", long.as_str())],
            event.clone(),
            "Idempotency-Key",
        ),
        (
            vec![("Idempotency-Key", "header-key")],
            with_field,
            "idempotencyKey",
        ),
        (vec![], numeric, "idempotencyKey"),
    ] {
        let (status, _, problem) =
            post_with(&hub, "/api/v1/events", &headers, body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}: {problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let response = hub
        .http
        .post(format!("{}/api/v1/events", hub.admin))
        .header("content-type", "application/json")
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        )
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, _) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    hub.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_is_forgotten_once_its_window_has_passed() {
    let hub = TestHub::start_with(|s| {
        s.retention.idempotency_keys = a2a_push_hub::config::HumanDuration(Duration::from_secs(1));
    })
    .await;
    let key = [("Idempotency-Key", "short-lived")];
    let body = status_event("t1", "TASK_STATE_WORKING").to_string();
    let (status, _, first) = post_with(&hub, "/api/v1/events", &key, body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(first["sequence"], 1);
    common::wait_until(Duration::from_secs(15), "the key purged", || async {
        let metrics = hub.metrics().await;
        (common::metric_value(&metrics, "a2a_push_hub_idempotency_keys_purged_total") >= 1.0)
            .then_some(())
    })
    .await;
    let (status, headers, later) = post_with(&hub, "/api/v1/events", &key, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(later["sequence"], 2, "a new event: {later}");
    assert!(headers.get("idempotent-replayed").is_none());
    hub.stop().await;
}
