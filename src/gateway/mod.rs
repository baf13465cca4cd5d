//! Gateway mode (README, "Putting the hub in front of your agent"): the hub in front of an existing A2A agent. It proxies the
//! agent's interface unchanged, answers the push-config methods itself (after asking the
//! agent whether the task exists for the caller), swaps inline push configs for its own intake,
//! and turns the agent's best-effort pushes into the hub's reliable, signed deliveries.
//!
//! Calls to the agent go through the SSRF-guarded client with exactly the agent's addresses
//! opened; nothing here knows axum.

pub mod card;
pub mod follow;
pub mod intake;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::delivery::client::GuardedClient;
use crate::domain::Events;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::ssrf::Policy;
use crate::store::Store;

/// What the gateway uses of the rest of the hub.
pub struct Services {
    pub store: Arc<dyn Store>,
    /// Publishes what a followed task's stream carries.
    pub events: Events,
    /// The intakes the agent pushes to are inbound subscriptions.
    pub inbound: Arc<Inbound>,
    pub metrics: Arc<Metrics>,
    /// The full SSRF policy (for the client's webhook URLs).
    pub policy: Arc<Policy>,
    /// How long a follow's lease lasts (`store.lane_lease`).
    pub lane_lease: Duration,
    /// The most tasks this node follows at once (`gateway.max_follows`).
    pub max_follows: usize,
    /// Cancelled when the hub shuts down: follows end with it.
    pub shutdown: CancellationToken,
}

/// The agent behind the hub.
pub struct Gateway {
    pub upstream: Url,
    pub client: GuardedClient,
    pub followers: follow::Followers,
    /// This process among the nodes sharing the store: who holds a follow.
    pub node: String,
    /// Whether the agent declares push support (from its card), with when that was learnt.
    pushes: tokio::sync::Mutex<Option<(bool, std::time::Instant)>>,
    /// What it uses of the rest of the hub.
    pub services: Services,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[error("gateway.upstream {url}: {reason}")]
pub struct GatewayError {
    pub url: String,
    pub reason: String,
}

impl Gateway {
    /// Resolves the upstream once and opens the policy to its addresses (the operator chose
    /// it; webhook URLs stay under the full policy).
    pub async fn new(upstream: &Url, services: Services) -> Result<Gateway, GatewayError> {
        let policy = &services.policy;
        let error = |reason: String| GatewayError {
            url: upstream.to_string(),
            reason,
        };
        let url = upstream.clone();
        let client = GuardedClient::opened_to(policy, &url)
            .await
            .map_err(error)?;
        Ok(Gateway {
            upstream: url,
            client,
            followers: follow::Followers::new(services.max_follows),
            node: format!("node-{}", uuid::Uuid::new_v4().simple()),
            pushes: tokio::sync::Mutex::new(None),
            services,
        })
    }

    /// Whether the agent pushes (its card's `capabilities.pushNotifications`), re-read every
    /// minute; when the card cannot be read the agent is assumed to push.
    pub async fn agent_pushes(&self) -> bool {
        let mut cached = self.pushes.lock().await;
        if let Some((pushes, at)) = *cached {
            if at.elapsed() < std::time::Duration::from_secs(60) {
                return pushes;
            }
        }
        let card = self
            .client
            .fetch_json(&self.url_for("/.well-known/agent-card.json"), 1024 * 1024)
            .await;
        let pushes = card.map_or(true, |card| {
            card.body["capabilities"]["pushNotifications"]
                .as_bool()
                .unwrap_or(false)
        });
        *cached = Some((pushes, std::time::Instant::now()));
        pushes
    }

    /// The upstream URL for a path and query of the hub's public listener.
    pub fn url_for(&self, path_and_query: &str) -> String {
        let base = self.upstream.as_str().trim_end_matches('/');
        format!("{base}{path_and_query}")
    }
}
