//! The inbound role (README, "Receiving pushes from a remote agent"): subscriptions, the verified intake of pushes from peer
//! agents at `POST /inbound/{id}`, de-duplication, receipts, and routing of accepted events
//! (forwarding through the outbound engine, SSE and pull).
//!
//! Storage goes through the `Store` trait, outbound requests (JWKS, remote registration)
//! through the SSRF-guarded client; nothing here knows axum.

pub mod challenge;
pub mod delegations;
pub mod intake;
pub mod jwks;
mod receipt;
pub mod remote;
pub mod subscriptions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, watch};

use crate::config::InboundSettings;
use crate::delivery::client::GuardedClient;
use crate::metrics::Metrics;
use crate::ssrf::Policy;
use crate::store::Store;

/// Bounds of the inbound role that come from the hub's `limits`.
#[derive(Debug, Clone, Copy)]
pub struct InboundLimits {
    /// Largest push body accepted.
    pub max_body_bytes: usize,
    /// Configs a task may have (a gateway intake adds the client's).
    pub max_configs_per_task: usize,
}

/// Per-subscription token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of the subscriptions that sent requests lately. A bucket that has filled up
/// again is the same as a new one, so such buckets are dropped whenever the map has doubled
/// since the last time: memory follows the subscriptions in use, not all there ever were.
struct Buckets {
    by_subscription: HashMap<String, Bucket>,
    prune_at: usize,
}

/// Buckets kept before the first pruning.
const BUCKETS_PRUNE_AT: usize = 1024;

/// The inbound role: what it needs and what it keeps between requests.
pub struct Inbound {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// How peers reach the public listener (the base of every intake URL).
    pub public_base_url: Arc<str>,
    /// Which URLs a subscription may name (forwarding, JWKS, the remote agent).
    pub policy: Arc<Policy>,
    pub client: GuardedClient,
    pub jwks: jwks::JwksCache,
    pub settings: InboundSettings,
    pub limits: InboundLimits,
    /// Records a `receive` span per accepted push.
    pub telemetry: crate::telemetry::Telemetry,
    /// Where rejected pushes are counted for the operator.
    pub operator: crate::operator::OperatorNotes,
    /// How long a peer waits for delivery of what it pushed to catch up.
    pub backpressure: crate::delivery::backpressure::Backpressure,
    buckets: Mutex<Buckets>,
    /// The newest accepted event sequence per subscription that has SSE listeners.
    newest: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Inbound {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        public_base_url: Arc<str>,
        policy: Arc<Policy>,
        client: GuardedClient,
        settings: InboundSettings,
        limits: InboundLimits,
    ) -> Inbound {
        Inbound {
            store,
            metrics,
            public_base_url,
            policy,
            jwks: jwks::JwksCache::new(client.clone()),
            client,
            settings,
            limits,
            telemetry: Default::default(),
            operator: crate::operator::OperatorNotes::none(),
            backpressure: crate::delivery::backpressure::Backpressure::off(),
            buckets: Mutex::new(Buckets {
                by_subscription: HashMap::new(),
                prune_at: BUCKETS_PRUNE_AT,
            }),
            newest: Mutex::new(HashMap::new()),
        }
    }

    /// The same, recording its spans with `telemetry`.
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Inbound {
        self.telemetry = telemetry;
        self
    }

    /// The same, counting rejected pushes for the operator with `operator`.
    pub fn with_operator(mut self, operator: crate::operator::OperatorNotes) -> Inbound {
        self.operator = operator;
        self
    }

    /// The same, slowing peers down when delivery is behind.
    pub fn with_backpressure(
        mut self,
        backpressure: crate::delivery::backpressure::Backpressure,
    ) -> Inbound {
        self.backpressure = backpressure;
        self
    }

    /// Takes one request from the subscription's budget; `false` when it is spent.
    pub async fn allow(&self, subscription_id: &str) -> bool {
        let rate = self.settings.rate_limit_per_second;
        let burst = f64::from(self.settings.rate_limit_burst);
        let mut buckets = self.buckets.lock().await;
        let now = Instant::now();
        if buckets.by_subscription.len() >= buckets.prune_at {
            buckets.by_subscription.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate < burst
            });
            buckets.prune_at = (buckets.by_subscription.len() * 2).max(BUCKETS_PRUNE_AT);
        }
        let bucket = buckets
            .by_subscription
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

    /// Tells SSE listeners that events up to `sequence` are stored. A subscription nobody
    /// listens to has nothing to tell: listeners read the store after they start watching.
    pub async fn notify(&self, subscription_id: &str, sequence: u64) {
        let mut newest = self.newest.lock().await;
        let Some(sender) = newest.get(subscription_id) else {
            return;
        };
        if sender.receiver_count() == 0 {
            newest.remove(subscription_id);
            return;
        }
        sender.send_if_modified(|current| {
            let changed = sequence > *current;
            *current = (*current).max(sequence);
            changed
        });
    }

    /// A receiver that changes whenever the subscription gets a new event; watch before
    /// reading the store, so that no event falls between the two.
    pub async fn watch(&self, subscription_id: &str) -> watch::Receiver<u64> {
        let mut newest = self.newest.lock().await;
        // Subscriptions whose listeners have all gone.
        newest.retain(|_, sender| sender.receiver_count() > 0);
        newest
            .entry(subscription_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Drops a deleted subscription's state; its SSE streams end.
    pub async fn forget(&self, subscription_id: &str) {
        self.newest.lock().await.remove(subscription_id);
        self.buckets
            .lock()
            .await
            .by_subscription
            .remove(subscription_id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    pub(in crate::inbound) fn inbound(
        rate_limit_per_second: f64,
        rate_limit_burst: u32,
    ) -> Inbound {
        let policy = Arc::new(crate::ssrf::Policy::from_settings(&Default::default()));
        let client = GuardedClient::new(policy.clone(), "test").unwrap();
        Inbound::new(
            Arc::new(crate::store::MemoryStore::new(crate::store::Sealing::none())),
            Arc::new(Metrics::default()),
            "http://127.0.0.1:1".into(),
            policy,
            client,
            InboundSettings {
                rate_limit_per_second,
                rate_limit_burst,
                ..InboundSettings::default()
            },
            InboundLimits {
                max_body_bytes: 1 << 20,
                max_configs_per_task: 10,
            },
        )
    }

    #[tokio::test]
    async fn buckets_of_subscriptions_no_longer_sending_are_dropped_and_limits_still_hold() {
        let inbound = inbound(1.0, 1);
        for i in 0..3 * BUCKETS_PRUNE_AT {
            assert!(inbound.allow(&format!("old-{i}")).await);
        }
        // Every old bucket fills up again within a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for i in 0..3 * BUCKETS_PRUNE_AT {
            assert!(inbound.allow(&format!("new-{i}")).await);
        }
        let kept = inbound.buckets.lock().await.by_subscription.len();
        assert!(
            kept < 5 * BUCKETS_PRUNE_AT,
            "{kept} buckets for 6,144 subscriptions"
        );
        assert!(
            !inbound
                .allow(&format!("new-{}", 3 * BUCKETS_PRUNE_AT - 1))
                .await,
            "a bucket still in use keeps its count"
        );
    }

    #[tokio::test]
    async fn only_subscriptions_with_listeners_are_tracked_and_listeners_hear_of_news() {
        let inbound = inbound(50.0, 100);
        inbound.notify("quiet", 1).await;
        assert!(inbound.newest.lock().await.is_empty());
        let mut news = inbound.watch("listened").await;
        inbound.notify("listened", 3).await;
        news.changed().await.unwrap();
        assert_eq!(*news.borrow(), 3);
        drop(news);
        inbound.notify("listened", 4).await;
        assert!(
            inbound.newest.lock().await.is_empty(),
            "a subscription whose listeners left is dropped"
        );
    }
}
