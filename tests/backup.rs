//! Backing up the embedded store of a running hub under load, through the command line and
//! the admin API, and restoring it into a new folder that a new hub serves.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Receiver, TestHub, fast_delivery, status_event};
use reqwest::StatusCode;
use serde_json::Value;

const TASKS: usize = 20;

use common::run_cli as cli;

fn on_postgres() -> bool {
    std::env::var("A2A_PUSH_HUB_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty())
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_event_accepted_before_it() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("hub.backup");
    let file_arg = file.to_str().unwrap();
    if on_postgres() {
        // A database is backed up with its own tools; the hub says so.
        let (ok, _, stderr) = cli(&["backup", "--admin-url", &hub.admin, "--to", file_arg]).await;
        assert!(!ok);
        assert!(stderr.contains("pg_dump"), "{stderr}");
        assert!(!file.exists());
        return;
    }
    for task in 0..TASKS {
        hub.create_config(&format!("b{task}"), &receiver.url("/hook"))
            .await;
    }
    // Publishers keep going while the backup runs; each records the sequences acknowledged.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let publishers = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let (http, admin) = (hub.http.clone(), hub.admin.clone());
        tokio::spawn(async move {
            let mut round = 0usize;
            loop {
                let task = format!("b{}", round % TASKS);
                let publish = http
                    .post(format!("{admin}/api/v1/events"))
                    .header("content-type", "application/json")
                    .body(status_event(&task, "TASK_STATE_WORKING").to_string())
                    .send();
                tokio::select! {
                    _ = stop.notified() => break,
                    response = publish => {
                        let response = response.unwrap();
                        assert_eq!(response.status(), StatusCode::ACCEPTED);
                        let body: Value = response.json().await.unwrap();
                        let sequence = body["sequence"].as_u64().unwrap();
                        acked.lock().unwrap().insert(task, sequence);
                    }
                }
                round += 1;
            }
        })
    };
    common::wait_until(Duration::from_secs(20), "some events accepted", || async {
        (acked.lock().unwrap().len() == TASKS).then_some(())
    })
    .await;
    let before_backup = acked.lock().unwrap().clone();
    let (ok, summary, stderr) = cli(&["backup", "--admin-url", &hub.admin, "--to", file_arg]).await;
    assert!(ok, "{stderr}");
    assert!(summary["records"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["file"], file_arg);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup is its owner's only");
    }
    stop.notify_one();
    publishers.await.unwrap();
    hub.stop().await;

    // Refused whole when damaged, and into a folder that holds a store.
    let restored = tempfile::tempdir().unwrap();
    let data_dir = restored.path().join("store");
    let cut = backups.path().join("cut.backup");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let (ok, _, stderr) = cli(&[
        "restore",
        "--from",
        cut.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
    .await;
    assert!(!ok);
    assert!(stderr.contains("damaged or cut short"), "{stderr}");
    assert!(
        !data_dir.exists(),
        "nothing is written from a damaged backup"
    );

    let restore = |dir: &Path| {
        let dir = dir.to_str().unwrap().to_string();
        let file = file_arg.to_string();
        async move { cli(&["restore", "--from", &file, "--data-dir", &dir]).await }
    };
    let (ok, restored_summary, stderr) = restore(&data_dir).await;
    assert!(ok, "{stderr}");
    assert_eq!(restored_summary["records"], summary["records"]);
    let (ok, _, stderr) = restore(&data_dir).await;
    assert!(!ok);
    assert!(stderr.contains("holds a store already"), "{stderr}");

    // A hub on the restored folder has every config and every event accepted before the
    // backup began, each task's events numbered without a gap.
    let served = TestHub::start_with(|s| s.store.path = data_dir.clone()).await;
    for task in 0..TASKS {
        let task = format!("b{task}");
        let (status, view) = served.admin_get(&format!("/api/v1/tasks/{task}")).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        let last = view["lastSequence"].as_u64().unwrap();
        assert!(
            last >= before_backup[&task],
            "{task}: {last} < {}",
            before_backup[&task]
        );
        assert_eq!(view["configs"].as_array().unwrap().len(), 1);
        let counts = &view["deliveries"];
        let total: u64 = ["pending", "delivered", "dead", "canceled", "skipped"]
            .iter()
            .map(|state| counts[state].as_u64().unwrap())
            .sum();
        assert_eq!(total, last, "{task}: one delivery per event");
    }
    // The restored hub delivers what was pending at the moment of the backup.
    common::wait_until(
        Duration::from_secs(20),
        "the restored backlog delivered",
        || async {
            let (_, page) = served.admin_get("/api/v1/deliveries?state=pending").await;
            page["deliveries"]
                .as_array()
                .unwrap()
                .is_empty()
                .then_some(())
        },
    )
    .await;
    served.stop().await;
}
