//! How each origin (scheme://host:port) the hub delivers to has been answering, on this node:
//! attempts per minute over the last hour with a latency histogram, the last success, and the
//! failures since. Kept in memory for the origins attempted most recently (at most
//! `MAX_TRACKED`), so that an operator can ask "is this receiver healthy?" across every
//! config that points at it; a restart starts it afresh (each config's attempt log, in the
//! store, is the durable record).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Origins tracked at most; the one attempted longest ago makes room for a new one.
pub const MAX_TRACKED: usize = 1000;
/// Minutes of history kept per origin.
const MINUTES: u64 = 60;
/// Upper bounds (ms) of the latency histogram's buckets; a last one holds the rest.
pub const LATENCY_BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
];

/// Attempts of one minute (or of a window, summed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub attempts: u64,
    pub succeeded: u64,
    /// Answered attempts by latency bucket (`LATENCY_BOUNDS_MS`, then one for longer).
    pub latency: [u64; LATENCY_BOUNDS_MS.len() + 1],
    /// The longest answered attempt.
    pub max_latency_ms: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.attempts += other.attempts;
        self.succeeded += other.succeeded;
        for (sum, n) in self.latency.iter_mut().zip(other.latency) {
            *sum += n;
        }
        self.max_latency_ms = self.max_latency_ms.max(other.max_latency_ms);
    }

    /// The latency at percentile `p` (0–1) of answered attempts, as the upper bound of its
    /// bucket (the longest one seen for the last bucket); `None` without answers.
    pub fn latency_at(&self, p: f64) -> Option<u64> {
        let answered: u64 = self.latency.iter().sum();
        if answered == 0 {
            return None;
        }
        let rank = ((answered as f64 * p).ceil() as u64).clamp(1, answered);
        let mut seen = 0;
        for (bucket, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = LATENCY_BOUNDS_MS
                    .get(bucket)
                    .copied()
                    .unwrap_or(self.max_latency_ms);
                return Some(bound.min(self.max_latency_ms));
            }
        }
        Some(self.max_latency_ms)
    }
}

/// The latest failure of an origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub at_ms: u64,
    /// `http_status`, `timeout`, `connect`, … (as in the attempt log).
    pub class: &'static str,
    pub status: Option<u16>,
}

/// What is known of one origin.
#[derive(Debug, Clone, Default)]
pub struct OriginRecord {
    /// (minute since the epoch, its attempts), oldest first, the last `MINUTES` only.
    minutes: VecDeque<(u64, Tally)>,
    pub last_attempt_ms: u64,
    pub last_success_ms: Option<u64>,
    /// Failed attempts since the last success, and since when.
    pub consecutive_failures: u64,
    pub failing_since_ms: Option<u64>,
    pub last_failure: Option<Failure>,
}

impl OriginRecord {
    /// The attempts that started within the last `span_ms` (whole minutes).
    pub fn window(&self, now_ms: u64, span_ms: u64) -> Tally {
        let first = (now_ms.saturating_sub(span_ms)) / 60_000;
        let mut sum = Tally::default();
        for (_, tally) in self.minutes.iter().filter(|(minute, _)| *minute >= first) {
            sum.add(tally);
        }
        sum
    }
}

/// One attempt's result, as the origin saw it.
#[derive(Debug, Clone, Copy)]
pub struct Attempted {
    pub started_ms: u64,
    pub duration_ms: u64,
    pub succeeded: bool,
    /// The receiver answered (with any status).
    pub answered: bool,
    pub class: &'static str,
    pub status: Option<u16>,
}

#[derive(Default)]
pub struct OriginStats {
    tracked: Mutex<HashMap<String, OriginRecord>>,
}

/// The origin of a webhook URL, as limits, circuits and these statistics key it.
pub fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

impl OriginStats {
    pub fn record(&self, origin: &str, attempt: Attempted) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        // The origin's name is copied only when it is new: this runs for every attempt.
        if !tracked.contains_key(origin) {
            if tracked.len() >= MAX_TRACKED {
                let oldest = tracked
                    .iter()
                    .min_by_key(|(_, r)| r.last_attempt_ms)
                    .map(|(o, _)| o.clone());
                if let Some(oldest) = oldest {
                    tracked.remove(&oldest);
                }
            }
            tracked.insert(origin.to_string(), OriginRecord::default());
        }
        let Some(record) = tracked.get_mut(origin) else {
            return;
        };
        let minute = attempt.started_ms / 60_000;
        if record.minutes.back().is_none_or(|(m, _)| *m < minute) {
            record.minutes.push_back((minute, Tally::default()));
        }
        while record
            .minutes
            .front()
            .is_some_and(|(m, _)| *m + MINUTES <= minute)
        {
            record.minutes.pop_front();
        }
        // An attempt that started in an earlier minute than the newest counts in the newest:
        // the minutes stay in order.
        if let Some((_, tally)) = record.minutes.back_mut() {
            tally.attempts += 1;
            if attempt.succeeded {
                tally.succeeded += 1;
            }
            if attempt.answered {
                let bucket = LATENCY_BOUNDS_MS
                    .iter()
                    .position(|bound| attempt.duration_ms <= *bound)
                    .unwrap_or(LATENCY_BOUNDS_MS.len());
                tally.latency[bucket] += 1;
                tally.max_latency_ms = tally.max_latency_ms.max(attempt.duration_ms);
            }
        }
        record.last_attempt_ms = record.last_attempt_ms.max(attempt.started_ms);
        if attempt.succeeded {
            let ended = attempt.started_ms + attempt.duration_ms;
            record.last_success_ms = Some(record.last_success_ms.unwrap_or(0).max(ended));
            record.consecutive_failures = 0;
            record.failing_since_ms = None;
        } else {
            record.consecutive_failures += 1;
            record.failing_since_ms.get_or_insert(attempt.started_ms);
            record.last_failure = Some(Failure {
                at_ms: attempt.started_ms + attempt.duration_ms,
                class: attempt.class,
                status: attempt.status,
            });
        }
    }

    pub fn get(&self, origin: &str) -> Option<OriginRecord> {
        self.tracked.lock().ok()?.get(origin).cloned()
    }

    /// Every tracked origin, the most recently attempted first.
    pub fn all(&self) -> Vec<(String, OriginRecord)> {
        let mut all: Vec<(String, OriginRecord)> = self
            .tracked
            .lock()
            .map(|t| t.iter().map(|(o, r)| (o.clone(), r.clone())).collect())
            .unwrap_or_default();
        all.sort_by_key(|(origin, r)| (std::cmp::Reverse(r.last_attempt_ms), origin.clone()));
        all
    }

    /// (tracked, failing: their latest attempt failed), for the metrics.
    pub fn counts(&self) -> (u64, u64) {
        self.tracked.lock().map_or((0, 0), |t| {
            let failing = t.values().filter(|r| r.consecutive_failures > 0).count();
            (t.len() as u64, failing as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(started_ms: u64, duration_ms: u64, succeeded: bool) -> Attempted {
        Attempted {
            started_ms,
            duration_ms,
            succeeded,
            answered: true,
            class: if succeeded { "success" } else { "http_status" },
            status: Some(if succeeded { 200 } else { 503 }),
        }
    }

    #[test]
    fn windows_sum_recent_minutes_and_percentiles_are_bucket_bounds() {
        let stats = OriginStats::default();
        let hour = 3_600_000;
        // An hour and a half ago: outside every window.
        stats.record("o", attempt(hour, 3, true));
        for i in 0..100 {
            stats.record("o", attempt(2 * hour + 60_000 + i, 4 + i % 10, true));
        }
        stats.record("o", attempt(2 * hour + 30 * 60_000, 700, false));
        let record = stats.get("o").unwrap();
        let now = 2 * hour + 30 * 60_000 + 1;
        let last_hour = record.window(now, hour);
        assert_eq!((last_hour.attempts, last_hour.succeeded), (101, 100));
        assert_eq!(last_hour.latency_at(0.5), Some(10));
        assert_eq!(last_hour.latency_at(0.99), Some(20));
        assert_eq!(last_hour.latency_at(1.0), Some(700));
        let last_five = record.window(now, 5 * 60_000);
        assert_eq!((last_five.attempts, last_five.succeeded), (1, 0));
        assert_eq!(record.consecutive_failures, 1);
        assert_eq!(record.failing_since_ms, Some(2 * hour + 30 * 60_000));
    }

    #[test]
    fn the_origin_attempted_longest_ago_makes_room() {
        let stats = OriginStats::default();
        for i in 0..MAX_TRACKED as u64 + 1 {
            stats.record(&format!("o{i}"), attempt(1_000 + i, 1, true));
        }
        assert_eq!(stats.counts(), (MAX_TRACKED as u64, 0));
        assert!(stats.get("o0").is_none());
        assert_eq!(stats.all()[0].0, format!("o{MAX_TRACKED}"));
    }
}
