//! Shared harness for black-box tests: a hub on ephemeral loopback ports with a temporary
//! store, clients for its JSON-RPC, REST and admin APIs, and `wait_until`.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use a2a_push_hub::store::postgres_schema;
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

/// Keeps the hub's state in PostgreSQL when the tests run on it (see `postgres_store_for`),
/// in the schema that belongs to `settings.store.path`.
pub fn use_test_store(settings: &mut Settings) {
    if settings.store.url.is_empty() {
        if let Some(url) = postgres_store_for(&settings.store.path) {
            settings.store.url = a2a_push_hub::config::Secret::new(url);
        }
    }
}

/// The variable naming a PostgreSQL database for the tests: when set, every test hub keeps its
/// state there (one schema per store folder) instead of in the embedded store.
pub const POSTGRES_URL_VAR: &str = "A2A_PUSH_HUB_TEST_POSTGRES_URL";

/// Fails a test that needs PostgreSQL when no database is named. Such tests are
/// `#[ignore = "needs PostgreSQL …"]` and run with `--ignored` where a database is (CI starts one).
pub fn require_postgres(what: &str) {
    assert!(
        std::env::var(POSTGRES_URL_VAR).is_ok_and(|u| !u.is_empty()),
        "{what} needs {POSTGRES_URL_VAR} (scripts/throwaway-postgres.sh starts a database)"
    );
}

/// A Prometheus sample's value in `text` (0 when absent).
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The store URL of a test hub whose store folder is `dir`, when the tests run on PostgreSQL:
/// a schema of its own (created here), so tests never see each other's records, and the same
/// schema again for a hub restarted on the same folder. The schema's name is returned too.
pub fn postgres_store_for(dir: &Path) -> Option<String> {
    let base = std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|u| !u.is_empty())?;
    let schema = postgres_schema::schema_for_folder("t_", dir);
    let (url, create) = (base.clone(), schema.clone());
    // The synchronous client runs its own runtime: not on a test's runtime thread.
    std::thread::spawn(move || postgres_schema::create_schema(&url, &create))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}: cannot make schema {schema}: {e}"));
    Some(postgres_schema::in_schema(&base, &schema))
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
        use_test_store(&mut settings);
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
        let (status, _, body) = self.admin_get_typed(path).await;
        (status, body)
    }

    /// GETs from the admin listener; returns status, content type and JSON body.
    pub async fn admin_get_typed(&self, path: &str) -> (StatusCode, String, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap();
        split(response).await
    }

    /// The hub's Prometheus metrics, as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
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

/// The hub binary's `serve` on ephemeral loopback ports, with its store in `data_dir` (or in
/// that folder's PostgreSQL schema when the tests run on PostgreSQL) and webhooks on
/// 127.0.0.0/8 allowed; add arguments and variables before spawning it.
pub fn hub_command(data_dir: &Path) -> Command {
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

/// A request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: axum::body::Bytes,
    pub at: Instant,
    /// 1 for the first request carrying this `webhook-id`, 2 for its first retry, …
    pub attempt: usize,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    pub fn sequence(&self) -> u64 {
        self.header("x-a2a-push-sequence").parse().unwrap_or(0)
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How a [`Receiver`] answers one request.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Hold the answer until this is notified (or the hub gives up).
    pub hold: Option<Arc<tokio::sync::Notify>>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            hold: None,
            delay: Duration::ZERO,
        }
    }
    pub fn ok() -> Reply {
        Reply::status(200)
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn hold(mut self, release: Arc<tokio::sync::Notify>) -> Reply {
        self.hold = Some(release);
        self
    }
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Script = Box<dyn Fn(&Received) -> Reply + Send + Sync>;

struct ReceiverState {
    requests: std::sync::Mutex<Vec<Received>>,
    script: std::sync::Mutex<Arc<Script>>,
}

/// A webhook receiver on loopback that records every request and answers by a script.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    /// Listens on `ip:0` (any 127.x address works on Linux) and answers 200 until scripted.
    pub async fn start_on(ip: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let always_ok: Script = Box::new(|_| Reply::ok());
        let state = Arc::new(ReceiverState {
            requests: std::sync::Mutex::new(Vec::new()),
            script: std::sync::Mutex::new(Arc::new(always_ok)),
        });
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = handler_state.clone();
            async move { receive(state, request).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1").await
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn script(&self, script: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        *self.state.script.lock().unwrap() = Arc::new(Box::new(script));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived and returns them all.
    pub async fn wait_for(&self, count: usize, deadline: Duration) -> Vec<Received> {
        wait_until(
            deadline,
            &format!("{count} requests at {}", self.addr),
            || {
                let seen = self.received();
                async move { (seen.len() >= count).then_some(seen) }
            },
        )
        .await
    }
}

async fn receive(
    state: Arc<ReceiverState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let received = {
        let mut requests = state.requests.lock().unwrap();
        let id = parts.headers.get("webhook-id").cloned();
        let attempt = 1 + requests
            .iter()
            .filter(|r| id.is_some() && r.headers.get("webhook-id") == id.as_ref())
            .count();
        let received = Received {
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body,
            at: Instant::now(),
            attempt,
        };
        requests.push(received.clone());
        received
    };
    let script = state.script.lock().unwrap().clone();
    let reply = script(&received);
    if let Some(release) = &reply.hold {
        release.notified().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

/// Settings for delivery tests: short retry schedule, no jitter, short waits.
pub fn fast_delivery(settings: &mut Settings) {
    use a2a_push_hub::config::HumanDuration;
    let ms = |n| HumanDuration(Duration::from_millis(n));
    settings.delivery.retry_schedule = vec![ms(100), ms(200), ms(300)];
    settings.delivery.jitter = 0.0;
    settings.delivery.timeout = HumanDuration(Duration::from_secs(10));
    settings.delivery.throttle_backoff = ms(200);
    settings.delivery.circuit_threshold = 1000;
}

/// Creates an inbound subscription; returns the 201 body.
pub async fn create_subscription(hub: &TestHub, body: Value) -> Value {
    let (status, _, created) = hub
        .admin_post("/api/v1/subscriptions", body.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// Owned header pairs as the borrowed pairs `push` takes.
pub fn refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// POSTs a push to a hub's inbound URL with the given headers; returns status and body.
pub async fn push(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut request = http.post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reads Server-Sent Events from a streaming response: (id, data) pairs.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event with data, within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> (String, Value) {
        tokio::time::timeout(deadline, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut id = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if !data.is_empty() {
                        return (id, serde_json::from_str(&data).unwrap());
                    }
                    continue;
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream stays open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an SSE event within the deadline")
    }
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

/// An SDK agent (started by `agent`, printing `LISTENING <port>`, serving JSON-RPC at `/` and,
/// for HTTP+JSON, REST at `/rest`) runs a task that waits for a webhook; the hub registers
/// itself there; every later push must be accepted with `expected_checks`, streamed, and
/// forwarded; deleting the subscription removes the registration at the agent.
pub async fn agent_pushes_after_remote_registration(
    agent: tokio::process::Command,
    binding: &str,
    expected_checks: &[(&str, bool)],
) {
    let (_agent, port) = start_listening(agent).await;
    let agent = format!("http://127.0.0.1:{port}");
    let forward = Receiver::start().await;
    let hub = TestHub::start().await;
    let started: Value = hub
        .http
        .post(format!("{agent}/"))
        .header("A2A-Version", "1.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": "1", "method": "SendMessage", "params": {
            "message": {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "hello"}]},
            "configuration": {"returnImmediately": true}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_id = started["result"]["task"]["id"]
        .as_str()
        .expect("the agent started a task")
        .to_string();
    let agent_url = if binding == "JSONRPC" {
        format!("{agent}/")
    } else {
        format!("{agent}/rest")
    };
    let created = create_subscription(
        &hub,
        json!({"taskId": task_id, "agent": {"url": agent_url, "binding": binding},
            "authentication": {"scheme": "Bearer"}, "forwardTo": forward.url("/local")}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert!(created["agent"]["remoteConfigId"].is_string(), "{created}");
    let stream_url = format!("{}/api/v1/subscriptions/{id}/events", hub.admin);
    let mut stream = SseReader::open(&hub.http, &stream_url, None).await;
    let first = stream.next(Duration::from_secs(30)).await.1;
    let second = stream.next(Duration::from_secs(30)).await.1;
    assert!(
        first["event"]["artifactUpdate"]["artifact"]["parts"][0]["text"] == "42",
        "{first}"
    );
    assert_eq!(
        second["event"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED",
        "{second}"
    );
    drop(stream);
    let (_, receipts) = hub
        .admin_get(&format!("/api/v1/subscriptions/{id}/receipts"))
        .await;
    for receipt in receipts["receipts"].as_array().unwrap() {
        assert_eq!(receipt["verdict"], "accepted", "{receipt}");
        let checks: Vec<(&str, bool)> = receipt["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["passed"].as_bool().unwrap()))
            .collect();
        assert_eq!(checks, expected_checks, "{receipt}");
    }
    let forwarded = forward.wait_for(2, Duration::from_secs(30)).await;
    assert!(
        forwarded[0].json()["artifactUpdate"].is_object()
            && forwarded[1].json()["statusUpdate"].is_object()
    );

    let response = hub
        .http
        .delete(format!("{}/api/v1/subscriptions/{id}", hub.admin))
        .send()
        .await
        .unwrap();
    let deleted: Value = response.json().await.unwrap();
    assert!(
        deleted["remote"].as_str().unwrap().contains("was deleted"),
        "{deleted}"
    );
    let listed: Value = hub
        .http
        .post(format!("{agent}/"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": "2", "method": "ListTaskPushNotificationConfigs", "params": {"taskId": task_id}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let remaining = listed["result"]["configs"].as_array().map_or(0, Vec::len);
    assert_eq!(
        remaining, 0,
        "the registration is gone at the agent: {listed}"
    );
    hub.stop().await;
}

/// The hub as a gateway in front of an SDK agent (started by `agent`, printing `LISTENING
/// <port>`), driven by the Python SDK client (`python`) over `binding`: inline configs, a
/// config created later, a streaming send; a receiver that fails twice still gets every event
/// in order with the hub's headers; the agent never sees the client's webhooks.
pub async fn gateway_in_front_of(agent: tokio::process::Command, python: &str, binding: &str) {
    let (_agent, port) = start_listening(agent).await;
    let upstream = format!("http://127.0.0.1:{port}/");
    let receiver = Receiver::start().await;
    // Every delivery fails twice before it is accepted.
    receiver.script(|r| {
        if r.attempt <= 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.gateway.upstream = upstream.clone();
    })
    .await;
    let (_, card) = hub
        .rest(reqwest::Method::GET, "/.well-known/agent-card.json", None)
        .await;
    assert_eq!(card["capabilities"]["pushNotifications"], true);
    assert!(
        card["supportedInterfaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["url"].as_str().unwrap().starts_with(&hub.public)),
        "{card}"
    );
    // The SDK's own card, field for field: the hub adds none (a `null` would fail card checks).
    let agents: Value = hub
        .http
        .get(format!("{upstream}.well-known/agent-card.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fields = |card: &Value| {
        card.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&card), fields(&agents), "{card}");

    let hub_url = if binding == "JSONRPC" {
        format!("{}/", hub.public)
    } else {
        format!("{}/rest", hub.public)
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python/gateway_client.py"
    );
    let run = tokio::process::Command::new(python)
        .args([script, &hub_url, binding, &receiver.url("")])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the client finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tasks: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    let kinds = |path: &str| {
        let path = path.to_string();
        let receiver = receiver.clone();
        move || {
            let accepted: Vec<Received> = receiver
                .received()
                .into_iter()
                .filter(|r| r.path == path && r.attempt == 3)
                .collect();
            accepted
        }
    };
    for (path, task) in [
        ("/inline", &tasks["inline"]),
        ("/stream", &tasks["stream"]),
        ("/late", &tasks["late"]),
    ] {
        let delivered = kinds(path);
        let got = wait_until(
            Duration::from_secs(60),
            &format!("every event of {path}"),
            || {
                let got = delivered();
                let completed = |r: &Received| {
                    let body = r.json();
                    body["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
                        || body["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
                };
                async move { got.iter().any(completed).then(|| got.clone()) }
            },
        )
        .await;
        let sequences: Vec<u64> = got.iter().map(|r| r.sequence()).collect();
        let mut sorted = sequences.clone();
        sorted.sort();
        assert_eq!(sequences, sorted, "{path}: in order");
        for r in &got {
            let body = r.json();
            let task_id = body["task"]["id"]
                .as_str()
                .or(body["statusUpdate"]["taskId"].as_str())
                .or(body["artifactUpdate"]["taskId"].as_str());
            assert_eq!(task_id, task.as_str(), "{path}: {body}");
            assert!(
                r.header("webhook-signature").starts_with("v1a,"),
                "{path}: the hub's headers"
            );
        }
        if path == "/late" {
            assert!(
                got[0].json()["task"].is_object(),
                "the snapshot comes first for a late config: {}",
                got[0].json()
            );
            assert_eq!(got[0].header("x-a2a-notification-token"), "tok-late");
        } else {
            assert_eq!(
                got[0].header("authorization"),
                format!("Bearer cred-{}", &path[1..])
            );
            assert!(
                got.iter().any(|r| r.json()["artifactUpdate"].is_object()),
                "{path}: the artifact arrives"
            );
        }
    }
    // The agent never saw the client's webhooks or credentials: only the hub's intake.
    for task in ["inline", "late", "stream"] {
        let listed: Value = hub
            .http
            .post(&upstream)
            .header("A2A-Version", "1.0")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ListTaskPushNotificationConfigs", "params": {"taskId": tasks[task]}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let configs = listed["result"]["configs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!configs.is_empty(), "{listed}");
        for config in configs {
            assert!(
                config["url"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{}/inbound/", hub.public)),
                "{config}"
            );
            assert!(!config.to_string().contains("cred-"), "{config}");
        }
    }
    // Config methods on a task the agent does not have: TaskNotFound.
    let missing = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "no-such-task", "url": receiver.url("/x")}),
        )
        .await;
    assert_eq!(missing["error"]["code"], -32001, "{missing}");
    hub.stop().await;
}

/// Every byte the store of the hub with store folder `store_path` holds: the redb file, or
/// the keys and values of every table of its PostgreSQL schema.
pub fn stored_bytes(store_path: &Path) -> Vec<u8> {
    let Some(url) = postgres_store_for(store_path) else {
        return std::fs::read(store_path.join("hub.redb")).unwrap();
    };
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        // Every table of the store has a bytea key `k` and value `v`.
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND column_name = 'v'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(!tables.is_empty(), "the schema has the store's tables");
        let mut bytes = Vec::new();
        for table in tables {
            for row in client
                .query(&format!("SELECT k, v FROM {table}"), &[])
                .unwrap()
            {
                bytes.extend_from_slice(row.get::<_, &[u8]>(0));
                bytes.extend_from_slice(row.get::<_, &[u8]>(1));
            }
        }
        bytes
    })
    .join()
    .unwrap()
}

/// Registers config `config_id` of `task_id` over JSON-RPC at a hub's public address.
pub async fn create_config_at(
    http: &reqwest::Client,
    public: SocketAddr,
    task_id: &str,
    config_id: &str,
    url: &str,
) {
    let response: Value = http
        .post(format!("http://{public}/"))
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig",
            "params": {"taskId": task_id, "id": config_id, "url": url}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(response.get("result").is_some(), "{response}");
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

/// The `metadata.n` of every status event a receiver got, in arrival order.
pub fn event_numbers(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .filter_map(|r| r.json()["statusUpdate"]["metadata"]["n"].as_u64())
        .collect()
}

/// Per lane (request path), the sequence numbers of first arrivals (a `webhook-id` not seen
/// before), after checking they increase; and how many requests repeated a `webhook-id`.
pub fn assert_first_arrivals_in_order(received: &[Received]) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut lanes: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for request in received {
        if seen.insert(request.header("webhook-id").to_string()) {
            lanes
                .entry(&request.path)
                .or_default()
                .push(request.sequence());
        }
    }
    for (lane, sequences) in &lanes {
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "{lane}: first arrivals out of order: {sequences:?}"
        );
    }
    received.len() - seen.len()
}

/// An A2A agent whose card declares no push support, so the gateway follows its tasks through
/// `SubscribeToTask`. Every send starts task `t-new`. The first subscription stays silent (its
/// answer is held until the agent is dropped); later ones stream `events` and end.
pub struct SilentFirstAgent {
    pub agent: Receiver,
    /// How many `SubscribeToTask` requests arrived.
    pub subscriptions: Arc<std::sync::atomic::AtomicUsize>,
    held: Arc<tokio::sync::Notify>,
}

impl SilentFirstAgent {
    pub async fn start(events: Vec<Value>) -> SilentFirstAgent {
        let agent = Receiver::start_on("127.0.0.1").await;
        let subscriptions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let held = Arc::new(tokio::sync::Notify::new());
        let (count, hold) = (subscriptions.clone(), held.clone());
        agent.script(move |r| {
            let json = |body: Value| {
                let mut reply = Reply::ok().header("content-type", "application/json");
                reply.body = body.to_string();
                reply
            };
            if r.path == "/.well-known/agent-card.json" {
                return json(json!({"name": "no-push", "capabilities": {"streaming": true, "pushNotifications": false}}));
            }
            let request = r.json();
            let id = request["id"].clone();
            if request["method"] != "SubscribeToTask" {
                return json(json!({"jsonrpc": "2.0", "id": id, "result": {"task": {"id": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}}}));
            }
            let mut stream = Reply::ok().header("content-type", "text/event-stream");
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return stream.hold(hold.clone());
            }
            stream.body = events
                .iter()
                .map(|e| format!("data: {}\n\n", json!({"jsonrpc": "2.0", "id": id, "result": e})))
                .collect();
            stream
        });
        SilentFirstAgent {
            agent,
            subscriptions,
            held,
        }
    }

    pub fn subscribed(&self) -> usize {
        self.subscriptions.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentFirstAgent {
    fn drop(&mut self) {
        self.held.notify_waiters();
    }
}

/// A JSON-RPC `SendMessage` with an inline push config to `webhook`.
pub fn send_with_inline_config(webhook: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"returnImmediately": true, "taskPushNotificationConfig": {"url": webhook}}}})
}
