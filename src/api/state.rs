//! What the HTTP handlers reach: the services of each capability, and the few things the
//! listeners themselves need (settings, keys, metrics, the scheduler's numbers, shutdown).
//! Built once at start (`lib.rs`); a handler that needs one service takes it as its own state
//! (`FromRef`).

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, Settings};
use crate::delivery::SchedulerHandle;
use crate::domain::{Deliveries, Events, PushConfigs};
use crate::gateway::Gateway;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::signing::Keyring;
use crate::store::Store;

/// The handlers' state. Axum clones it for every request, so it is one pointer: one atomic
/// increment per request instead of one per service (and a copy of the admin token).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the handlers share.
pub struct Shared {
    pub configs: PushConfigs,
    pub events: Events,
    pub deliveries: Deliveries,
    pub inbound: Arc<Inbound>,
    /// Set in gateway mode: the agent behind the hub.
    pub gateway: Option<Arc<Gateway>>,
    /// For readiness and the views that read the store directly.
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    /// The base URL peers use to reach the public listener (resolved after binding).
    pub public_base_url: Arc<str>,
    /// The scheduler's numbers, for `/metrics`.
    pub scheduler: SchedulerHandle,
    pub metrics: Arc<Metrics>,
    pub keyring: Arc<Keyring>,
    /// What admin requests must carry as `Authorization: Bearer …`, when set.
    pub admin_token: Option<Secret>,
    /// Cancelled when the hub shuts down: long-lived responses (SSE) end with it.
    pub shutdown: CancellationToken,
}

impl FromRef<AppState> for Deliveries {
    fn from_ref(state: &AppState) -> Deliveries {
        state.deliveries.clone()
    }
}

impl FromRef<AppState> for Arc<Inbound> {
    fn from_ref(state: &AppState) -> Arc<Inbound> {
        state.inbound.clone()
    }
}
