//! Prometheus metrics of one hub, kept in atomics and rendered in the text exposition format.
//! Per hub rather than global, so that several hubs in one process (tests) never mix counts.
//! Names follow `a2a_push_hub_<noun>_<unit>`; no label ever carries a secret or an id.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the scheduler reports at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Deliveries waiting in lanes (due or not).
    pub pending: u64,
    /// Lanes whose head is due now but not yet attempted.
    pub due: u64,
    /// Age of the oldest due, unattempted head, in milliseconds (0 when none).
    pub oldest_due_age_ms: u64,
    pub in_flight: u64,
    pub open_circuits: u64,
    /// Origins with lanes waiting for a token of `delivery.max_rate_per_origin`.
    pub rate_limited_origins: u64,
    /// Nodes sharing the store, as this node last counted them (1 alone).
    pub nodes: u64,
    /// Origins whose answers this node keeps (`GET /api/v1/origins`), and those of them
    /// whose latest attempt failed.
    pub origins_tracked: u64,
    pub origins_failing: u64,
}

const ATTEMPT_CLASSES: [&str; 7] = [
    "success",
    "http_status",
    "redirect",
    "timeout",
    "connect",
    "refused",
    "invalid_url",
];
const OUTCOMES: [&str; 3] = ["delivered", "retry", "dead"];
/// The kinds of operator events, as metric labels.
pub const OPERATOR_EVENT_TYPES: [&str; 6] = [
    "delivery.dead",
    "config.disabled",
    "config.recovered",
    "circuit.opened",
    "circuit.closed",
    "inbound.rejected",
];
/// What became of an inbound push, as metric labels.
pub const INBOUND_VERDICTS: [&str; 8] = [
    "accepted",
    "duplicate",
    "unauthorized",
    "malformed",
    "too_large",
    "rate_limited",
    "unknown_subscription",
    "unavailable",
];
/// How a gateway request to the agent ended, as metric labels.
const UPSTREAM_OUTCOMES: [&str; 3] = ["answered", "error_status", "unreachable"];

/// The hub's two listeners, as metric labels.
pub const LISTENERS: [&str; 2] = ["public", "admin"];
const DURATION_BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    events_published: AtomicU64,
    events_replayed: AtomicU64,
    configs_suspended: AtomicU64,
    idempotency_keys_purged: AtomicU64,
    tasks_purged: AtomicU64,
    inbound_events_purged: AtomicU64,
    outcomes: [AtomicU64; OUTCOMES.len()],
    operator_events: [AtomicU64; OPERATOR_EVENT_TYPES.len()],
    attempts: [AtomicU64; ATTEMPT_CLASSES.len()],
    attempt_durations: Histogram,
    connections_open: [AtomicU64; LISTENERS.len()],
    connections_refused: [AtomicU64; LISTENERS.len()],
    public_auth_failures: AtomicU64,
    replay_evictions: AtomicU64,
    follow_renewals: AtomicU64,
    follows_running: AtomicU64,
    inbound_pushes: [AtomicU64; INBOUND_VERDICTS.len()],
    upstream_requests: [AtomicU64; UPSTREAM_OUTCOMES.len()],
    upstream_durations: Histogram,
    backpressure_waits: Histogram,
}

/// A counter by label: name, help, label, its values, their counts.
type LabelledCounters<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a [AtomicU64]);

/// Durations in the buckets of `DURATION_BOUNDS`, as a Prometheus histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BOUNDS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// How many durations it holds.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        for (bound, bucket) in DURATION_BOUNDS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in DURATION_BOUNDS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", load(bucket));
        }
        let count = load(&self.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", load(&self.sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// What the store's writer reports: writes waiting for it, how long its commits take and,
/// with the embedded store's journal, how long each batch's record takes to be on disk.
#[derive(Default)]
pub struct WriterStats {
    pub queued: AtomicU64,
    pub commits: Histogram,
    pub journal_syncs: Histogram,
}

/// The store's side of the metrics, read when they are rendered.
#[derive(Default)]
pub struct StoreStats<'a> {
    pub writer: Option<&'a WriterStats>,
    /// The embedded store's file size.
    pub file_bytes: Option<u64>,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryOutcome {
    Delivered,
    Retry,
    Dead,
}

impl Metrics {
    pub fn events_published(&self, count: u64) {
        self.events_published.fetch_add(count, Ordering::Relaxed);
    }

    pub fn config_suspended(&self) {
        self.configs_suspended.fetch_add(1, Ordering::Relaxed);
    }

    pub fn events_replayed(&self, count: u64) {
        self.events_replayed.fetch_add(count, Ordering::Relaxed);
    }

    pub fn idempotency_keys_purged(&self, count: u64) {
        self.idempotency_keys_purged
            .fetch_add(count, Ordering::Relaxed);
    }

    pub fn tasks_purged(&self, count: u64) {
        self.tasks_purged.fetch_add(count, Ordering::Relaxed);
    }

    pub fn inbound_events_purged(&self, count: u64) {
        self.inbound_events_purged
            .fetch_add(count, Ordering::Relaxed);
    }

    pub fn operator_event(&self, kind: &str) {
        if let Some(i) = OPERATOR_EVENT_TYPES.iter().position(|t| *t == kind) {
            self.operator_events[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn attempt(&self, class: &str, duration: Duration, outcome: DeliveryOutcome) {
        if let Some(i) = ATTEMPT_CLASSES.iter().position(|c| *c == class) {
            self.attempts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.attempt_durations.observe(duration);
    }

    /// An inbound push ended with `verdict` (one of `INBOUND_VERDICTS`).
    pub fn inbound_push(&self, verdict: &str) {
        if let Some(i) = INBOUND_VERDICTS.iter().position(|v| *v == verdict) {
            self.inbound_pushes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gateway mode: a request to the agent got an answer (`Some(status)`) or none, after
    /// `duration`.
    pub fn upstream_request(&self, status: Option<u16>, duration: Duration) {
        let outcome = match status {
            Some(status) if status < 500 => 0,
            Some(_) => 1,
            None => 2,
        };
        self.upstream_requests[outcome].fetch_add(1, Ordering::Relaxed);
        self.upstream_durations.observe(duration);
    }

    /// A publisher waited `wait` for delivery to catch up before its answer.
    pub fn backpressure_wait(&self, wait: Duration) {
        self.backpressure_waits.observe(wait);
    }

    /// A connection of listener `index` (in `LISTENERS`) opened (`true`) or closed.
    pub fn connection(&self, index: usize, opened: bool) {
        let gauge = &self.connections_open[index];
        if opened {
            gauge.fetch_add(1, Ordering::Relaxed);
        } else {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A connection of listener `index` closed at once because the listener was full.
    pub fn connection_refused(&self, index: usize) {
        self.connections_refused[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn public_auth_failure(&self) {
        self.public_auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Replay-cache entries dropped before their credential expired, to keep the cache bounded.
    pub fn replay_evictions(&self, count: u64) {
        self.replay_evictions.fetch_add(count, Ordering::Relaxed);
    }

    /// Gateway mode: the follows' leases were renewed (one round of the keeper).
    pub fn follow_renewal(&self) {
        self.follow_renewals.fetch_add(1, Ordering::Relaxed);
    }

    /// Gateway mode: how many tasks this node follows now.
    pub fn follows_running(&self, count: usize) {
        self.follows_running.store(count as u64, Ordering::Relaxed);
    }

    /// Deliveries made dead without an attempt of their own (410 Gone kills the whole lane).
    pub fn dead_without_attempt(&self, count: u64) {
        self.outcomes[DeliveryOutcome::Dead as usize].fetch_add(count, Ordering::Relaxed);
    }

    pub fn render(&self, stats: &SchedulerStats, store: &StoreStats<'_>) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_events_published_total Task events accepted by the event API."
        );
        let _ = writeln!(out, "# TYPE a2a_push_hub_events_published_total counter");
        let _ = writeln!(
            out,
            "a2a_push_hub_events_published_total {}",
            load(&self.events_published)
        );
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_configs_suspended_total Push configs suspended after failing for delivery.disable_after (their deliveries are held until enabled)."
        );
        let _ = writeln!(out, "# TYPE a2a_push_hub_configs_suspended_total counter");
        let _ = writeln!(
            out,
            "a2a_push_hub_configs_suspended_total {}",
            load(&self.configs_suspended)
        );
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_events_replayed_total Publishes answered again for an idempotency key seen within its window: nothing was stored."
        );
        let _ = writeln!(out, "# TYPE a2a_push_hub_events_replayed_total counter");
        let _ = writeln!(
            out,
            "a2a_push_hub_events_replayed_total {}",
            load(&self.events_replayed)
        );
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_idempotency_keys_purged_total Idempotency keys removed by retention once their window passed."
        );
        let _ = writeln!(
            out,
            "# TYPE a2a_push_hub_idempotency_keys_purged_total counter"
        );
        let _ = writeln!(
            out,
            "a2a_push_hub_idempotency_keys_purged_total {}",
            load(&self.idempotency_keys_purged)
        );
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_tasks_purged_total Finished tasks purged by retention, with their events, configs and deliveries."
        );
        let _ = writeln!(out, "# TYPE a2a_push_hub_tasks_purged_total counter");
        let _ = writeln!(
            out,
            "a2a_push_hub_tasks_purged_total {}",
            load(&self.tasks_purged)
        );
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_inbound_events_purged_total Accepted inbound events removed by retention."
        );
        let _ = writeln!(
            out,
            "# TYPE a2a_push_hub_inbound_events_purged_total counter"
        );
        let _ = writeln!(
            out,
            "a2a_push_hub_inbound_events_purged_total {}",
            load(&self.inbound_events_purged)
        );
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_deliveries_total Delivery attempts by what they decided: delivered, retry (failed, will be retried) or dead."
        );
        let _ = writeln!(out, "# TYPE a2a_push_hub_deliveries_total counter");
        for (name, value) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "a2a_push_hub_deliveries_total{{outcome=\"{name}\"}} {}",
                load(value)
            );
        }
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_operator_events_total Operator events recorded, by type."
        );
        let _ = writeln!(out, "# TYPE a2a_push_hub_operator_events_total counter");
        for (kind, value) in OPERATOR_EVENT_TYPES.iter().zip(&self.operator_events) {
            let _ = writeln!(
                out,
                "a2a_push_hub_operator_events_total{{type=\"{kind}\"}} {}",
                load(value)
            );
        }
        let _ = writeln!(
            out,
            "# HELP a2a_push_hub_attempts_total Delivery attempts by result class."
        );
        let _ = writeln!(out, "# TYPE a2a_push_hub_attempts_total counter");
        for (name, value) in ATTEMPT_CLASSES.iter().zip(&self.attempts) {
            let _ = writeln!(
                out,
                "a2a_push_hub_attempts_total{{class=\"{name}\"}} {}",
                load(value)
            );
        }
        self.attempt_durations.render(
            &mut out,
            "a2a_push_hub_attempt_duration_seconds",
            "Time from sending a delivery to its answer.",
        );
        self.upstream_durations.render(
            &mut out,
            "a2a_push_hub_gateway_upstream_duration_seconds",
            "Gateway mode: time from sending a request to the agent to its answer's head.",
        );
        self.backpressure_waits.render(
            &mut out,
            "a2a_push_hub_backpressure_wait_seconds",
            "How long publishes, inbound pushes and gateway pushes waited after their events were stored, because delivery to their receivers was behind (delivery.backpressure_after).",
        );
        if let Some(writer) = store.writer {
            writer.commits.render(
                &mut out,
                "a2a_push_hub_store_commit_seconds",
                "Time to run and commit one group of store writes: durably; with the embedded store's journal, including the wait for the group before's record to be on disk, while its writes run (the sync itself is a2a_push_hub_store_journal_sync_seconds).",
            );
            writer.journal_syncs.render(
                &mut out,
                "a2a_push_hub_store_journal_sync_seconds",
                "With the embedded store's journal (store.journal): time to write and sync one committed group's record, beside the next group's commit.",
            );
        }
        let by_label: [LabelledCounters<'_>; 2] = [
            (
                "a2a_push_hub_inbound_pushes_total",
                "Pushes received at inbound subscriptions, by verdict.",
                "verdict",
                &INBOUND_VERDICTS,
                &self.inbound_pushes,
            ),
            (
                "a2a_push_hub_gateway_upstream_requests_total",
                "Gateway mode: requests to the agent by outcome (answered below 500, a 5xx, or no answer).",
                "outcome",
                &UPSTREAM_OUTCOMES,
                &self.upstream_requests,
            ),
        ];
        for (name, help, label, values, counts) in by_label {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (value, count) in values.iter().zip(counts) {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", load(count));
            }
        }
        let labelled = [
            (
                "a2a_push_hub_connections_refused_total",
                "Connections closed on arrival because their listener held server.max_connections (public) or server.admin_max_connections (admin).",
                "counter",
                &self.connections_refused,
            ),
            (
                "a2a_push_hub_connections_open",
                "Connections open, by listener.",
                "gauge",
                &self.connections_open,
            ),
        ];
        for (name, help, kind, values) in labelled {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (listener, value) in LISTENERS.iter().zip(values) {
                let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {}", load(value));
            }
        }
        let counters = [
            (
                "a2a_push_hub_public_auth_failures_total",
                "Public push-config calls refused for a missing or wrong credential.",
                &self.public_auth_failures,
            ),
            (
                "a2a_push_hub_inbound_replay_evictions_total",
                "Inbound replay-cache entries dropped before their credential expired (inbound.replay_cache_max_entries reached): a push replayed after that could be accepted again.",
                &self.replay_evictions,
            ),
            (
                "a2a_push_hub_follow_renewals_total",
                "Gateway mode: rounds in which this node renewed the leases of the agents' tasks it follows (and took over those no node held).",
                &self.follow_renewals,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", load(value));
        }
        let gauges = [
            (
                "a2a_push_hub_deliveries_pending",
                "Deliveries waiting in their lanes.",
                stats.pending as f64,
            ),
            (
                "a2a_push_hub_deliveries_due",
                "Lanes whose next delivery is due and not yet attempted.",
                stats.due as f64,
            ),
            (
                "a2a_push_hub_delivery_lag_seconds",
                "Age of the oldest due delivery not yet attempted.",
                stats.oldest_due_age_ms as f64 / 1000.0,
            ),
            (
                "a2a_push_hub_attempts_in_flight",
                "Delivery attempts in flight.",
                stats.in_flight as f64,
            ),
            (
                "a2a_push_hub_circuits_open",
                "Origins whose circuit breaker is open or probing.",
                stats.open_circuits as f64,
            ),
            (
                "a2a_push_hub_origins_rate_limited",
                "Origins with deliveries waiting for their delivery.max_rate_per_origin.",
                stats.rate_limited_origins as f64,
            ),
            (
                "a2a_push_hub_origins_tracked",
                "Origins this node has attempted lately (GET /api/v1/origins), at most 1000.",
                stats.origins_tracked as f64,
            ),
            (
                "a2a_push_hub_origins_failing",
                "Tracked origins whose latest attempt failed.",
                stats.origins_failing as f64,
            ),
            (
                "a2a_push_hub_nodes",
                "Hub nodes sharing the store, as this node last counted them; each takes this share of delivery.max_rate_per_origin.",
                stats.nodes as f64,
            ),
            (
                "a2a_push_hub_store_writes_queued",
                "Writes waiting for the store's writer (at 8192 the event API answers 503).",
                store
                    .writer
                    .map_or(0.0, |w| w.queued.load(Ordering::Relaxed) as f64),
            ),
            (
                "a2a_push_hub_gateway_follows",
                "Gateway mode: tasks of an agent that does not push this node follows now (at gateway.max_follows, requests that would add one are refused).",
                self.follows_running.load(Ordering::Relaxed) as f64,
            ),
            (
                "a2a_push_hub_store_file_bytes",
                "Size of the embedded store's file (0 on PostgreSQL: ask the database).",
                store.file_bytes.unwrap_or(0) as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.events_published(3);
        metrics.tasks_purged(2);
        metrics.attempt(
            "success",
            Duration::from_millis(20),
            DeliveryOutcome::Delivered,
        );
        metrics.attempt("timeout", Duration::from_secs(15), DeliveryOutcome::Retry);
        metrics.inbound_push("duplicate");
        metrics.upstream_request(Some(503), Duration::from_millis(3));
        let writer = WriterStats::default();
        writer.commits.observe(Duration::from_millis(2));
        let store = StoreStats {
            writer: Some(&writer),
            file_bytes: Some(4096),
        };
        let text = metrics.render(
            &SchedulerStats {
                pending: 4,
                ..Default::default()
            },
            &store,
        );
        assert!(text.contains("a2a_push_hub_inbound_pushes_total{verdict=\"duplicate\"} 1\n"));
        assert!(text.contains(
            "a2a_push_hub_gateway_upstream_requests_total{outcome=\"error_status\"} 1\n"
        ));
        assert!(text.contains("a2a_push_hub_store_commit_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("a2a_push_hub_store_file_bytes 4096\n"));
        assert!(text.contains("a2a_push_hub_events_published_total 3\n"));
        assert!(text.contains("a2a_push_hub_tasks_purged_total 2\n"));
        assert!(text.contains("a2a_push_hub_deliveries_total{outcome=\"delivered\"} 1\n"));
        assert!(text.contains("a2a_push_hub_attempts_total{class=\"timeout\"} 1\n"));
        assert!(text.contains("a2a_push_hub_attempt_duration_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("a2a_push_hub_attempt_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("a2a_push_hub_deliveries_pending 4\n"));
    }
}
