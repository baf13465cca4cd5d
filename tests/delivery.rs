//! Delivery over real HTTP to real receivers: order, retries, independence of lanes,
//! Retry-After, 410, redirects, timeouts, dead-letter, replay, circuit breaking, metrics.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use a2a_push_hub::config::HumanDuration;
use common::{
    Received, Receiver, Reply, TestHub, backpressure_waits, fast_delivery, status_event, wait_until,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn delivery_state(hub: &TestHub, id: &str) -> Value {
    let (status, body) = hub.admin_get(&format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn wait_for_state(hub: &TestHub, id: &str, state: &str) -> Value {
    wait_until(
        WAIT,
        &format!("delivery {id} to be {state}"),
        || async move {
            let body = delivery_state(hub, id).await;
            (body["state"] == state).then_some(body)
        },
    )
    .await
}

fn delivery_id(published: &Value) -> String {
    published["deliveries"][0]["deliveryId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn every_event_arrives_in_order_with_the_exact_body_and_every_header() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "id": "c1", "url": receiver.url("/hook"), "token": "tok-1",
            "authentication": {"scheme": "Bearer", "credentials": "cred-1"}}),
    )
    .await;
    let bodies = [
        r#"{"statusUpdate": {"taskId": "t1", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}}"#,
        r#"{"artifactUpdate":{"taskId":"t1","contextId":"c","artifact":{"artifactId":"a","parts":[{"text":"42"}]},"lastChunk":true}}"#,
        r#"{"statusUpdate": {"taskId": "t1", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}, "metadata": {"z": 1, "a": 2}}}"#,
    ];
    let mut ids = Vec::new();
    for body in bodies {
        let (status, _, published) = hub.admin_post("/api/v1/events", body).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(delivery_id(&published));
    }
    let received = receiver.wait_for(3, WAIT).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (i, request) in received.iter().enumerate() {
        assert_eq!(request.path, "/hook");
        assert_eq!(
            request.body,
            bodies[i].as_bytes(),
            "the body is the event exactly as published"
        );
        assert_eq!(request.sequence(), i as u64 + 1);
        assert_eq!(request.header("webhook-id"), ids[i]);
        assert_eq!(request.header("content-type"), "application/a2a+json");
        assert_eq!(request.header("a2a-version"), "1.0");
        assert_eq!(request.header("authorization"), "Bearer cred-1");
        assert_eq!(request.header("x-a2a-notification-token"), "tok-1");
        assert_eq!(request.header("a2a-notification-token"), "tok-1");
        assert_eq!(
            request.header("user-agent"),
            concat!("a2a-push-hub/", env!("CARGO_PKG_VERSION"))
        );
        let timestamp: u64 = request.header("webhook-timestamp").parse().unwrap();
        assert!(
            timestamp.abs_diff(now) < 60,
            "webhook-timestamp is the attempt time"
        );
    }
    wait_until(WAIT, "3 delivered", || async {
        let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
        (view["deliveries"]["delivered"] == 3).then_some(())
    })
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn event_two_is_retried_and_still_arrives_before_event_three() {
    let receiver = Receiver::start().await;
    receiver.script(|r| {
        if r.sequence() == 2 && r.attempt <= 2 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(fast_delivery).await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    let mut ids = Vec::new();
    for state in [
        "TASK_STATE_WORKING",
        "TASK_STATE_INPUT_REQUIRED",
        "TASK_STATE_COMPLETED",
    ] {
        ids.push(delivery_id(&hub.publish(status_event("t1", state)).await));
    }
    let received = receiver.wait_for(5, WAIT).await;
    let order: Vec<u64> = received.iter().map(|r| r.sequence()).collect();
    assert_eq!(order, [1, 2, 2, 2, 3]);
    let second: Vec<&str> = received[1..4]
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(
        second,
        [ids[1].as_str(); 3],
        "one webhook-id across retries"
    );
    let detail = wait_for_state(&hub, &ids[1], "delivered").await;
    let statuses: Vec<Value> = detail["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(500), json!(500), json!(200)]);
    assert_eq!(detail["attempts"], 3);
    wait_for_state(&hub, &ids[2], "delivered").await;
    hub.stop().await;
}

#[tokio::test]
async fn a_hanging_webhook_does_not_delay_another_lane() {
    let hanging = Receiver::start().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    hanging.script(move |r| {
        if r.sequence() == 1 && r.attempt == 1 {
            Reply::ok().hold(held.clone())
        } else {
            Reply::ok()
        }
    });
    let healthy = Receiver::start_on("127.0.0.2").await;
    let hub = TestHub::start_with(fast_delivery).await;
    hub.create_config("t1", &hanging.url("/a")).await;
    hub.create_config("t1", &healthy.url("/b")).await;
    for _ in 0..5 {
        hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    }
    let got = healthy.wait_for(5, WAIT).await;
    assert_eq!(
        got.iter().map(|r| r.sequence()).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let stuck = hanging.received();
    assert_eq!(
        stuck.len(),
        1,
        "lane A is still on its first attempt, held open"
    );
    release.notify_one();
    hanging.wait_for(5, WAIT).await;
    hub.stop().await;
}

/// The sequence numbers that arrived at the path of `task`'s name, in arrival order.
fn sequences_at(got: &[Received], task: &str) -> Vec<u64> {
    got.iter()
        .filter(|r| r.path == format!("/{task}"))
        .map(|r| r.sequence())
        .collect()
}

/// `count` tasks named `prefix0`, `prefix1`, …, each with a config at `receiver`'s path of its
/// name.
async fn tasks_with_a_config_at(
    hub: &TestHub,
    receiver: &Receiver,
    prefix: &str,
    count: usize,
) -> Vec<String> {
    let tasks: Vec<String> = (0..count).map(|t| format!("{prefix}{t}")).collect();
    for task in &tasks {
        hub.create_config(task, &receiver.url(&format!("/{task}")))
            .await;
    }
    tasks
}

#[tokio::test]
async fn receivers_that_hang_do_not_take_every_attempt_from_the_others() {
    // Two slots at the hanging origin and four in all: its requests hold two, and two more of
    // its deliveries read ahead and wait for them, until it has answered nothing for a while
    // and they give their places back.
    let hanging = Receiver::start().await;
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    hanging.script(move |_| Reply::ok().hold(held.clone()));
    let healthy = Receiver::start_on("127.0.0.2").await;
    let hub = TestHub::start_with(|settings| {
        fast_delivery(settings);
        // Longer than the test waits for the healthy receiver: only the hub's own rule can free
        // the slots in time (the test store's lane lease allows at most 19 s).
        settings.delivery.timeout = HumanDuration(Duration::from_secs(19));
        settings.delivery.max_in_flight = 4;
        settings.delivery.max_in_flight_per_origin = 2;
    })
    .await;
    for task in tasks_with_a_config_at(&hub, &hanging, "h", 6).await {
        hub.publish(status_event(&task, "TASK_STATE_WORKING")).await;
    }
    hanging.wait_for(2, WAIT).await;
    hub.create_config("t1", &healthy.url("/b")).await;
    for _ in 0..3 {
        hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    }
    let got = healthy.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        got.iter().map(|r| r.sequence()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        hanging.received().len(),
        2,
        "the origin's two requests, held"
    );
    release.notify_waiters();
    hub.stop().await;
}

#[tokio::test]
async fn publishers_to_a_receiver_that_cannot_keep_up_are_slowed_and_lose_nothing() {
    let slow = Receiver::start().await;
    slow.script(|_| Reply::ok().delay(Duration::from_millis(200)));
    let fast = Receiver::start_on("127.0.0.2").await;
    let hub = TestHub::start_with(|settings| {
        fast_delivery(settings);
        settings.delivery.max_in_flight_per_origin = 1;
        settings.delivery.backpressure_after = HumanDuration(Duration::from_millis(50));
        settings.delivery.backpressure_max_wait = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let tasks = tasks_with_a_config_at(&hub, &slow, "s", 4).await;
    hub.create_config("f1", &fast.url("/f1")).await;
    // One answer a fifth of a second at one request at a time: the publisher, going as fast
    // as its answers come, soon publishes faster than that and is slowed.
    let mut published = 0;
    wait_until(WAIT, "a publish slowed down", || {
        let (hub, task) = (&hub, &tasks[published % tasks.len()]);
        published += 1;
        async move {
            hub.publish(status_event(task, "TASK_STATE_WORKING")).await;
            (backpressure_waits(hub).await > 0.0).then_some(())
        }
    })
    .await;
    let slowed = backpressure_waits(&hub).await;
    // A publisher to a receiver that keeps up is not.
    for _ in 0..3 {
        hub.publish(status_event("f1", "TASK_STATE_WORKING")).await;
    }
    fast.wait_for(3, WAIT).await;
    assert_eq!(
        backpressure_waits(&hub).await,
        slowed,
        "f1's publishes did not wait"
    );
    // Every event arrives, each lane in order.
    let got = slow.wait_for(published, WAIT).await;
    for task in &tasks {
        let sequences = sequences_at(&got, task);
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(sequences, expected, "lane {task} in order");
    }
    assert_eq!(got.len(), published);
    hub.stop().await;
}

#[tokio::test]
async fn an_origin_never_has_more_requests_open_than_its_limit() {
    let slow = Receiver::start().await;
    let hold = Duration::from_millis(150);
    slow.script(move |_| Reply::ok().delay(hold));
    let hub = TestHub::start_with(|settings| {
        fast_delivery(settings);
        settings.delivery.max_in_flight_per_origin = 2;
    })
    .await;
    let tasks = tasks_with_a_config_at(&hub, &slow, "t", 8).await;
    for _ in 0..2 {
        for task in &tasks {
            hub.publish(status_event(task, "TASK_STATE_WORKING")).await;
        }
    }
    let got = slow.wait_for(16, WAIT).await;
    // Every request is held `hold` before its answer, so all that arrived within `hold` of
    // each other were open at the same time.
    let mut arrivals: Vec<Instant> = got.iter().map(|r| r.at).collect();
    arrivals.sort();
    let most_open = arrivals
        .iter()
        .map(|&at| {
            arrivals
                .iter()
                .filter(|&&other| other <= at && at - other < hold)
                .count()
        })
        .max()
        .unwrap();
    assert!(
        most_open <= 2,
        "{most_open} requests open at once at one origin"
    );
    assert_eq!(most_open, 2, "the origin's two slots are used");
    for task in &tasks {
        assert_eq!(sequences_at(&got, task), [1, 2], "lane {task} in order");
    }
    hub.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start().await;
    receiver.script(|r| {
        if r.attempt == 1 {
            Reply::status(503).header("retry-after", "1")
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(fast_delivery).await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let received = receiver.wait_for(2, WAIT).await;
    let gap = received[1].at - received[0].at;
    // The schedule says 100 ms; Retry-After asks 1 s, within [100 ms, 10 × 100 ms].
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    hub.stop().await;
}

#[tokio::test]
async fn gone_disables_the_config_and_it_gets_nothing_more() {
    let gone = Receiver::start().await;
    gone.script(|_| Reply::status(410));
    let sentinel = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let gone_config = hub.create_config("t1", &gone.url("/gone")).await;
    hub.create_config("t1", &sentinel.url("/ok")).await;
    let first = hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let gone_delivery = first["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["configId"] == gone_config.as_str())
        .unwrap()["deliveryId"]
        .as_str()
        .unwrap()
        .to_string();
    let detail = wait_for_state(&hub, &gone_delivery, "dead").await;
    assert!(
        detail["lastError"].as_str().unwrap().contains("410"),
        "{detail}"
    );
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    let config = view["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == gone_config.as_str())
        .unwrap()
        .clone();
    assert_eq!(config["state"], "disabled");
    let later = hub
        .publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    let targets: Vec<&str> = later["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["configId"].as_str().unwrap())
        .collect();
    assert!(
        !targets.contains(&gone_config.as_str()),
        "a disabled config gets no new deliveries"
    );
    sentinel.wait_for(2, WAIT).await;
    assert_eq!(gone.received().len(), 1);
    let replay = hub
        .admin_post(&format!("/api/v1/deliveries/{gone_delivery}/replay"), "")
        .await;
    assert_eq!(replay.0, StatusCode::CONFLICT, "{}", replay.2);
    assert!(replay.2["detail"].as_str().unwrap().contains("disabled"));
    hub.stop().await;
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() {
    let target = Receiver::start_on("127.0.0.3").await;
    let redirecting = Receiver::start_on("127.0.0.2").await;
    let location = target.url("/stolen");
    redirecting.script(move |_| Reply::status(302).header("location", &location));
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.security.allowed_subnets = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let refused = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t1", "url": target.url("/direct")}),
        )
        .await;
    assert_eq!(
        refused["error"]["code"], -32602,
        "127.0.0.3 is not allowed: {refused}"
    );
    let refused = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t1", "url": format!("http://localhost:{}/", target.addr.port())}),
        )
        .await;
    assert_eq!(
        refused["error"]["code"], -32602,
        "a name resolving to loopback is refused: {refused}"
    );
    hub.create_config("t1", &redirecting.url("/hook")).await;
    let id = delivery_id(&hub.publish(status_event("t1", "TASK_STATE_WORKING")).await);
    let attempts = redirecting.wait_for(2, WAIT).await;
    assert_eq!(attempts[1].attempt, 2, "a 3xx is a failure and is retried");
    let detail = delivery_state(&hub, &id).await;
    assert_eq!(
        detail["attemptLog"][0]["errorClass"], "redirect",
        "{detail}"
    );
    assert_eq!(detail["attemptLog"][0]["status"], 302);
    assert!(
        target.received().is_empty(),
        "the redirect target never got a request"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_timeout_is_classified_and_retried() {
    let receiver = Receiver::start().await;
    receiver.script(|r| {
        if r.attempt == 1 {
            Reply::ok().delay(Duration::from_secs(5))
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.timeout = a2a_push_hub::config::HumanDuration(Duration::from_secs(1));
    })
    .await;
    hub.create_config("t1", &receiver.url("/slow")).await;
    let id = delivery_id(&hub.publish(status_event("t1", "TASK_STATE_WORKING")).await);
    let detail = wait_for_state(&hub, &id, "delivered").await;
    assert_eq!(detail["attemptLog"][0]["errorClass"], "timeout", "{detail}");
    assert!(detail["attemptLog"][0]["status"].is_null());
    assert_eq!(detail["attemptLog"][1]["errorClass"], "success");
    hub.stop().await;
}

#[tokio::test]
async fn an_exhausted_delivery_is_dead_the_lane_moves_on_and_a_replay_arrives() {
    let receiver = Receiver::start().await;
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healed.clone();
    receiver.script(move |r| {
        if r.sequence() == 1 && !flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(fast_delivery).await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    let first = delivery_id(&hub.publish(status_event("t1", "TASK_STATE_WORKING")).await);
    let second = delivery_id(
        &hub.publish(status_event("t1", "TASK_STATE_COMPLETED"))
            .await,
    );
    let dead = wait_for_state(&hub, &first, "dead").await;
    assert_eq!(dead["attempts"], 4, "the first attempt and three retries");
    assert!(
        dead["lastError"]
            .as_str()
            .unwrap()
            .contains("gave up after 4 attempts"),
        "{dead}"
    );
    wait_for_state(&hub, &second, "delivered").await;
    let order: Vec<u64> = receiver.received().iter().map(|r| r.sequence()).collect();
    assert_eq!(
        order,
        [1, 1, 1, 1, 2],
        "event 2 only after event 1 was dead"
    );

    let (status, page) = hub
        .admin_get("/api/v1/deliveries?taskId=t1&state=dead")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(page["deliveries"][0]["id"], first.as_str());

    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, _, answer) = hub
        .admin_post(&format!("/api/v1/deliveries/{first}/replay"), "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let replayed = wait_for_state(&hub, &first, "delivered").await;
    assert_eq!(replayed["attempts"], 5);
    let last = receiver.received().last().unwrap().clone();
    assert_eq!(
        last.header("webhook-id"),
        first,
        "a replay keeps the delivery id"
    );
    assert_eq!(last.sequence(), 1);

    let (status, _, problem) = hub
        .admin_post(&format!("/api/v1/deliveries/{second}/replay"), "")
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a delivered delivery can be sent again: {problem}"
    );
    let (status, _, problem) = hub
        .admin_post("/api/v1/deliveries/no-such-delivery/replay", "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    hub.stop().await;
}

#[tokio::test]
async fn a_failed_manual_replay_is_not_retried_and_replay_by_filter_covers_a_task() {
    let receiver = Receiver::start().await;
    receiver.script(|_| Reply::status(500));
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.retry_schedule.clear();
    })
    .await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    let a = delivery_id(&hub.publish(status_event("t1", "TASK_STATE_WORKING")).await);
    let b = delivery_id(
        &hub.publish(status_event("t1", "TASK_STATE_COMPLETED"))
            .await,
    );
    wait_for_state(&hub, &a, "dead").await;
    wait_for_state(&hub, &b, "dead").await;
    let (status, _, outcome) = hub
        .admin_post(
            "/api/v1/deliveries:replay",
            json!({"taskId": "t1"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
    assert_eq!(outcome["replayed"].as_array().unwrap().len(), 2);
    receiver.wait_for(4, WAIT).await;
    let detail = wait_until(WAIT, "the replay to fail once", || async {
        let detail = delivery_state(&hub, &b).await;
        (detail["state"] == "dead" && detail["attempts"] == 2).then_some(detail)
    })
    .await;
    assert!(
        detail["lastError"].as_str().unwrap().contains("once"),
        "{detail}"
    );
    let (status, _, problem) = hub
        .admin_post(
            "/api/v1/deliveries:replay",
            json!({"state": "bogus"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "state");
    assert_eq!(
        receiver.received().len(),
        4,
        "each replay was attempted once"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_failing_origin_opens_its_circuit_and_recovers() {
    let receiver = Receiver::start().await;
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Every arrival with the status it was answered, timed by the receiver itself: how long
    // the origin was left alone must not depend on when this test happened to look.
    let answered = Arc::new(std::sync::Mutex::new(Vec::<(Instant, u16)>::new()));
    let (flag, log) = (healthy.clone(), answered.clone());
    receiver.script(move |request| {
        let status = if flag.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            503
        };
        log.lock().unwrap().push((request.at, status));
        Reply::status(status)
    });
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.circuit_threshold = 3;
        s.delivery.circuit_cooldown =
            a2a_push_hub::config::HumanDuration(Duration::from_millis(300));
        s.delivery.retry_schedule =
            vec![a2a_push_hub::config::HumanDuration(Duration::from_millis(50)); 50];
    })
    .await;
    for task in ["a", "b", "c", "d"] {
        hub.create_config(task, &receiver.url(&format!("/{task}")))
            .await;
        hub.publish(status_event(task, "TASK_STATE_WORKING")).await;
    }
    let metric = |name: &'static str| {
        let hub = &hub;
        async move {
            let text = hub.metrics().await;
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(name)
                        .map(|v| v.trim().parse::<f64>().unwrap())
                })
                .unwrap()
        }
    };
    wait_until(WAIT, "the circuit to open", || async {
        (metric("a2a_push_hub_circuits_open ").await >= 1.0).then_some(())
    })
    .await;
    let during = receiver.received().len();
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_until(WAIT, "every lane delivered", || async {
        (metric("a2a_push_hub_deliveries_total{outcome=\"delivered\"}").await == 4.0).then_some(())
    })
    .await;
    // Retries alone come every 50 ms; only an open circuit leaves the origin quiet for the
    // 300 ms cool-down before the probe that finds it healthy again.
    let answered = answered.lock().unwrap().clone();
    let first_ok = answered
        .iter()
        .position(|&(_, status)| status == 200)
        .expect("a delivery was answered 200");
    let longest_quiet = answered[..=first_ok]
        .windows(2)
        .map(|pair| pair[1].0.duration_since(pair[0].0))
        .max()
        .unwrap_or_default();
    assert!(
        longest_quiet >= Duration::from_millis(250),
        "lanes waited for the cool-down before recovering (longest quiet {longest_quiet:?})"
    );
    assert!(
        during < 4 * 50,
        "an open circuit stops the retry storm ({during} requests)"
    );
    assert_eq!(metric("a2a_push_hub_circuits_open ").await, 0.0);
    hub.stop().await;
}

#[tokio::test]
async fn a_failing_origin_gets_no_more_than_its_limit_and_threshold_before_its_circuit_opens() {
    let receiver = Receiver::start().await;
    receiver.script(|_| Reply::status(503));
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.circuit_threshold = 3;
        s.delivery.circuit_cooldown = a2a_push_hub::config::HumanDuration(Duration::from_secs(30));
        s.delivery.max_in_flight_per_origin = 8;
    })
    .await;
    for task in 0..40 {
        hub.create_config(&format!("t{task}"), &receiver.url("/hook"))
            .await;
    }
    for task in 0..40 {
        hub.publish(status_event(&format!("t{task}"), "TASK_STATE_WORKING"))
            .await;
    }
    let metrics = || async {
        hub.http
            .get(format!("{}/metrics", hub.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    wait_until(
        WAIT,
        "the circuit open and no attempt in flight",
        || async {
            let text = metrics().await;
            (text.contains("a2a_push_hub_circuits_open 1")
                && text.contains("a2a_push_hub_attempts_in_flight 0"))
            .then_some(())
        },
    )
    .await;
    // Failures count toward the circuit as soon as the receiver answers: at most the origin's
    // 8 slots, plus one more request for each of the first two failures, ever reach it.
    let reached = receiver.received().len();
    assert!(
        (3..=10).contains(&reached),
        "{reached} requests reached a failing origin before its circuit opened"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_operator_api_lists_filters_and_shows_deliveries() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let c1 = hub.create_config("t1", &receiver.url("/1")).await;
    hub.create_config("t1", &receiver.url("/2")).await;
    for _ in 0..3 {
        hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    }
    hub.publish(status_event("t2", "TASK_STATE_WORKING")).await;
    receiver.wait_for(6, WAIT).await;
    let (_, all) = hub.admin_get("/api/v1/deliveries?taskId=t1").await;
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 6);
    let (_, one_config) = hub
        .admin_get(&format!("/api/v1/deliveries?taskId=t1&configId={c1}"))
        .await;
    let sequences: Vec<u64> = one_config["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3]);
    let (_, page) = hub.admin_get("/api/v1/deliveries?limit=4").await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 4);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = hub
        .admin_get(&format!("/api/v1/deliveries?limit=4&after={cursor}"))
        .await;
    assert_eq!(rest["deliveries"].as_array().unwrap().len(), 2);
    assert!(rest["nextCursor"].is_null());
    let id = all["deliveries"][0]["id"].as_str().unwrap();
    let detail = wait_for_state(&hub, id, "delivered").await;
    assert_eq!(detail["attemptLog"][0]["status"], 200);
    assert!(detail["attemptLog"][0]["durationMs"].is_u64());
    let (status, problem) = hub.admin_get("/api/v1/deliveries?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "state");
    let (status, _) = hub.admin_get("/api/v1/deliveries/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let text = hub.metrics().await;
    assert!(
        text.contains("a2a_push_hub_events_published_total 4"),
        "{text}"
    );
    assert!(
        text.contains("a2a_push_hub_attempt_duration_seconds_count"),
        "{text}"
    );
    // The store's side: every publish was a commit; the embedded file has a size.
    assert!(common::metric_value(&text, "a2a_push_hub_store_commit_seconds_count") >= 4.0);
    assert!(text.contains("a2a_push_hub_store_writes_queued "), "{text}");
    if std::env::var("A2A_PUSH_HUB_TEST_POSTGRES_URL").map_or(true, |u| u.is_empty()) {
        assert!(common::metric_value(&text, "a2a_push_hub_store_file_bytes") > 0.0);
    }
    hub.stop().await;
}

#[tokio::test]
async fn the_content_type_can_be_plain_json_and_configs_without_secrets_send_no_auth_headers() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.content_type = "application/json".to_string();
    })
    .await;
    hub.create_config("t1", &receiver.url("/plain")).await;
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let received = receiver.wait_for(1, WAIT).await;
    assert_eq!(received[0].header("content-type"), "application/json");
    for absent in [
        "authorization",
        "x-a2a-notification-token",
        "a2a-notification-token",
    ] {
        assert!(
            received[0].headers.get(absent).is_none(),
            "{absent} must not be sent"
        );
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_config_failing_for_disable_after_is_suspended_and_enabling_resumes_its_held_events_in_order()
 {
    use std::sync::atomic::{AtomicBool, Ordering};
    let receiver = Receiver::start().await;
    let failing = Arc::new(AtomicBool::new(true));
    let answers = failing.clone();
    receiver.script(move |_| {
        if answers.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        let ms = |n| a2a_push_hub::config::HumanDuration(Duration::from_millis(n));
        // Each delivery is dead after three attempts; the lane moves on and keeps failing.
        s.delivery.retry_schedule = vec![ms(100), ms(100)];
        s.delivery.disable_after = ms(1000);
    })
    .await;
    let config = hub.create_config("t1", &receiver.url("/hook")).await;
    let mut published = Vec::new();
    for _ in 0..12 {
        published.push(hub.publish(status_event("t1", "TASK_STATE_WORKING")).await);
    }
    let health_path = format!("/api/v1/tasks/t1/configs/{config}/health");
    let health = || async {
        let (status, body) = hub.admin_get(&health_path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    };

    let failing_health = wait_until(WAIT, "two failures in a row", || async {
        let body = health().await;
        (body["consecutiveFailures"].as_u64() >= Some(2) && body["state"] == "active")
            .then_some(body)
    })
    .await;
    assert!(
        failing_health["failingSince"].is_string(),
        "{failing_health}"
    );
    assert!(failing_health["suspendsAt"].is_string(), "{failing_health}");
    assert_eq!(failing_health["lastFailure"]["status"], 503);
    assert_eq!(failing_health["lastFailure"]["errorClass"], "http_status");
    assert_eq!(failing_health["windows"]["1h"]["successRate"], 0.0);
    assert_eq!(
        failing_health["circuit"]["origin"],
        receiver.url("").trim_end_matches('/')
    );
    assert_eq!(failing_health["circuit"]["state"], "closed");
    assert!(failing_health["lastSuccessAt"].is_null());

    let suspended = wait_until(WAIT, "the config suspended", || async {
        let body = health().await;
        (body["state"] == "suspended").then_some(body)
    })
    .await;
    assert_eq!(suspended["disabled"], true);
    assert!(suspended["suspendsAt"].is_null());
    // Counted once the suspending outcome is committed, which the store shows first.
    let suspensions = wait_until(WAIT, "the suspension counted", || async {
        let metrics = hub.metrics().await;
        let counted = common::metric_value(&metrics, "a2a_push_hub_configs_suspended_total");
        (counted > 0.0).then_some(counted)
    })
    .await;
    assert_eq!(suspensions, 1.0);
    let (_, view) = hub.admin_get("/api/v1/tasks/t1").await;
    assert_eq!(view["configs"][0]["state"], "suspended");

    // Events keep coming while it is suspended: held, not attempted, not dropped.
    let during = hub
        .publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    let held_sequence = during["sequence"].as_u64().unwrap();
    let held = health().await;
    let held_count = held["pending"]["count"].as_u64().unwrap();
    let first_held = held["pending"]["oldest"]["sequence"].as_u64().unwrap();
    assert_eq!(
        first_held + held_count - 1,
        held_sequence,
        "every event from the first held one on is pending: {held}"
    );
    // A dead delivery cannot be replayed into a suspended config.
    let (status, _, refusal) = hub
        .admin_post(
            &format!("/api/v1/deliveries/{}/replay", delivery_id(&published[0])),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refusal}");
    assert!(
        refusal["detail"].as_str().unwrap().contains(":enable"),
        "{refusal}"
    );

    failing.store(false, Ordering::SeqCst);
    let before_enable = receiver.received().len();
    let (status, _, enabled) = hub
        .admin_post(&format!("/api/v1/tasks/t1/configs/{config}:enable"), "")
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["was"], "suspended");
    assert_eq!(enabled["resumed"], held_count);
    let received = receiver
        .wait_for(before_enable + held_count as usize, WAIT)
        .await;
    let resumed: Vec<u64> = received[before_enable..]
        .iter()
        .map(|r| r.sequence())
        .collect();
    assert_eq!(
        resumed,
        (first_held..=held_sequence).collect::<Vec<_>>(),
        "the held events, once each, in order"
    );
    assert!(
        received[..before_enable]
            .iter()
            .all(|r| r.sequence() < held_sequence),
        "nothing was attempted for the event published while suspended"
    );
    // Outcomes are recorded a moment after the receiver answered.
    let recovered = wait_until(
        WAIT,
        "the held deliveries recorded as delivered",
        || async {
            let body = health().await;
            (body["pending"]["count"] == 0).then_some(body)
        },
    )
    .await;
    assert_eq!(recovered["state"], "active");
    assert_eq!(recovered["consecutiveFailures"], 0);
    assert!(recovered["lastSuccessAt"].is_string(), "{recovered}");
    assert!(recovered["windows"]["1h"]["succeeded"].as_u64() >= Some(held_count));

    let (status, _, _) = hub
        .admin_post(&format!("/api/v1/tasks/t1/configs/{config}:pause"), "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = hub.admin_get("/api/v1/tasks/t1/configs/nope/health").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn an_origin_with_a_rate_cap_gets_no_more_requests_per_second_and_others_are_not_held_up() {
    const RATE: f64 = 20.0;
    const TASKS: usize = 60;
    let capped = Receiver::start().await;
    let other = Receiver::start_on("127.0.0.2").await;
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.max_rate_per_origin = RATE;
    })
    .await;
    let mut batch = Vec::new();
    for task in 0..TASKS {
        let task = format!("t{task}");
        hub.create_config(&task, &capped.url("/hook")).await;
        batch.push(status_event(&task, "TASK_STATE_WORKING"));
    }
    hub.create_config("t-other", &other.url("/hook")).await;
    batch.push(status_event("t-other", "TASK_STATE_WORKING"));
    let (status, _, body) = hub
        .admin_post("/api/v1/events:batch", Value::from(batch).to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let first_other = other.wait_for(1, WAIT).await[0].at;
    let arrivals: Vec<Instant> = capped
        .wait_for(TASKS, WAIT)
        .await
        .iter()
        .map(|r| r.at)
        .collect();
    // A burst of a tenth of a second's worth (2), then RATE a second.
    common::assert_rate_capped(&arrivals, RATE, 2, 0.2);
    assert!(
        first_other < arrivals[TASKS / 2],
        "the other origin's delivery waited for the capped one"
    );
    assert!(hub.metrics().await.contains("a2a_push_hub_nodes 1"));
}

#[tokio::test]
async fn an_origin_reports_its_attempts_latency_failures_and_waiting_deliveries() {
    use a2a_push_hub::config::HumanDuration;
    let healthy = Receiver::start().await;
    let failing = Receiver::start_on("127.0.0.2").await;
    failing.script(|_| Reply::status(503));
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.retry_schedule = vec![
            HumanDuration(Duration::from_millis(50)),
            HumanDuration(Duration::from_secs(600)),
        ];
    })
    .await;
    for task in ["o1", "o2"] {
        hub.create_config(task, &healthy.url(&format!("/{task}")))
            .await;
    }
    hub.create_config("o3", &failing.url("/hook")).await;
    for task in ["o1", "o2", "o3"] {
        for state in ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"] {
            hub.publish(status_event(task, state)).await;
        }
    }
    healthy.wait_for(4, WAIT).await;
    // The failing origin's head is tried twice, then waits ten minutes.
    failing.wait_for(2, WAIT).await;
    let health_of = |url: String| {
        let hub = &hub;
        async move {
            let path = format!("/api/v1/origins/health?url={}", urlencoding(&url));
            let (status, health) = hub.admin_get(&path).await;
            assert_eq!(status, StatusCode::OK, "{health}");
            health
        }
    };
    let good = wait_until(
        WAIT,
        "four attempts counted at the healthy origin",
        || async {
            let health = health_of(healthy.url("/o1")).await;
            (health["windows"]["5m"]["attempts"] == 4).then_some(health)
        },
    )
    .await;
    assert_eq!(good["origin"], healthy.url(""));
    assert_eq!(good["tracked"], true);
    assert_eq!(good["windows"]["1h"]["succeeded"], 4);
    assert_eq!(good["windows"]["5m"]["successRate"], 1.0);
    assert!(good["windows"]["5m"]["latencyMs"]["p99"].as_u64().is_some());
    assert!(good["lastSuccessAt"].is_string());
    assert_eq!(good["consecutiveFailures"], 0);
    assert_eq!(good["circuit"]["state"], "closed");
    assert_eq!(good["pending"]["count"], 0);

    let bad = wait_until(WAIT, "two failures counted", || async {
        let health = health_of(failing.url("/elsewhere")).await;
        (health["consecutiveFailures"] == 2).then_some(health)
    })
    .await;
    assert_eq!(bad["windows"]["5m"]["succeeded"], 0);
    assert_eq!(bad["lastFailure"]["status"], 503);
    assert_eq!(bad["lastFailure"]["errorClass"], "http_status");
    assert!(bad["failingSince"].is_string());
    assert!(bad["lastSuccessAt"].is_null());
    // Both events of the task wait: the head for its retry, the next one behind it.
    assert_eq!(bad["pending"]["count"], 2);
    assert!(bad["pending"]["oldestDueAt"].is_string());

    let (status, listed) = hub.admin_get("/api/v1/origins").await;
    assert_eq!(status, StatusCode::OK);
    let origins: Vec<&str> = listed["origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins.len(), 2, "{listed}");
    assert!(
        origins.contains(&healthy.url("").as_str()) && origins.contains(&failing.url("").as_str())
    );
    let metrics = hub.metrics().await;
    assert_eq!(
        common::metric_value(&metrics, "a2a_push_hub_origins_tracked"),
        2.0
    );
    assert_eq!(
        common::metric_value(&metrics, "a2a_push_hub_origins_failing"),
        1.0
    );

    // An origin never attempted is reported empty; a bad URL says what to give.
    let unknown = health_of("https://never.example/hook".to_string()).await;
    assert_eq!(unknown["tracked"], false);
    assert_eq!(unknown["windows"]["1h"]["attempts"], 0);
    for path in [
        "/api/v1/origins/health",
        "/api/v1/origins/health?url=not%20a%20url",
    ] {
        let (status, problem) = hub.admin_get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["field"], "url");
    }
}

/// Percent-encodes a query value.
fn urlencoding(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
