//! Backpressure: when delivery cannot keep up, whoever publishes the events it is behind on
//! gets the answer later, so the backlog stops growing instead of growing without bound
//! (docs/DELIVERY.md, "Backpressure").
//!
//! The scheduler reports how far it is behind (`Lag`): per origin that answers well but whose
//! lanes wait for its request slots, and for every origin when all attempt slots are taken.
//! It reports moments ("behind since"), not durations, so a report stays true as time passes
//! until the next one. A publish, an inbound push or a gateway push whose new deliveries go
//! to an origin more than `delivery.backpressure_after` behind waits for what it is behind
//! beyond that, at most `delivery.backpressure_max_wait`, after its events are durable and
//! before its answer. A closed-loop publisher thus slows to what delivery keeps up with;
//! nothing is refused and nothing is lost.
//!
//! An origin that fails, hangs, has an open circuit or a rate cap slows nobody: its backlog is
//! what the retry schedule, the circuit, `delivery.disable_after` and the cap are for, and
//! slowing its publishers would hold up their other subscribers too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::origins::origin_of;
use crate::metrics::Metrics;

/// How far delivery is behind, as the scheduler saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lag {
    /// While every attempt slot is taken: since when (ms since the epoch) the oldest due lane
    /// has waited for one.
    pub all_since: Option<u64>,
    /// Origins that answer well and whose lanes wait for their request slots: since when the
    /// head of the lane that has waited longest is due.
    pub origins: Vec<(String, u64)>,
}

impl Lag {
    pub fn is_empty(&self) -> bool {
        self.all_since.is_none() && self.origins.is_empty()
    }
}

/// When publishers wait.
#[derive(Debug, Clone, Copy)]
pub struct BackpressureSettings {
    /// Delivery this far behind slows nobody.
    pub after: Duration,
    /// The longest a publisher waits; zero: never.
    pub max_wait: Duration,
}

#[derive(Default)]
struct Reported {
    all_since: Option<u64>,
    origins: HashMap<String, u64>,
}

/// The scheduler's last report, shared with the intake.
#[derive(Clone)]
pub struct Backpressure {
    settings: BackpressureSettings,
    /// Whether the last report said anything: the intake's only cost while delivery keeps up.
    behind: Arc<AtomicBool>,
    reported: Arc<RwLock<Reported>>,
}

impl Backpressure {
    pub fn new(settings: BackpressureSettings) -> Backpressure {
        Backpressure {
            settings,
            behind: Arc::default(),
            reported: Arc::default(),
        }
    }

    /// Never slows anyone (tools and tests that publish without a scheduler).
    pub fn off() -> Backpressure {
        Backpressure::new(BackpressureSettings {
            after: Duration::ZERO,
            max_wait: Duration::ZERO,
        })
    }

    /// The scheduler's new report replaces the last.
    pub fn report(&self, lag: Lag) {
        let behind = !lag.is_empty();
        if let Ok(mut reported) = self.reported.write() {
            reported.all_since = lag.all_since;
            reported.origins = lag.origins.into_iter().collect();
        }
        self.behind.store(behind, Ordering::Relaxed);
    }

    /// How long a publisher of new deliveries to `urls` waits at `now`.
    pub fn wait_for<'a>(&self, urls: impl IntoIterator<Item = &'a str>, now: u64) -> Duration {
        if self.settings.max_wait.is_zero() || !self.behind.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let Ok(reported) = self.reported.read() else {
            return Duration::ZERO;
        };
        // An event that makes no delivery adds nothing to catch up on.
        let mut urls = urls.into_iter().peekable();
        if urls.peek().is_none() {
            return Duration::ZERO;
        }
        let mut since = reported.all_since;
        if !reported.origins.is_empty() {
            for url in urls {
                if let Some(&origin_since) = reported.origins.get(&origin_of(url)) {
                    since = Some(since.map_or(origin_since, |s| s.min(origin_since)));
                }
            }
        }
        let behind = Duration::from_millis(since.map_or(0, |since| now.saturating_sub(since)));
        behind
            .saturating_sub(self.settings.after)
            .min(self.settings.max_wait)
    }

    /// Waits `wait` (from `wait_for`), counting the wait.
    pub async fn slow_down(&self, wait: Duration, metrics: &Metrics) {
        if !wait.is_zero() {
            metrics.backpressure_wait(wait);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pressure(after_ms: u64, max_wait_ms: u64) -> Backpressure {
        Backpressure::new(BackpressureSettings {
            after: Duration::from_millis(after_ms),
            max_wait: Duration::from_millis(max_wait_ms),
        })
    }

    #[test]
    fn a_publisher_waits_for_what_its_origins_are_behind_beyond_the_allowance() {
        let p = pressure(100, 1_000);
        p.report(Lag {
            all_since: None,
            origins: vec![("https://slow.example".to_string(), 10_000)],
        });
        let slow = "https://slow.example/hook";
        let fast = "https://fast.example/hook";
        assert_eq!(p.wait_for([fast], 10_500), Duration::ZERO, "not its origin");
        assert_eq!(
            p.wait_for([slow], 10_050),
            Duration::ZERO,
            "within the allowance"
        );
        assert_eq!(p.wait_for([fast, slow], 10_400), Duration::from_millis(300));
        assert_eq!(
            p.wait_for([slow], 60_000),
            Duration::from_secs(1),
            "never longer than the most"
        );
        p.report(Lag::default());
        assert_eq!(p.wait_for([slow], 60_000), Duration::ZERO, "caught up");
    }

    #[test]
    fn every_publisher_waits_while_every_attempt_slot_is_taken() {
        let p = pressure(100, 1_000);
        p.report(Lag {
            all_since: Some(5_000),
            origins: vec![],
        });
        assert_eq!(
            p.wait_for(["https://any.example/"], 5_300),
            Duration::from_millis(200)
        );
        assert_eq!(
            p.wait_for([], 5_300),
            Duration::ZERO,
            "an event that makes no delivery never waits"
        );
    }

    #[test]
    fn no_wait_when_switched_off() {
        let p = pressure(0, 0);
        p.report(Lag {
            all_since: Some(0),
            origins: vec![],
        });
        assert_eq!(p.wait_for(["https://any.example/"], 60_000), Duration::ZERO);
    }
}
