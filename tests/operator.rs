//! Operator events over real HTTP: what the hub tells operators (a dead delivery, a config
//! disabled, a circuit opened and closed, rejected inbound pushes), listed and streamed on the
//! admin API and delivered, signed, to the operator webhook.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a2a_push_hub::config::{HumanDuration, Secret};
use common::{Receiver, Reply, SseReader, TestHub, fast_delivery, status_event, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn ms(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_millis(n))
}

/// The operator events listed after `after`.
async fn listed(hub: &TestHub, after: u64) -> Value {
    let (status, page) = hub
        .admin_get(&format!("/api/v1/operator/events?after={after}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

/// Waits until an operator event of `kind` is listed; returns it.
async fn event_of(hub: &TestHub, kind: &str) -> Value {
    wait_until(WAIT, &format!("a {kind} operator event"), || async {
        listed(hub, 0).await["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind)
            .cloned()
    })
    .await
}

#[tokio::test]
async fn a_dead_delivery_and_a_disabled_config_are_listed_streamed_and_delivered_to_the_operator() {
    let operator = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.script(|_| Reply::status(503));
    let gone = Receiver::start().await;
    gone.script(|_| Reply::status(410));
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.retry_schedule = vec![ms(100)];
        s.operator.webhook_url = operator.url("/operator?key=op-secret");
        s.operator.webhook_token = Secret::new("op-token-s3cret".to_string());
    })
    .await;
    let stream_url = format!("{}/api/v1/operator/events", hub.admin);
    let mut stream = SseReader::open(&hub.http, &stream_url, None).await;

    let failing_config = hub.create_config("t-fail", &failing.url("/hook")).await;
    let published = hub
        .publish(status_event("t-fail", "TASK_STATE_WORKING"))
        .await;
    let delivery_id = published["deliveries"][0]["deliveryId"].clone();
    let dead = event_of(&hub, "delivery.dead").await;
    assert_eq!(dead["data"]["deliveryId"], delivery_id);
    assert_eq!(dead["data"]["taskId"], "t-fail");
    assert_eq!(dead["data"]["configId"], failing_config.as_str());
    assert_eq!(dead["data"]["attempts"], 2);
    assert_eq!(dead["data"]["errorClass"], "http_status");
    assert_eq!(dead["data"]["status"], 503);

    hub.create_config("t-gone", &gone.url("/hook")).await;
    hub.publish(status_event("t-gone", "TASK_STATE_WORKING"))
        .await;
    let disabled = event_of(&hub, "config.disabled").await;
    assert_eq!(disabled["data"]["reason"], "gone");
    assert_eq!(disabled["data"]["status"], 410);
    assert_eq!(disabled["data"]["taskId"], "t-gone");

    // The list: numbered in order, paged with `nextAfter`.
    let page = listed(&hub, 0).await;
    let events = page["events"].as_array().unwrap();
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(page["nextAfter"], events.len());
    assert_eq!(
        listed(&hub, events.len() as u64 - 1).await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The stream: the same events with their sequence as the SSE id.
    let (id, first) = stream.next(WAIT).await;
    assert_eq!(id, "1");
    assert_eq!(first["type"], events[0]["type"]);

    // The operator webhook: each event once, in order, signed like every delivery.
    let arrived = operator.wait_for(events.len(), WAIT).await;
    for (arrival, event) in arrived.iter().zip(events) {
        let body = arrival.json();
        assert_eq!(body["type"], event["type"]);
        assert_eq!(body["sequence"], event["sequence"]);
        assert_eq!(body["data"], event["data"]);
        assert_eq!(arrival.sequence(), event["sequence"].as_u64().unwrap());
        assert!(arrival.header("webhook-signature").starts_with("v1a,"));
        assert_eq!(
            arrival.header("x-a2a-notification-token"),
            "op-token-s3cret"
        );
        assert_eq!(arrival.path, "/operator");
    }

    // No secret of a webhook or of the operator's own in any event.
    let text = listed(&hub, 0).await.to_string();
    for secret in ["op-secret", "op-token-s3cret", "/hook", "127.0.0.1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let metrics = hub.metrics().await;
    assert!(
        common::metric_value(
            &metrics,
            "a2a_push_hub_operator_events_total{type=\"delivery.dead\"}"
        ) >= 2.0
    );
    hub.stop().await;
}

#[tokio::test]
async fn an_origin_whose_circuit_opens_and_closes_is_reported() {
    let receiver = Receiver::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    receiver.script(move |_| {
        if counted.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.circuit_threshold = 2;
        s.delivery.circuit_cooldown = ms(200);
    })
    .await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let opened = event_of(&hub, "circuit.opened").await;
    let origin = receiver.url("").trim_end_matches('/').to_string();
    assert_eq!(opened["data"]["origin"], origin.as_str());
    assert!(opened["data"]["openUntilMs"].as_u64().unwrap() > opened["atMs"].as_u64().unwrap());
    let closed = event_of(&hub, "circuit.closed").await;
    assert_eq!(closed["data"]["origin"], origin.as_str());
    assert!(closed["sequence"].as_u64() > opened["sequence"].as_u64());
    hub.stop().await;
}

#[tokio::test]
async fn rejected_inbound_pushes_are_reported_as_counts_without_their_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::test_settings(&dir);
    common::use_test_store(&mut settings);
    let hub = a2a_push_hub::Hub::builder(settings.clone())
        .start()
        .await
        .unwrap();
    let (admin, public) = (
        format!("http://{}", hub.admin_addr()),
        format!("http://{}", hub.public_addr()),
    );
    let http = common::http_client();
    let created: Value = http
        .post(format!("{admin}/api/v1/subscriptions"))
        .json(&json!({"token": "right-token"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let response = http
            .post(format!("{public}/inbound/{id}"))
            .header("content-type", "application/json")
            .header("x-a2a-notification-token", "wrong-token")
            .body(r#"{"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}, "metadata": {"payload": "confidential"}}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Counts are reported once a minute, and what is counted when the hub stops.
    hub.shutdown().await;
    let hub = a2a_push_hub::Hub::builder(settings).start().await.unwrap();
    let page: Value = http
        .get(format!(
            "http://{}/api/v1/operator/events",
            hub.admin_addr()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rejected = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "inbound.rejected")
        .unwrap_or_else(|| panic!("no inbound.rejected in {page}"))
        .clone();
    assert_eq!(rejected["data"]["total"], 3);
    assert_eq!(rejected["data"]["top"][0]["subscriptionId"], id.as_str());
    assert_eq!(rejected["data"]["top"][0]["counts"]["unauthorized"], 3);
    let text = page.to_string();
    assert!(
        !text.contains("confidential") && !text.contains("wrong-token"),
        "{text}"
    );
    hub.shutdown().await;
}
