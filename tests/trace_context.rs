//! W3C Trace Context through the hub: what a publisher or a peer agent sent arrives at the
//! webhook as a span of the same trace — one span per attempt, retries included, after a
//! crash too — with `tracestate` and `baggage` carried over.

use crate::common;

use std::time::Duration;

use common::{
    HubProcess, OtlpReceiver, Receiver, Reply, TestHub, create_config_at, create_subscription,
    fast_delivery, http_client, push, status_event, wait_until,
};
use reqwest::StatusCode;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `(trace id, parent id, flags)` of a `traceparent`.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent:?} has four fields");
    assert_eq!(fields[0], "00");
    (
        fields[1].to_string(),
        fields[2].to_string(),
        fields[3].to_string(),
    )
}

async fn publish_traced(hub: &TestHub, path: &str, body: String, headers: &[(&str, &str)]) {
    let mut request = hub
        .http
        .post(format!("{}{path}", hub.admin))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn every_attempt_is_its_own_span_of_the_publishers_trace_with_state_and_baggage_carried() {
    let receiver = Receiver::start().await;
    // Two failures, then the third attempt is accepted.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    receiver.script(move |_| {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(fast_delivery).await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    publish_traced(
        &hub,
        "/api/v1/events",
        status_event("t1", "TASK_STATE_WORKING").to_string(),
        &[
            ("traceparent", PARENT),
            ("tracestate", "vendor=abc"),
            ("baggage", "tenant.plan=gold"),
        ],
    )
    .await;
    let got = receiver.wait_for(3, WAIT).await;
    let mut span_ids = Vec::new();
    for request in &got {
        let (trace_id, span_id, flags) = parts(request.header("traceparent"));
        assert_eq!(
            trace_id, TRACE_ID,
            "the attempt is in the publisher's trace"
        );
        assert_eq!(flags, "01", "the sampling decision is the publisher's");
        assert_ne!(
            span_id, "00f067aa0ba902b7",
            "the attempt is a span of its own"
        );
        assert_eq!(request.header("tracestate"), "vendor=abc");
        assert_eq!(request.header("baggage"), "tenant.plan=gold");
        span_ids.push(span_id);
    }
    span_ids.sort();
    span_ids.dedup();
    assert_eq!(span_ids.len(), 3, "each attempt has its own span id");

    // The attempt log names the span each attempt sent (the last outcome is recorded just
    // after the receiver answered).
    let path = format!("/api/v1/deliveries/{}", got[0].header("webhook-id"));
    let attempts = wait_until(WAIT, "three attempts in the log", || async {
        let (status, delivery) = hub.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{delivery}");
        (delivery["attemptLog"].as_array().map_or(0, Vec::len) == 3).then_some(delivery)
    })
    .await;
    let logged: Vec<&str> = attempts["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["traceparent"].as_str().unwrap_or_default())
        .collect();
    let sent: Vec<&str> = got.iter().map(|r| r.header("traceparent")).collect();
    assert_eq!(logged, sent);
    hub.stop().await;
}

#[tokio::test]
async fn batch_events_may_name_their_own_trace_and_the_field_is_not_delivered() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    for task in ["a", "b", "c"] {
        hub.create_config(task, &receiver.url(&format!("/{task}")))
            .await;
    }
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let mut traced = status_event("a", "TASK_STATE_WORKING");
    traced["traceparent"] = json!(own);
    traced["tracestate"] = json!("x=1");
    let batch = json!([
        traced,
        status_event("b", "TASK_STATE_WORKING"),
        status_event("c", "TASK_STATE_WORKING")
    ]);
    publish_traced(
        &hub,
        "/api/v1/events:batch",
        batch.to_string(),
        &[("traceparent", PARENT)],
    )
    .await;
    let got = receiver.wait_for(3, WAIT).await;
    let by_path = |path: &str| got.iter().find(|r| r.path == path).unwrap();
    let a = by_path("/a");
    assert_eq!(
        parts(a.header("traceparent")).0,
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(parts(a.header("traceparent")).2, "00");
    assert_eq!(a.header("tracestate"), "x=1");
    let body = a.json();
    for field in ["traceparent", "tracestate"] {
        assert!(
            body.get(field).is_none(),
            "the hub's field is not delivered: {body}"
        );
    }
    assert_eq!(body, status_event("a", "TASK_STATE_WORKING"));
    for path in ["/b", "/c"] {
        let request = by_path(path);
        assert_eq!(parts(request.header("traceparent")).0, TRACE_ID);
        assert_eq!(request.header("tracestate"), "", "the request had none");
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_bad_trace_field_is_refused_by_name_and_a_bad_header_is_ignored() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    let mut event = status_event("t1", "TASK_STATE_WORKING");
    event["traceparent"] = json!("00-not-a-trace-01");
    let (status, _, problem) = hub
        .admin_post("/api/v1/events:batch", json!([event]).to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["field"], "[0].traceparent");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("32 hex digits"),
        "{problem}"
    );

    // A hop ignores a traceparent it cannot read (W3C Trace Context): the event is published,
    // outside any trace.
    publish_traced(
        &hub,
        "/api/v1/events",
        status_event("t1", "TASK_STATE_WORKING").to_string(),
        &[("traceparent", "garbage"), ("tracestate", "vendor=abc")],
    )
    .await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("traceparent"), "");
    assert_eq!(got[0].header("tracestate"), "");
    hub.stop().await;
}

#[tokio::test]
async fn a_peers_trace_is_carried_to_where_its_push_is_forwarded() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let created = create_subscription(
        &hub,
        json!({"token": "t", "forwardTo": receiver.url("/local")}),
    )
    .await;
    let url = created["url"].as_str().unwrap().to_string();
    let (status, _) = push(
        &hub.http,
        &url,
        &[
            ("x-a2a-notification-token", "t"),
            ("traceparent", PARENT),
            ("baggage", "peer=agent-b"),
        ],
        status_event("t1", "TASK_STATE_WORKING").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let got = receiver.wait_for(1, WAIT).await;
    let (trace_id, span_id, _) = parts(got[0].header("traceparent"));
    assert_eq!(trace_id, TRACE_ID);
    assert_ne!(span_id, "00f067aa0ba902b7");
    assert_eq!(got[0].header("baggage"), "peer=agent-b");
    hub.stop().await;
}

/// Gives task `t1` of the hub process a config at `receiver`, then publishes its event in the
/// trace `PARENT`.
async fn config_and_traced_event(http: &reqwest::Client, hub: &HubProcess, receiver: &Receiver) {
    create_config_at(http, hub.public, "t1", "c1", &receiver.url("/hook")).await;
    let response = http
        .post(format!("http://{}/api/v1/events", hub.admin))
        .header("content-type", "application/json")
        .header("traceparent", PARENT)
        .body(status_event("t1", "TASK_STATE_WORKING").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_retry_after_a_crash_stays_in_the_publishers_trace() {
    let receiver = Receiver::start().await;
    receiver.script(|_| Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let http = http_client();
    let mut hub = HubProcess::spawn_on(&data_dir);
    config_and_traced_event(&http, &hub, &receiver).await;
    receiver.wait_for(1, WAIT).await;
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    drop(hub);

    receiver.script(|_| Reply::ok());
    let before = receiver.received().len();
    let hub = HubProcess::spawn_on(&data_dir);
    let after_restart = wait_until(WAIT, "a delivery after the restart", || async {
        receiver.received().get(before).cloned()
    })
    .await;
    assert_eq!(parts(after_restart.header("traceparent")).0, TRACE_ID);
    drop(hub);
}

/// Span kinds as OTLP numbers them.
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

#[tokio::test]
async fn exported_spans_show_the_publish_and_each_attempt_in_the_publishers_trace() {
    let otlp = OtlpReceiver::http().await;
    let receiver = Receiver::start().await;
    receiver.script(|r| {
        if r.attempt <= 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let endpoint = otlp.url();
    let hub = TestHub::start_with(move |s| {
        fast_delivery(s);
        s.telemetry.otlp_endpoint = endpoint;
        s.telemetry.service_name = "hub-under-test".into();
    })
    .await;
    // A secret in the webhook's query and in the config's token: neither may be exported.
    let url = format!("{}?key=s3cret-in-url", receiver.url("/hook"));
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "url": url, "token": "s3cret-token"}),
    )
    .await;
    publish_traced(
        &hub,
        "/api/v1/events",
        status_event("t1", "TASK_STATE_WORKING").to_string(),
        &[("traceparent", PARENT)],
    )
    .await;
    let arrived = receiver.wait_for(3, WAIT).await;
    let spans = otlp.wait_for_trace(TRACE_ID, 4).await;
    let create: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("create"))
        .collect();
    assert_eq!(create.len(), 1, "{spans:#?}");
    let create = create[0];
    assert_eq!(create.service_name, "hub-under-test");
    assert_eq!(create.kind, PRODUCER);
    assert_eq!(
        create.parent_span_id, "00f067aa0ba902b7",
        "a child of the publisher's span"
    );
    assert_eq!(create.attribute("a2a.task.id"), Some("t1"));
    assert_eq!(create.attribute("a2a.event.sequence"), Some("1"));

    let mut sends: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("send"))
        .collect();
    sends.sort_by_key(|s| {
        s.attribute("a2a.delivery.attempt")
            .unwrap_or_default()
            .to_string()
    });
    assert_eq!(sends.len(), 3, "one span per attempt: {spans:#?}");
    for (n, (send, request)) in sends.iter().zip(&arrived).enumerate() {
        assert_eq!(
            send.attribute("a2a.delivery.attempt"),
            Some(format!("{}", n + 1).as_str())
        );
        assert_eq!(
            send.parent_span_id, "00f067aa0ba902b7",
            "in the publisher's trace"
        );
        assert_eq!(
            send.links,
            vec![(TRACE_ID.to_string(), create.span_id.clone())],
            "linked to the event's create span"
        );
        assert_eq!(
            send.attribute("messaging.message.id"),
            Some(request.header("webhook-id"))
        );
        assert_eq!(
            parts(request.header("traceparent")).1,
            send.span_id,
            "the receiver's parent is the attempt's span"
        );
        assert_eq!(send.attribute("server.address"), Some("127.0.0.1"));
        let (status, decision, error) = if n < 2 {
            ("503", "retry", 2)
        } else {
            ("200", "delivered", 0)
        };
        assert_eq!(send.attribute("http.response.status_code"), Some(status));
        assert_eq!(send.attribute("a2a.delivery.decision"), Some(decision));
        assert_eq!(send.status_code, error, "{send:#?}");
    }
    for span in otlp.spans() {
        for (key, value) in &span.attributes {
            assert!(!value.contains("s3cret"), "{key} = {value} leaks a secret");
        }
    }
    hub.stop().await;
}

#[tokio::test]
async fn an_event_published_without_a_trace_starts_one_at_the_hub() {
    let otlp = OtlpReceiver::http().await;
    let receiver = Receiver::start().await;
    let endpoint = otlp.url();
    let hub = TestHub::start_with(move |s| {
        fast_delivery(s);
        s.telemetry.otlp_endpoint = endpoint;
    })
    .await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let arrived = receiver.wait_for(1, WAIT).await;
    let (trace_id, parent, _) = parts(arrived[0].header("traceparent"));
    let spans = otlp.wait_for_trace(&trace_id, 2).await;
    let create = spans.iter().find(|s| s.name.starts_with("create")).unwrap();
    let send = spans.iter().find(|s| s.name.starts_with("send")).unwrap();
    assert_eq!(
        create.parent_span_id, "",
        "the hub's create span is the root"
    );
    assert_eq!(
        send.parent_span_id, create.span_id,
        "the attempt is its child"
    );
    assert!(send.links.is_empty(), "no link to its own parent");
    assert_eq!(parent, send.span_id);
    hub.stop().await;
}

#[tokio::test]
async fn over_grpc_a_peers_push_is_received_and_forwarded_in_the_peers_trace() {
    let otlp = OtlpReceiver::grpc().await;
    let receiver = Receiver::start().await;
    let endpoint = otlp.url();
    let hub = TestHub::start_with(move |s| {
        fast_delivery(s);
        s.telemetry.otlp_endpoint = endpoint;
        s.telemetry.otlp_protocol = "grpc".into();
    })
    .await;
    let created = create_subscription(
        &hub,
        json!({"token": "t", "forwardTo": receiver.url("/local")}),
    )
    .await;
    let (id, url) = (
        created["id"].as_str().unwrap().to_string(),
        created["url"].as_str().unwrap().to_string(),
    );
    let (status, _) = push(
        &hub.http,
        &url,
        &[
            ("x-a2a-notification-token", "t"),
            ("traceparent", PARENT),
            ("webhook-id", "msg-1"),
        ],
        status_event("t1", "TASK_STATE_WORKING").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let arrived = receiver.wait_for(1, WAIT).await;
    let spans = otlp.wait_for_trace(TRACE_ID, 2).await;
    let receive = spans
        .iter()
        .find(|s| s.name.starts_with("receive"))
        .unwrap();
    assert_eq!(receive.kind, CONSUMER);
    assert_eq!(receive.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(
        receive.attribute("a2a.inbound.subscription.id"),
        Some(id.as_str())
    );
    assert_eq!(receive.attribute("messaging.message.id"), Some("msg-1"));
    assert_eq!(receive.attribute("a2a.inbound.verdict"), Some("accepted"));
    let send = spans.iter().find(|s| s.name.starts_with("send")).unwrap();
    assert_eq!(send.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(
        send.links,
        vec![(TRACE_ID.to_string(), receive.span_id.clone())]
    );
    assert_eq!(parts(arrived[0].header("traceparent")).1, send.span_id);
    hub.stop().await;
}

#[tokio::test]
async fn the_json_log_of_an_attempt_names_its_trace_and_span() {
    let receiver = Receiver::start().await;
    receiver.script(|r| {
        if r.attempt == 1 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let http = http_client();
    let hub = HubProcess::spawn_on(&dir.path().join("store"));
    config_and_traced_event(&http, &hub, &receiver).await;
    let first = receiver.wait_for(1, WAIT).await;
    let sent_span = parts(first[0].header("traceparent")).1;
    let line = wait_until(WAIT, "the log line of the failed attempt", || {
        let log = hub.log.lock().unwrap().clone();
        async move {
            log.into_iter()
                .find(|entry| entry["fields"]["message"] == "attempt failed; will retry")
        }
    })
    .await;
    assert_eq!(line["span"]["trace_id"], TRACE_ID, "{line}");
    assert_eq!(line["span"]["span_id"], sent_span.as_str(), "{line}");
}
