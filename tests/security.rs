//! An exposed hub holds: who may use each listener, what a caller may see of others' tasks,
//! and what a captured or crafted request cannot do. Each test is a black-box attack over real
//! HTTP against a running hub.

use crate::common;

use std::time::Duration;

use a2a_push_hub::config::{ApiKey, HumanDuration, PublicAuth};
use a2a_push_hub::{Hub, Settings};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const HOOK: &str = "http://127.0.0.1:9/hook";

fn sha256_hex(text: &str) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Alice and Bob, each with an API key.
fn with_api_keys(settings: &mut Settings) {
    settings.server.public_auth = PublicAuth::ApiKeys;
    settings.server.api_keys = ["alice", "bob"]
        .into_iter()
        .map(|who| ApiKey {
            principal: who.to_string(),
            sha256: sha256_hex(&format!("{who}-key")),
        })
        .collect();
}

async fn rpc_as(
    hub: &TestHub,
    key: Option<&str>,
    method: &str,
    params: Value,
) -> (StatusCode, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let bearer = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    hub.rpc_raw(body.to_string(), &headers).await
}

#[tokio::test]
async fn without_a_valid_key_every_binding_answers_401_and_stores_nothing() {
    let hub = TestHub::start_with(with_api_keys).await;
    let create = json!({"taskId": "t1", "url": HOOK});
    for key in [None, Some("wrong-key")] {
        let (status, answer) = rpc_as(
            &hub,
            key,
            "CreateTaskPushNotificationConfig",
            create.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["id"], 7, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("API key"),
            "{answer}"
        );
        assert!(
            !answer.to_string().contains("wrong-key"),
            "never echoes what was sent"
        );
    }
    let response = hub
        .http
        .post(format!("{}/tasks/t1/pushNotificationConfigs", hub.public))
        .header("content-type", "application/json")
        .body(json!({"url": HOOK}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let response = hub
        .http
        .get(format!(
            "{}/v1/tasks/t1/pushNotificationConfigs",
            hub.public
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "A2A 0.3 paths too"
    );
    let (_, listed) = rpc_as(
        &hub,
        Some("alice-key"),
        "ListTaskPushNotificationConfigs",
        json!({"taskId": "t1"}),
    )
    .await;
    assert_eq!(
        listed["error"]["code"], -32001,
        "nothing was stored, nobody owns t1: {listed}"
    );
    let metrics = hub.metrics().await;
    assert!(
        metrics.contains("a2a_push_hub_public_auth_failures_total 4"),
        "{metrics}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_tasks_configs_belong_to_its_first_principal_and_others_are_told_it_does_not_exist() {
    let hub = TestHub::start_with(with_api_keys).await;
    let (status, created) = rpc_as(
        &hub,
        Some("alice-key"),
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "id": "audit", "url": HOOK}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");

    // Bob, in both bindings and in A2A 0.3: the same answer as for a task that does not exist.
    let (_, nowhere) = rpc_as(
        &hub,
        Some("bob-key"),
        "ListTaskPushNotificationConfigs",
        json!({"taskId": "no-such-task"}),
    )
    .await;
    for (method, params) in [
        ("ListTaskPushNotificationConfigs", json!({"taskId": "t1"})),
        (
            "GetTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "audit"}),
        ),
        (
            "DeleteTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "audit"}),
        ),
        (
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "audit", "url": "http://127.0.0.1:9/bob"}),
        ),
    ] {
        let (_, answer) = rpc_as(&hub, Some("bob-key"), method, params).await;
        assert_eq!(answer["error"]["code"], -32001, "{method}: {answer}");
        assert!(
            !answer.to_string().contains("forbidden") && !answer.to_string().contains("alice"),
            "{answer}"
        );
    }
    assert_eq!(
        nowhere["error"]["message"]
            .as_str()
            .unwrap()
            .replace("no-such-task", "t1"),
        rpc_as(
            &hub,
            Some("bob-key"),
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "t1"})
        )
        .await
        .1["error"]["message"],
        "a foreign task reads exactly like a missing one"
    );
    let (_, v03) = hub
        .rpc_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/pushNotificationConfig/list", "params": {"id": "t1"}}).to_string(),
            &[("authorization", "Bearer bob-key")],
        )
        .await;
    assert_eq!(v03["error"]["code"], -32001, "{v03}");
    let response = hub
        .http
        .get(format!(
            "{}/tasks/t1/pushNotificationConfigs/audit",
            hub.public
        ))
        .header("x-api-key", "bob-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Alice's config is untouched, and X-API-Key works as well as Bearer.
    let response = hub
        .http
        .get(format!("{}/tasks/t1/pushNotificationConfigs", hub.public))
        .header("x-api-key", "alice-key")
        .send()
        .await
        .unwrap();
    let listed: Value = response.json().await.unwrap();
    assert_eq!(listed["configs"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["configs"][0]["url"], HOOK);
    hub.stop().await;
}

#[tokio::test]
async fn an_owner_declared_by_the_publisher_takes_the_task_and_the_event_arrives_without_it() {
    let hub = TestHub::start_with(|s| {
        with_api_keys(s);
        fast_delivery(s);
    })
    .await;
    let receiver = Receiver::start().await;
    let (_, alice) = rpc_as(
        &hub,
        Some("alice-key"),
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "url": receiver.url("/alice")}),
    )
    .await;
    assert!(alice.get("result").is_some(), "{alice}");
    let mut event = status_event("t1", "TASK_STATE_WORKING");
    event["owner"] = json!("bob");
    let published = hub.publish(event).await;
    assert_eq!(
        published["deliveries"].as_array().unwrap().len(),
        0,
        "alice's config is gone: {published}"
    );
    let (_, listed) = rpc_as(
        &hub,
        Some("alice-key"),
        "ListTaskPushNotificationConfigs",
        json!({"taskId": "t1"}),
    )
    .await;
    assert_eq!(listed["error"]["code"], -32001, "{listed}");
    let (_, bobs) = rpc_as(
        &hub,
        Some("bob-key"),
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "url": receiver.url("/bob")}),
    )
    .await;
    assert!(bobs.get("result").is_some(), "{bobs}");
    hub.publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    let received = wait_until(WAIT, "the completion reaches bob", || async {
        let all = receiver.received();
        all.iter()
            .any(|r| r.json().get("statusUpdate").is_some())
            .then_some(all)
    })
    .await;
    assert!(
        received.iter().all(|r| r.path == "/bob"),
        "nothing reaches alice"
    );
    for request in &received {
        assert!(request.json().get("owner").is_none(), "{}", request.json());
    }

    let (status, _, refused) = hub
        .admin_post("/api/v1/events", json!({"owner": 5, "statusUpdate": status_event("t2", "TASK_STATE_WORKING")["statusUpdate"]}).to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["field"], "owner", "{refused}");
    hub.stop().await;
}

#[tokio::test]
async fn a_task_holds_at_most_max_configs_per_task_and_replacing_one_still_works() {
    let hub = TestHub::start_with(|s| s.limits.max_configs_per_task = 3).await;
    for i in 0..3 {
        hub.rpc_ok(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t", "id": format!("c{i}"), "url": HOOK}),
        )
        .await;
    }
    let refused = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t", "id": "c3", "url": HOOK}),
        )
        .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_configs_per_task"),
        "{refused}"
    );
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t", "id": "c1", "url": "http://127.0.0.1:9/other"}),
    )
    .await;
    hub.stop().await;
}

async fn start_error(adjust: impl FnOnce(&mut Settings)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir);
    adjust(&mut settings);
    match Hub::builder(settings).start().await {
        Ok(hub) => {
            hub.shutdown().await;
            panic!("the hub started")
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_listener_open_to_the_network_without_authentication_refuses_to_start() {
    let error = start_error(|s| s.server.public_listen = "0.0.0.0:0".parse().unwrap()).await;
    assert!(error.contains("server.public_base_url"), "{error}");
    let error = start_error(|s| {
        s.server.public_listen = "0.0.0.0:0".parse().unwrap();
        s.server.public_base_url = "https://hub.example.com".to_string();
    })
    .await;
    assert!(
        error.contains("server.public_auth") && error.contains("allow_unauthenticated_public"),
        "{error}"
    );
    let error = start_error(|s| s.server.admin_listen = "[::]:0".parse().unwrap()).await;
    assert!(
        error.contains("server.admin_token") && error.contains("allow_unauthenticated_admin"),
        "{error}"
    );

    // The documented escape hatches.
    let hub = TestHub::start_with(|s| {
        s.server.public_listen = "0.0.0.0:0".parse().unwrap();
        s.server.public_base_url = "http://127.0.0.1:1".to_string();
        s.server.allow_unauthenticated_public = true;
        s.server.admin_listen = "0.0.0.0:0".parse().unwrap();
        s.server.admin_token = a2a_push_hub::config::Secret::new("t0ken-for-the-admin");
    })
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn browsers_cannot_be_turned_against_the_listeners() {
    let hub = TestHub::start().await;
    // A cross-site form or text/plain POST.
    for (url, content_type) in [
        (format!("{}/api/v1/events", hub.admin), "text/plain"),
        (
            format!("{}/api/v1/keys:rotate", hub.admin),
            "application/x-www-form-urlencoded",
        ),
        (format!("{}/", hub.public), "text/plain"),
        (
            format!("{}/tasks/t/pushNotificationConfigs", hub.public),
            "text/plain",
        ),
    ] {
        let response = hub
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(json!({"statusUpdate": {}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{url}"
        );
    }
    let (_, keys) = hub.admin_get("/api/v1/keys").await;
    // DNS rebinding: a page of evil.example whose name now resolves to the hub.
    for (method, url) in [
        (reqwest::Method::GET, format!("{}/api/v1/keys", hub.admin)),
        (
            reqwest::Method::POST,
            format!("{}/api/v1/keys:rotate", hub.admin),
        ),
        (reqwest::Method::POST, format!("{}/", hub.public)),
    ] {
        let response = hub
            .http
            .request(method, &url)
            .header("host", "evil.example")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("server.allowed_hosts")
        );
    }
    assert_eq!(
        hub.admin_get("/api/v1/keys").await.1,
        keys,
        "no rotation happened"
    );
    hub.stop().await;
}

#[tokio::test]
async fn replaying_dead_deliveries_needs_a_filter_or_all() {
    let hub = TestHub::start().await;
    for (path, body) in [
        ("/api/v1/deliveries:replay", ""),
        ("/api/v1/deliveries:replay", "{}"),
        ("/api/v1/deliveries:replay?tenant=x", "{}"),
    ] {
        let (status, content_type, answer) = hub.admin_post(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(content_type, "application/problem+json");
        assert!(
            answer["detail"].as_str().unwrap().contains("\"all\": true"),
            "{answer}"
        );
    }
    let (status, _, answer) = hub
        .admin_post("/api/v1/deliveries:replay", r#"{"all": true}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, _, answer) = hub
        .admin_post("/api/v1/deliveries:replay", r#"{"taskId": "t"}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    hub.stop().await;
}

#[tokio::test]
async fn unknown_fields_and_malformed_cursors_are_problems_naming_what_to_fix() {
    let hub = TestHub::start().await;
    for (path, body, field) in [
        ("/api/v1/subscriptions", json!({"tokne": "x"}), "tokne"),
        (
            "/api/v1/subscriptions",
            json!({"authentication": {"scheme": "Bearer", "credential": "x"}}),
            "authentication.credential",
        ),
        (
            "/api/v1/deliveries:replay",
            json!({"all": true, "taskid": "t"}),
            "taskid",
        ),
        (
            "/api/v1/events",
            json!({"statusUpdate": status_event("t", "TASK_STATE_WORKING")["statusUpdate"], "extra": 1}),
            "extra",
        ),
    ] {
        let (status, content_type, answer) = hub.admin_post(path, body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let subscription = create_subscription(&hub, json!({})).await;
    let id = subscription["id"].as_str().unwrap();
    let response = hub
        .http
        .get(format!("{}/api/v1/subscriptions/{id}/events", hub.admin))
        .header("accept", "text/event-stream")
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    for path in [
        format!("/api/v1/subscriptions/{id}/events?after=abc"),
        format!("/api/v1/subscriptions/{id}/receipts?after=-1"),
        "/api/v1/deliveries?after=not-a-cursor".to_string(),
        format!("/api/v1/subscriptions/{id}/events?limit=lots"),
    ] {
        let (status, content_type, _) = hub.admin_get_typed(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(content_type, "application/problem+json", "{path}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn webhooks_on_ipv4_translated_addresses_or_port_0_are_refused() {
    let hub = TestHub::start().await;
    for url in [
        "http://[::ffff:0:7f00:1]/hook",
        "http://[::ffff:0:a9fe:a9fe]/",
        "http://127.0.0.1:0/hook",
        "http://example.com:0/",
    ] {
        let refused = hub
            .rpc(
                "CreateTaskPushNotificationConfig",
                json!({"taskId": "t", "url": url}),
            )
            .await;
        assert_eq!(refused["error"]["code"], -32602, "{url}: {refused}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_receiver_echoing_its_request_leaves_no_secret_in_the_attempt_log() {
    let hub = TestHub::start_with(fast_delivery).await;
    let receiver = Receiver::start().await;
    receiver.script(|request| {
        let mut reply = Reply::status(500);
        reply.body = format!(
            "token={} auth={}",
            request.header("x-a2a-notification-token"),
            request.header("authorization")
        );
        reply
    });
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t", "url": receiver.url("/echo"), "token": "tok-sekret-123456",
               "authentication": {"scheme": "Bearer", "credentials": "cred-sekret-654321"}}),
    )
    .await;
    let published = hub.publish(status_event("t", "TASK_STATE_WORKING")).await;
    let delivery = published["deliveries"][0]["deliveryId"]
        .as_str()
        .unwrap()
        .to_string();
    receiver.wait_for(1, WAIT).await;
    let detail = wait_until(WAIT, "the attempt is logged", || async {
        let (_, detail) = hub
            .admin_get(&format!("/api/v1/deliveries/{delivery}"))
            .await;
        (detail["attemptLog"]
            .as_array()
            .is_some_and(|a| !a.is_empty()))
        .then_some(detail)
    })
    .await;
    let snippet = detail["attemptLog"][0]["responseSnippet"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(snippet, "token=**** auth=Bearer ****");
    hub.stop().await;
}

#[tokio::test]
async fn a_receipt_masks_a_subscription_secret_under_any_header_name() {
    let hub = TestHub::start().await;
    let created = create_subscription(&hub, json!({"token": "the-sub-token-42"})).await;
    let (id, url) = (
        created["id"].as_str().unwrap(),
        created["url"].as_str().unwrap(),
    );
    let (status, _) = push(
        &hub.http,
        url,
        &[
            ("x-a2a-notification-token", "the-sub-token-42"),
            ("x-debug-echo", "copy of the-sub-token-42"),
            ("x-api-key", "something-else"),
            ("content-type", "application/json"),
        ],
        status_event("t", "TASK_STATE_WORKING").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, receipts) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/receipts"))
        .await;
    let text = receipts.to_string();
    assert!(
        !text.contains("the-sub-token-42") && !text.contains("something-else"),
        "{text}"
    );
    assert!(text.contains("x-debug-echo"), "{text}");
    hub.stop().await;
}

/// A push the sender hub signed for `receiving`'s subscription, captured on its way: the
/// receiving hub's public base URL names the capturing receiver, so the JWT's audience is the
/// subscription's own inbound URL.
async fn captured_jwt_push(
    tolerance_s: u64,
) -> (
    TestHub,
    TestHub,
    String,
    String,
    Vec<(String, String)>,
    Vec<u8>,
) {
    let sender = TestHub::start_with(fast_delivery).await;
    let capture = Receiver::start().await;
    let base = format!("http://{}", capture.addr);
    let receiving = TestHub::start_with(|s| s.server.public_base_url = base.clone()).await;
    let jwks_url = format!("{}/.well-known/jwks.json", sender.public);
    let created = create_subscription(
        &receiving,
        json!({"jwksUrl": jwks_url, "issuer": sender.public, "toleranceSeconds": tolerance_s}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let advertised = created["url"].as_str().unwrap().to_string();
    let token = created["pushNotificationConfig"]["token"].as_str().unwrap();
    sender
        .rpc_ok("CreateTaskPushNotificationConfig", json!({"taskId": "t1", "url": advertised, "token": token, "authentication": {"scheme": "Bearer"}}))
        .await;
    sender
        .publish(status_event("t1", "TASK_STATE_WORKING"))
        .await;
    let captured = capture.wait_for(1, WAIT).await.remove(0);
    let headers = captured
        .headers
        .iter()
        .filter(|(n, _)| *n != "host" && *n != "content-length")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let url = format!("{}/inbound/{id}", receiving.public);
    (sender, receiving, id, url, headers, captured.body.to_vec())
}

fn without(headers: &[(String, String)], names: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| !names.contains(&n.as_str()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_captured_jwt_push_sent_again_with_a_fresh_webhook_id_is_a_duplicate() {
    let (sender, receiving, id, url, headers, body) = captured_jwt_push(300).await;
    let (status, first) = push(&receiving.http, &url, &refs(&headers), body.clone()).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{first}"
    );
    // The attacker drops the signature the new id would break and invents a new id.
    let mut forged = without(&headers, &["webhook-signature", "webhook-id"]);
    forged.push(("webhook-id".to_string(), "msg_fresh_0001".to_string()));
    let (status, again) = push(&receiving.http, &url, &refs(&forged), body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "duplicate", "{again}");
    let (_, page) = receiving
        .admin_get(&format!("/api/v1/subscriptions/{id}/events"))
        .await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        1,
        "accepted once: {page}"
    );
    sender.stop().await;
    receiving.stop().await;
}

#[tokio::test]
async fn a_captured_push_replayed_after_the_tolerance_but_before_its_jwt_expires_is_a_duplicate() {
    let (sender, receiving, _, url, headers, body) = captured_jwt_push(1).await;
    // Without the Standard Webhooks signature, whose timestamp would soon be too old: the JWT
    // alone verifies it, for minutes.
    let replay = without(&headers, &["webhook-signature"]);
    let (_, first) = push(&receiving.http, &url, &refs(&replay), body.clone()).await;
    assert_eq!(first["status"], "accepted", "{first}");
    // Past the subscription's 1 s tolerance: only the JWT's own lifetime still protects it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, again) = push(&receiving.http, &url, &refs(&replay), body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "duplicate", "{again}");
    sender.stop().await;
    receiving.stop().await;
}

#[tokio::test]
async fn a_full_replay_cache_drops_its_soonest_expiring_entries_and_counts_them() {
    let hub = TestHub::start_with(|s| s.inbound.replay_cache_max_entries = 2).await;
    let created = create_subscription(&hub, json!({"token": "tok-for-the-cache"})).await;
    let url = created["url"].as_str().unwrap();
    for i in 0..4 {
        let id = format!("msg_{i}");
        let (status, answer) = push(
            &hub.http,
            url,
            &[
                ("x-a2a-notification-token", "tok-for-the-cache"),
                ("webhook-id", &id),
            ],
            status_event(&format!("t{i}"), "TASK_STATE_WORKING").to_string(),
        )
        .await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (StatusCode::OK, Some("accepted"))
        );
    }
    let metrics = hub.metrics().await;
    assert!(
        metrics.contains("a2a_push_hub_inbound_replay_evictions_total 2"),
        "{metrics}"
    );
    hub.stop().await;
}

/// Opens `count` TCP connections to `addr` that send nothing, or only half a request head.
async fn open_connections(
    addr: &str,
    count: usize,
    partial_head: bool,
) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        if partial_head {
            stream
                .write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await
                .unwrap();
        }
        streams.push(stream);
    }
    streams
}

/// Whether the hub closed the connection (a read gives end of file or an error).
async fn closed_by_hub(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Whether the hub closed every one of `streams` (a sample of them) before `deadline`.
async fn all_closed_by(
    streams: &mut [tokio::net::TcpStream],
    deadline: std::time::Instant,
) -> bool {
    for stream in streams.iter_mut().step_by(25) {
        while !closed_by_hub(stream).await {
            if std::time::Instant::now() > deadline {
                return false;
            }
        }
    }
    true
}

#[tokio::test]
async fn idle_and_slow_connections_neither_starve_the_listeners_nor_stay_open() {
    let hub = TestHub::start_with(|s| {
        s.server.header_read_timeout = HumanDuration(Duration::from_secs(2));
        s.server.idle_timeout = HumanDuration(Duration::from_secs(3));
    })
    .await;
    let public = hub.public.trim_start_matches("http://").to_string();
    let admin = hub.admin.trim_start_matches("http://").to_string();
    let mut idle = open_connections(&public, 1500, false).await;
    idle.extend(open_connections(&admin, 150, false).await);
    let mut slow = open_connections(&public, 500, true).await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let (status, _) = hub.admin_get("/healthz").await;
        assert_eq!(status, StatusCode::OK);
        let listed = hub
            .rpc("ListTaskPushNotificationConfigs", json!({"taskId": "t"}))
            .await;
        assert!(listed.get("result").is_some(), "{listed}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered in {:?}",
            started.elapsed()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    assert!(
        all_closed_by(&mut slow, deadline).await,
        "slow request heads are cut off"
    );
    assert!(
        all_closed_by(&mut idle, deadline).await,
        "idle connections are closed"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_full_public_listener_refuses_more_connections_while_the_admin_listener_still_answers() {
    let hub = TestHub::start_with(|s| s.server.max_connections = 20).await;
    let public = hub.public.trim_start_matches("http://").to_string();
    let _held = open_connections(&public, 20, false).await;
    let mut extra = open_connections(&public, 10, false).await;
    for stream in &mut extra {
        let deadline = std::time::Instant::now() + WAIT;
        assert!(
            all_closed_by(std::slice::from_mut(stream), deadline).await,
            "a connection beyond the cap is closed at once"
        );
    }
    let (status, _) = hub.admin_get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = hub.metrics().await;
    assert!(
        metrics.contains("a2a_push_hub_connections_refused_total{listener=\"public\"} 10"),
        "{metrics}"
    );
    assert!(
        metrics.contains("a2a_push_hub_connections_open{listener=\"public\"} 20"),
        "{metrics}"
    );
    hub.stop().await;
}

/// An identity provider of the test: an ES256 key, its JWKS served by a receiver.
struct TestIssuer {
    key: aws_lc_rs::signature::EcdsaKeyPair,
    jwks: Receiver,
}

impl TestIssuer {
    async fn start() -> TestIssuer {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        use base64::Engine;
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "idp-1", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])}]})
        .to_string();
        let server = Receiver::start().await;
        server.script(move |_| {
            let mut reply = Reply::ok().header("content-type", "application/json");
            reply.body = jwks.clone();
            reply
        });
        TestIssuer { key, jwks: server }
    }

    fn token(&self, claims: Value) -> String {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "idp-1"});
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64(signature.as_ref()))
    }
}

#[tokio::test]
async fn bearer_jwts_of_the_trusted_issuer_authenticate_their_subject_and_the_card_says_so() {
    let issuer = TestIssuer::start().await;
    let jwks_url = issuer.jwks.url("/jwks.json");
    let hub = TestHub::start_with(|s| {
        s.server.public_auth = PublicAuth::Jwt;
        s.server.jwt = Some(a2a_push_hub::config::JwtAuthSettings {
            jwks_url,
            issuer: "https://idp.example".to_string(),
            audience: "a2a-push-hub".to_string(),
        });
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |sub: &str| json!({"iss": "https://idp.example", "aud": ["other", "a2a-push-hub"], "sub": sub, "iat": now, "exp": now + 300});
    let alice = issuer.token(claims("alice"));
    let bob = issuer.token(claims("bob"));
    let create = json!({"taskId": "t1", "url": HOOK});
    let (status, created) = rpc_as(
        &hub,
        Some(&alice),
        "CreateTaskPushNotificationConfig",
        create.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let (_, foreign) = rpc_as(
        &hub,
        Some(&bob),
        "ListTaskPushNotificationConfigs",
        json!({"taskId": "t1"}),
    )
    .await;
    assert_eq!(foreign["error"]["code"], -32001, "{foreign}");

    let mut wrong_audience = claims("alice");
    wrong_audience["aud"] = json!("someone-else");
    let mut expired = claims("alice");
    expired["exp"] = json!(now - 3600);
    let mut no_subject = claims("alice");
    no_subject.as_object_mut().unwrap().remove("sub");
    let tampered = format!("{}x", &alice[..alice.len() - 1]);
    for (what, token) in [
        ("wrong audience", issuer.token(wrong_audience)),
        ("expired", issuer.token(expired)),
        ("no subject", issuer.token(no_subject)),
        ("tampered", tampered),
    ] {
        let (status, answer) = rpc_as(
            &hub,
            Some(&token),
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "t1"}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
    }

    let card: Value = hub
        .http
        .get(format!("{}/.well-known/agent-card.json", hub.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        card["securitySchemes"]["hubJwt"]["httpAuthSecurityScheme"]["bearerFormat"], "JWT",
        "{card}"
    );
    assert_eq!(
        card["securityRequirements"][0]["schemes"]["hubJwt"],
        json!({"list": []}),
        "{card}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_body_that_trickles_in_slower_than_body_read_timeout_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = TestHub::start_with(|s| {
        s.server.body_read_timeout = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let admin = hub.admin.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&admin).await.unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    // One byte every 200 ms: each arrives well within any per-read timeout, the whole never.
    let (mut from_hub, mut to_hub) = stream.split();
    let mut answer = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut buffer = [0u8; 1024];
        tokio::select! {
            read = from_hub.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if to_hub.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the trickling body was never cut off"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut off after {elapsed:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    let (_, task) = hub.admin_get("/api/v1/tasks/t").await;
    assert!(
        task.get("lastSequence").is_none(),
        "nothing was published: {task}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn no_client_may_register_a_config_where_a_subscription_forwards() {
    let hub = TestHub::start().await;
    let answer = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"tenant": "inbound:some-subscription", "taskId": "t1", "url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("inbound:"),
        "{answer}"
    );
    let (status, body) = hub
        .rest(
            reqwest::Method::POST,
            "/inbound:some-subscription/tasks/t1/pushNotificationConfigs",
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = hub
        .rest(
            reqwest::Method::GET,
            "/inbound:some-subscription/tasks/t1/pushNotificationConfigs",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    hub.stop().await;
}

/// Sends `GET /healthz` on a kept-alive connection and reads its answer's head and body.
async fn healthz_on(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("{\"status\":\"ok\"}") {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(read > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_kept_alive_connection_waits_idle_timeout_for_its_next_request_and_no_longer_for_a_slow_head()
 {
    use tokio::io::AsyncWriteExt;
    let hub = TestHub::start_with(|s| {
        s.server.header_read_timeout = HumanDuration(Duration::from_secs(1));
        s.server.idle_timeout = HumanDuration(Duration::from_secs(8));
    })
    .await;
    let admin = hub.admin.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&admin).await.unwrap();
    assert!(healthz_on(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Idle between requests for longer than a head may take, as pooled client connections are:
    // still open, and it serves the next request.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(healthz_on(&mut stream).await.starts_with("HTTP/1.1 200"));
    // A head begun and never finished is cut after header_read_timeout, not idle_timeout.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 1")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    assert!(
        all_closed_by(std::slice::from_mut(&mut stream), deadline).await,
        "the slow head is cut off"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_follow_limit_out_of_range_refuses_to_start_and_names_the_setting() {
    for limit in [0, 100_001] {
        let error = start_error(|s| s.gateway.max_follows = limit).await;
        assert!(
            error.contains("gateway.max_follows") && error.contains("between 1 and 100000"),
            "{error}"
        );
    }
}
