//! Serving one listener's connections within bounds, so that no client can starve the others.
//!
//! Each listener holds at most a fixed number of connections (more are closed on arrival and
//! counted in `a2a_push_hub_connections_refused_total`); a client gets `header_read_timeout` to
//! send a request's headers — from the connection's opening for its first request, from the
//! request's first byte for the next ones —, `body_read_timeout` to send its whole body, and a
//! kept-alive connection with no request in progress is closed after `idle_timeout`. (hyper's
//! own header timeout also runs while a kept-alive connection waits for its next request, so a
//! client reusing a pooled connection after `header_read_timeout` would race its closing; the
//! listener keeps that clock itself.) The admin listener has a cap of its
//! own, so a flood of the public listener never takes the connections operators need for
//! `/healthz` and `/metrics`. Without these bounds, idle or slow connections held file
//! descriptors until the process had none left and both listeners stopped answering.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerSettings;
use crate::metrics::Metrics;

/// How long connections still busy at shutdown may take to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// File descriptors kept apart from both listeners: the store, outbound requests, logs.
const RESERVED_DESCRIPTORS: u64 = 1024;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits of both listeners (public, admin) within `descriptors` open files: the
    /// admin listener keeps its own cap, and the public one is lowered (with a warning) when
    /// the process could not open that many connections.
    pub fn of_listeners(server: &ServerSettings, descriptors: Option<u64>) -> (Limits, Limits) {
        let limits = |max_connections| Limits {
            max_connections,
            header_read_timeout: server.header_read_timeout.0,
            body_read_timeout: server.body_read_timeout.0,
            idle_timeout: server.idle_timeout.0,
        };
        let mut public = server.max_connections;
        if let Some(descriptors) = descriptors {
            let room = descriptors
                .saturating_sub(RESERVED_DESCRIPTORS + server.admin_max_connections as u64)
                .max(1);
            if (public as u64) > room {
                tracing::warn!(
                    max_connections = public,
                    open_files_limit = descriptors,
                    lowered_to = room,
                    "server.max_connections does not fit the open-files limit; raise the hard limit (ulimit -Hn, LimitNOFILE=) to serve that many"
                );
                public = room as usize;
            }
        }
        (limits(public), limits(server.admin_max_connections))
    }
}

/// Raises the soft open-files limit to the hard limit; returns the limit now in force.
///
/// Every connection is a file descriptor, and the usual soft limit (1024) would cap the hub
/// far below `server.max_connections`; the hard limit is what the operator granted. Servers
/// commonly do this at start (Go's runtime does it for every program).
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        // `None` is "unlimited"; the soft limit is never above the hard one.
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return Some(limit.maximum.unwrap_or(u64::MAX));
            }
        }
        Some(limit.current.unwrap_or(u64::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish (within a
/// grace period). `index` names the listener in metrics (`crate::metrics::LISTENERS`).
pub fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    index: usize,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let connections = TaskTracker::new();
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: wait instead of spinning on the error.
                    tracing::warn!(listener = crate::metrics::LISTENERS[index], error = %e, "cannot accept a connection; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(5);
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics.connection_refused(index);
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            connections.spawn(connection(
                stream,
                router.clone(),
                limits,
                metrics.clone(),
                index,
                permit,
                shutdown.clone(),
            ));
        }
        drop(listener);
        connections.close();
        connections.wait().await;
    })
}

/// Serves one connection until the client closes it, it stays idle for `idle_timeout`, or the
/// hub shuts down.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    index: usize,
    _permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    metrics.connection(index, true);
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = activity.start();
            let router = router.clone();
            let body_deadline = limits.body_read_timeout;
            async move {
                let request = request
                    .map(|body| Body::new(DeadlineBody::new(Body::new(body), body_deadline)));
                let response = router.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| Body::new(GuardedBody { body, guard })))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    let watched = Watched {
        stream,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(watched), service);
    tokio::pin!(conn);
    let mut check = tokio::time::interval((limits.idle_timeout / 4).min(Duration::from_secs(1)));
    let mut stopping: Option<Pin<Box<Sleep>>> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = shutdown.cancelled(), if stopping.is_none() => {
                conn.as_mut().graceful_shutdown();
                stopping = Some(Box::pin(tokio::time::sleep(SHUTDOWN_GRACE)));
            }
            _ = async { stopping.as_mut().expect("guarded").await }, if stopping.is_some() => break,
            _ = check.tick() => {
                let head_late = activity
                    .head_waited()
                    .is_some_and(|waited| waited >= limits.header_read_timeout);
                if head_late || activity.idle_for() >= limits.idle_timeout {
                    break;
                }
            }
        }
    }
    metrics.connection(index, false);
}

/// No request head is awaited (`Activity::head_since_ms`).
const NO_HEAD: u64 = u64::MAX;

/// Whether a connection has a request in progress, since when it has had none, and since when
/// it has been sending a request head.
struct Activity {
    opened: Instant,
    in_progress: AtomicUsize,
    /// Milliseconds after `opened` when the last request finished.
    last_finished_ms: AtomicU64,
    /// Milliseconds after `opened` when the head of the next request began (at the opening
    /// for the first request), or `NO_HEAD`.
    head_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_progress: AtomicUsize::new(0),
            last_finished_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// The request's head is complete.
    fn start(self: &Arc<Self>) -> RequestGuard {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        self.head_since_ms.store(NO_HEAD, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    /// Bytes arrived: between requests, they begin the next one's head.
    fn read_some(&self) {
        if self.in_progress.load(Ordering::SeqCst) == 0 {
            let _ = self.head_since_ms.compare_exchange(
                NO_HEAD,
                self.now_ms(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// How long the head being sent has taken so far, if one is awaited.
    fn head_waited(&self) -> Option<Duration> {
        let since = self.head_since_ms.load(Ordering::SeqCst);
        (since != NO_HEAD).then(|| Duration::from_millis(self.now_ms().saturating_sub(since)))
    }

    fn idle_for(&self) -> Duration {
        if self.in_progress.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let finished = Duration::from_millis(self.last_finished_ms.load(Ordering::SeqCst));
        self.opened.elapsed().saturating_sub(finished)
    }
}

/// The connection's stream, telling `Activity` when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        read
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request in progress: from its headers until its response's body is sent (or dropped).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = self.0.opened.elapsed().as_millis() as u64;
        self.0.last_finished_ms.store(now, Ordering::SeqCst);
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in progress until it is sent.
struct GuardedBody {
    body: Body,
    #[allow(dead_code)] // held for its Drop
    guard: RequestGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once its deadline passes: the whole body must arrive in time,
/// however slowly its bytes trickle in.
struct DeadlineBody {
    body: Body,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(body: Body, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within server.body_read_timeout ({0:?})")]
struct BodyTimeout(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_without_a_request_in_progress() {
        let activity = Arc::new(Activity::new());
        let guard = activity.start();
        assert_eq!(activity.idle_for(), Duration::ZERO);
        drop(guard);
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.idle_for() >= Duration::from_millis(20));
    }

    #[cfg(unix)]
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, getrlimit};
        let in_force = raise_open_files_limit().unwrap();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        assert_eq!(in_force, limit.current.unwrap_or(u64::MAX));
    }

    #[test]
    fn the_public_cap_yields_to_the_open_files_limit_and_the_admin_cap_stays() {
        let server = ServerSettings::default();
        let (public, admin) = Limits::of_listeners(&server, Some(4096));
        assert_eq!(admin.max_connections, server.admin_max_connections);
        assert_eq!(
            public.max_connections as u64,
            4096 - RESERVED_DESCRIPTORS - server.admin_max_connections as u64
        );
        let (public, _) = Limits::of_listeners(&server, Some(1 << 20));
        assert_eq!(public.max_connections, server.max_connections);
    }
}
