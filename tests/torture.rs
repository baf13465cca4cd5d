//! Crash-and-fault torture: 5,000 events over 500 tasks, a receiver failing a random 30 % of
//! requests, the hub SIGKILLed and restarted three times at random moments. Afterwards every
//! acknowledged event reached its webhook, nothing arrived that was never published, and per
//! lane the first arrivals are in sequence order. Bounded to about two minutes.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{HubProcess, Receiver, Reply, http_client, poll_until};
use serde_json::{Value, json};

const TASKS: usize = 500;
const EVENTS_PER_TASK: usize = 10;
const BATCH: usize = 50;

fn spawn(data_dir: &Path, journal: bool) -> HubProcess {
    let mut command = common::hub_command(data_dir);
    common::crash_test_settings(&mut command);
    command.env("A2A_PUSH_HUB_STORE__JOURNAL", journal.to_string());
    // A checkpoint every MiB of journal, so that crashes fall during checkpoints' flushes and
    // right after the journal turned to its other file.
    command.env("A2A_PUSH_HUB_STORE__JOURNAL_CHECKPOINT_MIB", "1");
    HubProcess::spawn(command).expect("the hub starts")
}

#[tokio::test]
async fn every_accepted_event_survives_random_crashes_and_a_flaky_receiver() {
    torture(false).await;
}

/// The same with the embedded store's journal (`store.journal`): a crash between checkpoints
/// leaves acknowledged writes only in the journal. On PostgreSQL the setting changes nothing.
#[tokio::test]
async fn every_accepted_event_survives_random_crashes_with_the_journal() {
    torture(true).await;
}

async fn torture(journal: bool) {
    let seed = fastrand::u64(..);
    println!("torture seed {seed}, journal {journal}");
    let rng = Arc::new(std::sync::Mutex::new(fastrand::Rng::with_seed(seed)));
    let receiver = Receiver::start().await;
    let coin = rng.clone();
    receiver.script(move |_| {
        if coin.lock().unwrap().f64() < 0.3 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let http = http_client();
    let mut hub = spawn(&data_dir, journal);

    for task in 0..TASKS {
        let task = format!("task-{task}");
        common::create_config_at(
            &http,
            hub.public,
            &task,
            "c",
            &receiver.url(&format!("/{task}")),
        )
        .await;
    }

    // Every event carries a unique number; `attempted` holds every number ever sent, `acked`
    // those the hub answered 202 for.
    let events: Vec<(usize, u64)> = (0..EVENTS_PER_TASK)
        .flat_map(|round| (0..TASKS).map(move |task| (task, (round * TASKS + task) as u64)))
        .collect();
    let batches: Vec<&[(usize, u64)]> = events.chunks(BATCH).collect();
    let kill_points: HashSet<usize> = {
        let mut rng = rng.lock().unwrap();
        let mut points = HashSet::new();
        while points.len() < 3 {
            points.insert(rng.usize(1..batches.len()));
        }
        points
    };
    let mut attempted = HashSet::new();
    let mut acked = HashSet::new();
    let restarts = AtomicU64::new(0);
    for (index, batch) in batches.iter().enumerate() {
        if kill_points.contains(&index) {
            hub.child.kill().unwrap();
            hub.child.wait().unwrap();
            drop(hub);
            hub = spawn(&data_dir, journal);
            restarts.fetch_add(1, Ordering::Relaxed);
        }
        let body: Vec<Value> = batch
            .iter()
            .map(|(task, n)| {
                json!({"statusUpdate": {"taskId": format!("task-{task}"), "contextId": "c",
                "status": {"state": "TASK_STATE_WORKING"}, "metadata": {"n": n}}})
            })
            .collect();
        attempted.extend(batch.iter().map(|(_, n)| *n));
        let sent = http
            .post(format!("http://{}/api/v1/events:batch", hub.admin))
            .json(&body)
            .send()
            .await;
        if let Ok(response) = sent {
            if response.status() == 202 {
                acked.extend(batch.iter().map(|(_, n)| *n));
            }
        }
    }
    assert_eq!(restarts.load(Ordering::Relaxed), 3);

    let arrived_numbers = |receiver: &Receiver| -> HashSet<u64> {
        common::event_numbers(&receiver.received())
            .into_iter()
            .collect()
    };
    let missing = || {
        let arrived = arrived_numbers(&receiver);
        acked
            .iter()
            .copied()
            .filter(|n| !arrived.contains(n))
            .collect::<Vec<u64>>()
    };
    let all_arrived = poll_until(Duration::from_secs(90), || {
        let done = missing().is_empty();
        async move { done.then_some(()) }
    })
    .await;
    // A timeout says which events are missing and what their hub did with them.
    if all_arrived.is_none() {
        let mut missing = missing();
        missing.sort_unstable();
        let deliveries = http
            .get(format!(
                "http://{}/api/v1/deliveries?limit=20&state=pending",
                hub.admin
            ))
            .send()
            .await
            .ok();
        let pending = match deliveries {
            Some(response) => response.text().await.unwrap_or_default(),
            None => "(the admin API did not answer)".to_string(),
        };
        panic!(
            "timed out after 90s waiting for every acknowledged event to arrive (seed {seed}, \
                 journal {journal}): {} of {} missing, the first {:?}; {} requests reached the \
                 receiver; pending deliveries: {}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(20)],
            receiver.received().len(),
            pending.chars().take(2_000).collect::<String>()
        );
    }

    let received = receiver.received();
    let arrived = arrived_numbers(&receiver);
    assert!(
        arrived.is_subset(&attempted),
        "nothing arrived that was never published"
    );
    // Per lane, first arrivals (by webhook-id) come in increasing sequence order.
    let duplicates = common::assert_first_arrivals_in_order(&received);
    println!(
        "torture: {} published, {} acknowledged, {} arrived, {} requests of which {} repeated a webhook-id (retries after a 503 and repeats after a crash), 3 crashes",
        attempted.len(),
        acked.len(),
        arrived.len(),
        received.len(),
        duplicates
    );
}
