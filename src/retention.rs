//! Retention: purges finished tasks, with everything recorded for them, once they have been
//! finished for `retention.finished_tasks`.
//!
//! A sweep runs every tenth of the retention period (at least every second, at most every ten
//! minutes). It works in bounded store steps, each its own small write, so intakes never wait
//! behind a large purge. A task whose deliveries are still pending (a receiver that is down,
//! retries left) is kept until they are delivered or dead. In gateway mode, an intake (the
//! subscription the agent pushes a task to) goes once every task it carried is purged.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{PurgeStep, Store, StoreError, now_ms};

/// How often a sweep runs for a retention period.
pub fn sweep_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Runs sweeps until `stop`.
pub fn start(
    store: Arc<dyn Store>,
    retention: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(sweep_interval(retention));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut indexed = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            let swept = async {
                if !indexed {
                    index_earlier_tasks(store.as_ref()).await?;
                    indexed = true;
                }
                // Tasks finished, and intakes created, more than `retention` ago.
                let before_ms = now_ms().saturating_sub(retention.as_millis() as u64);
                let purged =
                    in_steps(&stop, |from| store.purge_finished_tasks(before_ms, from)).await?;
                // Intakes whose tasks are all purged: nothing is left for their agent to push.
                let intakes =
                    in_steps(&stop, |from| store.purge_gateway_intakes(before_ms, from)).await?;
                if intakes > 0 {
                    tracing::info!(intakes, "removed gateway intakes whose tasks were purged");
                }
                Ok::<_, StoreError>(purged)
            };
            match swept.await {
                Ok(0) => {}
                Ok(purged) => {
                    metrics.tasks_purged(purged);
                    tracing::info!(purged, "purged finished tasks past retention");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed; the next one retries")
                }
            }
        }
    })
}

/// Adds tasks that finished before this version of the store kept its index of finished tasks.
async fn index_earlier_tasks(store: &dyn Store) -> Result<(), StoreError> {
    let mut from = Some(Vec::new());
    while let Some(start) = from {
        from = store.index_finished_tasks(start).await?;
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
