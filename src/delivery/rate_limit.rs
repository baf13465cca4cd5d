//! The throughput cap per origin (`delivery.max_rate_per_origin`): a token bucket, beside
//! the cap on requests open at once. Pure, with the time passed in, like the scheduler's
//! machine that owns one per origin.
//!
//! Nodes sharing a store each take an equal share of the rate (the rate divided by the nodes
//! alive, `cluster.rs`), so together they stay within the cap without a round trip per
//! request; docs/ARCHITECTURE.md states the tolerance.

/// A bucket refilled at `rate` tokens per second, holding at most a tenth of a second's worth
/// (at least one): a quiet origin gets a short burst, never a second's worth at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_ms: f64,
    capacity: f64,
    tokens: f64,
    updated_ms: u64,
}

impl TokenBucket {
    /// A full bucket for `rate` requests per second (> 0).
    pub fn new(rate: f64, now_ms: u64) -> TokenBucket {
        let capacity = capacity_for(rate);
        TokenBucket {
            rate_per_ms: rate / 1000.0,
            capacity,
            tokens: capacity,
            updated_ms: now_ms,
        }
    }

    /// Changes the rate (a node's share changed), keeping the tokens it has up to the new
    /// capacity.
    pub fn set_rate(&mut self, rate: f64, now_ms: u64) {
        self.refill(now_ms);
        self.rate_per_ms = rate / 1000.0;
        self.capacity = capacity_for(rate);
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.rate_per_ms).min(self.capacity);
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Whether a token is there at `now`: `Ok`, or `Err(when)` with the time (ms) the next
    /// one will be.
    pub fn ready(&mut self, now_ms: u64) -> Result<(), u64> {
        self.refill(now_ms);
        if self.tokens + ROUNDING >= 1.0 {
            return Ok(());
        }
        let missing_ms = ((1.0 - ROUNDING - self.tokens) / self.rate_per_ms).ceil() as u64;
        Err(now_ms + missing_ms.max(1))
    }

    /// Uses the token `ready` found.
    pub fn spend(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    /// Whole tokens there at `now`.
    pub fn available(&mut self, now_ms: u64) -> usize {
        self.refill(now_ms);
        (self.tokens + ROUNDING) as usize
    }

    /// When the bucket is full again, if nothing is taken meanwhile.
    pub fn full_at(&self) -> u64 {
        let missing = self.capacity - self.tokens;
        self.updated_ms + (missing / self.rate_per_ms).ceil() as u64
    }

    #[cfg(test)]
    fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        self.ready(now_ms)?;
        self.spend();
        Ok(())
    }
}

/// Float rounding of the refill: a token this close to whole counts as whole, so that the
/// moment `ready` names finds the token there.
const ROUNDING: f64 = 1e-9;

fn capacity_for(rate: f64) -> f64 {
    (rate / 10.0).floor().max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests taken by taking all there is at every millisecond for `ms` milliseconds.
    fn taken(bucket: &mut TokenBucket, from: u64, ms: u64) -> usize {
        (from..from + ms)
            .map(|t| std::iter::from_fn(|| bucket.take(t).ok()).count())
            .sum()
    }

    #[test]
    fn a_busy_origin_gets_its_rate_and_a_quiet_one_a_short_burst() {
        let mut bucket = TokenBucket::new(100.0, 0);
        // A tenth of a second's burst, then 100 a second.
        assert_eq!(taken(&mut bucket, 0, 1000), 10 + 99);
        assert_eq!(taken(&mut bucket, 1000, 1000), 100);
        // Quiet for a minute: still only the burst is saved up.
        assert_eq!(taken(&mut bucket, 61_000, 1), 10);
    }

    #[test]
    fn an_empty_bucket_says_when_the_next_token_comes() {
        let mut bucket = TokenBucket::new(2.0, 0);
        assert_eq!(bucket.take(0), Ok(()));
        assert_eq!(bucket.take(0), Err(500));
        assert_eq!(bucket.take(499), Err(500));
        assert_eq!(bucket.take(500), Ok(()));
    }

    #[test]
    fn a_smaller_share_caps_the_saved_tokens() {
        let mut bucket = TokenBucket::new(1000.0, 0);
        bucket.set_rate(100.0, 0);
        assert_eq!(taken(&mut bucket, 0, 1), 10);
        assert_eq!(taken(&mut bucket, 1, 999), 99);
    }
}
