//! The inbound role (DESIGN §7): subscriptions, the verified intake of pushes from peer
//! agents at `POST /inbound/{id}`, de-duplication, receipts, and routing of accepted events
//! (forwarding through the outbound engine, SSE and pull).
//!
//! Storage goes through the `Store` trait, outbound requests (JWKS, remote registration)
//! through the SSRF-guarded client; nothing here knows axum.

pub mod intake;
pub mod jwks;
pub mod remote;
pub mod subscriptions;

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::{Mutex, watch};

use crate::config::InboundSettings;
use crate::delivery::client::GuardedClient;

/// Per-subscription token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The inbound role's shared state.
pub struct Inbound {
    pub client: GuardedClient,
    pub jwks: jwks::JwksCache,
    settings: InboundSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// The newest accepted event sequence per subscription, for SSE listeners.
    newest: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Inbound {
    pub fn new(client: GuardedClient, settings: InboundSettings) -> Inbound {
        Inbound {
            jwks: jwks::JwksCache::new(client.clone()),
            client,
            settings,
            buckets: Mutex::new(HashMap::new()),
            newest: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the subscription's budget; `false` when it is spent.
    pub async fn allow(&self, subscription_id: &str) -> bool {
        let rate = self.settings.rate_limit_per_second;
        let burst = f64::from(self.settings.rate_limit_burst);
        let mut buckets = self.buckets.lock().await;
        let now = Instant::now();
        let bucket = buckets
            .entry(subscription_id.to_string())
            .or_insert(Bucket {
                tokens: burst,
                at: now,
            });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tells SSE listeners that events up to `sequence` are stored.
    pub async fn notify(&self, subscription_id: &str, sequence: u64) {
        let mut newest = self.newest.lock().await;
        let sender = newest
            .entry(subscription_id.to_string())
            .or_insert_with(|| watch::channel(0).0);
        sender.send_if_modified(|current| {
            let changed = sequence > *current;
            *current = (*current).max(sequence);
            changed
        });
    }

    /// A receiver that changes whenever the subscription gets a new event.
    pub async fn watch(&self, subscription_id: &str) -> watch::Receiver<u64> {
        let mut newest = self.newest.lock().await;
        newest
            .entry(subscription_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Drops a deleted subscription's state; its SSE streams end.
    pub async fn forget(&self, subscription_id: &str) {
        self.newest.lock().await.remove(subscription_id);
        self.buckets.lock().await.remove(subscription_id);
    }
}
