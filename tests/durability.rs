//! Crash durability: the real binary is SIGKILLed while events are being published; after a
//! restart on the same store, every event it acknowledged (202) is there with its deliveries,
//! and a publish retried with its idempotency key is stored once.

use crate::common;

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

/// A publisher that retries with its idempotency key after the hub crashed: the request in
/// flight when the hub died may have been stored without an answer, and the retry must not
/// store it twice.
#[tokio::test]
async fn publishes_retried_after_sigkill_with_their_idempotency_keys_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let hub = HubProcess::spawn_on(&data_dir);
    let http = http_client();
    let event = move |task: &str, n: u64| {
        json!({"statusUpdate": {"taskId": task, "contextId": "c", "status": {"state": "TASK_STATE_WORKING"},
            "metadata": {"n": n}}})
    };
    let client = http.clone();
    let publish = move |admin: std::net::SocketAddr, task: String, n: u64| {
        let http = client.clone();
        let body = event(&task, n).to_string();
        async move {
            let response = http
                .post(format!("http://{admin}/api/v1/events"))
                .header("content-type", "application/json")
                .header("idempotency-key", format!("{task}/{n}"))
                .body(body)
                .send()
                .await
                .ok()?;
            (response.status() == 202).then_some(())?;
            response.json::<Value>().await.ok()
        }
    };

    // Each publisher sends its task's events 1, 2, … in order until the hub dies; it keeps the
    // answers it got and how far it went (the last one possibly unanswered).
    let answered: Arc<Mutex<HashMap<(String, u64), Value>>> = Arc::default();
    let sent: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut publishers = Vec::new();
    for task in (0..4).map(|i| format!("keyed-{i}")) {
        let (answered, sent, admin) = (answered.clone(), sent.clone(), hub.admin);
        let publish = publish.clone();
        publishers.push(tokio::spawn(async move {
            for n in 1..=10_000 {
                sent.lock().await.insert(task.clone(), n);
                let Some(answer) = publish(admin, task.clone(), n).await else {
                    break;
                };
                answered.lock().await.insert((task.clone(), n), answer);
            }
        }));
    }
    common::wait_until(Duration::from_secs(30), "200 answered publishes", || {
        let answered = answered.clone();
        async move { (answered.lock().await.len() >= 200).then_some(()) }
    })
    .await;
    let mut hub = hub;
    hub.child.kill().expect("SIGKILL the hub");
    hub.child.wait().unwrap();
    for publisher in publishers {
        publisher.await.unwrap();
    }

    // After the restart each publisher sends everything again with the same keys.
    let restarted = HubProcess::spawn_on(&data_dir);
    let answered = answered.lock().await.clone();
    for (task, last) in sent.lock().await.clone() {
        for n in 1..=last {
            let again = publish(restarted.admin, task.clone(), n)
                .await
                .unwrap_or_else(|| panic!("{task}/{n} answered after the restart"));
            assert_eq!(
                again["sequence"], n,
                "{task}/{n}: each event stored once, in order: {again}"
            );
            if let Some(first) = answered.get(&(task.clone(), n)) {
                assert_eq!(again["eventId"], first["eventId"], "{task}/{n}");
                assert_eq!(again["replayed"], true, "{task}/{n}");
            }
        }
        let view: Value = http
            .get(format!("http://{}/api/v1/tasks/{task}", restarted.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["lastSequence"], last, "{task}: no event twice");
    }
}
