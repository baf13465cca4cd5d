//! The probe's own webhook: a small HTTP/1.1 listener that records every request exactly as
//! it arrived (headers in their order and case, the raw body, the time) and answers each one
//! as its scenario's fault plan says — a status (with `Retry-After`), a hang until the agent
//! gives up, or a reset connection. It sits on raw TCP rather than an HTTP server library
//! because a reset and a hang that notices the peer leaving need the socket itself.
//!
//! Bounded like every listener of the hub: connections, header and body sizes, idle time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body; a push is a task update, far smaller.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Connections open at once.
const MAX_CONNECTIONS: usize = 256;
/// How long a connection may stay silent between requests, and the most a request head may
/// take to arrive.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests recorded at most; past it the webhook answers 503 and records nothing, so that a
/// flood (the listener may face a network) cannot exhaust memory.
const MAX_RECORDED: usize = 10_000;
/// Path prefix of every scenario's webhook: `/probe/{run}/{scenario}`.
const PATH_PREFIX: &str = "/probe/";

/// How the webhook answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An HTTP status, with `Retry-After: {seconds}` when given.
    Status {
        status: u16,
        retry_after_s: Option<u32>,
    },
    /// No answer: hold the request until the agent gives up (or the hang limit passes).
    Hang,
    /// Close the connection with a TCP reset instead of answering.
    Reset,
}

const OK: Fault = Fault::Status {
    status: 200,
    retry_after_s: None,
};

/// A scenario's answers by request number; after the list, `then`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub first: Vec<Fault>,
    pub then: Fault,
}

impl Plan {
    pub fn ok() -> Plan {
        Plan {
            first: vec![],
            then: OK,
        }
    }

    pub fn first(faults: Vec<Fault>) -> Plan {
        Plan {
            first: faults,
            then: OK,
        }
    }

    pub fn always(fault: Fault) -> Plan {
        Plan {
            first: vec![],
            then: fault,
        }
    }

    fn answer(&self, index: usize) -> Fault {
        self.first.get(index).copied().unwrap_or(self.then)
    }
}

/// What the webhook did with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    Status {
        status: u16,
        retry_after_s: Option<u32>,
    },
    Reset,
    /// Held; `gave_up_after` is when the agent closed the connection, `None` while it is
    /// still held or when the hang limit passed first (then `held_to_limit`).
    Hang {
        gave_up_after: Option<Duration>,
        held_to_limit: bool,
    },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The scenario its path names, or `None` for a path no scenario owns.
    pub scenario: Option<String>,
    /// Since the probe started.
    pub at: Duration,
    /// Unix seconds when it arrived (for timestamp and JWT freshness).
    pub unix_s: i64,
    pub method: String,
    pub path: String,
    /// In the order and case they arrived.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: Answered,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    started: Instant,
    run: String,
    hang_limit: Duration,
    plans: Mutex<HashMap<String, Plan>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// The running webhook.
pub struct Webhook {
    shared: Arc<Shared>,
    /// The base URL agents are given (`--webhook-url`, or the listener's own address).
    base_url: String,
    stop: CancellationToken,
}

impl Webhook {
    /// Listens on `listen`; `public_base` is how the agent reaches it (defaults to
    /// `http://{local address}`).
    pub async fn start(
        listen: SocketAddr,
        public_base: Option<&str>,
        hang_limit: Duration,
        started: Instant,
    ) -> std::io::Result<Webhook> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let base_url = public_base
            .map(|b| b.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{local_addr}"));
        let shared = Arc::new(Shared {
            started,
            run: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            hang_limit,
            plans: Mutex::new(HashMap::new()),
            received: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        Ok(Webhook {
            shared,
            base_url,
            stop,
        })
    }

    /// The URL of a scenario's webhook, answering as `plan` says.
    pub fn scenario_url(&self, scenario: &str, plan: Plan) -> String {
        lock(&self.shared.plans).insert(scenario.to_string(), plan);
        format!(
            "{}{PATH_PREFIX}{}/{scenario}",
            self.base_url, self.shared.run
        )
    }

    /// The prefix of every scenario's URL.
    pub fn base(&self) -> String {
        format!("{}{PATH_PREFIX}{}/", self.base_url, self.shared.run)
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// A future that completes at the next arrival (or the end of a held request). Take it
    /// before looking at `received`, so that nothing that happens in between is missed.
    pub fn next_arrival(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.arrived.notified()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A poisoned lock only means another request's task panicked; the data is still whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Over the cap the connection is closed at once: the agent sees a failure, which
        // the report shows, rather than the probe running out of memory.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve_connection(stream, &shared) => {}
            }
        });
    }
}

/// Why a connection ended early.
enum ReadError {
    Closed,
    Bad(&'static str),
}

/// A connection's bytes not yet consumed.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn fill(&mut self) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(IDLE_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| ReadError::Closed)?
            .map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Takes bytes up to and including `delimiter`, reading no more than `limit` bytes.
    async fn take_until(&mut self, delimiter: &[u8], limit: usize) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(at) = self
                .buffer
                .windows(delimiter.len())
                .position(|w| w == delimiter)
            {
                let rest = self.buffer.split_off(at + delimiter.len());
                return Ok(std::mem::replace(&mut self.buffer, rest));
            }
            if self.buffer.len() > limit {
                return Err(ReadError::Bad("request head or chunk line too large"));
            }
            self.fill().await?;
        }
    }

    async fn take(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        while self.buffer.len() < n {
            self.fill().await?;
        }
        let rest = self.buffer.split_off(n);
        Ok(std::mem::replace(&mut self.buffer, rest))
    }

    async fn read_body(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, ReadError> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let line = self.take_until(b"\r\n", 1024).await?;
                let size = std::str::from_utf8(&line[..line.len() - 2])
                    .ok()
                    .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                    .ok_or(ReadError::Bad("bad chunk size"))?;
                if body.len() + size > MAX_BODY_BYTES {
                    return Err(ReadError::Bad("body too large"));
                }
                if size == 0 {
                    // Trailers, up to the blank line.
                    while self.take_until(b"\r\n", 8192).await?.len() > 2 {}
                    return Ok(body);
                }
                body.extend(self.take(size + 2).await?.drain(..size));
            }
        }
        let length = match header("content-length") {
            None => 0,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ReadError::Bad("bad content-length"))?,
        };
        if length > MAX_BODY_BYTES {
            return Err(ReadError::Bad("body too large"));
        }
        self.take(length).await
    }
}

async fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let mut connection = Connection {
        stream,
        buffer: Vec::new(),
    };
    loop {
        // Whole-request deadlines, so that a peer trickling bytes cannot hold a slot for ever.
        let head = tokio::time::timeout(
            IDLE_TIMEOUT,
            connection.take_until(b"\r\n\r\n", MAX_HEAD_BYTES),
        )
        .await
        .unwrap_or(Err(ReadError::Closed));
        let head = match head {
            Ok(head) => head,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(why)) => return refuse(&mut connection.stream, 431, why).await,
        };
        let mut parsed_headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut parsed_headers);
        let (method, path, keep_alive_default, headers) = match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => (
                request.method.unwrap_or_default().to_string(),
                request.path.unwrap_or_default().to_string(),
                request.version == Some(1),
                request
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => return refuse(&mut connection.stream, 400, "malformed request").await,
        };
        let body = tokio::time::timeout(BODY_TIMEOUT, connection.read_body(&headers))
            .await
            .unwrap_or(Err(ReadError::Closed));
        let body = match body {
            Ok(body) => body,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(why)) => return refuse(&mut connection.stream, 413, why).await,
        };
        let keep_alive = match headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("connection"))
        {
            Some((_, v)) if v.eq_ignore_ascii_case("close") => false,
            Some((_, v)) if v.eq_ignore_ascii_case("keep-alive") => true,
            _ => keep_alive_default,
        };
        if lock(&shared.received).len() >= MAX_RECORDED {
            let _ = write_answer(&mut connection.stream, 503, None, false).await;
            return;
        }
        let scenario = path
            .strip_prefix(PATH_PREFIX)
            .and_then(|rest| rest.strip_prefix(shared.run.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| rest.split(['?', '/']).next().unwrap_or(rest).to_string())
            .filter(|name| lock(&shared.plans).contains_key(name));
        let fault = match &scenario {
            Some(name) => {
                let earlier = lock(&shared.received)
                    .iter()
                    .filter(|r| r.scenario.as_deref() == Some(name))
                    .count();
                lock(&shared.plans)[name].answer(earlier)
            }
            None => Fault::Status {
                status: 404,
                retry_after_s: None,
            },
        };
        let answered = match fault {
            Fault::Status {
                status,
                retry_after_s,
            } => Answered::Status {
                status,
                retry_after_s,
            },
            Fault::Reset => Answered::Reset,
            Fault::Hang => Answered::Hang {
                gave_up_after: None,
                held_to_limit: false,
            },
        };
        let index = {
            let mut received = lock(&shared.received);
            received.push(Received {
                scenario,
                at: shared.started.elapsed(),
                unix_s: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default(),
                method,
                path,
                headers,
                body,
                answered,
            });
            received.len() - 1
        };
        shared.arrived.notify_waiters();
        match fault {
            Fault::Status {
                status,
                retry_after_s,
            } => {
                if write_answer(&mut connection.stream, status, retry_after_s, keep_alive)
                    .await
                    .is_err()
                    || !keep_alive
                {
                    return;
                }
            }
            Fault::Reset => {
                // SO_LINGER 0: closing sends RST instead of FIN.
                let _ = connection.stream.set_zero_linger();
                return;
            }
            Fault::Hang => {
                let held = Instant::now();
                let mut scratch = [0u8; 1024];
                let gave_up = tokio::select! {
                    _ = tokio::time::sleep(shared.hang_limit) => None,
                    _ = wait_for_close(&mut connection.stream, &mut scratch) => Some(held.elapsed()),
                };
                if let Some(record) = lock(&shared.received).get_mut(index) {
                    record.answered = Answered::Hang {
                        gave_up_after: gave_up,
                        held_to_limit: gave_up.is_none(),
                    };
                }
                shared.arrived.notify_waiters();
                if gave_up.is_none() {
                    let _ = write_answer(&mut connection.stream, 200, None, false).await;
                }
                return;
            }
        }
    }
}

/// Returns when the peer closes its side (or the connection fails).
async fn wait_for_close(stream: &mut TcpStream, scratch: &mut [u8]) {
    loop {
        match stream.read(scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn write_answer(
    stream: &mut TcpStream,
    status: u16,
    retry_after_s: Option<u32>,
    keep_alive: bool,
) -> std::io::Result<()> {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    let mut answer = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n");
    if let Some(seconds) = retry_after_s {
        answer.push_str(&format!("retry-after: {seconds}\r\n"));
    }
    if !keep_alive {
        answer.push_str("connection: close\r\n");
    }
    answer.push_str("\r\n");
    stream.write_all(answer.as_bytes()).await?;
    stream.flush().await
}

async fn refuse(stream: &mut TcpStream, status: u16, why: &str) {
    tracing::debug!(status, why, "probe webhook refused a request");
    let _ = write_answer(stream, status, None, false).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn webhook(hang_limit: Duration) -> Webhook {
        Webhook::start(
            "127.0.0.1:0".parse().unwrap(),
            None,
            hang_limit,
            Instant::now(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn requests_are_recorded_as_sent_and_answered_by_the_plan() {
        let hook = webhook(Duration::from_secs(5)).await;
        let url = hook.scenario_url(
            "flaky",
            Plan::first(vec![Fault::Status {
                status: 429,
                retry_after_s: Some(7),
            }]),
        );
        assert!(url.starts_with(&hook.base()), "{url}");
        let http = reqwest::Client::new();
        let first = http
            .post(&url)
            .header("X-Mixed-Case", "1")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                vec![Ok::<_, std::io::Error>("{\"a\":"), Ok("1}")],
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), 429);
        assert_eq!(first.headers()["retry-after"], "7");
        let second = http.post(&url).body("{}").send().await.unwrap();
        assert_eq!(second.status(), 200);
        let stray = http
            .post(format!("{}/nobody", hook.base()))
            .send()
            .await
            .unwrap();
        assert_eq!(stray.status(), 404);

        let received = hook.received();
        assert_eq!(received.len(), 3);
        assert_eq!(received[0].scenario.as_deref(), Some("flaky"));
        assert_eq!(
            received[0].body, b"{\"a\":1}",
            "a chunked body is read whole"
        );
        assert_eq!(received[0].header("x-mixed-case"), Some("1"));
        assert!(
            received[0]
                .headers
                .iter()
                .any(|(n, _)| n == "x-mixed-case" || n == "X-Mixed-Case")
        );
        assert_eq!(
            received[1].answered,
            Answered::Status {
                status: 200,
                retry_after_s: None
            }
        );
        assert_eq!(received[2].scenario, None);
    }

    #[tokio::test]
    async fn scenario_urls_use_the_address_the_agent_reaches() {
        let hook = Webhook::start(
            "127.0.0.1:0".parse().unwrap(),
            Some("https://probe.example.net/tunnel/"),
            Duration::from_secs(1),
            Instant::now(),
        )
        .await
        .unwrap();
        let url = hook.scenario_url("inline", Plan::ok());
        assert!(
            url.starts_with("https://probe.example.net/tunnel/probe/"),
            "{url}"
        );
        assert!(url.ends_with("/inline"), "{url}");
    }

    #[tokio::test]
    async fn a_held_request_records_when_the_client_gave_up_and_a_reset_is_a_failure() {
        let hook = webhook(Duration::from_secs(10)).await;
        let held = hook.scenario_url("held", Plan::first(vec![Fault::Hang]));
        let reset = hook.scenario_url("reset", Plan::always(Fault::Reset));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        assert!(
            http.post(&held)
                .body("{}")
                .send()
                .await
                .unwrap_err()
                .is_timeout()
        );
        assert!(http.post(&reset).body("{}").send().await.is_err());
        let deadline = Instant::now() + Duration::from_secs(5);
        let gave_up = loop {
            let next = hook.next_arrival();
            let received = hook.received();
            if let Some(Answered::Hang {
                gave_up_after: Some(after),
                ..
            }) = received.iter().map(|r| r.answered.clone()).next()
            {
                break after;
            }
            assert!(
                Instant::now() < deadline,
                "the hang never ended: {received:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), next).await;
        };
        assert!(
            gave_up >= Duration::from_millis(350) && gave_up < Duration::from_secs(3),
            "{gave_up:?}"
        );
        assert_eq!(hook.received()[1].answered, Answered::Reset);
    }
}
