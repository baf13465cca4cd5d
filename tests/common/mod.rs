//! Shared harness for black-box tests: a hub on ephemeral loopback ports with a temporary
//! store, clients for its JSON-RPC, REST and admin APIs, and `wait_until`.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use a2a_push_hub::{Hub, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Every request of a test is bounded by this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct TestHub {
    hub: Option<Hub>,
    pub dir: TempDir,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<public port>`
    pub public: String,
    /// `http://127.0.0.1:<admin port>`
    pub admin: String,
}

/// Settings for tests: ephemeral loopback ports, a temporary store, webhooks on 127.0.0.0/8
/// allowed (and nothing else private).
pub fn test_settings(dir: &TempDir) -> Settings {
    let mut settings = Settings::default();
    settings.server.public_listen = "127.0.0.1:0".parse().unwrap();
    settings.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    settings.store.path = dir.path().join("store");
    settings.security.allowed_subnets = vec!["127.0.0.0/8".parse().unwrap()];
    settings
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .unwrap()
}

impl TestHub {
    pub async fn start() -> TestHub {
        TestHub::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(&dir);
        adjust(&mut settings);
        let hub = Hub::builder(settings).start().await.expect("hub starts");
        TestHub {
            public: format!("http://{}", hub.public_addr()),
            admin: format!("http://{}", hub.admin_addr()),
            hub: Some(hub),
            dir,
            http: http_client(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await;
        }
    }

    /// Sends a JSON-RPC request (body as given) with extra headers; returns status and body.
    pub async fn rpc_raw(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/", self.public))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.body(body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// Calls a JSON-RPC method and returns the whole response object.
    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let (status, response) = self
            .rpc_raw(body.to_string(), &[("A2A-Version", "1.0")])
            .await;
        assert_eq!(status, StatusCode::OK, "{response}");
        assert_eq!(response["id"], 7, "{response}");
        response
    }

    /// Calls a JSON-RPC method that must succeed and returns its `result`.
    pub async fn rpc_ok(&self, method: &str, params: Value) -> Value {
        let response = self.rpc(method, params).await;
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// A REST call on the public listener.
    pub async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.public));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs a raw body to the admin listener; returns status, content type and JSON body.
    pub async fn admin_post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, String, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.admin))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        split(response).await
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap();
        let (status, _, body) = split(response).await;
        (status, body)
    }

    /// Publishes one event that must be accepted; returns the 202 body.
    pub async fn publish(&self, event: Value) -> Value {
        let (status, _, body) = self.admin_post("/api/v1/events", event.to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// Registers a config over JSON-RPC and returns its id.
    pub async fn create_config(&self, task_id: &str, url: &str) -> String {
        let result = self
            .rpc_ok(
                "CreateTaskPushNotificationConfig",
                json!({"taskId": task_id, "url": url}),
            )
            .await;
        result["id"].as_str().unwrap().to_string()
    }
}

async fn split(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A status update event for `task_id`.
pub fn status_event(task_id: &str, state: &str) -> Value {
    json!({"statusUpdate": {"taskId": task_id, "contextId": "ctx-1", "status": {"state": state}}})
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real `a2a-push-hub` binary, started as a child process.
pub struct HubProcess {
    pub child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HubProcess {
    /// `serve` on ephemeral ports with the store in `data_dir` and 127.0.0.0/8 allowed.
    pub fn spawn_on(data_dir: &Path) -> HubProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"));
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
        HubProcess::spawn(command).expect("the hub starts")
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
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
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
