//! Publishing: an event, the task folded with it and one delivery per active config, in one
//! transaction; and a task's snapshot for a config created on a running task.

use super::configs::declare_owner;
use super::finished::track_finished;
use super::fresh::Handover;
use super::*;
use crate::a2a::filter::EventChange;

/// Puts a snapshot at the head of a config's lane that has no delivery yet, numbered as the
/// task's newest event: the config's next event follows it in order.
fn deliver_snapshot_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    snapshot: ConfigSnapshot,
) -> Result<SnapshotOutcome, StoreError> {
    let tkey = task_key(&snapshot.tenant, &snapshot.task_id);
    let last_sequence =
        get_json::<TaskRecord>(tables, Table::Tasks, &tkey)?.map_or(0, |t| t.last_sequence);
    let mut outcome = SnapshotOutcome {
        last_sequence,
        pending: None,
    };
    let ckey = config_key(&snapshot.tenant, &snapshot.task_id, &snapshot.config_id);
    let Some(config) = get_record::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)? else {
        return Ok(outcome);
    };
    if config.state != ConfigState::Active
        || !first_under(tables, Table::Lanes, &ckey, 1)?.is_empty()
    {
        return Ok(outcome);
    }
    let now = now_ms();
    let body_v03 = (config.wire_version == crate::a2a::version::WireVersion::V0_3).then(|| {
        crate::a2a::v03::task_from_v1(&serde_json::to_value(&snapshot.task).unwrap_or_default())
            .to_string()
    });
    let lane = LaneId {
        tenant: snapshot.tenant.clone(),
        task_id: snapshot.task_id.clone(),
        config_id: snapshot.config_id.clone(),
    };
    let delivery = DeliveryRecord {
        body_v03,
        snapshot: Some(snapshot.body.get().to_string()),
        snapshot_trace: snapshot.trace,
        ..new_delivery(&lane, last_sequence, Uuid::now_v7().to_string(), now)
    };
    add_pending(tables, &delivery)?;
    outcome.pending = Some(PendingDelivery {
        tenant: snapshot.tenant,
        task_id: snapshot.task_id,
        config_id: snapshot.config_id,
        delivery_id: delivery.id,
        sequence: last_sequence,
        next_attempt_at_ms: now,
        url: config.url,
        again: false,
    });
    Ok(outcome)
}

/// Publishes `new`, or answers it again when its idempotency key is live.
fn publish_keyed(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    mut new: NewEvent,
    now: u64,
    fresh: &mut Handover,
) -> Result<PublishedEvent, StoreError> {
    let Some(claim) = new.idempotency.take() else {
        return publish_one(sealing, tables, new, now, fresh);
    };
    if let Some(first) = idempotency::answered(tables, &new.tenant, &claim)? {
        return Ok(first);
    }
    let published = publish_one(sealing, tables, new, now, fresh)?;
    idempotency::record(tables, &published, claim, now)?;
    Ok(published)
}

/// What publishing an event of a task reads: the task, and its configs (the one made for a
/// forwarded push included, when it exists).
pub(super) fn publish_reads(tenant: &str, task_id: &str) -> [ReadAhead; 2] {
    let task = task_key(tenant, task_id);
    [
        ReadAhead::Key(Table::Tasks, task.clone()),
        ReadAhead::Prefix(Table::Configs, task),
    ]
}

/// Publishes `new`; the context of each delivery it makes is handed over in `fresh`, for its
/// first attempt (`fresh.rs`).
pub(super) fn publish_one(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    new: NewEvent,
    now: u64,
    fresh: &mut Handover,
) -> Result<PublishedEvent, StoreError> {
    let tkey = task_key(&new.tenant, &new.task_id);
    if let Some(owner) = &new.owner {
        if declare_owner(sealing, tables, &tkey, owner, now)? {
            fresh.changed_existing();
        }
    }
    let previous: Option<TaskRecord> = get_json(tables, Table::Tasks, &tkey)?;
    let state_before = previous.as_ref().map(|t| t.task.status.state.clone());
    let sequence = previous.as_ref().map_or(0, |t| t.last_sequence) + 1;
    let was_finished_at = previous
        .as_ref()
        .and_then(|t| t.terminal.then_some(t.updated_at_ms));
    let task = fold::apply(previous.map(|t| t.task), &new.task_id, &new.event);
    let terminal = task.status.state.is_terminal() && task.status.state != TaskState::Unspecified;
    let record = TaskRecord {
        tenant: new.tenant.clone(),
        task_id: new.task_id.clone(),
        task,
        last_sequence: sequence,
        terminal,
        updated_at_ms: now,
    };
    tables.insert(Table::Tasks, &tkey, &encode(&record)?)?;
    track_finished(tables, &tkey, was_finished_at, terminal.then_some(now))?;

    let event_id = Uuid::now_v7().to_string();
    let event = EventRecord {
        event_id: event_id.clone(),
        sequence,
        received_at_ms: now,
        body: new.body,
        trace: new.trace,
        origin_span: new.origin_span,
    };
    tables.insert(
        Table::Events,
        &with_sequence(tkey.clone(), sequence),
        &encode(&event)?,
    )?;

    let mut active = Vec::new();
    tables.scan(Table::Configs, &tkey, &tkey, &mut |_, value| {
        let config: ConfigRecord = decode_record(sealing, Table::Configs, value)?;
        if config.state.takes_events() {
            active.push(config);
        }
        Ok(true)
    })?;
    let change = EventChange::new(
        &new.event,
        state_before,
        record.task.status.state.clone(),
        &event.body,
    );
    let mut created = Vec::with_capacity(active.len());
    // A 0.3 webhook gets the whole task, as it stands after this event, in 0.3 JSON.
    let body_v03 = active
        .iter()
        .any(|config| config.wire_version == crate::a2a::version::WireVersion::V0_3)
        .then(|| {
            crate::a2a::v03::task_from_v1(&serde_json::to_value(&record.task).unwrap_or_default())
                .to_string()
        });
    for config in active {
        let lane = LaneId {
            tenant: new.tenant.clone(),
            task_id: new.task_id.clone(),
            config_id: config.id.clone(),
        };
        if !config.filter.passes(&change) {
            let skipped = DeliveryRecord {
                state: DeliveryState::Skipped,
                skipped_by: Some(config.filter.name().to_string()),
                ..new_delivery(&lane, sequence, event_id.clone(), now)
            };
            add_to_lane(tables, &skipped)?;
            continue;
        }
        let delivery = DeliveryRecord {
            body_v03: (config.wire_version == crate::a2a::version::WireVersion::V0_3)
                .then(|| body_v03.clone())
                .flatten(),
            ..new_delivery(&lane, sequence, event_id.clone(), now)
        };
        add_pending(tables, &delivery)?;
        created.push(CreatedDelivery {
            delivery_id: delivery.id.clone(),
            config_id: config.id.clone(),
            url: config.url.clone(),
        });
        fresh.made(AttemptContext {
            delivery,
            config: Some(config),
            event: event.clone(),
        });
    }
    Ok(PublishedEvent {
        event_id,
        tenant: new.tenant,
        task_id: new.task_id,
        sequence,
        deliveries: created,
        replayed: false,
    })
}

#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    /// Stores every event, its deliveries (one per active config of its task) and the folded
    /// task, atomically: all of them or none. Returns after the write is durable. An event
    /// whose idempotency key is live is answered as the first time, and nothing is stored for
    /// it; a key that stands for another event stores nothing of the request.
    async fn publish(&self, events: Vec<NewEvent>) -> Result<Published, StoreError>;
    async fn get_task(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<TaskRecord>, StoreError>;
    /// Gives one config a snapshot of its task, ahead of every event it has not received yet;
    /// no other config sees it and no sequence number is used up. Nothing is written when the
    /// config is gone or has deliveries already (they carry the task's state).
    async fn deliver_snapshot(
        &self,
        snapshot: ConfigSnapshot,
    ) -> Result<SnapshotOutcome, StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> EventStore for TableStore<B> {
    async fn publish(&self, events: Vec<NewEvent>) -> Result<Published, StoreError> {
        let sealing = self.sealing.clone();
        let reads = events
            .iter()
            .flat_map(|event| publish_reads(&event.tenant, &event.task_id))
            .chain(idempotency::reads(&events))
            .collect();
        let job = move |tables: &dyn TablesMut, fresh: &mut Handover| {
            if let Some(conflict) = idempotency::conflict(tables, &events)? {
                return Ok(Published::KeyConflict(conflict));
            }
            let now = now_ms();
            events
                .into_iter()
                .map(|event| publish_keyed(&sealing, tables, event, now, fresh))
                .collect::<Result<_, _>>()
                .map(Published::Events)
        };
        self.write_keeping_fresh(Urgency::Now, reads, job, |published| match published {
            Published::Events(events) => {
                let now = now_ms();
                events.iter().flat_map(|e| e.pending(now)).collect()
            }
            _ => Vec::new(),
        })
        .await
    }

    async fn get_task(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.read(move |tables| get_json(tables, Table::Tasks, &task_key(&tenant, &task_id)))
            .await
    }

    async fn deliver_snapshot(
        &self,
        snapshot: ConfigSnapshot,
    ) -> Result<SnapshotOutcome, StoreError> {
        let sealing = self.sealing.clone();
        self.write_announcing(
            Urgency::Now,
            Vec::new(),
            move |tables| deliver_snapshot_in(&sealing, tables, snapshot),
            |outcome: &SnapshotOutcome| outcome.pending.iter().cloned().collect(),
        )
        .await
    }
}
