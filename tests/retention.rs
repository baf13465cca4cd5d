//! Retention over real HTTP: a finished task is purged with everything recorded for it once
//! `retention.finished_tasks` has passed — never earlier, never while its deliveries are
//! pending — and tasks still running are kept.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use a2a_push_hub::config::HumanDuration;
use common::{Receiver, Reply, TestHub, fast_delivery, status_event, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(3);

fn with_retention(settings: &mut a2a_push_hub::Settings) {
    fast_delivery(settings);
    settings.retention.finished_tasks = HumanDuration(RETENTION);
}

async fn task_status(hub: &TestHub, task_id: &str) -> StatusCode {
    hub.admin_get(&format!("/api/v1/tasks/{task_id}")).await.0
}

async fn wait_until_purged(hub: &TestHub, task_id: &str) {
    wait_until(WAIT, &format!("task {task_id} to be purged"), || async {
        (task_status(hub, task_id).await == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

fn delivery_ids(published: &[Value]) -> Vec<String> {
    published
        .iter()
        .flat_map(|p| p["deliveries"].as_array().unwrap().clone())
        .map(|d| d["deliveryId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_finished_task_is_purged_with_its_records_after_retention_and_a_running_one_stays() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(with_retention).await;
    hub.create_config("done", &receiver.url("/done")).await;
    hub.create_config("running", &receiver.url("/running"))
        .await;
    let mut published = vec![
        hub.publish(status_event("done", "TASK_STATE_WORKING"))
            .await,
    ];
    hub.publish(status_event("running", "TASK_STATE_WORKING"))
        .await;
    published.push(
        hub.publish(status_event("done", "TASK_STATE_COMPLETED"))
            .await,
    );
    let finished_at = Instant::now();
    receiver.wait_for(3, WAIT).await;
    let ids = delivery_ids(&published);
    assert_eq!(ids.len(), 2);

    wait_until_purged(&hub, "done").await;
    assert!(
        finished_at.elapsed() >= RETENTION,
        "purged after {:?}, before the retention period of {RETENTION:?}",
        finished_at.elapsed()
    );
    for id in &ids {
        let (status, body) = hub.admin_get(&format!("/api/v1/deliveries/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "delivery {id}: {body}");
    }
    let (status, listed) = hub.admin_get("/api/v1/deliveries?taskId=done").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["deliveries"], json!([]), "{listed}");
    let configs = hub
        .rpc("ListTaskPushNotificationConfigs", json!({"taskId": "done"}))
        .await;
    let remaining = configs["result"]["configs"].as_array().map_or(0, Vec::len);
    assert_eq!(
        remaining, 0,
        "the finished task's configs are purged: {configs}"
    );

    let (status, running) = hub.admin_get("/api/v1/tasks/running").await;
    assert_eq!(status, StatusCode::OK, "a running task is never purged");
    assert_eq!(running["configs"].as_array().unwrap().len(), 1);
    assert_eq!(running["deliveries"]["delivered"], 1, "{running}");

    // The sweep counts what it purged once its commit returns, which readers may see first.
    let counted = wait_until(WAIT, "the purge to be counted", || async {
        let purged = common::metric_value(&hub.metrics().await, "a2a_push_hub_tasks_purged_total");
        (purged > 0.0).then_some(purged)
    })
    .await;
    assert_eq!(counted, 1.0);
    hub.stop().await;
}

#[tokio::test]
async fn a_finished_task_waits_for_its_pending_deliveries_before_it_is_purged() {
    let receiver = Receiver::start().await;
    let down = Arc::new(AtomicBool::new(true));
    let is_down = down.clone();
    receiver.script(move |request| {
        if request.path == "/down" && is_down.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(|settings| {
        with_retention(settings);
        // Retries for 50 s: the delivery stays pending until the receiver is back.
        settings.delivery.retry_schedule = vec![HumanDuration(Duration::from_millis(500)); 100];
    })
    .await;
    hub.create_config("slow", &receiver.url("/down")).await;
    hub.create_config("quick", &receiver.url("/up")).await;
    hub.publish(status_event("slow", "TASK_STATE_COMPLETED"))
        .await;
    hub.publish(status_event("quick", "TASK_STATE_COMPLETED"))
        .await;

    // Once a sweep has purged the task that finished at the same time, the other one must
    // still be there: its delivery is pending.
    wait_until_purged(&hub, "quick").await;
    let (status, slow) = hub.admin_get("/api/v1/tasks/slow").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "purged while a delivery was pending"
    );
    assert_eq!(slow["deliveries"]["pending"], 1, "{slow}");

    down.store(false, Ordering::SeqCst);
    let back_at = Instant::now();
    // Retries go on for 50 s, longer than this waits: purged means delivered.
    wait_until_purged(&hub, "slow").await;
    assert!(
        receiver
            .received()
            .iter()
            .any(|r| r.path == "/down" && r.at > back_at),
        "the delivery reached the receiver once it was back"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_retention_period_under_a_second_is_refused_with_what_to_do() {
    let mut settings = a2a_push_hub::Settings::default();
    settings.retention.finished_tasks = HumanDuration(Duration::from_millis(500));
    let error = settings.validate().unwrap_err().to_string();
    assert!(error.contains("retention.finished_tasks"), "{error}");
    assert!(error.contains("at least 1s"), "{error}");
}
