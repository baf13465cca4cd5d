//! Operator events that do not come out of a store write of their own: the circuits this node
//! opens and closes, and bursts of rejected inbound pushes — counted, never their payloads, and
//! reported once a minute. (Dead deliveries and configs disabled or recovered are recorded by
//! the store in the transaction that decides them.) The events are stored and, when an
//! operator webhook is configured, delivered to it (`store/ops/operator.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::OperatorSettings;
use crate::metrics::Metrics;
use crate::ssrf::Policy;
use crate::store::{
    ConfigRecord, ConfigRules, ConfigWrite, NewOperatorEvent, OPERATOR_CONFIG, OPERATOR_TASK,
    OPERATOR_TENANT, Store, now_ms,
};

/// How often rejected inbound pushes are reported, summed.
const REJECTIONS_EVERY: Duration = Duration::from_secs(60);
/// Subscriptions named in one `inbound.rejected` event (the most rejected first); the rest are
/// only counted.
const REJECTIONS_NAMED: usize = 20;
/// Subscriptions counted one by one per report; others add to the total only.
const REJECTIONS_TRACKED: usize = 10_000;

enum Note {
    /// An origin's circuit opened (until then) or closed (`None`).
    Circuit(String, Option<u64>),
    InboundRejected {
        subscription: String,
        verdict: String,
    },
}

/// Where the rest of the hub tells what an operator should know.
#[derive(Clone)]
pub struct OperatorNotes(Option<mpsc::UnboundedSender<Note>>);

impl OperatorNotes {
    /// Notes that go nowhere (tests of parts that take them).
    pub fn none() -> OperatorNotes {
        OperatorNotes(None)
    }

    pub fn circuit(&self, origin: String, open_until_ms: Option<u64>) {
        self.send(Note::Circuit(origin, open_until_ms));
    }

    pub fn inbound_rejected(&self, subscription: &str, verdict: &str) {
        self.send(Note::InboundRejected {
            subscription: subscription.to_string(),
            verdict: verdict.to_string(),
        });
    }

    fn send(&self, note: Note) {
        if let Some(sender) = &self.0 {
            let _ = sender.send(note);
        }
    }
}

/// Rejected inbound pushes since the last report.
#[derive(Default)]
struct Rejections {
    since_ms: u64,
    total: u64,
    by_subscription: HashMap<String, HashMap<String, u64>>,
}

impl Rejections {
    fn add(&mut self, subscription: String, verdict: String) {
        if self.total == 0 {
            self.since_ms = now_ms();
        }
        self.total += 1;
        let tracked = self.by_subscription.len() < REJECTIONS_TRACKED;
        if tracked || self.by_subscription.contains_key(&subscription) {
            *self
                .by_subscription
                .entry(subscription)
                .or_default()
                .entry(verdict)
                .or_default() += 1;
        }
    }

    /// The report of what was counted, and a fresh count.
    fn report(&mut self) -> Option<NewOperatorEvent> {
        if self.total == 0 {
            return None;
        }
        let counted = std::mem::take(self);
        let mut subscriptions: Vec<(String, HashMap<String, u64>)> =
            counted.by_subscription.into_iter().collect();
        subscriptions.sort_by_key(|(id, counts)| {
            (std::cmp::Reverse(counts.values().sum::<u64>()), id.clone())
        });
        let count = subscriptions.len();
        let named: Vec<_> = subscriptions
            .into_iter()
            .take(REJECTIONS_NAMED)
            .map(|(id, counts)| json!({"subscriptionId": id, "counts": counts}))
            .collect();
        Some(NewOperatorEvent {
            kind: "inbound.rejected",
            data: json!({"fromMs": counted.since_ms, "toMs": now_ms(), "total": counted.total,
                "subscriptions": count, "top": named}),
        })
    }
}

/// Makes the operator lane's config what `operator.webhook_url` says: created or updated (the
/// URL checked like any webhook's), or removed when the setting is empty. The error says why
/// the URL is refused.
pub async fn configure_webhook(
    store: &Arc<dyn Store>,
    policy: &Policy,
    settings: &OperatorSettings,
) -> Result<(), String> {
    let (tenant, task) = (OPERATOR_TENANT.to_string(), OPERATOR_TASK.to_string());
    if settings.webhook_url.is_empty() {
        store
            .delete_config(tenant, task, OPERATOR_CONFIG.to_string())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let url = policy
        .check_url(&settings.webhook_url)
        .await
        .map_err(|refusal| refusal.to_string())?;
    let token = settings.webhook_token.expose();
    let now = now_ms();
    let config = ConfigRecord {
        token: (!token.is_empty()).then(|| settings.webhook_token.clone()),
        ..ConfigRecord::hub_made(tenant, task, OPERATOR_CONFIG, url.to_string(), now)
    };
    let rules = ConfigRules {
        principal: None,
        max_per_task: 1,
    };
    match store.put_config(config, rules).await {
        Ok(ConfigWrite::Stored) => Ok(()),
        Ok(refused) => Err(format!("the store refused its config: {refused:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// What the notes arrive at, until `start` records them.
pub struct NotesReceiver(mpsc::UnboundedReceiver<Note>);

/// Where notes are sent, and where they arrive.
pub fn notes() -> (OperatorNotes, NotesReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (OperatorNotes(Some(sender)), NotesReceiver(receiver))
}

/// Records the notes as operator events until `stop`.
pub fn start(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    notes: NotesReceiver,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let NotesReceiver(mut notes) = notes;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REJECTIONS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        let mut rejections = Rejections::default();
        loop {
            let event = tokio::select! {
                // What was counted is reported before the hub stops.
                _ = stop.cancelled() => {
                    if let Some(last) = rejections.report() {
                        record(store.as_ref(), &metrics, last).await;
                    }
                    break;
                }
                _ = every.tick() => rejections.report(),
                note = notes.recv() => match note {
                    None => break,
                    Some(Note::Circuit(origin, Some(until))) => Some(NewOperatorEvent {
                        kind: "circuit.opened",
                        data: json!({"origin": origin, "openUntilMs": until}),
                    }),
                    Some(Note::Circuit(origin, None)) => Some(NewOperatorEvent {
                        kind: "circuit.closed",
                        data: json!({"origin": origin}),
                    }),
                    Some(Note::InboundRejected { subscription, verdict }) => {
                        rejections.add(subscription, verdict);
                        None
                    }
                },
            };
            if let Some(event) = event {
                record(store.as_ref(), &metrics, event).await;
            }
        }
    })
}

async fn record(store: &dyn Store, metrics: &Metrics, event: NewOperatorEvent) {
    let kind = event.kind;
    match store.record_operator_events(vec![event]).await {
        Ok(()) => metrics.operator_event(kind),
        Err(e) => tracing::warn!(error = %e, kind, "an operator event could not be recorded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_reported_summed_with_the_most_rejected_subscriptions_named() {
        let mut rejections = Rejections::default();
        assert!(rejections.report().is_none(), "nothing to report");
        for _ in 0..3 {
            rejections.add("noisy".into(), "unauthorized".into());
        }
        rejections.add("noisy".into(), "malformed".into());
        rejections.add("quiet".into(), "too_large".into());
        let report = rejections.report().unwrap();
        assert_eq!(report.kind, "inbound.rejected");
        assert_eq!(report.data["total"], 5);
        assert_eq!(report.data["subscriptions"], 2);
        assert_eq!(report.data["top"][0]["subscriptionId"], "noisy");
        assert_eq!(report.data["top"][0]["counts"]["unauthorized"], 3);
        assert_eq!(report.data["top"][1]["counts"]["too_large"], 1);
        assert!(rejections.report().is_none(), "counting starts again");
    }
}
