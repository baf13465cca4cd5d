//! The inbound role over real HTTP: subscriptions, the verification chain, receipts,
//! de-duplication, forwarding, pull and SSE, and hub-to-hub verification.

use crate::common;

use std::time::Duration;

use a2a_push_hub::config::HumanDuration;
use a2a_push_hub::verify::webhooks;
use common::{
    Receiver, Reply, SseReader, TestHub, backpressure_waits, create_subscription, fast_delivery,
    push, refs, status_event, wait_until,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn event(task: &str, state: &str) -> String {
    status_event(task, state).to_string()
}

async fn receipts(hub: &TestHub, id: &str) -> Vec<Value> {
    let (status, body) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/receipts"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["receipts"].as_array().unwrap().clone()
}

async fn events(hub: &TestHub, id: &str) -> Vec<Value> {
    let (_, body) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/events"))
        .await;
    body["events"].as_array().unwrap().clone()
}

/// Standard Webhooks headers for `body`, signed with `secret` at `timestamp`.
fn signed(secret: &str, id: &str, timestamp: u64, body: &str) -> Vec<(String, String)> {
    let key = webhooks::parse_secret(secret).unwrap();
    let ts = timestamp.to_string();
    let signature = webhooks::sign_v1(&key, &webhooks::signed_content(id, &ts, body.as_bytes()));
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts),
        ("webhook-signature".into(), signature),
        ("content-type".into(), "application/json".into()),
    ]
}

/// (name, headers, body) of a forged or tampered push.
type Attack = (&'static str, Vec<(String, String)>, String);

#[tokio::test]
async fn a_subscription_hands_out_what_the_peer_needs_and_masks_it_afterwards() {
    let hub = TestHub::start().await;
    let created = create_subscription(
        &hub,
        json!({"taskId": "t1", "authentication": {"scheme": "Bearer"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let config = &created["pushNotificationConfig"];
    assert_eq!(config["url"], format!("{}/inbound/{id}", hub.public));
    assert!(
        config["token"].as_str().unwrap().len() >= 32,
        "a token is generated"
    );
    assert_eq!(config["authentication"]["scheme"], "Bearer");
    assert!(
        config["authentication"]["credentials"]
            .as_str()
            .unwrap()
            .len()
            >= 32,
        "credentials are generated"
    );
    let (status, shown) = hub.admin_get(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !shown
            .to_string()
            .contains(config["token"].as_str().unwrap()),
        "{shown}"
    );
    assert_eq!(shown["hasToken"], true);
    let (_, listed) = hub.admin_get("/api/v1/subscriptions").await;
    assert_eq!(listed["subscriptions"].as_array().unwrap().len(), 1);
    let (status, _, problem) = hub
        .admin_post(
            "/api/v1/subscriptions",
            json!({"forwardTo": "http://10.0.0.1/x"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "forwardTo");
    let (status, _, problem) = hub
        .admin_post(
            "/api/v1/subscriptions",
            json!({"webhookSecret": "nope"}).to_string(),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("webhookSecret"))
    );
    let response = hub
        .http
        .delete(format!("{}/api/v1/subscriptions/{id}", hub.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, _) = push(
        &hub.http,
        config["url"].as_str().unwrap(),
        &[],
        event("t1", "TASK_STATE_WORKING"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn subscriptions_are_listed_a_page_at_a_time_in_id_order() {
    let hub = TestHub::start().await;
    let mut made = Vec::new();
    for task in ["page-task-1", "page-task-2", "page-task-3"] {
        let (status, _, created) = hub
            .admin_post("/api/v1/subscriptions", json!({"taskId": task}).to_string())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        made.push(created["id"].as_str().unwrap().to_string());
    }
    made.sort();
    let ids = |page: &Value| -> Vec<String> {
        page["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, first) = hub.admin_get("/api/v1/subscriptions?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(ids(&first), made[..2]);
    let cursor = first["nextCursor"].as_str().expect("a cursor to the rest");
    let (_, rest) = hub
        .admin_get(&format!("/api/v1/subscriptions?limit=2&after={cursor}"))
        .await;
    assert_eq!(ids(&rest), made[2..]);
    assert!(rest["nextCursor"].is_null(), "the last page: {rest}");
    let (_, all) = hub.admin_get("/api/v1/subscriptions").await;
    assert_eq!(ids(&all), made, "a page of 100 unless asked");
    for limit in ["0", "-1", "many"] {
        let (status, problem) = hub
            .admin_get(&format!("/api/v1/subscriptions?limit={limit}"))
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("limit")),
            "{limit}: {problem}"
        );
    }
    hub.stop().await;
}

#[tokio::test]
async fn pushes_in_every_sdk_style_are_accepted_and_recorded() {
    let hub = TestHub::start().await;
    let created = create_subscription(
        &hub,
        json!({"authentication": {"scheme": "Bearer", "credentials": "cred-1"}, "token": "tok-1"}),
    )
    .await;
    let (id, url) = (
        created["id"].as_str().unwrap(),
        created["url"].as_str().unwrap(),
    );
    let styles: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "python",
            vec![
                ("x-a2a-notification-token", "tok-1"),
                ("authorization", "Bearer cred-1"),
                ("content-type", "application/json"),
            ],
        ),
        (
            "go",
            vec![
                ("a2a-notification-token", "tok-1"),
                ("content-type", "application/json"),
            ],
        ),
        (
            "js",
            vec![
                ("authorization", "Bearer cred-1"),
                ("content-type", "application/a2a+json"),
            ],
        ),
    ];
    for (i, (style, headers)) in styles.iter().enumerate() {
        let (status, body) = push(
            &hub.http,
            url,
            headers,
            event("t1", "TASK_STATE_WORKING").replace("ctx-1", style),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{style}: {body}");
        assert_eq!(
            body,
            json!({"status": "accepted", "sequence": i + 1}),
            "{style}"
        );
    }
    let v03 =
        json!({"kind": "task", "id": "t1", "contextId": "c", "status": {"state": "completed"}});
    let (status, _) = push(
        &hub.http,
        url,
        &[("x-a2a-notification-token", "tok-1")],
        v03.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a 0.3 Task body is accepted");
    let stored = events(&hub, id).await;
    assert_eq!(stored.len(), 4);
    assert_eq!(
        stored[3]["event"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
        "0.3 is normalised to 1.0"
    );
    let all = receipts(&hub, id).await;
    assert_eq!(all.len(), 4, "one receipt per push: {all:?}");
    assert!(all.iter().all(|r| r["verdict"] == "accepted"), "{all:?}");
    let text = Value::Array(all.clone()).to_string();
    assert!(
        !text.contains("tok-1") && !text.contains("cred-1"),
        "receipts mask secrets: {text}"
    );
    let notes = all[2]["notes"].to_string();
    assert!(
        notes.contains("application/a2a+json") && notes.contains("no token header"),
        "{notes}"
    );
    assert!(
        all[3]["notes"].to_string().contains("A2A 0.3"),
        "{}",
        all[3]
    );
    hub.stop().await;
}

#[tokio::test]
async fn attacks_are_refused_with_401_and_recorded() {
    let hub = TestHub::start().await;
    let created = create_subscription(
        &hub,
        json!({"token": "tok-1", "webhookSecret": SECRET, "toleranceSeconds": 60}),
    )
    .await;
    let (id, url) = (
        created["id"].as_str().unwrap(),
        created["url"].as_str().unwrap().to_string(),
    );
    let body = event("t1", "TASK_STATE_WORKING");
    let now = now_s();
    let good = signed(SECRET, "msg-1", now, &body);
    let mut with_token = refs(&good);
    with_token.push(("x-a2a-notification-token", "tok-1"));
    let attacks: Vec<Attack> = vec![
        ("no token", good.clone(), body.clone()),
        (
            "wrong token",
            [
                good.clone(),
                vec![("x-a2a-notification-token".into(), "tok-2".into())],
            ]
            .concat(),
            body.clone(),
        ),
        (
            "altered body",
            [
                good.clone(),
                vec![("x-a2a-notification-token".into(), "tok-1".into())],
            ]
            .concat(),
            body.replace("WORKING", "COMPLETED"),
        ),
        (
            "another key",
            [
                signed("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA", "msg-1", now, &body),
                vec![("x-a2a-notification-token".into(), "tok-1".into())],
            ]
            .concat(),
            body.clone(),
        ),
        (
            "stale timestamp",
            [
                signed(SECRET, "msg-1", now - 3600, &body),
                vec![("x-a2a-notification-token".into(), "tok-1".into())],
            ]
            .concat(),
            body.clone(),
        ),
        (
            "from the future",
            [
                signed(SECRET, "msg-1", now + 3600, &body),
                vec![("x-a2a-notification-token".into(), "tok-1".into())],
            ]
            .concat(),
            body.clone(),
        ),
    ];
    for (name, headers, payload) in &attacks {
        let (status, answer) = push(&hub.http, &url, &refs(headers), payload.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            answer,
            json!({"error": "unauthorized"}),
            "{name}: no detail to the caller"
        );
    }
    let recorded = receipts(&hub, id).await;
    assert_eq!(recorded.len(), attacks.len());
    for (receipt, (name, _, _)) in recorded.iter().zip(&attacks) {
        assert_eq!(receipt["verdict"], "unauthorized", "{name}");
        assert!(
            receipt["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["passed"] == false),
            "{name}: {receipt}"
        );
    }
    assert!(
        recorded[4]["checks"].to_string().contains("old"),
        "{}",
        recorded[4]
    );
    assert!(events(&hub, id).await.is_empty(), "nothing was accepted");

    let (status, first) = push(&hub.http, &url, &with_token, body.clone()).await;
    assert_eq!(
        (status, &first["status"]),
        (StatusCode::OK, &json!("accepted"))
    );
    let (status, again) = push(&hub.http, &url, &with_token, body.clone()).await;
    assert_eq!(
        (status, &again["status"]),
        (StatusCode::OK, &json!("duplicate")),
        "a duplicate within the window is acknowledged"
    );
    assert_eq!(events(&hub, id).await.len(), 1, "and not routed twice");
    // Operators count the verdicts.
    let metrics = hub.metrics().await;
    let verdicts = |verdict: &str| {
        common::metric_value(
            &metrics,
            &format!("a2a_push_hub_inbound_pushes_total{{verdict=\"{verdict}\"}}"),
        )
    };
    assert_eq!(verdicts("unauthorized"), attacks.len() as f64);
    assert_eq!((verdicts("accepted"), verdicts("duplicate")), (1.0, 1.0));
    hub.stop().await;
}

#[tokio::test]
async fn a_replay_after_its_window_is_refused() {
    let hub = TestHub::start().await;
    let created = create_subscription(
        &hub,
        json!({"token": "tok-1", "webhookSecret": SECRET, "toleranceSeconds": 1}),
    )
    .await;
    let url = created["url"].as_str().unwrap().to_string();
    let body = event("t1", "TASK_STATE_WORKING");
    let mut headers = signed(SECRET, "msg-1", now_s(), &body);
    headers.push(("x-a2a-notification-token".into(), "tok-1".into()));
    let (status, _) = push(&hub.http, &url, &refs(&headers), body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    wait_until(
        WAIT,
        "the replay to be refused once the window passed",
        || {
            let (http, url, headers, body) =
                (hub.http.clone(), url.clone(), headers.clone(), body.clone());
            async move {
                let (status, _) = push(&http, &url, &refs(&headers), body).await;
                (status == StatusCode::UNAUTHORIZED).then_some(())
            }
        },
    )
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn malformed_unknown_oversized_and_too_fast_pushes_get_their_status() {
    let hub = TestHub::start_with(|s| {
        s.limits.max_body_bytes = 2048;
        s.inbound.rate_limit_burst = 3;
        s.inbound.rate_limit_per_second = 0.01;
    })
    .await;
    let created = create_subscription(&hub, json!({"token": "t", "taskId": "only-this"})).await;
    let (id, url) = (
        created["id"].as_str().unwrap(),
        created["url"].as_str().unwrap(),
    );
    let token = [("x-a2a-notification-token", "t")];
    let (status, body) = push(&hub.http, url, &token, "{\"bogus\": 1}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = push(
        &hub.http,
        url,
        &token,
        event("another-task", "TASK_STATE_WORKING"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("only-this"));
    let (status, _) = push(&hub.http, url, &token, "x".repeat(4096)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = push(
        &hub.http,
        url,
        &token,
        event("only-this", "TASK_STATE_WORKING"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the burst of 3 is spent"
    );
    let (status, _) = push(
        &hub.http,
        url,
        &token,
        event("only-this", "TASK_STATE_WORKING"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "and stays spent");
    let verdicts: Vec<String> = receipts(&hub, id)
        .await
        .iter()
        .map(|r| r["verdict"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(verdicts, ["malformed", "malformed", "too_large"]);
    let (status, _) = push(
        &hub.http,
        &format!("{}/inbound/nope", hub.public),
        &token,
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn accepted_events_are_forwarded_reliably_and_streamed_exactly_once() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let created = create_subscription(
        &hub,
        json!({"token": "t", "forwardTo": receiver.url("/local")}),
    )
    .await;
    let (id, url) = (
        created["id"].as_str().unwrap(),
        created["url"].as_str().unwrap().to_string(),
    );
    let stream_url = format!("{}/api/v1/subscriptions/{id}/events", hub.admin);
    let mut stream = SseReader::open(&hub.http, &stream_url, None).await;
    let states = [
        "TASK_STATE_SUBMITTED",
        "TASK_STATE_WORKING",
        "TASK_STATE_INPUT_REQUIRED",
        "TASK_STATE_WORKING",
        "TASK_STATE_COMPLETED",
    ];
    // Distinct bodies: a peer without ids is de-duplicated by body hash.
    let body = |i: usize| {
        let mut e = status_event("t1", states[i]);
        e["statusUpdate"]["metadata"] = json!({"n": i});
        e.to_string()
    };
    for i in 0..3 {
        let (status, _) = push(
            &hub.http,
            &url,
            &[("x-a2a-notification-token", "t")],
            body(i),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(stream.next(WAIT).await);
    }
    drop(stream);
    for i in 3..5 {
        let (status, answer) = push(
            &hub.http,
            &url,
            &[("x-a2a-notification-token", "t")],
            body(i),
        )
        .await;
        assert_eq!(answer["status"], "accepted", "{status}");
    }
    let last_id = seen.last().unwrap().0.clone();
    let mut resumed = SseReader::open(&hub.http, &stream_url, Some(&last_id)).await;
    for _ in 0..2 {
        seen.push(resumed.next(WAIT).await);
    }
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["1", "2", "3", "4", "5"],
        "every event exactly once across the reconnect"
    );
    let streamed: Vec<&str> = seen
        .iter()
        .map(|(_, e)| {
            e["event"]["statusUpdate"]["status"]["state"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(streamed, states);

    let forwarded = receiver.wait_for(5, WAIT).await;
    let order: Vec<u64> = forwarded.iter().map(|r| r.sequence()).collect();
    assert_eq!(
        order,
        [1, 2, 3, 4, 5],
        "forwarded in order through the outbound engine"
    );
    assert!(
        forwarded[0].header("webhook-signature").starts_with("v1a,"),
        "forwarded deliveries are signed"
    );
    let (_, page) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/events?after=3"))
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["nextAfter"], 5);
    tokio::time::timeout(Duration::from_secs(15), hub.stop())
        .await
        .expect("a shutdown ends open SSE streams");
}

#[tokio::test]
async fn a_peer_pushing_faster_than_the_forward_target_takes_is_slowed_and_loses_nothing() {
    let receiver = Receiver::start().await;
    receiver.script(|_| Reply::ok().delay(Duration::from_millis(200)));
    let hub = TestHub::start_with(|settings| {
        fast_delivery(settings);
        settings.delivery.max_in_flight_per_origin = 1;
        settings.delivery.backpressure_after = HumanDuration(Duration::from_millis(50));
        settings.inbound.rate_limit_per_second = 1000.0;
        settings.inbound.rate_limit_burst = 1000;
    })
    .await;
    let created = create_subscription(
        &hub,
        json!({"token": "t", "forwardTo": receiver.url("/local")}),
    )
    .await;
    let url = created["url"].as_str().unwrap().to_string();
    // Four tasks, each a lane of the forward target, which answers one request at a time.
    let mut pushed = 0;
    wait_until(WAIT, "a push slowed down", || {
        let n = pushed;
        pushed += 1;
        let mut event = status_event(&format!("t{}", n % 4), "TASK_STATE_WORKING");
        event["statusUpdate"]["metadata"] = json!({"n": n});
        let (hub, url) = (&hub, &url);
        async move {
            let (status, answer) = push(
                &hub.http,
                url,
                &[("x-a2a-notification-token", "t")],
                event.to_string(),
            )
            .await;
            assert_eq!(answer["status"], "accepted", "{status}");
            (backpressure_waits(hub).await > 0.0).then_some(())
        }
    })
    .await;
    let forwarded = receiver.wait_for(pushed, WAIT).await;
    assert_eq!(forwarded.len(), pushed, "every push forwarded once");
    hub.stop().await;
}

#[tokio::test]
async fn one_hubs_signed_deliveries_are_verified_by_another_hubs_inbound_role() {
    let sender = TestHub::start_with(fast_delivery).await;
    let receiving = TestHub::start().await;
    let jwks_url = format!("{}/.well-known/jwks.json", sender.public);
    let created = create_subscription(
        &receiving,
        json!({"jwksUrl": jwks_url, "issuer": sender.public}),
    )
    .await;
    let (id, url) = (
        created["id"].as_str().unwrap(),
        created["url"].as_str().unwrap().to_string(),
    );
    let token = created["pushNotificationConfig"]["token"].as_str().unwrap();
    sender
        .rpc_ok(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t1", "url": url, "token": token, "authentication": {"scheme": "Bearer"}}),
        )
        .await;
    for state in ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"] {
        sender.publish(status_event("t1", state)).await;
    }
    let accepted = wait_until(WAIT, "both events accepted", || async {
        let all = events(&receiving, id).await;
        (all.len() == 2).then_some(all)
    })
    .await;
    assert_eq!(
        accepted[1]["event"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    let receipt = &receipts(&receiving, id).await[0];
    let checks: Vec<(String, bool)> = receipt["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("token".to_string(), true),
            ("jwt".to_string(), true),
            ("webhook-signature".to_string(), true)
        ]
    );

    // A JWT minted for another audience: a delivery captured at a plain receiver, replayed here.
    let receiver = Receiver::start().await;
    sender
        .rpc_ok("CreateTaskPushNotificationConfig", json!({"taskId": "t2", "url": receiver.url("/elsewhere"), "token": token, "authentication": {"scheme": "Bearer"}}))
        .await;
    sender
        .publish(status_event("t2", "TASK_STATE_WORKING"))
        .await;
    let captured = receiver.wait_for(1, WAIT).await.remove(0);
    let headers: Vec<(String, String)> = captured
        .headers
        .iter()
        .filter(|(n, _)| *n != "host" && *n != "content-length")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let (status, _) = push(
        &receiving.http,
        &url,
        &refs(&headers),
        captured.body.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let last = receipts(&receiving, id).await.last().unwrap().clone();
    assert!(last["checks"].to_string().contains("audience"), "{last}");
    sender.stop().await;
    receiving.stop().await;
}

#[tokio::test]
async fn accepted_events_older_than_their_retention_are_removed_and_newer_ones_stay() {
    const KEPT: Duration = Duration::from_secs(2);
    let hub = TestHub::start_with(|s| {
        s.retention.inbound_events = a2a_push_hub::config::HumanDuration(KEPT);
    })
    .await;
    let created = create_subscription(&hub, json!({"token": "t"})).await;
    let id = created["id"].as_str().unwrap().to_string();
    let url = created["pushNotificationConfig"]["url"].as_str().unwrap();
    let push_event = |task: &'static str| {
        let (hub, url) = (&hub, url.to_string());
        async move {
            let (status, _) = push(
                &hub.http,
                &url,
                &[("x-a2a-notification-token", "t")],
                event(task, "TASK_STATE_WORKING"),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
        }
    };
    // Taken before the push: the hub stamps the event while the push is in flight.
    let older_at = std::time::Instant::now();
    push_event("older").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    push_event("newer").await;

    // One read shows both sides of the line: sweeps run every second, so the newer event
    // (1.2 s younger) is still kept when the older one has gone.
    let kept = wait_until(WAIT, "the older event to be removed", || async {
        let kept = events(&hub, &id).await;
        (kept.len() < 2).then_some(kept)
    })
    .await;
    // The store keeps times in whole milliseconds, so removal may come up to 1 ms early.
    assert!(
        older_at.elapsed() + Duration::from_millis(1) >= KEPT,
        "removed after {:?}",
        older_at.elapsed()
    );
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["taskId"], "newer");
    assert_eq!(kept[0]["sequence"], 2, "the kept event keeps its number");
    // The sweep counts what it removed once its commit returns, which readers may see first.
    let counted = wait_until(WAIT, "the removal to be counted", || async {
        let purged = common::metric_value(
            &hub.metrics().await,
            "a2a_push_hub_inbound_events_purged_total",
        );
        (purged > 0.0).then_some(purged)
    })
    .await;
    assert_eq!(counted, 1.0);
    hub.stop().await;
}

#[tokio::test]
async fn a_peer_signing_its_jwts_with_rs256_is_verified_by_its_jwks_and_the_receipt_names_the_algorithm()
 {
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256};
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "peer-rsa", "use": "sig",
        "n": b64(key.public_key().modulus().big_endian_without_leading_zero()),
        "e": b64(key.public_key().exponent().big_endian_without_leading_zero())}]})
    .to_string();
    let peer = Receiver::start().await;
    peer.script(move |_| {
        let mut reply = Reply::ok().header("content-type", "application/json");
        reply.body = jwks.clone();
        reply
    });
    let hub = TestHub::start().await;
    let created = create_subscription(
        &hub,
        json!({"jwksUrl": peer.url("/.well-known/jwks.json"), "issuer": "https://peer.example"}),
    )
    .await;
    let (id, url) = (
        created["id"].as_str().unwrap(),
        created["url"].as_str().unwrap(),
    );
    let token = created["pushNotificationConfig"]["token"].as_str().unwrap();
    let body = status_event("t1", "TASK_STATE_WORKING").to_string();
    let now = now_ms() as i64 / 1000;
    let claims = json!({"iss": "https://peer.example", "aud": url, "iat": now, "exp": now + 300,
        "jti": "peer-1", "taskId": "t1",
        "request_body_sha256": a2a_push_hub::verify::jwt::body_sha256(body.as_bytes())});
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "kid": "peer-rsa"})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    let bearer = format!("Bearer {input}.{}", b64(&signature));
    let (status, answer) = push(
        &hub.http,
        url,
        &[
            ("authorization", bearer.as_str()),
            ("x-a2a-notification-token", token),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{answer}"
    );
    let receipt = &receipts(&hub, id).await[0];
    let jwt_check = receipt["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "jwt")
        .unwrap();
    assert_eq!(jwt_check["passed"], true, "{receipt}");
    assert!(
        jwt_check["detail"]
            .as_str()
            .unwrap()
            .starts_with("RS256 JWT valid"),
        "{receipt}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_url_ownership_challenge_is_answered_for_existing_subscriptions_only() {
    let hub = TestHub::start_with(|s| {
        s.inbound.rate_limit_per_second = 1.0;
        s.inbound.rate_limit_burst = 2;
    })
    .await;
    let created = create_subscription(&hub, json!({})).await;
    let url = created["url"].as_str().unwrap();
    let get = |url: String| {
        let http = hub.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status();
            let nosniff = response.headers()["x-content-type-options"] == "nosniff";
            (status, nosniff, response.text().await.unwrap())
        }
    };
    let (status, nosniff, body) = get(format!("{url}?validationToken=3f1c-9a_b.~z")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "3f1c-9a_b.~z"));
    assert!(nosniff);
    let (status, _, _) = get(format!("{url}?validationToken=%3Cscript%3E")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "never reflects markup");
    let (status, _, _) = get(format!("{url}?validationToken={}", "a".repeat(257))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(url.to_string()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let unknown = format!(
        "{}/inbound/no-such-subscription?validationToken=abc",
        hub.public
    );
    assert_eq!(get(unknown).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(format!("{url}?validationToken=b")).await.0,
        StatusCode::OK
    );
    let (status, _, _) = get(format!("{url}?validationToken=again")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "within the subscription's rate limit"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_peer_rotating_its_webhook_secret_is_verified_with_old_and_new_until_the_old_is_dropped()
{
    const NEW: &str = "whsec_QmV0dGVyU2VjcmV0Rm9yVGhlUm90YXRpb24=";
    let hub = TestHub::start().await;
    let created = create_subscription(&hub, json!({"webhookSecret": SECRET})).await;
    let (id, url) = (
        created["id"].as_str().unwrap().to_string(),
        created["url"].as_str().unwrap().to_string(),
    );
    let token = created["pushNotificationConfig"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let now = now_ms() / 1000;
    let send = |secret: &'static str, n: u32, extra_signature: Option<String>| {
        let (http, url, token) = (hub.http.clone(), url.clone(), token.clone());
        async move {
            let body = status_event(&format!("t{n}"), "TASK_STATE_WORKING").to_string();
            let mut headers = signed(secret, &format!("msg-{n}"), now, &body);
            if let Some(other) = extra_signature {
                // Several signatures in one header, the valid one last.
                headers[2].1 = format!("{other} {}", headers[2].1);
            }
            headers.push(("x-a2a-notification-token".into(), token));
            push(&http, &url, &refs(&headers), body).await.0
        }
    };
    assert_eq!(send(SECRET, 1, None).await, StatusCode::OK);
    assert_eq!(
        send(NEW, 2, None).await,
        StatusCode::UNAUTHORIZED,
        "not yet"
    );

    let rotate = |secrets: Value| {
        let (http, admin, id) = (hub.http.clone(), hub.admin.clone(), id.clone());
        async move {
            let response = http
                .patch(format!("{admin}/api/v1/subscriptions/{id}"))
                .header("content-type", "application/json")
                .body(json!({"webhookSecret": secrets}).to_string())
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, view) = rotate(json!([SECRET, NEW])).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(
        !view.to_string().contains("whsec_"),
        "secrets are never answered: {view}"
    );
    assert_eq!(send(NEW, 3, None).await, StatusCode::OK);
    assert_eq!(send(SECRET, 4, None).await, StatusCode::OK);
    assert_eq!(
        send(
            NEW,
            5,
            Some("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into())
        )
        .await,
        StatusCode::OK
    );
    rotate(json!(NEW)).await;
    assert_eq!(
        send(SECRET, 6, None).await,
        StatusCode::UNAUTHORIZED,
        "the old secret is gone"
    );
    assert_eq!(send(NEW, 7, None).await, StatusCode::OK);

    let (status, refused) = rotate(json!([NEW, "nope"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["field"], "webhookSecret[1]");
    hub.stop().await;
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
