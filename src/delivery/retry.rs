//! The retry policy (docs/DELIVERY.md): how one attempt's result decides the delivery's fate.
//! Pure functions of the outcome, the attempt count and the clock; no I/O.

use std::time::{Duration, SystemTime};

use crate::config::DeliverySettings;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Any 2xx.
    Success(u16),
    /// 410 Gone: the receiver asks never to be called again.
    Gone,
    /// 3xx: a failure; redirects are never followed.
    Redirect(u16),
    /// Any other status; `retry_after` from the `Retry-After` header.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Timeout,
    /// Connection refused, reset, TLS failure, …
    Connect(String),
    /// The destination is refused by the SSRF policy.
    Refused(String),
    /// The config cannot be turned into a request (bad URL, unusable header value).
    Unusable(String),
}

impl Outcome {
    /// The attempt log's `errorClass`.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Success(_) => "success",
            Outcome::Gone | Outcome::Status { .. } => "http_status",
            Outcome::Redirect(_) => "redirect",
            Outcome::Timeout => "timeout",
            Outcome::Connect(_) => "connect",
            Outcome::Refused(_) => "refused",
            Outcome::Unusable(_) => "invalid_url",
        }
    }

    /// A sentence for the attempt log and the delivery's `lastError`.
    pub fn describe(&self, timeout: Duration) -> Option<String> {
        match self {
            Outcome::Success(_) => None,
            Outcome::Gone => Some("the receiver answered 410 Gone".to_string()),
            Outcome::Redirect(status) => Some(format!(
                "the receiver answered {status} (redirects are not followed)"
            )),
            Outcome::Status { status, .. } => Some(format!("the receiver answered {status}")),
            Outcome::Timeout => Some(format!("no answer within {}s", timeout.as_secs_f64())),
            Outcome::Connect(reason) => Some(format!("connection failed: {reason}")),
            Outcome::Refused(reason) => {
                Some(format!("destination refused by the SSRF policy: {reason}"))
            }
            Outcome::Unusable(reason) => {
                Some(format!("the config cannot be delivered to: {reason}"))
            }
        }
    }

    /// Whether the attempt says something about the origin's health: `Some(false)` for the
    /// failures that open its circuit (connection errors, timeouts, 429, 5xx).
    pub fn origin_healthy(&self) -> Option<bool> {
        match self {
            Outcome::Timeout | Outcome::Connect(_) => Some(false),
            Outcome::Status { status, .. } if *status == 429 || *status >= 500 => Some(false),
            Outcome::Refused(_) | Outcome::Unusable(_) => None,
            _ => Some(true),
        }
    }
}

/// What happens to the delivery next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    RetryIn(Duration),
    Dead(String),
    /// 410 Gone: dead, and its config disabled.
    Disable(String),
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub schedule: Vec<Duration>,
    pub jitter: f64,
    pub throttle_backoff: Duration,
    pub timeout: Duration,
    /// How long a config may fail continuously before it is suspended (zero: never).
    pub disable_after: Duration,
}

impl RetryPolicy {
    pub fn from_settings(settings: &DeliverySettings) -> RetryPolicy {
        RetryPolicy {
            schedule: settings.retry_schedule.iter().map(|d| d.0).collect(),
            jitter: settings.jitter,
            throttle_backoff: settings.throttle_backoff.0,
            timeout: settings.timeout.0,
            disable_after: settings.disable_after.0,
        }
    }

    /// Decides after attempt number `attempt` (1-based) of a delivery. A manual replay gets
    /// exactly one attempt.
    pub fn decide(&self, attempt: u32, manual: bool, outcome: &Outcome) -> Decision {
        let error = outcome.describe(self.timeout).unwrap_or_default();
        match outcome {
            Outcome::Success(_) => return Decision::Delivered,
            Outcome::Gone => return Decision::Disable(error),
            Outcome::Refused(_) | Outcome::Unusable(_) => return Decision::Dead(error),
            _ => {}
        }
        if manual {
            return Decision::Dead(format!("{error}; a manual replay is attempted once"));
        }
        let Some(scheduled) = self.schedule.get(attempt.saturating_sub(1) as usize) else {
            return Decision::Dead(format!("{error}; gave up after {attempt} attempts"));
        };
        let scheduled = jittered(*scheduled, self.jitter);
        let mut delay = match outcome {
            Outcome::Status {
                retry_after: Some(asked),
                ..
            } => (*asked).clamp(scheduled, scheduled * 10),
            _ => scheduled,
        };
        let throttled = matches!(
            outcome,
            Outcome::Timeout | Outcome::Status { status: 429, .. }
        );
        if throttled {
            delay = delay.max(self.throttle_backoff);
        }
        Decision::RetryIn(delay)
    }
}

/// `delay` scaled by a random factor in [1 - jitter, 1 + jitter].
fn jittered(delay: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return delay;
    }
    let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
    delay.mul_f64(factor.max(0.0))
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(365 * 24 * 3600)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            jitter: 0.0,
            throttle_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(15),
            disable_after: Duration::ZERO,
        }
    }

    fn status(status: u16) -> Outcome {
        Outcome::Status {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn failures_follow_the_schedule_then_die() {
        let p = policy();
        assert_eq!(
            p.decide(1, false, &status(500)),
            Decision::RetryIn(Duration::from_secs(1))
        );
        assert_eq!(
            p.decide(2, false, &status(500)),
            Decision::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            p.decide(3, false, &Outcome::Connect("reset".into())),
            Decision::RetryIn(Duration::from_secs(30))
        );
        assert!(
            matches!(p.decide(4, false, &status(500)), Decision::Dead(e) if e.contains("gave up after 4 attempts"))
        );
    }

    #[test]
    fn success_gone_redirect_refused_and_manual_replays() {
        let p = policy();
        assert_eq!(
            p.decide(1, false, &Outcome::Success(204)),
            Decision::Delivered
        );
        assert!(matches!(
            p.decide(1, false, &Outcome::Gone),
            Decision::Disable(_)
        ));
        assert!(matches!(
            p.decide(1, false, &Outcome::Redirect(302)),
            Decision::RetryIn(_)
        ));
        assert!(matches!(
            p.decide(1, false, &Outcome::Refused("loopback".into())),
            Decision::Dead(_)
        ));
        assert!(matches!(p.decide(1, true, &status(500)), Decision::Dead(e) if e.contains("once")));
        assert_eq!(
            p.decide(1, true, &Outcome::Success(200)),
            Decision::Delivered
        );
    }

    #[test]
    fn retry_after_is_clamped_to_between_one_and_ten_times_the_schedule() {
        let p = policy();
        let asked = |secs| Outcome::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            p.decide(1, false, &asked(3)),
            Decision::RetryIn(Duration::from_secs(3))
        );
        assert_eq!(
            p.decide(1, false, &asked(0)),
            Decision::RetryIn(Duration::from_secs(1))
        );
        assert_eq!(
            p.decide(1, false, &asked(3600)),
            Decision::RetryIn(Duration::from_secs(10))
        );
    }

    #[test]
    fn throttling_and_timeouts_wait_at_least_the_throttle_backoff() {
        let p = policy();
        assert_eq!(
            p.decide(1, false, &status(429)),
            Decision::RetryIn(Duration::from_secs(30))
        );
        assert_eq!(
            p.decide(1, false, &Outcome::Timeout),
            Decision::RetryIn(Duration::from_secs(30))
        );
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let p = RetryPolicy {
            jitter: 0.2,
            ..policy()
        };
        for _ in 0..1000 {
            let Decision::RetryIn(delay) = p.decide(2, false, &status(500)) else {
                panic!()
            };
            assert!(
                delay >= Duration::from_secs(4) && delay <= Duration::from_secs(6),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_unreachable_or_overloaded_origins_count_against_the_circuit() {
        assert_eq!(Outcome::Timeout.origin_healthy(), Some(false));
        assert_eq!(status(503).origin_healthy(), Some(false));
        assert_eq!(status(429).origin_healthy(), Some(false));
        assert_eq!(status(404).origin_healthy(), Some(true));
        assert_eq!(Outcome::Success(200).origin_healthy(), Some(true));
        assert_eq!(Outcome::Refused("x".into()).origin_healthy(), None);
    }
}
