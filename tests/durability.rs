//! Crash durability: the real binary is SIGKILLed while events are being published; after a
//! restart on the same store, every event it acknowledged (202) is there with its deliveries.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{HubProcess, http_client, status_event};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[tokio::test]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let mut hub = HubProcess::spawn_on(&data_dir);
    let http = http_client();

    let tasks: Vec<String> = (0..8).map(|i| format!("crash-task-{i}")).collect();
    for task in &tasks {
        let response = http
            .post(format!("http://{}/", hub.public))
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig",
                "params": {"taskId": task, "url": "http://127.0.0.1:9/hook"}}),
            )
            .send()
            .await
            .unwrap();
        assert!(
            response
                .json::<Value>()
                .await
                .unwrap()
                .get("result")
                .is_some()
        );
    }

    // Publishers run until the hub dies; every 202 is recorded as (task → acknowledged
    // sequence numbers and delivery ids).
    let acknowledged: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for task in tasks.clone() {
        let (http, acknowledged, stop, admin) =
            (http.clone(), acknowledged.clone(), stop.clone(), hub.admin);
        publishers.push(tokio::spawn(async move {
            for _ in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let sent = http
                    .post(format!("http://{admin}/api/v1/events"))
                    .header("content-type", "application/json")
                    .body(status_event(&task, "TASK_STATE_WORKING").to_string())
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != 202 {
                    break;
                }
                let Ok(body) = response.json::<Value>().await else {
                    break;
                };
                assert_eq!(body["deliveries"].as_array().unwrap().len(), 1);
                acknowledged
                    .lock()
                    .await
                    .entry(task.clone())
                    .or_default()
                    .push(body["sequence"].as_u64().unwrap());
            }
        }));
    }
    common::wait_until(Duration::from_secs(30), "200 acknowledged events", || {
        let acknowledged = acknowledged.clone();
        async move {
            (acknowledged
                .lock()
                .await
                .values()
                .map(Vec::len)
                .sum::<usize>()
                >= 200)
                .then_some(())
        }
    })
    .await;
    hub.child.kill().expect("SIGKILL the hub");
    hub.child.wait().unwrap();
    drop(hub);
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        publisher.await.unwrap();
    }

    let restarted = HubProcess::spawn_on(&data_dir);
    let acknowledged = acknowledged.lock().await.clone();
    let total: usize = acknowledged.values().map(Vec::len).sum();
    assert!(total >= 200);
    for (task, sequences) in &acknowledged {
        let view: Value = http
            .get(format!("http://{}/api/v1/tasks/{task}", restarted.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let highest = *sequences.iter().max().unwrap();
        let last = view["lastSequence"].as_u64().unwrap();
        assert!(
            last >= highest,
            "{task}: acknowledged up to {highest}, store has {last}"
        );
        // One config per task: one delivery per stored event, acknowledged ones included.
        assert_eq!(
            view["deliveries"]["pending"].as_u64().unwrap(),
            last,
            "{task}: {view}"
        );
        let mut sorted = sequences.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (1..=sorted.len() as u64).collect::<Vec<_>>(),
            "{task}: acknowledged sequences are gapless"
        );
    }
    // The restarted hub keeps numbering after the last stored event.
    let task = &tasks[0];
    let next: Value = http
        .post(format!("http://{}/api/v1/events", restarted.admin))
        .header("content-type", "application/json")
        .body(status_event(task, "TASK_STATE_COMPLETED").to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = acknowledged
        .get(task)
        .map_or(0, |s| *s.iter().max().unwrap());
    assert!(next["sequence"].as_u64().unwrap() > before);
    assert!(restarted.public.port() > 0);
}
