//! A hub in this process on ephemeral loopback ports with a temporary store, and clients for
//! its JSON-RPC, REST and admin APIs.

use a2a_push_hub::{Hub, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;

use super::*;

pub struct TestHub {
    hub: Option<Hub>,
    /// The store's folder, removed when the hub is dropped.
    _dir: TempDir,
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
            _dir: dir,
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
        self.call(method, format!("{}{path}", self.public), body, None)
            .await
    }

    /// A call of the admin API, with `Authorization: Bearer <admin_token>` when one is given.
    pub async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        admin_token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.call(method, format!("{}{path}", self.admin), body, admin_token)
            .await
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
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

    /// PUTs a JSON body to the admin listener; returns status and JSON body.
    pub async fn admin_put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.admin))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let (status, _, body) = split(response).await;
        (status, body)
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

/// How many publishes and pushes the hub has slowed down so far (docs/DELIVERY.md,
/// *Backpressure*).
pub async fn backpressure_waits(hub: &TestHub) -> f64 {
    super::metric_value(
        &hub.metrics().await,
        "a2a_push_hub_backpressure_wait_seconds_count",
    )
}

/// Creates an inbound subscription; returns the 201 body.
pub async fn create_subscription(hub: &TestHub, body: Value) -> Value {
    let (status, _, created) = hub
        .admin_post("/api/v1/subscriptions", body.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
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
