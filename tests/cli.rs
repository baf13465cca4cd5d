//! The command line: settings layered defaults → file → environment → flags, and clear
//! errors for bad settings.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::{HubProcess, http_client, status_event};
use reqwest::StatusCode;

fn hub_command(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"));
    command
        .args(["--log-format", "json", "serve", "--data-dir"])
        .arg(dir.join("store"));
    command
}

#[tokio::test]
async fn flags_beat_the_environment_which_beats_the_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(
        &file,
        "[server]\npublic_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:0\"\n[limits]\nmax_body_bytes = 2048\n",
    )
    .unwrap();
    let mut command = hub_command(dir.path());
    command
        .args(["--config"])
        .arg(&file)
        .args(["--public-listen", "127.0.0.1:0"])
        .env("A2A_PUSH_HUB_LIMITS__MAX_BODY_BYTES", "8192");
    let hub = HubProcess::spawn(command).expect("starts");
    assert_ne!(hub.public.port(), 1, "the flag wins over the file");
    let http = http_client();
    let mut event = status_event("t", "TASK_STATE_WORKING");
    event["statusUpdate"]["metadata"] = serde_json::json!({"pad": "x".repeat(4000)});
    let response = http
        .post(format!("http://{}/api/v1/events", hub.admin))
        .header("content-type", "application/json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "the environment's 8192 beats the file's 2048"
    );
}

#[test]
fn bad_settings_stop_the_start_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[delivery]\ntimeout = \"2m\"\n", "delivery.timeout"),
        ("[delivery]\ntimeout = \"fast\"\n", "fast"),
        ("[store]\ncache_mib = 0\n", "store.cache_mib"),
        (
            "[store]\njournal_checkpoint_mib = 0\n",
            "store.journal_checkpoint_mib",
        ),
        ("[server]\nadmin_lissen = \"127.0.0.1:0\"\n", "admin_lissen"),
        (
            "[security]\nallowed_subnets = [\"not-a-cidr\"]\n",
            "allowed_subnets",
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\notlp_protocol = \"http/json\"\n",
            "otlp_protocol",
        ),
        (
            "[telemetry]\notlp_endpoint = \"collector:4318\"\n",
            "otlp_endpoint",
        ),
    ];
    for (toml, expected) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, toml).unwrap();
        let output = hub_command(dir.path())
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{toml}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{toml}: {stderr}");
    }
    let output = hub_command(dir.path())
        .args(["--config", "/nonexistent/hub.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
}

#[test]
fn a_busy_port_is_reported_with_the_listener_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = hub_command(dir.path())
        .args(["--public-listen", &addr, "--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("public") && stderr.contains(&addr),
        "{stderr}"
    );
}

use common::run_cli as cli;

#[tokio::test]
async fn the_deliveries_commands_list_show_and_replay_through_the_admin_api() {
    use common::{Receiver, Reply, TestHub, fast_delivery, wait_until};
    let receiver = Receiver::start().await;
    let healed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healed.clone();
    receiver.script(move |_| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::status(500)
        }
    });
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.delivery.retry_schedule.clear();
        s.server.admin_token = a2a_push_hub::config::Secret::new("cli-token");
    })
    .await;
    hub.create_config("t1", &receiver.url("/hook")).await;
    let response = hub
        .http
        .post(format!("{}/api/v1/events", hub.admin))
        .header("content-type", "application/json")
        .bearer_auth("cli-token")
        .body(status_event("t1", "TASK_STATE_WORKING").to_string())
        .send()
        .await
        .unwrap();
    let published: serde_json::Value = response.json().await.unwrap();
    let id = published["deliveries"][0]["deliveryId"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = hub.admin.clone();
    let base = [
        "deliveries",
        "--admin-url",
        admin.as_str(),
        "--admin-token",
        "cli-token",
    ];

    let dead = wait_until(Duration::from_secs(20), "the delivery to die", || async {
        let (ok, list, _) =
            cli(&[&base[..], &["list", "--task-id", "t1", "--state", "dead"]].concat()).await;
        (ok && list["deliveries"].as_array().is_some_and(|d| d.len() == 1)).then_some(list)
    })
    .await;
    assert_eq!(dead["deliveries"][0]["id"], id.as_str());

    let (ok, shown, stderr) = cli(&[&base[..], &["show", &id]].concat()).await;
    assert!(ok, "{stderr}");
    assert_eq!(shown["attemptLog"][0]["status"], 500);

    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, replayed, stderr) = cli(&[&base[..], &["replay", &id]].concat()).await;
    assert!(ok, "{stderr}");
    assert_eq!(replayed["state"], "pending");
    receiver.wait_for(2, Duration::from_secs(20)).await;

    let (ok, _, stderr) = cli(&[
        "deliveries",
        "--admin-url",
        admin.as_str(),
        "--admin-token",
        "wrong",
        "list",
    ])
    .await;
    assert!(!ok);
    assert!(stderr.contains("401"), "{stderr}");
    let (ok, _, stderr) = cli(&[&base[..], &["show", "no-such-delivery"]].concat()).await;
    assert!(!ok);
    assert!(
        stderr.contains("404") && stderr.contains("does not exist"),
        "{stderr}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_configs_and_operator_commands_show_health_events_and_enable_a_suspended_config() {
    use common::{Receiver, Reply, TestHub, fast_delivery, wait_until};
    let receiver = Receiver::start().await;
    receiver.script(|_| Reply::status(503));
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        let ms = |n| a2a_push_hub::config::HumanDuration(Duration::from_millis(n));
        s.delivery.retry_schedule = vec![ms(100); 20];
        s.delivery.disable_after = ms(300);
    })
    .await;
    // A task id that needs encoding in a path.
    let task = "tasks/one two";
    let config = hub.create_config(task, &receiver.url("/hook")).await;
    let response = hub
        .http
        .post(format!("{}/api/v1/events", hub.admin))
        .header("content-type", "application/json")
        .body(status_event(task, "TASK_STATE_WORKING").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let admin = hub.admin.clone();
    let base = ["configs", "--admin-url", admin.as_str()];
    let health = wait_until(Duration::from_secs(20), "the config suspended", || async {
        let (ok, health, _) = cli(&[&base[..], &["health", task, &config]].concat()).await;
        (ok && health["state"] == "suspended").then_some(health)
    })
    .await;
    assert_eq!(health["lastFailure"]["status"], 503);
    assert_eq!(health["pending"]["count"], 1);

    let (ok, events, stderr) = cli(&[
        "operator",
        "events",
        "--admin-url",
        admin.as_str(),
        "--after",
        "0",
    ])
    .await;
    assert!(ok, "{stderr}");
    let disabled = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "config.disabled")
        .unwrap_or_else(|| panic!("{events}"))
        .clone();
    assert_eq!(disabled["data"]["reason"], "failing");
    assert_eq!(disabled["data"]["taskId"], task);

    let (ok, enabled, stderr) = cli(&[&base[..], &["enable", task, &config]].concat()).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        (enabled["was"].as_str(), enabled["resumed"].as_u64()),
        (Some("suspended"), Some(1))
    );
    let (ok, _, stderr) = cli(&[&base[..], &["health", task, "no-such-config"]].concat()).await;
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
    hub.stop().await;
}

#[tokio::test]
async fn the_keys_commands_list_and_rotate() {
    let hub = common::TestHub::start().await;
    let admin = hub.admin.clone();
    let (ok, before, stderr) = cli(&["keys", "--admin-url", &admin, "list"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(before["keys"].as_array().unwrap().len(), 2);
    let (ok, after, stderr) = cli(&["keys", "--admin-url", &admin, "rotate"]).await;
    assert!(ok, "{stderr}");
    let keys = after["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4);
    let old: Vec<&str> = before["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    for key in keys {
        let expected = if old.contains(&key["kid"].as_str().unwrap()) {
            "retiring"
        } else {
            "active"
        };
        assert_eq!(key["state"], expected, "{key}");
    }
    assert!(!after.to_string().to_lowercase().contains("pkcs8"));
    hub.stop().await;
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_need_the_same_key_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = "k".repeat(40);
    let start = |encryption_key: String| {
        let store = dir.path().join("store");
        async move {
            common::TestHub::start_with(move |s| {
                s.store.path = store;
                s.store.encryption_key = a2a_push_hub::config::Secret::new(encryption_key);
            })
            .await
        }
    };
    let hub = start(key.clone()).await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        serde_json::json!({"taskId": "t", "id": "c", "url": "http://127.0.0.1:9/h", "token": "PLAINTEXT-TOKEN-123"}),
    )
    .await;
    hub.stop().await;
    let stored = common::stored_bytes(&dir.path().join("store"));
    assert!(
        !stored.windows(19).any(|w| w == b"PLAINTEXT-TOKEN-123"),
        "the token is not stored in clear"
    );

    let hub = start(key.clone()).await;
    let got = hub
        .rpc_ok(
            "GetTaskPushNotificationConfig",
            serde_json::json!({"taskId": "t", "id": "c"}),
        )
        .await;
    assert_eq!(got["url"], "http://127.0.0.1:9/h");
    hub.stop().await;

    let mut settings = a2a_push_hub::Settings::default();
    settings.server.public_listen = "127.0.0.1:0".parse().unwrap();
    settings.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.store.path = dir.path().join("store");
    settings.store.encryption_key = a2a_push_hub::config::Secret::new("w".repeat(40));
    common::use_test_store(&mut settings);
    let error = a2a_push_hub::Hub::builder(settings.clone())
        .start()
        .await
        .err()
        .expect("a wrong key stops the start");
    assert!(error.to_string().contains("encryption_key"), "{error}");
    settings.store.encryption_key = a2a_push_hub::config::Secret::default();
    let error = a2a_push_hub::Hub::builder(settings)
        .start()
        .await
        .err()
        .expect("no key stops the start");
    assert!(error.to_string().contains("encryption_key"), "{error}");
}

#[test]
fn migrate_on_the_embedded_store_says_there_is_nothing_to_do_and_a_bad_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args(["migrate"])
        .env("A2A_PUSH_HUB_STORE__PATH", dir.path().join("store"))
        .env_remove("A2A_PUSH_HUB_STORE__URL")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("needs no migration"));

    let output = Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args([
            "migrate",
            "--store-url",
            "postgres://hub:s3cret@db:notaport/hub",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("store.url"), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the password is never repeated: {stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args(["migrate", "--store-url", "postgres://hub@127.0.0.1:1/hub"])
        .env("A2A_PUSH_HUB_STORE__CONNECT_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the database at 127.0.0.1:1"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_filter_origin_and_follow_commands_work_through_the_admin_api() {
    use common::{Receiver, Reply, TestHub, fast_delivery, wait_until};
    use tokio::io::AsyncBufReadExt;
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let config = hub.create_config("t-cli", &receiver.url("/hook")).await;
    let admin = hub.admin.clone();
    let configs = ["configs", "--admin-url", admin.as_str()];

    let (ok, set, stderr) = cli(&[
        &configs[..],
        &["filter", "t-cli", &config, "--events", "terminal"],
    ]
    .concat())
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(set["filter"]["events"], "terminal");
    let (ok, shown, _) = cli(&[&configs[..], &["filter", "t-cli", &config]].concat()).await;
    assert!(ok);
    assert_eq!(shown["filter"]["events"], "terminal");
    let pattern = r#"{"statusUpdate": {"status": {"state": "TASK_STATE_FAILED"}}}"#;
    let (ok, set, stderr) = cli(&[
        &configs[..],
        &["defaults", "--tenant", "acme", "--match", pattern],
    ]
    .concat())
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        set["filter"]["match"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_FAILED"
    );
    let (ok, _, stderr) =
        cli(&[&configs[..], &["defaults", "--match", "{not json"]].concat()).await;
    assert!(!ok);
    assert!(stderr.contains("--match is not valid JSON"), "{stderr}");

    // Following operator events: each new one is printed as a line of JSON.
    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args([
            "operator",
            "events",
            "--follow",
            "--admin-url",
            admin.as_str(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    receiver.script(|_| Reply::status(500));
    hub.publish(status_event("t-cli", "TASK_STATE_FAILED"))
        .await;
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("an operator event line within 20 s")
        .unwrap()
        .expect("the follower is still running");
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "delivery.dead", "{line}");
    assert_eq!(event["data"]["configId"], config.as_str());
    follow.kill().await.unwrap();

    let origins = ["origins", "--admin-url", admin.as_str()];
    let health = wait_until(Duration::from_secs(20), "the origin's attempts", || async {
        let (ok, health, _) =
            cli(&[&origins[..], &["health", &receiver.url("/hook")]].concat()).await;
        (ok && health["windows"]["5m"]["attempts"] == 4).then_some(health)
    })
    .await;
    assert_eq!(health["origin"], receiver.url(""));
    assert_eq!(health["consecutiveFailures"], 4);
    let (ok, listed, _) = cli(&[&origins[..], &["list"]].concat()).await;
    assert!(ok);
    assert_eq!(listed["origins"][0]["origin"], receiver.url(""));
    hub.stop().await;
}

#[tokio::test]
async fn a_misnamed_variable_is_pointed_out_and_logs_carry_no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"));
        command
            .arg("migrate")
            .env("A2A_PUSH_HUB_STORE__PATH", dir.path().join("store"))
            .env(name, "5s")
            .env_remove("A2A_PUSH_HUB_TEST_POSTGRES_URL");
        command.output()
    };
    // A key misspelled in a variable: refused, naming the variable and the nearest key.
    let output = run("A2A_PUSH_HUB_DELIVERY__TIMOUT").await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("A2A_PUSH_HUB_DELIVERY__TIMOUT"), "{stderr}");
    assert!(stderr.contains("did you mean `timeout`?"), "{stderr}");
    // One underscore where two belong: not a setting, ignored, and said so.
    let output = run("A2A_PUSH_HUB_DELIVERY_TIMEOUT").await.unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("did you mean A2A_PUSH_HUB_DELIVERY__TIMEOUT?"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a pipe: {stderr}"
    );
}

#[tokio::test]
async fn the_subscriptions_commands_create_list_show_and_delete_and_read_what_arrived() {
    use common::TestHub;
    let hub = TestHub::start().await;
    let admin = hub.admin.clone();
    let base = ["subscriptions", "--admin-url", admin.as_str()];
    let (ok, created, stderr) = cli(&[
        &base[..],
        &["create", "--task-id", "t-sub", "--token", "peer-token-1"],
    ]
    .concat())
    .await;
    assert!(ok, "{stderr}");
    let id = created["id"].as_str().unwrap().to_string();
    let intake = created["url"].as_str().unwrap().to_string();
    assert_eq!(created["taskId"], "t-sub");

    // A peer pushes with the token, and once without it.
    for (token, expected) in [("peer-token-1", 200), ("wrong", 401)] {
        let response = hub
            .http
            .post(&intake)
            .header("content-type", "application/json")
            .header("x-a2a-notification-token", token)
            .body(status_event("t-sub", "TASK_STATE_WORKING").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected);
    }
    let (ok, listed, _) = cli(&[&base[..], &["list"]].concat()).await;
    assert!(ok);
    assert!(listed.to_string().contains(&id), "{listed}");
    assert!(
        !listed.to_string().contains("peer-token-1"),
        "no secrets in a list"
    );
    let (ok, shown, _) = cli(&[&base[..], &["show", &id]].concat()).await;
    assert!(ok);
    assert_eq!(shown["id"], id.as_str());
    // For a person: a table of the list, the object's fields one per line.
    let table = tokio::process::Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args([&base[..], &["list", "--output", "table"]].concat())
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("id "), "{table}");
    assert!(lines.next().unwrap().starts_with(&id), "{table}");
    let (ok, events, _) = cli(&[&base[..], &["events", &id]].concat()).await;
    assert!(ok);
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    let (ok, receipts, _) = cli(&[&base[..], &["receipts", &id]].concat()).await;
    assert!(ok);
    let verdicts: Vec<&str> = receipts["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["accepted", "unauthorized"]);
    let (ok, _, stderr) = cli(&[&base[..], &["create", "--body", "{nope"]].concat()).await;
    assert!(!ok);
    assert!(stderr.contains("--body is not valid JSON"), "{stderr}");
    let (ok, _, stderr) = cli(&[&base[..], &["delete", &id]].concat()).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cli(&[&base[..], &["show", &id]].concat()).await;
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
    hub.stop().await;
}
