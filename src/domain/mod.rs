//! What the hub does, independent of how it is asked: push-config management, publishing
//! events, reading a task's state. Handlers in `crate::api` call these functions; these call
//! the store. Nothing here knows HTTP or JSON-RPC.

pub mod deliveries;
pub mod error;
pub mod events;
pub mod push_configs;
pub mod tasks;

use std::sync::Arc;

use crate::config::Settings;
use crate::delivery::SchedulerHandle;
use crate::metrics::Metrics;
use crate::signing::Keyring;
use crate::ssrf::Policy;
use crate::store::Store;

pub use error::DomainError;

/// What every domain operation needs: the store, the settings, the SSRF policy.
#[derive(Clone)]
pub struct HubState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub policy: Arc<Policy>,
    /// The base URL peers use to reach the public listener (resolved after binding).
    pub public_base_url: Arc<str>,
    /// Takes newly pending deliveries (published or replayed).
    pub scheduler: SchedulerHandle,
    pub metrics: Arc<Metrics>,
    pub keyring: Arc<Keyring>,
    pub inbound: Arc<crate::inbound::Inbound>,
    /// Cancelled when the hub shuts down: long-lived responses (SSE) end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What admin requests must carry as `Authorization: Bearer …`, when set.
    pub admin_token: Option<crate::config::Secret>,
    /// Set in gateway mode: the agent behind the hub.
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
}
