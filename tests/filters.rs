//! Delivery filters over real HTTP: which of a task's events each config receives, what the
//! skipped ones look like on the admin API, replaying one anyway, and tenant defaults.

use crate::common;

use std::time::Duration;

use common::{Receiver, TestHub, fast_delivery, status_event, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn artifact_event(task_id: &str, name: &str) -> Value {
    json!({"artifactUpdate": {"taskId": task_id, "contextId": "ctx",
        "artifact": {"artifactId": name, "name": name, "parts": [{"text": "x"}]}}})
}

fn filter_path(task_id: &str, config_id: &str) -> String {
    format!("/api/v1/tasks/{task_id}/configs/{config_id}/filter")
}

/// Waits until no delivery of the task is pending; returns the task view.
async fn settled(hub: &TestHub, task_id: &str) -> Value {
    wait_until(WAIT, "every delivery settled", || async {
        let (status, view) = hub.admin_get(&format!("/api/v1/tasks/{task_id}")).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        (view["deliveries"]["pending"] == 0).then_some(view)
    })
    .await
}

/// The sequence numbers that arrived at `path`, and the filter header of each.
fn arrived(receiver: &Receiver, path: &str) -> Vec<(u64, String)> {
    receiver
        .received()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| (r.sequence(), r.header("x-a2a-push-filter").to_string()))
        .collect()
}

#[tokio::test]
async fn each_config_receives_what_its_filter_lets_through_and_skipped_events_are_recorded() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let task = "t-filtered";
    let mut configs = Vec::new();
    for (path, filter) in [
        ("/all", None),
        ("/changes", Some(json!({"events": "state_changes"}))),
        ("/terminal", Some(json!({"events": "terminal"}))),
        (
            "/artifacts",
            Some(json!({"match": {"artifactUpdate": {"artifact": {"name": {"$in": ["report"]}}}}})),
        ),
    ] {
        let id = hub.create_config(task, &receiver.url(path)).await;
        if let Some(filter) = filter {
            let (status, answer) = hub.admin_put(&filter_path(task, &id), filter.clone()).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["filter"], filter);
            assert_eq!(answer["configId"], id.as_str());
        }
        configs.push(id);
    }

    for event in [
        status_event(task, "TASK_STATE_WORKING"),
        status_event(task, "TASK_STATE_WORKING"),
        artifact_event(task, "report"),
        artifact_event(task, "draft"),
        status_event(task, "TASK_STATE_INPUT_REQUIRED"),
        status_event(task, "TASK_STATE_WORKING"),
        status_event(task, "TASK_STATE_COMPLETED"),
    ] {
        hub.publish(event).await;
    }
    let view = settled(&hub, task).await;
    assert_eq!(view["deliveries"]["delivered"], 7 + 4 + 2 + 1);
    assert_eq!(view["deliveries"]["skipped"], 3 + 5 + 6);

    let sequences = |path| -> Vec<u64> { arrived(&receiver, path).iter().map(|a| a.0).collect() };
    assert_eq!(sequences("/all"), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(sequences("/changes"), [1, 5, 6, 7]);
    assert_eq!(sequences("/terminal"), [5, 7]);
    assert_eq!(sequences("/artifacts"), [3]);
    // The header tells a receiver why its sequence numbers have gaps; unfiltered ones get none.
    assert!(arrived(&receiver, "/all").iter().all(|a| a.1.is_empty()));
    assert!(
        arrived(&receiver, "/changes")
            .iter()
            .all(|a| a.1 == "state_changes")
    );
    assert!(
        arrived(&receiver, "/terminal")
            .iter()
            .all(|a| a.1 == "terminal")
    );
    assert!(
        arrived(&receiver, "/artifacts")
            .iter()
            .all(|a| a.1 == "match")
    );

    // Skipped deliveries are listed, with the filter that skipped them.
    let (status, page) = hub
        .admin_get(&format!(
            "/api/v1/deliveries?taskId={task}&configId={}&state=skipped",
            configs[1]
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let skipped = page["deliveries"].as_array().unwrap();
    let numbers: Vec<u64> = skipped
        .iter()
        .map(|d| d["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 3, 4]);
    assert!(skipped.iter().all(|d| d["skippedBy"] == "state_changes"
        && d["attempts"] == 0
        && d["state"] == "skipped"));

    // Replaying a skipped delivery sends it once, as it was published.
    let id = skipped[0]["id"].as_str().unwrap();
    let (status, _, answer) = hub
        .admin_post(&format!("/api/v1/deliveries/{id}/replay"), "")
        .await;
    assert!(status.is_success(), "{answer}");
    let replayed = wait_until(WAIT, "the replayed skipped event", || async {
        receiver
            .received()
            .into_iter()
            .find(|r| r.path == "/changes" && r.sequence() == 2)
    })
    .await;
    assert_eq!(replayed.header("webhook-id"), id);
    let shown = wait_until(WAIT, "the replay recorded as delivered", || async {
        let (_, shown) = hub.admin_get(&format!("/api/v1/deliveries/{id}")).await;
        (shown["state"] == "delivered").then_some(shown)
    })
    .await;
    assert!(shown.get("skippedBy").is_none(), "{shown}");

    // The task view and the config's health show each filter.
    let terminal = view["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == configs[2].as_str())
        .unwrap();
    assert_eq!(terminal["filter"], json!({"events": "terminal"}));
    let (_, health) = hub
        .admin_get(&format!(
            "/api/v1/tasks/{task}/configs/{}/health",
            configs[0]
        ))
        .await;
    assert_eq!(health["filter"], json!({"events": "all"}));
}

#[tokio::test]
async fn a_filter_survives_registering_the_config_again_and_tenant_defaults_apply_to_new_configs() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let id = hub.create_config("t-keep", &receiver.url("/a")).await;
    let terminal = json!({"events": "terminal"});
    let (status, _) = hub
        .admin_put(&filter_path("t-keep", &id), terminal.clone())
        .await;
    assert_eq!(status, StatusCode::OK);
    // The client registers the same config again over A2A: A2A has no filter, it stays.
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t-keep", "id": id, "url": receiver.url("/b")}),
    )
    .await;
    let (status, shown) = hub.admin_get(&filter_path("t-keep", &id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["filter"], terminal);

    // A tenant's default applies to its configs created afterwards, not to other tenants.
    let changes = json!({"events": "state_changes"});
    let (status, answer) = hub
        .admin_put(
            "/api/v1/tenant-defaults?tenant=acme",
            json!({"filter": changes}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"tenant": "acme", "filter": changes}));
    let (_, shown) = hub.admin_get("/api/v1/tenant-defaults?tenant=acme").await;
    assert_eq!(shown["filter"], changes);
    let created = hub
        .rpc_ok(
            "CreateTaskPushNotificationConfig",
            json!({"tenant": "acme", "taskId": "t-acme", "url": receiver.url("/acme")}),
        )
        .await;
    let acme_id = created["id"].as_str().unwrap();
    let (_, shown) = hub
        .admin_get(&format!("{}?tenant=acme", filter_path("t-acme", acme_id)))
        .await;
    assert_eq!(shown["filter"], changes);
    let other = hub.create_config("t-other", &receiver.url("/o")).await;
    let (_, shown) = hub.admin_get(&filter_path("t-other", &other)).await;
    assert_eq!(shown["filter"], json!({"events": "all"}));

    // And it is delivered that way.
    for state in [
        "TASK_STATE_WORKING",
        "TASK_STATE_WORKING",
        "TASK_STATE_COMPLETED",
    ] {
        let (status, _, body) = hub
            .admin_post(
                "/api/v1/events?tenant=acme",
                status_event("t-acme", state).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    wait_until(WAIT, "acme's deliveries settled", || async {
        let (_, view) = hub.admin_get("/api/v1/tasks/t-acme?tenant=acme").await;
        (view["deliveries"]["pending"] == 0).then_some(())
    })
    .await;
    let sequences: Vec<u64> = receiver
        .received()
        .iter()
        .filter(|r| r.path == "/acme")
        .map(|r| r.sequence())
        .collect();
    assert_eq!(sequences, [1, 3]);
}

#[tokio::test]
async fn bad_filters_are_refused_with_the_field_to_fix_and_change_nothing() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start().await;
    let id = hub.create_config("t-bad", &receiver.url("/hook")).await;
    let path = filter_path("t-bad", &id);
    for (body, field) in [
        (json!({"events": "everything"}), "events"),
        (json!({"events": "all", "match": {}}), "body"),
        (
            json!({"match": {"statusUpdate": {"$gt": 1}}}),
            "match.statusUpdate.$gt",
        ),
        (json!({"match": {"x": "y".repeat(5000)}}), "match"),
        (json!("state_changes"), "body"),
    ] {
        let (status, problem) = hub.admin_put(&path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let (status, shown) = hub.admin_get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["filter"], json!({"events": "all"}));

    let (status, problem) = hub
        .admin_put(&filter_path("t-bad", "nope"), json!({"events": "terminal"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, problem) = hub
        .admin_put("/api/v1/tenant-defaults", json!({"filter": {"events": 3}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["field"], "filter.events");
    let (status, problem) = hub
        .admin_put("/api/v1/tenant-defaults", json!({"retries": 3}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["field"], "retries");
}
