//! The command line: settings layered defaults → file → environment → flags, and clear
//! errors for bad settings.

mod common;

use std::process::Command;

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
        ("[server]\nadmin_lissen = \"127.0.0.1:0\"\n", "admin_lissen"),
        (
            "[security]\nallowed_subnets = [\"not-a-cidr\"]\n",
            "allowed_subnets",
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
