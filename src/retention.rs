//! Retention: purges finished tasks, with everything recorded for them, once they have been
//! finished for `retention.finished_tasks`, accepted inbound events once they are older than
//! `retention.inbound_events`, and the event API's idempotency keys once they are older than
//! `retention.idempotency_keys`.
//!
//! A sweep runs every tenth of the shorter period (at least every second, at most every ten
//! minutes). It works in bounded store steps, each its own small write, so intakes never wait
//! behind a large purge. A task whose deliveries are still pending (a receiver that is down,
//! retries left) is kept until they are delivered or dead. In gateway mode, an intake (the
//! subscription the agent pushes a task to) goes once every task it carried is purged.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RetentionSettings;
use crate::metrics::Metrics;
use crate::store::{PurgeStep, Store, StoreError, now_ms};

/// How often a sweep runs for a retention period.
pub fn sweep_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Runs sweeps until `stop`.
pub fn start(
    store: Arc<dyn Store>,
    settings: RetentionSettings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (tasks, inbound_events, keys) = (
        settings.finished_tasks.0,
        settings.inbound_events.0,
        settings.idempotency_keys.0,
    );
    tokio::spawn(async move {
        let shortest = tasks.min(inbound_events).min(keys);
        let mut every = tokio::time::interval(sweep_interval(shortest));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut indexed = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            // Each kind of record on its own: one that fails leaves the others to go on.
            if !indexed {
                match index_earlier_records(store.as_ref()).await {
                    Ok(()) => indexed = true,
                    Err(e) => failed("indexing earlier records", &e),
                }
            }
            // Tasks finished, and intakes created, more than `tasks` ago.
            let before_ms = now_ms().saturating_sub(tasks.as_millis() as u64);
            match in_steps(&stop, |from| store.purge_finished_tasks(before_ms, from)).await {
                Ok(0) => {}
                Ok(purged) => {
                    metrics.tasks_purged(purged);
                    tracing::info!(purged, "retention purged finished tasks");
                }
                Err(e) => failed("purging finished tasks", &e),
            }
            // Intakes whose tasks are all purged: nothing is left for their agent to push.
            match in_steps(&stop, |from| store.purge_gateway_intakes(before_ms, from)).await {
                Ok(0) => {}
                Ok(intakes) => tracing::info!(intakes, "retention removed gateway intakes"),
                Err(e) => failed("removing gateway intakes", &e),
            }
            let before_ms = now_ms().saturating_sub(inbound_events.as_millis() as u64);
            match in_steps(&stop, |from| store.purge_inbound_events(before_ms, from)).await {
                Ok(0) => {}
                Ok(events) => {
                    metrics.inbound_events_purged(events);
                    tracing::info!(events, "retention removed inbound events");
                }
                Err(e) => failed("removing inbound events", &e),
            }
            let before_ms = now_ms().saturating_sub(keys.as_millis() as u64);
            match in_steps(&stop, |from| store.purge_idempotency_keys(before_ms, from)).await {
                Ok(0) => {}
                Ok(keys) => {
                    metrics.idempotency_keys_purged(keys);
                    tracing::info!(keys, "retention removed idempotency keys");
                }
                Err(e) => failed("removing idempotency keys", &e),
            }
        }
    })
}

fn failed(what: &str, error: &StoreError) {
    tracing::warn!(error = %error, "retention: {what} failed; the next sweep retries");
}

/// Adds the tasks that finished, and the subscriptions stored, before this version of the
/// store kept its index of each.
async fn index_earlier_records(store: &dyn Store) -> Result<(), StoreError> {
    let mut from = Some(Vec::new());
    while let Some(start) = from {
        from = store.index_finished_tasks(start).await?;
    }
    let mut from = Some(Vec::new());
    while let Some(start) = from {
        from = store.index_subscriptions(start).await?;
    }
    Ok(())
}

/// Runs bounded store steps from the start until none is left (or until `stop`); how many
/// records they purged.
async fn in_steps<F, Fut>(stop: &CancellationToken, mut step: F) -> Result<u64, StoreError>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<PurgeStep, StoreError>>,
{
    let mut purged = 0;
    let mut from = Some(Vec::new());
    while let Some(start) = from {
        if stop.is_cancelled() {
            break;
        }
        let done = step(start).await?;
        purged += done.purged;
        from = done.next;
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_run_every_tenth_of_the_period_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(7 * 24 * 3600)),
            Duration::from_secs(600)
        );
    }
}
