//! Retention inside the store: which records a finished task owns, and removing them in
//! bounded steps so that no write transaction grows with the size of a task or of the store.
//!
//! A task is finished when its folded state is terminal. `Table::FinishedTasks` lists finished
//! tasks by when they finished, so a purge reads only the tasks that are due, never the whole
//! store. An entry whose task changed since (a later event) is stale: the purge drops it, and
//! the task's newer entry decides.

use serde::Deserialize;

use super::finished::finished_key;
use super::inbound::delete_subscription_in;
use super::{Backend, TableStore};
use crate::store::keys::{parse_text_key, text_key};
use crate::store::sealing::Sealing;
use crate::store::tables::*;
use crate::store::{StoreError, SubscriptionRecord};

/// Finished tasks looked at per purge step.
const TASKS_PER_STEP: usize = 32;
/// Records removed per purge step at most; a task with more is removed over several steps.
const RECORDS_PER_STEP: usize = 2_000;
/// Subscriptions looked at per step of purging gateway intakes or inbound events.
const SUBSCRIPTIONS_PER_STEP: usize = 64;
/// Accepted inbound events removed per step at most.
const INBOUND_EVENTS_PER_STEP: usize = 2_000;
/// Idempotency keys removed per step at most.
const IDEMPOTENCY_KEYS_PER_STEP: usize = 2_000;
/// Tasks read per step while indexing the tasks that finished before the index existed.
const INDEX_PER_STEP: usize = 512;
/// The key that marks the index as complete (it sorts before every entry).
const INDEX_COMPLETE: &[u8] = &[];

/// What one purge step did, and where the next one starts (`None`: nothing is left to look at).
#[derive(Debug, Default)]
pub struct PurgeStep {
    pub purged: u64,
    pub next: Option<Vec<u8>>,
}

/// The field of an accepted inbound event that retention reads.
#[derive(Deserialize)]
struct ReceivedStamp {
    received_at_ms: u64,
}

/// The field of an idempotency key's record that retention reads.
#[derive(Deserialize)]
struct IdempotencyStamp {
    recorded_at_ms: u64,
}

/// The fields of a stored task that retention reads (the folded task itself is skipped).
#[derive(Deserialize)]
struct TaskStamp {
    terminal: bool,
    updated_at_ms: u64,
}

/// The smallest key greater than `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// Adds up to a step's worth of finished tasks, from task key `from` on, to the index; where
/// the next step starts, or `None` once every task is indexed (which is then recorded).
pub fn index_step(tables: &dyn TablesMut, from: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    if tables.get(Table::FinishedTasks, INDEX_COMPLETE)?.is_some() {
        return Ok(None);
    }
    let mut finished = Vec::new();
    let mut last = None;
    let mut seen = 0;
    tables.scan(Table::Tasks, &[], from, &mut |key, value| {
        seen += 1;
        let stamp: TaskStamp = decode(value)?;
        if stamp.terminal {
            finished.push(finished_key(stamp.updated_at_ms, key));
        }
        last = Some(key.to_vec());
        Ok(seen < INDEX_PER_STEP)
    })?;
    for key in finished {
        tables.insert(Table::FinishedTasks, &key, &[1])?;
    }
    match last {
        Some(last) if seen == INDEX_PER_STEP => Ok(Some(after(&last))),
        _ => {
            tables.insert(Table::FinishedTasks, INDEX_COMPLETE, &[1])?;
            Ok(None)
        }
    }
}

/// Purges, from index key `from` on, finished tasks that finished before `finished_before_ms`
/// and have no pending delivery, with everything they own. Bounded by `TASKS_PER_STEP` and
/// `RECORDS_PER_STEP`.
pub fn purge_step(
    tables: &dyn TablesMut,
    finished_before_ms: u64,
    from: &[u8],
) -> Result<PurgeStep, StoreError> {
    let start = if from.is_empty() {
        after(INDEX_COMPLETE)
    } else {
        from.to_vec()
    };
    let mut due = Vec::new();
    tables.scan(Table::FinishedTasks, &[], &start, &mut |key, _| {
        let Some(at) = key.first_chunk::<8>() else {
            return Ok(true);
        };
        if u64::from_be_bytes(*at) >= finished_before_ms {
            return Ok(false);
        }
        due.push(key.to_vec());
        Ok(due.len() < TASKS_PER_STEP)
    })?;
    let mut step = PurgeStep::default();
    let mut budget = RECORDS_PER_STEP;
    for key in &due {
        let (at, task_key) = key.split_at(8);
        let stamp: Option<TaskStamp> = get_json(tables, Table::Tasks, task_key)?;
        let current = stamp.is_some_and(|s| s.terminal && s.updated_at_ms.to_be_bytes() == at);
        if !current {
            tables.remove(Table::FinishedTasks, key)?;
            continue;
        }
        if !first_under(tables, Table::Pending, task_key, 1)?.is_empty() {
            // Still being delivered: a later sweep purges it once its deliveries are done.
            continue;
        }
        if !purge_task(tables, task_key, &mut budget)? {
            step.next = Some(key.clone());
            return Ok(step);
        }
        tables.remove(Table::FinishedTasks, key)?;
        step.purged += 1;
    }
    if due.len() == TASKS_PER_STEP {
        step.next = due.last().map(|key| after(key));
    }
    Ok(step)
}

/// Removes, from subscription key `from` on, gateway intakes created before
/// `created_before_ms` whose tasks are all gone (no task record, no push config): retention
/// purged them, so the agent has nothing left to push there. An intake that has carried no
/// task yet is kept: its agent may still push.
pub fn purge_intakes_step(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    created_before_ms: u64,
    from: &[u8],
) -> Result<PurgeStep, StoreError> {
    let mut seen = Vec::new();
    tables.scan(Table::Subscriptions, &[], from, &mut |key, value| {
        seen.push((key.to_vec(), value.to_vec()));
        Ok(seen.len() < SUBSCRIPTIONS_PER_STEP)
    })?;
    let mut step = PurgeStep::default();
    for (_, value) in &seen {
        let subscription: SubscriptionRecord = decode_record(sealing, Table::Subscriptions, value)?;
        let Some(intake) = &subscription.gateway else {
            continue;
        };
        if subscription.created_at_ms >= created_before_ms {
            continue;
        }
        let mut tasks: Vec<String> = subscription.task_id.iter().cloned().collect();
        let carried = collect_prefix(tables, Table::InboundTasks, &text_key(&[&subscription.id]))?;
        tasks.extend(
            carried
                .iter()
                .filter_map(|(key, _)| parse_text_key(key)?.pop()),
        );
        if tasks.is_empty() {
            continue;
        }
        let mut live = false;
        for task in &tasks {
            let task_key = text_key(&[&intake.tenant, task]);
            if tables.get(Table::Tasks, &task_key)?.is_some()
                || !first_under(tables, Table::Configs, &task_key, 1)?.is_empty()
            {
                live = true;
                break;
            }
        }
        if !live {
            delete_subscription_in(sealing, tables, &subscription.id)?;
            step.purged += 1;
        }
    }
    if seen.len() == SUBSCRIPTIONS_PER_STEP {
        step.next = seen.last().map(|(key, _)| after(key));
    }
    Ok(step)
}

/// Removes, from subscription key `from` on, accepted inbound events received before
/// `received_before_ms`. A subscription numbers its events in arrival order, so its oldest
/// come first and the scan stops at the first one to keep.
pub fn purge_inbound_events_step(
    tables: &dyn TablesMut,
    received_before_ms: u64,
    from: &[u8],
) -> Result<PurgeStep, StoreError> {
    let mut subscriptions = Vec::new();
    tables.scan(Table::Subscriptions, &[], from, &mut |key, _| {
        subscriptions.push(key.to_vec());
        Ok(subscriptions.len() < SUBSCRIPTIONS_PER_STEP)
    })?;
    let mut step = PurgeStep::default();
    let mut budget = INBOUND_EVENTS_PER_STEP;
    for subscription in &subscriptions {
        let prefix = text_key(&[&String::from_utf8_lossy(subscription)]);
        let mut expired = Vec::new();
        tables.scan(Table::InboundEvents, &prefix, &prefix, &mut |key, value| {
            let stamp: ReceivedStamp = decode(value)?;
            if stamp.received_at_ms >= received_before_ms || expired.len() == budget {
                return Ok(false);
            }
            expired.push(key.to_vec());
            Ok(true)
        })?;
        for key in &expired {
            tables.remove(Table::InboundEvents, key)?;
        }
        step.purged += expired.len() as u64;
        budget -= expired.len();
        if budget == 0 {
            // This subscription may have more: the next step starts with it again.
            step.next = Some(subscription.clone());
            return Ok(step);
        }
    }
    if subscriptions.len() == SUBSCRIPTIONS_PER_STEP {
        step.next = subscriptions.last().map(|key| after(key));
    }
    Ok(step)
}

/// Removes idempotency keys recorded before `recorded_before_ms`, oldest first, from
/// `Table::IdempotencyByTime` key `from` on. A key used again after it expired has a newer
/// record, which stays.
pub fn purge_idempotency_keys_step(
    tables: &dyn TablesMut,
    recorded_before_ms: u64,
    from: &[u8],
) -> Result<PurgeStep, StoreError> {
    let mut expired = Vec::new();
    tables.scan(Table::IdempotencyByTime, &[], from, &mut |key, _| {
        let Some(at) = key.first_chunk::<8>().map(|at| u64::from_be_bytes(*at)) else {
            return Err(StoreError::Corrupt(
                "an idempotency key's time entry is shorter than its time".to_string(),
            ));
        };
        if at >= recorded_before_ms || expired.len() == IDEMPOTENCY_KEYS_PER_STEP {
            return Ok(false);
        }
        expired.push((at, key.to_vec()));
        Ok(true)
    })?;
    for (at, by_time) in &expired {
        tables.remove(Table::IdempotencyByTime, by_time)?;
        let key = &by_time[8..];
        let recorded: Option<IdempotencyStamp> = get_json(tables, Table::IdempotencyKeys, key)?;
        if recorded.is_some_and(|r| r.recorded_at_ms == *at) {
            tables.remove(Table::IdempotencyKeys, key)?;
        }
    }
    Ok(PurgeStep {
        purged: expired.len() as u64,
        next: (expired.len() == IDEMPOTENCY_KEYS_PER_STEP)
            .then(|| expired.last().map(|(_, key)| after(key)))
            .flatten(),
    })
}

/// Removes a task's deliveries (with their attempt logs), events, configs and the task itself,
/// spending `budget` records; whether the task is gone (else the budget ran out first).
fn purge_task(
    tables: &dyn TablesMut,
    task_key: &[u8],
    budget: &mut usize,
) -> Result<bool, StoreError> {
    for (lane_key, delivery_id) in first_under(tables, Table::Lanes, task_key, *budget)? {
        let removed = super::remove_delivery(tables, &lane_key, &delivery_id)?;
        *budget = budget.saturating_sub(removed);
        if *budget == 0 {
            return Ok(false);
        }
    }
    for table in [Table::Events, Table::Configs, Table::FailingStreaks] {
        for (key, _) in first_under(tables, table, task_key, *budget)? {
            tables.remove(table, &key)?;
            *budget -= 1;
        }
        if *budget == 0 {
            return Ok(false);
        }
    }
    tables.remove(Table::Tasks, task_key)?;
    tables.remove(Table::Owners, task_key)?;
    *budget -= 1;
    Ok(true)
}

#[async_trait::async_trait]
pub trait RetentionStore: Send + Sync {
    /// One bounded step of retention: purges finished tasks that finished before
    /// `finished_before_ms` and have no pending delivery, with their events, configs,
    /// deliveries and attempt logs. Start with an empty `from`, go on from each step's `next`
    /// until it is `None`.
    async fn purge_finished_tasks(
        &self,
        finished_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError>;
    /// One bounded step of removing gateway intakes (subscriptions the gateway made for the
    /// agent to push to) created before `created_before_ms` whose tasks are all gone: purged
    /// by retention, with nothing left for the agent to push. Cursor as above.
    async fn purge_gateway_intakes(
        &self,
        created_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError>;
    /// One bounded step of removing accepted inbound events received before
    /// `received_before_ms`, every subscription's. Cursor as above.
    async fn purge_inbound_events(
        &self,
        received_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError>;
    /// One bounded step of removing idempotency keys recorded before `recorded_before_ms`.
    /// Cursor as above.
    async fn purge_idempotency_keys(
        &self,
        recorded_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError>;
    /// One bounded step of adding tasks that finished before retention's index existed to it.
    /// Start with an empty `from`, go on from each returned key until `None`.
    async fn index_finished_tasks(&self, from: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> RetentionStore for TableStore<B> {
    async fn purge_finished_tasks(
        &self,
        finished_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError> {
        self.write_lingering(move |tables| purge_step(tables, finished_before_ms, &from))
            .await
    }

    async fn purge_gateway_intakes(
        &self,
        created_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError> {
        let sealing = self.sealing.clone();
        self.write_lingering(move |tables| {
            purge_intakes_step(&sealing, tables, created_before_ms, &from)
        })
        .await
    }

    async fn purge_inbound_events(
        &self,
        received_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError> {
        self.write_lingering(move |tables| {
            purge_inbound_events_step(tables, received_before_ms, &from)
        })
        .await
    }

    async fn purge_idempotency_keys(
        &self,
        recorded_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError> {
        self.write_lingering(move |tables| {
            purge_idempotency_keys_step(tables, recorded_before_ms, &from)
        })
        .await
    }

    async fn index_finished_tasks(&self, from: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        self.write_lingering(move |tables| index_step(tables, &from))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::finished::track_finished;
    use super::*;
    use crate::store::keys::with_sequence;
    use crate::store::memory::MemoryTables;

    fn task(tables: &MemoryTables, id: &str, terminal: bool, at: u64, deliveries: u64) -> Vec<u8> {
        let key = text_key(&["", id]);
        let record = serde_json::json!({"terminal": terminal, "updated_at_ms": at});
        tables
            .insert(Table::Tasks, &key, &encode(&record).unwrap())
            .unwrap();
        let config = text_key(&["", id, "c"]);
        tables.insert(Table::Configs, &config, b"{}").unwrap();
        for sequence in 1..=deliveries {
            let delivery = format!("{id}-{sequence}");
            tables
                .insert(Table::Events, &with_sequence(key.clone(), sequence), b"{}")
                .unwrap();
            tables
                .insert(
                    Table::Lanes,
                    &with_sequence(config.clone(), sequence),
                    delivery.as_bytes(),
                )
                .unwrap();
            tables
                .insert(Table::Deliveries, delivery.as_bytes(), b"{}")
                .unwrap();
            let mut attempt = text_key(&[&delivery]);
            attempt.extend_from_slice(&1u32.to_be_bytes());
            tables.insert(Table::Attempts, &attempt, b"{}").unwrap();
        }
        key
    }

    fn purge_all(tables: &MemoryTables, before: u64) -> (u64, usize) {
        let (mut purged, mut steps) = (0, 0);
        let mut from = Some(Vec::new());
        while let Some(start) = from {
            let step = purge_step(tables, before, &start).unwrap();
            purged += step.purged;
            steps += 1;
            from = step.next;
        }
        (purged, steps)
    }

    #[test]
    fn tasks_finished_before_the_index_existed_are_indexed_in_steps_then_purged() {
        let tables = MemoryTables::default();
        for i in 0..1000 {
            task(&tables, &format!("t{i:04}"), i % 2 == 0, 100 + i, 1);
        }
        let mut steps = 0;
        let mut from = Some(Vec::new());
        while let Some(start) = from {
            from = index_step(&tables, &start).unwrap();
            steps += 1;
        }
        assert_eq!(steps, 2, "512 tasks per step");
        assert_eq!(
            tables.count(Table::FinishedTasks),
            500 + 1,
            "finished ones and the mark"
        );
        assert_eq!(index_step(&tables, &[]).unwrap(), None, "indexed once");

        // Finished before 600: tasks 0, 2, …, 498.
        let (purged, _) = purge_all(&tables, 600);
        assert_eq!(purged, 250);
        assert_eq!(tables.count(Table::Tasks), 750);
        assert_eq!(tables.count(Table::Deliveries), 750);
        assert_eq!(tables.count(Table::Attempts), 750);
        assert!(
            tables
                .get(Table::Tasks, &text_key(&["", "t0498"]))
                .unwrap()
                .is_none()
        );
        assert!(
            tables
                .get(Table::Tasks, &text_key(&["", "t0500"]))
                .unwrap()
                .is_some()
        );
        assert!(
            tables
                .get(Table::Tasks, &text_key(&["", "t0001"]))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_task_larger_than_a_step_is_purged_over_several_steps() {
        let tables = MemoryTables::default();
        let key = task(&tables, "big", true, 10, 1500);
        track_finished(&tables, &key, None, Some(10)).unwrap();
        let first = purge_step(&tables, 20, &[]).unwrap();
        assert_eq!(first.purged, 0, "the first step runs out of budget");
        assert_eq!(
            first.next.as_deref(),
            Some(&finished_key(10, &key)[..]),
            "and goes on there"
        );
        assert!(
            tables.count(Table::Deliveries) < 1500,
            "having removed part of the task"
        );
        let (purged, steps) = purge_all(&tables, 20);
        assert_eq!(purged, 1);
        assert!(steps >= 2, "{steps} steps");
        for table in [
            Table::Tasks,
            Table::Events,
            Table::Configs,
            Table::Lanes,
            Table::Deliveries,
            Table::Attempts,
            Table::FinishedTasks,
        ] {
            assert_eq!(tables.count(table), 0, "{}", table.name());
        }
    }

    #[test]
    fn a_task_that_changed_after_it_finished_is_judged_by_its_newest_version() {
        let tables = MemoryTables::default();
        let key = task(&tables, "again", true, 10, 1);
        track_finished(&tables, &key, None, Some(10)).unwrap();
        // A later event: finished again at 50 (the index moves with it).
        tables
            .insert(
                Table::Tasks,
                &key,
                &encode(&serde_json::json!({"terminal": true, "updated_at_ms": 50})).unwrap(),
            )
            .unwrap();
        track_finished(&tables, &key, Some(10), Some(50)).unwrap();
        assert_eq!(purge_all(&tables, 20).0, 0, "finished at 50, not at 10");
        // A stale entry (as an index built concurrently could leave) is dropped, not obeyed.
        tables
            .insert(Table::FinishedTasks, &finished_key(10, &key), &[1])
            .unwrap();
        assert_eq!(purge_all(&tables, 20).0, 0);
        assert_eq!(tables.count(Table::FinishedTasks), 1);
        assert_eq!(purge_all(&tables, 60).0, 1);
        // Pending deliveries keep a finished task.
        let key = task(&tables, "pending", true, 70, 1);
        track_finished(&tables, &key, None, Some(70)).unwrap();
        tables
            .insert(
                Table::Pending,
                &with_sequence(text_key(&["", "pending", "c"]), 1),
                b"x",
            )
            .unwrap();
        assert_eq!(purge_all(&tables, 100).0, 0);
        tables
            .remove(
                Table::Pending,
                &with_sequence(text_key(&["", "pending", "c"]), 1),
            )
            .unwrap();
        assert_eq!(purge_all(&tables, 100).0, 1);
    }

    #[test]
    fn old_inbound_events_go_in_bounded_steps_and_newer_ones_stay() {
        let tables = MemoryTables::default();
        for id in ["a", "b"] {
            tables
                .insert(Table::Subscriptions, id.as_bytes(), b"{}")
                .unwrap();
            for sequence in 1..=2_500u64 {
                let record = serde_json::json!({"received_at_ms": sequence});
                tables
                    .insert(
                        Table::InboundEvents,
                        &with_sequence(text_key(&[id]), sequence),
                        &encode(&record).unwrap(),
                    )
                    .unwrap();
            }
        }
        // Received before 2,001: 2,000 per subscription.
        let first = purge_inbound_events_step(&tables, 2_001, &[]).unwrap();
        assert_eq!(first.purged, 2_000);
        assert_eq!(first.next.as_deref(), Some(&b"a"[..]), "a may have more");
        let second = purge_inbound_events_step(&tables, 2_001, b"a").unwrap();
        assert_eq!(second.purged, 2_000, "a had none left; b had 2,000");
        let third = purge_inbound_events_step(&tables, 2_001, &second.next.unwrap()).unwrap();
        assert_eq!((third.purged, third.next), (0, None));
        assert_eq!(tables.count(Table::InboundEvents), 2 * 500);
        let oldest_kept = with_sequence(text_key(&["b"]), 2_001);
        assert!(
            tables
                .get(Table::InboundEvents, &oldest_kept)
                .unwrap()
                .is_some()
        );
    }
}
