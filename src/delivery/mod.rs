//! Delivery: turns the pending deliveries created by the event API into HTTP requests that
//! arrive — ordered lanes, retries with backoff, dead-letter, per-origin circuit breakers and
//! concurrency limits, all through the SSRF-guarded client.
//!
//! It reads and writes delivery state only through the `Store` trait and never touches the
//! HTTP API.

pub mod attempt;
pub mod backpressure;
pub mod circuit;
pub mod client;
pub mod cluster;
pub mod origins;
pub mod rate_limit;
pub mod request;
pub mod retry;
pub mod scheduler;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use scheduler::SchedulerHandle;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::signing::Keyring;
use crate::ssrf::Policy;
use crate::store::{Store, StoreError};

/// What the delivery engine shares with the rest of the hub.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub policy: Arc<Policy>,
    pub metrics: Arc<Metrics>,
    pub keyring: Arc<Keyring>,
    /// The hub's public base URL, the `iss` of its JWTs.
    pub issuer: String,
    /// The `Content-Type` of 1.0 deliveries.
    pub content_type: crate::config::ContentType,
    pub telemetry: crate::telemetry::Telemetry,
    pub operator: crate::operator::OperatorNotes,
    /// Where the scheduler says how far it is behind, for the intake.
    pub backpressure: backpressure::Backpressure,
}

/// The running delivery engine.
pub struct Delivery {
    pub handle: SchedulerHandle,
    pub task: JoinHandle<()>,
}

/// Loads the pending deliveries and starts the scheduler.
pub async fn start(
    settings: &Settings,
    shared: Shared,
    shutdown: CancellationToken,
) -> Result<Delivery, StoreError> {
    let Shared {
        store,
        policy,
        metrics,
        keyring,
        issuer,
        content_type,
        telemetry,
        operator,
        backpressure,
    } = shared;
    let client = client::GuardedClient::new(policy, request::USER_AGENT)
        .map_err(|e| StoreError::Storage(format!("cannot build the HTTP client: {e}")))?;
    let delivery = &settings.delivery;
    let engine = Arc::new(attempt::Engine {
        store: store.clone(),
        client,
        policy: retry::RetryPolicy::from_settings(delivery),
        content_type: HeaderValue::from_static(content_type.as_str()),
        metrics,
        keyring,
        issuer,
        telemetry,
        operator,
        origins: Default::default(),
    });
    let limits = scheduler::Limits {
        max_in_flight: delivery.max_in_flight,
        max_in_flight_per_origin: delivery.max_in_flight_per_origin,
        max_rate_per_origin: delivery.max_rate_per_origin,
        circuit: circuit::CircuitSettings {
            threshold: delivery.circuit_threshold,
            cooldown: delivery.circuit_cooldown.0,
            max_cooldown: delivery.circuit_max_cooldown.0,
        },
        drain_timeout: delivery.timeout.0 + Duration::from_secs(5),
    };
    if !store.shared() {
        // Announced before reading what is pending: a delivery committed in between is in
        // both, and the scheduler keeps one of each.
        let (handle, task) = scheduler::start(
            engine,
            limits,
            scheduler::Sharing::alone(),
            backpressure,
            shutdown,
        );
        announce_to(&store, &handle);
        let pending = store.pending_deliveries().await?;
        if !pending.is_empty() {
            tracing::info!(pending = pending.len(), "resuming pending deliveries");
        }
        handle.enqueue(pending);
        return Ok(Delivery { handle, task });
    }
    // Several nodes share the store: this one delivers the lanes it holds, which the cluster
    // task takes and hands to the scheduler, and shares its circuits with the others.
    let window = scheduler::AttemptWindow::closed();
    let (circuit_changes, changed) = tokio::sync::mpsc::unbounded_channel();
    let sharing = scheduler::Sharing {
        window: window.clone(),
        circuit_changes: Some(circuit_changes),
    };
    let (handle, task) = scheduler::start(engine, limits, sharing, backpressure, shutdown.clone());
    let (offers, offered) = tokio::sync::mpsc::unbounded_channel();
    let node = cluster::Node::new(
        store.clone(),
        handle.clone(),
        window,
        settings.store.lane_lease.0,
        delivery.timeout.0,
    );
    cluster::start(node, offered, changed, shutdown);
    let handle = handle.offering_to(offers);
    announce_to(&store, &handle);
    Ok(Delivery { handle, task })
}

/// Makes every commit that makes deliveries pending hand them to the scheduler.
fn announce_to(store: &Arc<dyn Store>, handle: &SchedulerHandle) {
    let handle = handle.clone();
    store.announce_pending_to(Box::new(move |pending| handle.enqueue(pending)));
}
