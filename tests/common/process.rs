//! The release or debug hub binary as a child process (crash tests, several nodes), and other
//! programs that print the port they listen on.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

/// The real `a2a-push-hub` binary, started as a child process.
pub struct HubProcess {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// Every JSON log line the hub wrote so far, parsed.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hub binary the process tests run: `A2A_PUSH_HUB_TEST_BINARY` when set (CI points it at
/// the release build, so that the crash tests exercise the binary users run), else this
/// build's own.
pub fn hub_binary() -> std::ffi::OsString {
    std::env::var_os("A2A_PUSH_HUB_TEST_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_a2a-push-hub").into())
}

/// The hub binary's `serve` on ephemeral loopback ports, with its store in `data_dir` (or in
/// that folder's PostgreSQL schema when the tests run on PostgreSQL) and webhooks on
/// 127.0.0.0/8 allowed; add arguments and variables before spawning it.
pub fn hub_command(data_dir: &Path) -> Command {
    let mut command = Command::new(hub_binary());
    command
        .args([
            "--log-format",
            "json",
            "serve",
            "--public-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env(
            "A2A_PUSH_HUB_SECURITY__ALLOWED_SUBNETS",
            "[\"127.0.0.0/8\"]",
        );
    if let Some(url) = postgres_store_for(data_dir) {
        // A killed node's lanes go to the next one when its leases run out: short leases
        // (which need short attempts) keep the crash tests quick.
        command
            .env("A2A_PUSH_HUB_STORE__URL", url)
            .env("A2A_PUSH_HUB_DELIVERY__TIMEOUT", "2s")
            .env("A2A_PUSH_HUB_STORE__LANE_LEASE", "5s");
    }
    command
}

impl HubProcess {
    /// `serve` on ephemeral ports with the store in `data_dir` and 127.0.0.0/8 allowed.
    pub fn spawn_on(data_dir: &Path) -> HubProcess {
        HubProcess::spawn(hub_command(data_dir)).expect("the hub starts")
    }

    /// Starts `command` (the binary with its arguments) and reads the bound addresses from
    /// its JSON log; on failure returns what the process wrote to standard error.
    pub fn spawn(mut command: Command) -> Result<HubProcess, String> {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hub binary runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                kept.lock().unwrap().push(entry.clone());
                let fields = &entry["fields"];
                if fields["message"] == "a2a-push-hub serving" {
                    let _ = tx.send(Ok((
                        fields["public_addr"].as_str().unwrap().parse().unwrap(),
                        fields["admin_addr"].as_str().unwrap().parse().unwrap(),
                    )));
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            let _ = tx.send(Err(seen));
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok((public, admin))) => Ok(HubProcess {
                child,
                public,
                admin,
                log,
            }),
            Ok(Err(stderr)) => {
                let status = child.wait().ok();
                Err(format!("exit {status:?}: {stderr}"))
            }
            Err(_) => {
                let _ = child.kill();
                Err("the hub did not log its addresses within 30s".to_string())
            }
        }
    }
}

/// Settings of the crash tests on the binary: a quick, flat retry schedule without jitter and
/// circuits that never open, so that a flaky receiver only slows deliveries down.
pub fn crash_test_settings(command: &mut Command) -> &mut Command {
    let schedule = format!(
        "[{}]",
        ["\"50ms\"", "\"100ms\"", "\"200ms\"", "\"300ms\""]
            .into_iter()
            .chain(std::iter::repeat_n("\"500ms\"", 16))
            .collect::<Vec<_>>()
            .join(",")
    );
    command
        .env("A2A_PUSH_HUB_DELIVERY__RETRY_SCHEDULE", schedule)
        .env("A2A_PUSH_HUB_DELIVERY__JITTER", "0")
        .env("A2A_PUSH_HUB_DELIVERY__CIRCUIT_THRESHOLD", "100000")
}

/// Runs a scripted client (an SDK's test program) to its end within `deadline`; prints what
/// it printed and fails the test, with its output, unless it succeeded. Returns its stdout.
pub async fn run_client(
    mut command: tokio::process::Command,
    what: &str,
    deadline: Duration,
) -> String {
    let run = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(deadline, run)
        .await
        .unwrap_or_else(|_| panic!("{what} finishes within {deadline:?}"))
        .unwrap_or_else(|e| panic!("{what} runs: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Starts a peer process that prints `LISTENING <port>` first; returns it with the port.
pub async fn start_listening(mut command: tokio::process::Command) -> (tokio::process::Child, u16) {
    use tokio::io::AsyncBufReadExt;
    let mut child = command
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the peer starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the peer listens within 60s")
        .unwrap()
        .expect("the peer is running");
    // Keep draining its output: a closed pipe would kill a peer that logs.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (
        child,
        line.strip_prefix("LISTENING ").unwrap().parse().unwrap(),
    )
}
