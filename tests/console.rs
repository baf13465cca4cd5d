//! The delivery console in a real browser: a hub with real data (published events, deliveries
//! that died at a failing receiver, inbound receipts), then headless Chromium driven by
//! Selenium (`tests/interop/console/console_check.py`) reads every page as a person would and
//! clicks *replay*; afterwards the replayed deliveries must have arrived at the receiver.
//! Once without and once with `server.admin_token`.
//!
//! The browser tests need Chromium, chromedriver and the Python venv with selenium; `.ci/run`
//! installs them and runs `cargo test --test integration -- --ignored console::` with `A2A_INTEROP_PYTHON`,
//! `A2A_CONSOLE_CHROMIUM` and `A2A_CONSOLE_CHROMEDRIVER` set. The tests of what the console is
//! built on (its pages as served, the listings across tasks) run everywhere.

use crate::common;

use std::time::Duration;

use common::{Receiver, Reply, TestHub, fast_delivery, push, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TASK: &str = "console-task-1";
const CONFIG_TOKEN: &str = "console-config-token-8d1f";
const CONFIG_CREDENTIALS: &str = "console-flaky-credentials-27c4";
const ADMIN_TOKEN: &str = "console-admin-token-5e0a";

#[tokio::test]
async fn the_console_is_served_without_data_under_a_strict_content_policy() {
    let hub = TestHub::start_with(|s| {
        s.server.admin_token = a2a_push_hub::config::Secret::new(ADMIN_TOKEN);
    })
    .await;
    let get = |url: String| {
        let http = hub.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let page = get(format!("{}/console/", hub.admin)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"console.js\" defer></script>"));
    assert!(!html.contains(ADMIN_TOKEN));
    let script = get(format!("{}/console/console.js", hub.admin)).await;
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let style = get(format!("{}/console/console.css", hub.admin)).await;
    assert_eq!(style.headers()["content-type"], "text/css; charset=utf-8");

    // The shell needs no token; what it shows does.
    let (status, _) = hub.admin_get("/api/v1/tasks").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A page under a foreign host name could read the API as its own origin: refused.
    let rebound = hub
        .http
        .get(format!("{}/console/", hub.admin))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::BAD_REQUEST);

    // Asked of the public listener, the answer says where the console is.
    let public = get(format!("{}/console/", hub.public)).await;
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert!(public.text().await.unwrap().contains("admin listener"));
    hub.stop().await;
}

#[tokio::test]
async fn tasks_configs_and_events_are_listed_across_tasks_with_clear_errors() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "list-a", "id": "hook", "url": receiver.url("/a"), "token": CONFIG_TOKEN}),
    )
    .await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "list-b", "id": "hook", "url": receiver.url("/b"), "tenant": "acme"}),
    )
    .await;
    hub.publish(common::status_event("list-a", "TASK_STATE_WORKING"))
        .await;
    hub.publish(common::status_event("list-a", "TASK_STATE_COMPLETED"))
        .await;
    let (status, _, _) = hub
        .admin_post(
            "/api/v1/events?tenant=acme",
            common::status_event("list-b", "TASK_STATE_WORKING").to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    hub.publish(common::status_event("other-c", "TASK_STATE_FAILED"))
        .await;
    receiver.wait_for(3, Duration::from_secs(10)).await;

    let task_ids = |page: &Value| -> Vec<String> {
        page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{}/{}",
                    t["tenant"].as_str().unwrap(),
                    t["taskId"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (_, every) = hub.admin_get("/api/v1/tasks").await;
    assert_eq!(task_ids(&every), ["/list-a", "/other-c", "acme/list-b"]);
    assert_eq!(every["tasks"][0]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(every["tasks"][0]["lastSequence"], 2);
    let (_, listed) = hub.admin_get("/api/v1/tasks?q=list").await;
    assert_eq!(task_ids(&listed), ["/list-a", "acme/list-b"]);
    let (_, default_tenant) = hub.admin_get("/api/v1/tasks?tenant=").await;
    assert_eq!(task_ids(&default_tenant), ["/list-a", "/other-c"]);
    let (_, failed) = hub.admin_get("/api/v1/tasks?state=failed").await;
    assert_eq!(task_ids(&failed), ["/other-c"]);
    let (_, working) = hub
        .admin_get("/api/v1/tasks?state=TASK_STATE_WORKING")
        .await;
    assert_eq!(task_ids(&working), ["acme/list-b"]);

    // Paged one by one through the cursor: every task once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/tasks?limit=1".to_string();
    loop {
        let (status, page) = hub.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(task_ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/tasks?limit=1&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, task_ids(&every));

    for (path, field) in [
        ("/api/v1/tasks?state=sleeping", "state"),
        ("/api/v1/tasks?after=%%%", "after"),
        ("/api/v1/tasks?limit=0", "limit"),
        ("/api/v1/configs?state=broken", "state"),
        ("/api/v1/tasks/list-a/events?after=-1", "after"),
    ] {
        let (status, problem) = hub.admin_get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(problem["field"], field, "{path}: {problem}");
        assert!(problem["detail"].as_str().unwrap().len() > 10, "{problem}");
    }

    let (_, configs) = hub.admin_get("/api/v1/configs").await;
    let listed: Vec<(String, String, bool)> = configs["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tenant"].as_str().unwrap().to_string(),
                c["taskId"].as_str().unwrap().to_string(),
                c["hasToken"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (String::new(), "list-a".to_string(), true),
            ("acme".to_string(), "list-b".to_string(), false)
        ]
    );
    assert!(!configs.to_string().contains(CONFIG_TOKEN));
    let (_, suspended) = hub.admin_get("/api/v1/configs?state=suspended").await;
    assert_eq!(suspended["configs"], json!([]));

    let (status, events) = hub.admin_get("/api/v1/tasks/list-a/events").await;
    assert_eq!(status, StatusCode::OK);
    let sequences: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2]);
    assert_eq!(
        events["events"][1]["event"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    let (_, later) = hub
        .admin_get("/api/v1/tasks/list-a/events?after=1&limit=5")
        .await;
    assert_eq!(later["events"].as_array().unwrap().len(), 1);
    let (status, _) = hub.admin_get("/api/v1/tasks/no-such-task/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The attempt log says how a request was signed, never with what. The receiver has the
    // request before the hub has committed its outcome.
    let id = wait_until(Duration::from_secs(10), "a delivered delivery", || async {
        let (_, delivered) = hub
            .admin_get("/api/v1/deliveries?taskId=list-a&state=delivered&limit=1")
            .await;
        delivered["deliveries"][0]["id"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    let (_, detail) = hub.admin_get(&format!("/api/v1/deliveries/{id}")).await;
    let credentials = detail["attemptLog"][0]["credentials"].to_string();
    assert!(
        credentials.contains("x-a2a-notification-token: ****"),
        "{credentials}"
    );
    assert!(
        credentials.contains("webhook-signature: v1a,"),
        "{credentials}"
    );
    assert!(!detail.to_string().contains(CONFIG_TOKEN));
    hub.stop().await;
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name} (see .ci/run)"))
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and selenium; run by .ci/run"]
async fn a_person_sees_every_page_and_replays_dead_deliveries() {
    scenario(None, "open").await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and selenium; run by .ci/run"]
async fn the_console_signs_in_with_the_admin_token() {
    scenario(Some(ADMIN_TOKEN), "with-token").await;
}

/// The admin API as the test's own client, with the admin token when the hub has one.
struct Admin<'a> {
    hub: &'a TestHub,
    token: Option<&'a str>,
}

impl Admin<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.hub.admin_call(method, path, body, self.token).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The ids of `task`'s deliveries in `state` once there are `count` of them: the receiver
    /// has a request before the hub has committed its outcome.
    async fn wait_for_deliveries(&self, task: &str, state: &str, count: usize) -> Vec<String> {
        let what = format!("{count} {state} deliveries");
        wait_until(Duration::from_secs(20), &what, || async {
            let page = self
                .get(&format!("/api/v1/deliveries?taskId={task}&state={state}"))
                .await;
            let ids: Vec<String> = page["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect();
            (ids.len() == count).then_some(ids)
        })
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

async fn scenario(admin_token: Option<&str>, name: &str) {
    let good = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.script(|_| Reply::status(500));
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        if let Some(token) = admin_token {
            s.server.admin_token = a2a_push_hub::config::Secret::new(token);
        }
    })
    .await;
    let admin = Admin {
        hub: &hub,
        token: admin_token,
    };
    if admin_token.is_some() {
        let (status, _) = hub.admin_get("/api/v1/tasks").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    // A task with two webhooks: one answers, one fails until its deliveries are dead.
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": TASK, "id": "good", "url": good.url("/hook"), "token": CONFIG_TOKEN}),
    )
    .await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": TASK, "id": "flaky", "url": flaky.url("/hook"),
               "authentication": {"scheme": "Bearer", "credentials": CONFIG_CREDENTIALS}}),
    )
    .await;
    let events = [
        json!({"statusUpdate": {"taskId": TASK, "contextId": "ctx-1", "status": {"state": "TASK_STATE_WORKING"}}}),
        json!({"artifactUpdate": {"taskId": TASK, "contextId": "ctx-1",
               "artifact": {"artifactId": "a1", "name": "report.md", "parts": [{"text": "the report"}]}}}),
        json!({"statusUpdate": {"taskId": TASK, "contextId": "ctx-1", "status": {"state": "TASK_STATE_COMPLETED"}}}),
    ];
    for event in events {
        admin.post("/api/v1/events", event).await;
    }
    good.wait_for(3, Duration::from_secs(10)).await;
    let dead = admin.wait_for_deliveries(TASK, "dead", 3).await;
    let delivered = admin.wait_for_deliveries(TASK, "delivered", 3).await;
    // The receiver is back: a replay now succeeds.
    let failed_requests = flaky.received().len();
    flaky.script(|_| Reply::ok());

    // A subscription with one accepted push and one refused.
    let subscription = admin
        .post("/api/v1/subscriptions", json!({"taskId": "remote-task-1"}))
        .await;
    let push_url = subscription["url"].as_str().unwrap().to_string();
    let push_token = subscription["pushNotificationConfig"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"statusUpdate": {"taskId": "remote-task-1", "contextId": "ctx",
                      "status": {"state": "TASK_STATE_WORKING"}}})
    .to_string();
    let (status, _) = push(
        &hub.http,
        &push_url,
        &[
            ("content-type", "application/json"),
            ("x-a2a-notification-token", &push_token),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = push(
        &hub.http,
        &push_url,
        &[
            ("content-type", "application/json"),
            ("x-a2a-notification-token", "not-the-token"),
        ],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let profile = tempfile::tempdir().unwrap();
    let screenshots = format!(
        "{}/target/console-screenshots/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let settings = json!({
        "admin": hub.admin,
        "token": admin_token.unwrap_or_default(),
        "task": TASK,
        "dead": dead,
        "delivered": delivered,
        "dead_config": "flaky",
        "subscription": subscription["id"],
        "remote_task": "remote-task-1",
        "push_url": push_url,
        "push_token": push_token,
        "secrets": [CONFIG_TOKEN, CONFIG_CREDENTIALS, push_token],
        "screenshots": screenshots,
        "profile": profile.path(),
        "chromium": env("A2A_CONSOLE_CHROMIUM"),
        "chromedriver": env("A2A_CONSOLE_CHROMEDRIVER"),
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/console/console_check.py"
    );
    let mut check = tokio::process::Command::new(env("A2A_INTEROP_PYTHON"));
    check
        .arg(script)
        .arg(settings.to_string())
        .env("SE_OFFLINE", "true");
    let what = format!("the browser check (screenshots in {screenshots})");
    common::run_client(check, &what, Duration::from_secs(300)).await;

    // Every dead delivery, replayed from the console, arrived once more at the receiver: the
    // first from the task's timeline, the second by selection, the third by filter.
    let arrived = flaky
        .wait_for(failed_requests + 3, Duration::from_secs(20))
        .await;
    let mut replayed: Vec<String> = arrived[failed_requests..]
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    replayed.sort();
    let mut expected = dead.clone();
    expected.sort();
    assert_eq!(replayed, expected);
    for request in &arrived[failed_requests..] {
        assert_eq!(
            request.header("authorization"),
            format!("Bearer {CONFIG_CREDENTIALS}")
        );
    }
    let page = admin
        .get(&format!("/api/v1/deliveries?taskId={TASK}&state=dead"))
        .await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 0, "{page}");
    hub.stop().await;
}
