//! A webhook receiver on a loopback port that records every request (headers, body, arrival
//! time) and answers as a test tells it, and checks of what arrived.

use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

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
