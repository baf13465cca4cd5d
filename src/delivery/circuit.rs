//! Per-origin circuit breaker: consecutive failures open it; while open, the origin's lanes
//! wait; after the cool-down one probe attempt decides (success closes it, failure reopens it
//! with the cool-down doubled, up to a maximum).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until_ms: u64,
    },
    /// Cool-down over; `probing` while the one probe attempt is in flight.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Allowed as the probe that decides whether the circuit closes.
    Probe,
    /// Not now: open until the given time, or (`None`) a probe is in flight.
    Wait(Option<u64>),
}

#[derive(Debug, Clone)]
pub struct Circuit {
    state: State,
    failures: u32,
    cooldown: Duration,
}

/// A circuit as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitReport {
    /// `closed`, `open` (attempts wait until `openUntilMs`) or `half_open` (one probe decides).
    pub state: &'static str,
    pub open_until_ms: Option<u64>,
    /// Failures since the origin's last success.
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct CircuitSettings {
    pub threshold: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Circuit {
    pub fn new(settings: &CircuitSettings) -> Circuit {
        Circuit {
            state: State::Closed,
            failures: 0,
            cooldown: settings.cooldown,
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed)
    }

    /// Closed with no failure counted: nothing worth remembering about the origin.
    pub fn is_pristine(&self) -> bool {
        self.state == State::Closed && self.failures == 0
    }

    pub fn report(&self) -> CircuitReport {
        let (state, open_until_ms) = match self.state {
            State::Closed => ("closed", None),
            State::Open { until_ms } => ("open", Some(until_ms)),
            State::HalfOpen { .. } => ("half_open", None),
        };
        CircuitReport {
            state,
            open_until_ms,
            consecutive_failures: self.failures,
        }
    }

    /// May an attempt start now?
    pub fn admit(&mut self, now_ms: u64) -> Admission {
        match self.state {
            State::Closed => Admission::Allow,
            State::Open { until_ms } if now_ms < until_ms => Admission::Wait(Some(until_ms)),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Admission::Probe
            }
            State::HalfOpen { probing: true } => Admission::Wait(None),
        }
    }

    pub fn on_success(&mut self, settings: &CircuitSettings) {
        self.state = State::Closed;
        self.failures = 0;
        self.cooldown = settings.cooldown;
    }

    /// Records a failure; returns the time the circuit reopens if it (re)opened now.
    pub fn on_failure(&mut self, now_ms: u64, settings: &CircuitSettings) -> Option<u64> {
        self.failures = self.failures.saturating_add(1);
        let reopen = match self.state {
            State::HalfOpen { .. } => {
                self.cooldown = (self.cooldown * 2).min(settings.max_cooldown);
                true
            }
            State::Closed => self.failures >= settings.threshold,
            State::Open { .. } => false,
        };
        if !reopen {
            return None;
        }
        let until_ms = now_ms + self.cooldown.as_millis() as u64;
        self.state = State::Open { until_ms };
        Some(until_ms)
    }

    /// Another node found the origin failing: open until `until_ms` unless already open at
    /// least that long. Whether it changed.
    pub fn open_until(&mut self, until_ms: u64) -> bool {
        match self.state {
            State::Open { until_ms: current } if current >= until_ms => false,
            State::HalfOpen { probing: true } => false,
            _ => {
                self.state = State::Open { until_ms };
                true
            }
        }
    }

    /// A probe that ended without saying anything about the origin: let another probe go.
    pub fn on_inconclusive(&mut self) {
        if self.state == (State::HalfOpen { probing: true }) {
            self.state = State::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: CircuitSettings = CircuitSettings {
        threshold: 3,
        cooldown: Duration::from_secs(5),
        max_cooldown: Duration::from_secs(12),
    };

    #[test]
    fn another_nodes_open_circuit_opens_this_one_until_then() {
        let mut c = Circuit::new(&SETTINGS);
        assert!(c.open_until(9_000));
        assert_eq!(c.admit(1_000), Admission::Wait(Some(9_000)));
        assert!(!c.open_until(8_000), "an earlier end changes nothing");
        assert_eq!(c.admit(9_000), Admission::Probe);
        assert!(!c.open_until(20_000), "a probe in flight decides");
        c.on_success(&SETTINGS);
        assert!(c.is_pristine());
    }

    #[test]
    fn consecutive_failures_open_then_one_probe_decides() {
        let mut c = Circuit::new(&SETTINGS);
        assert_eq!(c.on_failure(0, &SETTINGS), None);
        assert_eq!(c.on_failure(0, &SETTINGS), None);
        assert_eq!(c.on_failure(1_000, &SETTINGS), Some(6_000));
        assert_eq!(c.admit(2_000), Admission::Wait(Some(6_000)));
        assert_eq!(c.admit(6_000), Admission::Probe);
        assert_eq!(c.admit(6_001), Admission::Wait(None), "one probe at a time");
        assert_eq!(
            c.on_failure(7_000, &SETTINGS),
            Some(17_000),
            "cool-down doubles"
        );
        assert_eq!(c.admit(17_000), Admission::Probe);
        assert_eq!(
            c.on_failure(18_000, &SETTINGS),
            Some(30_000),
            "capped at the maximum"
        );
        assert_eq!(c.admit(30_000), Admission::Probe);
        c.on_success(&SETTINGS);
        assert_eq!(c.admit(30_001), Admission::Allow);
        assert!(!c.is_open());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut c = Circuit::new(&SETTINGS);
        c.on_failure(0, &SETTINGS);
        c.on_failure(0, &SETTINGS);
        c.on_success(&SETTINGS);
        assert_eq!(c.on_failure(0, &SETTINGS), None);
        assert_eq!(c.admit(0), Admission::Allow);
    }
}
