//! Every operation of the store, written once over ordered tables (`tables.rs`) and run by a
//! backend that provides transactions: the embedded redb file or a PostgreSQL database.
//!
//! A backend runs a read in one read transaction and a write in one write transaction; writes
//! may share a commit with others (group commit) and a write that fails takes nothing of its
//! commit with it.

use std::sync::Arc;

use a2a::TaskState;
use uuid::Uuid;

use super::keys::{text_key, with_sequence};
use super::retention::{self, PurgeStep};
use super::sealing::Sealing;
use super::tables::*;
use super::*;
use crate::a2a::fold;

/// Receipts kept per subscription; older ones are dropped.
const MAX_RECEIPTS: u64 = 1000;
/// Expired replay entries removed per accepted request (bounds the work of one request).
const REPLAY_PRUNE_BATCH: usize = 64;
/// Attempts kept per delivery; older ones are dropped from the log.
const MAX_ATTEMPTS_LOGGED: u32 = 50;

/// Whether a write may wait briefly to share a later commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A caller is waiting to answer someone: commit as soon as possible.
    Now,
    /// Nobody is waiting on it (an attempt's outcome, whose lane has moved on): it may wait a
    /// little for another write to share its commit.
    Linger,
}

pub type ReadJob<R> = Box<dyn FnOnce(&dyn Tables) -> Result<R, StoreError> + Send>;
pub type WriteJob<R> = Box<dyn FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send>;

/// A storage engine: transactions over the tables of `Table::ALL`.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `job` in a read transaction, off the async runtime.
    async fn read<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError>;
    /// Runs `job` in a write transaction and returns its result once the commit is durable;
    /// `reads` are entries it will read (a hint: they may be fetched together first).
    async fn write<R: Send + 'static>(
        &self,
        urgency: Urgency,
        reads: Vec<Entry>,
        job: WriteJob<R>,
    ) -> Result<R, StoreError>;
    /// Finishes the writes in progress and releases the engine.
    async fn close(&self);

    /// Lane leases, for a backend several nodes share (see `Store::shared`); a backend of
    /// one node holds every lane.
    fn shared(&self) -> bool {
        false
    }
    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        Ok(lanes)
    }
    async fn claim_abandoned_lanes(&self, _limit: usize) -> Result<Vec<LaneId>, StoreError> {
        Ok(Vec::new())
    }
    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        Ok(lanes)
    }
    async fn release_lanes(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn lane_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<LaneId>> {
        None
    }
}

/// Receives the deliveries a commit made pending, once the commit is durable.
pub type Announce = Box<dyn Fn(Vec<PendingDelivery>) + Send + Sync>;

/// Where the store announces the deliveries its commits make pending: the delivery scheduler,
/// once it runs. Every write that makes deliveries pending (publish, a snapshot for a new
/// config, replay, an accepted inbound push that is forwarded) announces them here itself, so
/// no caller can forget to; before the scheduler runs they wait in the store, which the
/// scheduler reads at start.
#[derive(Default)]
pub struct Outbox(std::sync::OnceLock<Announce>);

impl Outbox {
    fn announce(&self, pending: Vec<PendingDelivery>) {
        if let (false, Some(announce)) = (pending.is_empty(), self.0.get()) {
            announce(pending);
        }
    }
}

/// The hub's store on a backend.
pub struct TableStore<B> {
    pub(super) backend: B,
    pub(super) sealing: Arc<Sealing>,
    pub(super) outbox: Outbox,
}

impl<B: Backend> TableStore<B> {
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Tables) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend.read(Box::new(f)).await
    }

    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend
            .write(Urgency::Now, Vec::new(), Box::new(f))
            .await
    }

    /// A write nobody waits on to answer someone: it may wait to share a later commit.
    async fn write_lingering<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend
            .write(Urgency::Linger, Vec::new(), Box::new(f))
            .await
    }
}

fn config_key(tenant: &str, task_id: &str, id: &str) -> Vec<u8> {
    text_key(&[tenant, task_id, id])
}

fn task_key(tenant: &str, task_id: &str) -> Vec<u8> {
    text_key(&[tenant, task_id])
}

fn lane_key(delivery: &DeliveryRecord) -> Vec<u8> {
    with_sequence(
        config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id),
        delivery.sequence,
    )
}

fn attempt_key(delivery_id: &str, number: u32) -> Vec<u8> {
    let mut key = text_key(&[delivery_id]);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// Every record of `table` under `prefix`, from `start`, at most `limit`, decoded.
fn page<T: serde::de::DeserializeOwned>(
    tables: &dyn Tables,
    table: Table,
    prefix: &[u8],
    start: &[u8],
    limit: usize,
    decode_one: impl Fn(&[u8]) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    tables.scan(table, prefix, start, &mut |_, value| {
        found.push(decode_one(value)?);
        Ok(found.len() < limit)
    })?;
    Ok(found)
}

/// The pending deliveries whose lane keys start with `prefix`, in lane and sequence order.
fn pending_under(
    sealing: &Sealing,
    tables: &dyn Tables,
    prefix: &[u8],
) -> Result<Vec<PendingDelivery>, StoreError> {
    let mut found = Vec::new();
    let mut url_of_lane: Option<(Vec<u8>, String)> = None;
    let ids: Vec<Vec<u8>> = collect_prefix(tables, Table::Pending, prefix)?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    for delivery in tables
        .get_many(Table::Deliveries, &ids)?
        .into_iter()
        .flatten()
    {
        let delivery: DeliveryRecord = decode(&delivery)?;
        let ckey = config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id);
        let url = match &url_of_lane {
            Some((key, url)) if *key == ckey => url.clone(),
            _ => {
                let Some(config) =
                    get_sealed::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)?
                else {
                    continue;
                };
                url_of_lane = Some((ckey, config.url.clone()));
                config.url
            }
        };
        found.push(PendingDelivery {
            tenant: delivery.tenant,
            task_id: delivery.task_id,
            config_id: delivery.config_id,
            delivery_id: delivery.id,
            sequence: delivery.sequence,
            next_attempt_at_ms: delivery.next_attempt_at_ms,
            url,
        });
    }
    Ok(found)
}

fn record_attempt_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    delivery_id: &str,
    attempt: AttemptRecord,
    update: DeliveryUpdate,
) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    let number = attempt.number;
    tables.insert(
        Table::Attempts,
        &attempt_key(delivery_id, number),
        &encode(&attempt)?,
    )?;
    if number > MAX_ATTEMPTS_LOGGED {
        tables.remove(
            Table::Attempts,
            &attempt_key(delivery_id, number - MAX_ATTEMPTS_LOGGED),
        )?;
    }
    let Some(current) =
        get_json::<DeliveryRecord>(tables, Table::Deliveries, delivery_id.as_bytes())?
    else {
        return Ok(Vec::new());
    };
    let still_pending = current.state == DeliveryState::Pending;
    update_delivery(tables, delivery_id.as_bytes(), |delivery| {
        delivery.attempts = delivery.attempts.max(number);
        delivery.manual = false;
        delivery.updated_at_ms = now;
        if !still_pending {
            // Canceled while the attempt was in flight: keep the log, not the outcome.
            return;
        }
        match &update {
            DeliveryUpdate::Delivered => {
                delivery.state = DeliveryState::Delivered;
                delivery.last_error = None;
            }
            DeliveryUpdate::Retry {
                next_attempt_at_ms,
                error,
            } => {
                delivery.next_attempt_at_ms = *next_attempt_at_ms;
                delivery.last_error = Some(error.clone());
            }
            DeliveryUpdate::Dead { error } | DeliveryUpdate::DisableConfig { error } => {
                delivery.state = DeliveryState::Dead;
                delivery.last_error = Some(error.clone());
            }
        }
    })?;
    if !still_pending {
        return Ok(Vec::new());
    }
    if !matches!(update, DeliveryUpdate::Retry { .. }) {
        tables.remove(Table::Pending, &lane_key(&current))?;
    }
    let DeliveryUpdate::DisableConfig { error } = update else {
        return Ok(Vec::new());
    };
    let ckey = config_key(&current.tenant, &current.task_id, &current.config_id);
    let mut killed = Vec::new();
    for (_, other) in take_prefix(tables, Table::Pending, &ckey)? {
        update_delivery(tables, &other, |delivery| {
            delivery.state = DeliveryState::Dead;
            delivery.last_error = Some(format!("its push config was disabled: {error}"));
            delivery.updated_at_ms = now;
        })?;
        killed.push(String::from_utf8_lossy(&other).into_owned());
    }
    if let Some(mut config) = get_sealed::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)? {
        config.state = ConfigState::Disabled;
        config.updated_at_ms = now;
        tables.insert(Table::Configs, &ckey, &encode_sealed(sealing, &config)?)?;
    }
    Ok(killed)
}

fn replay_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    delivery_id: &str,
    now: u64,
) -> Result<Result<PendingDelivery, ReplayRefusal>, StoreError> {
    let Some(delivery) =
        get_json::<DeliveryRecord>(tables, Table::Deliveries, delivery_id.as_bytes())?
    else {
        return Ok(Err(ReplayRefusal::NotFound(delivery_id.to_string())));
    };
    if delivery.state == DeliveryState::Pending {
        return Ok(Err(ReplayRefusal::AlreadyPending(delivery_id.to_string())));
    }
    let ckey = config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id);
    let Some(config) = get_sealed::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)? else {
        return Ok(Err(ReplayRefusal::ConfigDeleted(delivery_id.to_string())));
    };
    if config.state != ConfigState::Active {
        return Ok(Err(ReplayRefusal::ConfigDisabled(delivery_id.to_string())));
    }
    update_delivery(tables, delivery_id.as_bytes(), |d| {
        d.state = DeliveryState::Pending;
        d.manual = true;
        d.next_attempt_at_ms = now;
        d.updated_at_ms = now;
    })?;
    tables.insert(Table::Pending, &lane_key(&delivery), delivery_id.as_bytes())?;
    Ok(Ok(PendingDelivery {
        tenant: delivery.tenant,
        task_id: delivery.task_id,
        config_id: delivery.config_id,
        delivery_id: delivery.id,
        sequence: delivery.sequence,
        next_attempt_at_ms: now,
        url: config.url,
    }))
}

#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct InboundCounters {
    last_event: u64,
    last_receipt: u64,
    /// Entries in the subscription's replay cache (those written before it was counted are
    /// not: they expire soon after an upgrade).
    #[serde(default)]
    replay_entries: u64,
}

fn counters(tables: &dyn Tables, subscription_id: &str) -> Result<InboundCounters, StoreError> {
    Ok(get_json(tables, Table::InboundCounters, subscription_id.as_bytes())?.unwrap_or_default())
}

fn save_counters(
    tables: &dyn TablesMut,
    subscription_id: &str,
    counters: &InboundCounters,
) -> Result<(), StoreError> {
    tables.insert(
        Table::InboundCounters,
        subscription_id.as_bytes(),
        &encode(counters)?,
    )
}

/// Numbers and stores a receipt, dropping the oldest beyond `MAX_RECEIPTS`.
fn insert_receipt(
    tables: &dyn TablesMut,
    subscription_id: &str,
    counters: &mut InboundCounters,
    mut receipt: ReceiptRecord,
) -> Result<ReceiptRecord, StoreError> {
    counters.last_receipt += 1;
    receipt.number = counters.last_receipt;
    let prefix = text_key(&[subscription_id]);
    tables.insert(
        Table::Receipts,
        &with_sequence(prefix.clone(), receipt.number),
        &encode(&receipt)?,
    )?;
    if receipt.number > MAX_RECEIPTS {
        tables.remove(
            Table::Receipts,
            &with_sequence(prefix, receipt.number - MAX_RECEIPTS),
        )?;
    }
    Ok(receipt)
}

/// The live replay entry of `key`, if any: until when it lasts.
fn replay_entry(tables: &dyn Tables, replay_key: &[u8]) -> Result<Option<u64>, StoreError> {
    tables
        .get(Table::Replay, replay_key)?
        .map(|value| {
            value
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    StoreError::Corrupt("a replay entry is not an 8-byte time".to_string())
                })
        })
        .transpose()
}

/// Removes up to `limit` entries of the subscription's replay cache, soonest to expire first,
/// stopping at the first that lasts until `until_ms` or later. How many it removed.
fn drop_replay_entries(
    tables: &dyn TablesMut,
    prefix: &[u8],
    until_ms: u64,
    limit: usize,
) -> Result<usize, StoreError> {
    let mut due = Vec::new();
    tables.scan(
        Table::ReplayByTime,
        prefix,
        prefix,
        &mut |time_key, replay_key| {
            let at = u64::from_be_bytes(
                time_key[prefix.len()..prefix.len() + 8]
                    .try_into()
                    .unwrap_or_default(),
            );
            if at >= until_ms || due.len() >= limit {
                return Ok(false);
            }
            due.push((time_key.to_vec(), replay_key.to_vec()));
            Ok(true)
        },
    )?;
    for (time_key, replay_key) in &due {
        tables.remove(Table::ReplayByTime, time_key)?;
        tables.remove(Table::Replay, replay_key)?;
    }
    Ok(due.len())
}

/// What the replay cache said of a push.
struct ReplayVerdict {
    duplicate: bool,
    /// Entries dropped before they expired, to stay within the bound.
    evicted: u64,
}

/// Refuses a push any of whose keys is live in the cache; otherwise records every key until
/// its own expiry, keeping at most `max_entries` for the subscription.
fn replay_check(
    tables: &dyn TablesMut,
    subscription_id: &str,
    keys: &[ReplayKey],
    max_entries: usize,
    counters: &mut InboundCounters,
    now: u64,
) -> Result<ReplayVerdict, StoreError> {
    let prefix = text_key(&[subscription_id]);
    let expired = drop_replay_entries(tables, &prefix, now, REPLAY_PRUNE_BATCH)?;
    counters.replay_entries = counters.replay_entries.saturating_sub(expired as u64);
    for key in keys {
        let replay_key = text_key(&[subscription_id, &key.key]);
        if replay_entry(tables, &replay_key)?.is_some_and(|until| until >= now) {
            return Ok(ReplayVerdict {
                duplicate: true,
                evicted: 0,
            });
        }
    }
    for key in keys {
        let replay_key = text_key(&[subscription_id, &key.key]);
        match replay_entry(tables, &replay_key)? {
            // Expired but not yet pruned: its place in the time index moves.
            Some(until) => {
                let mut old = with_sequence(prefix.clone(), until);
                old.extend_from_slice(key.key.as_bytes());
                tables.remove(Table::ReplayByTime, &old)?;
            }
            None => counters.replay_entries += 1,
        }
        tables.insert(Table::Replay, &replay_key, &key.expires_at_ms.to_be_bytes())?;
        let mut time_key = with_sequence(prefix.clone(), key.expires_at_ms);
        time_key.extend_from_slice(key.key.as_bytes());
        tables.insert(Table::ReplayByTime, &time_key, &replay_key)?;
    }
    let mut evicted = 0;
    let excess = counters.replay_entries.saturating_sub(max_entries as u64);
    if excess > 0 {
        let limit = (excess as usize).min(REPLAY_PRUNE_BATCH);
        evicted = drop_replay_entries(tables, &prefix, u64::MAX, limit)? as u64;
        counters.replay_entries -= evicted;
    }
    Ok(ReplayVerdict {
        duplicate: false,
        evicted,
    })
}

fn accept_inbound_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    accept: InboundAccept,
) -> Result<InboundOutcome, StoreError> {
    let now = now_ms();
    let id = accept.subscription_id.clone();
    let mut counters = counters(tables, &id)?;
    let mut receipt = accept.receipt;
    receipt.task_id = Some(accept.task_id.clone());
    let replay = replay_check(
        tables,
        &id,
        &accept.replay_keys,
        accept.replay_max_entries,
        &mut counters,
        now,
    )?;
    if replay.duplicate {
        receipt.verdict = "duplicate".to_string();
        receipt
            .notes
            .push("already accepted within its window: acknowledged, not routed again".to_string());
        let receipt = insert_receipt(tables, &id, &mut counters, receipt)?;
        save_counters(tables, &id, &counters)?;
        return Ok(InboundOutcome::Duplicate { receipt });
    }
    let task_key = text_key(&[&id, &accept.task_id]);
    let progress: fold::Progress =
        get_json(tables, Table::InboundTasks, &task_key)?.unwrap_or_default();
    let (notes, progress) = fold::progress_notes(&progress, &accept.event, accept.push_sequence);
    tables.insert(Table::InboundTasks, &task_key, &encode(&progress)?)?;
    receipt.notes.extend(notes);
    counters.last_event += 1;
    let sequence = counters.last_event;
    receipt.event_sequence = Some(sequence);
    let record = InboundEventRecord {
        sequence,
        received_at_ms: now,
        task_id: accept.task_id.clone(),
        event: accept.body.clone(),
    };
    tables.insert(
        Table::InboundEvents,
        &with_sequence(text_key(&[&id]), sequence),
        &encode(&record)?,
    )?;
    let forwarded = match accept.route {
        InboundRoute::Log => None,
        InboundRoute::Publish { tenant } => {
            let event = NewEvent {
                tenant,
                task_id: accept.task_id.clone(),
                event: accept.event,
                body: accept.body,
                owner: None,
            };
            Some(publish_one(sealing, tables, event, now)?)
        }
        InboundRoute::Forward { tenant, url } => {
            let ckey = config_key(&tenant, &accept.task_id, FORWARD_CONFIG_ID);
            if tables.get(Table::Configs, &ckey)?.is_none() {
                let config = ConfigRecord {
                    tenant: tenant.clone(),
                    task_id: accept.task_id.clone(),
                    id: FORWARD_CONFIG_ID.to_string(),
                    url,
                    token: None,
                    authentication: None,
                    wire_version: crate::a2a::version::WireVersion::V1_0,
                    state: ConfigState::Active,
                    created_at_ms: now,
                    updated_at_ms: now,
                    owner: None,
                };
                tables.insert(Table::Configs, &ckey, &encode_sealed(sealing, &config)?)?;
            }
            let event = NewEvent {
                tenant,
                task_id: accept.task_id.clone(),
                event: accept.event,
                body: accept.body,
                owner: None,
            };
            Some(publish_one(sealing, tables, event, now)?)
        }
    };
    let receipt = insert_receipt(tables, &id, &mut counters, receipt)?;
    save_counters(tables, &id, &counters)?;
    Ok(InboundOutcome::Accepted {
        sequence,
        forwarded,
        receipt,
        replay_evicted: replay.evicted,
    })
}

/// Removes a subscription with its events, receipts and replay cache; whether it existed.
pub(super) fn delete_subscription_in(tables: &dyn TablesMut, id: &str) -> Result<bool, StoreError> {
    let existed = tables.get(Table::Subscriptions, id.as_bytes())?.is_some();
    tables.remove(Table::Subscriptions, id.as_bytes())?;
    let prefix = text_key(&[id]);
    for table in [
        Table::InboundEvents,
        Table::Receipts,
        Table::InboundTasks,
        Table::ReplayByTime,
        Table::Replay,
    ] {
        take_prefix(tables, table, &prefix)?;
    }
    tables.remove(Table::InboundCounters, id.as_bytes())?;
    Ok(existed)
}

/// Stores a config if the task is the caller's (or nobody's: then it becomes the caller's)
/// and has room for it.
fn put_config_in(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    mut config: ConfigRecord,
    rules: ConfigRules,
) -> Result<ConfigWrite, StoreError> {
    let tkey = task_key(&config.tenant, &config.task_id);
    if let Some(principal) = &rules.principal {
        match get_json::<String>(tables, Table::Owners, &tkey)? {
            Some(owner) if owner != *principal => return Ok(ConfigWrite::NotOwner),
            Some(_) => {}
            None => tables.insert(Table::Owners, &tkey, &encode(principal)?)?,
        }
    }
    let key = config_key(&config.tenant, &config.task_id, &config.id);
    match get_sealed::<ConfigRecord>(sealing, tables, Table::Configs, &key)? {
        Some(existing) => config.created_at_ms = existing.created_at_ms,
        None => {
            let others = first_under(tables, Table::Configs, &tkey, rules.max_per_task)?;
            if others.len() >= rules.max_per_task {
                return Ok(ConfigWrite::TooMany);
            }
        }
    }
    config.owner = rules.principal;
    tables.insert(Table::Configs, &key, &encode_sealed(sealing, &config)?)?;
    Ok(ConfigWrite::Stored)
}

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
    let Some(config) = get_sealed::<ConfigRecord>(sealing, tables, Table::Configs, &ckey)? else {
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
    let delivery = DeliveryRecord {
        id: Uuid::now_v7().to_string(),
        tenant: snapshot.tenant.clone(),
        task_id: snapshot.task_id.clone(),
        config_id: snapshot.config_id.clone(),
        sequence: last_sequence,
        event_id: Uuid::now_v7().to_string(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at_ms: now,
        last_error: None,
        manual: false,
        body_v03,
        snapshot: Some(snapshot.body.get().to_string()),
        created_at_ms: now,
        updated_at_ms: now,
    };
    tables.insert(
        Table::Deliveries,
        delivery.id.as_bytes(),
        &encode(&delivery)?,
    )?;
    let lane = with_sequence(ckey, last_sequence);
    tables.insert(Table::Lanes, &lane, delivery.id.as_bytes())?;
    tables.insert(Table::Pending, &lane, delivery.id.as_bytes())?;
    outcome.pending = Some(PendingDelivery {
        tenant: snapshot.tenant,
        task_id: snapshot.task_id,
        config_id: snapshot.config_id,
        delivery_id: delivery.id,
        sequence: last_sequence,
        next_attempt_at_ms: now,
        url: config.url,
    });
    Ok(outcome)
}

/// Removes a config; its pending deliveries are canceled. Whether it existed.
fn remove_config(tables: &dyn TablesMut, key: &[u8], now: u64) -> Result<bool, StoreError> {
    let existed = tables.get(Table::Configs, key)?.is_some();
    tables.remove(Table::Configs, key)?;
    for (_, delivery_id) in take_prefix(tables, Table::Pending, key)? {
        update_delivery(tables, &delivery_id, |delivery| {
            delivery.state = DeliveryState::Canceled;
            delivery.last_error = Some("its push config was deleted".to_string());
            delivery.updated_at_ms = now;
        })?;
    }
    Ok(existed)
}

/// Makes `owner` the task's owner, as its publisher declared; configs another principal
/// registered for the task are removed, so they receive nothing of it from now on.
fn declare_owner(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    tkey: &[u8],
    owner: &str,
    now: u64,
) -> Result<(), StoreError> {
    if get_json::<String>(tables, Table::Owners, tkey)?.as_deref() == Some(owner) {
        return Ok(());
    }
    tables.insert(Table::Owners, tkey, &encode(&owner)?)?;
    let mut foreign = Vec::new();
    tables.scan(Table::Configs, tkey, tkey, &mut |key, value| {
        let config: ConfigRecord = decode_sealed(sealing, value)?;
        if config.owner.as_deref().is_some_and(|o| o != owner) {
            foreign.push((key.to_vec(), config.id));
        }
        Ok(true)
    })?;
    for (key, config_id) in foreign {
        remove_config(tables, &key, now)?;
        tracing::warn!(
            config_id,
            "push config removed: the publisher declared another owner for its task"
        );
    }
    Ok(())
}

fn publish_one(
    sealing: &Sealing,
    tables: &dyn TablesMut,
    new: NewEvent,
    now: u64,
) -> Result<PublishedEvent, StoreError> {
    let tkey = task_key(&new.tenant, &new.task_id);
    if let Some(owner) = &new.owner {
        declare_owner(sealing, tables, &tkey, owner, now)?;
    }
    let previous: Option<TaskRecord> = get_json(tables, Table::Tasks, &tkey)?;
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
    retention::track_finished(tables, &tkey, was_finished_at, terminal.then_some(now))?;

    let event_id = Uuid::now_v7().to_string();
    let event = EventRecord {
        event_id: event_id.clone(),
        sequence,
        received_at_ms: now,
        body: new.body,
    };
    tables.insert(
        Table::Events,
        &with_sequence(tkey.clone(), sequence),
        &encode(&event)?,
    )?;

    let mut active = Vec::new();
    tables.scan(Table::Configs, &tkey, &tkey, &mut |_, value| {
        let config: ConfigRecord = decode_sealed(sealing, value)?;
        if config.state == ConfigState::Active {
            active.push((config.id, config.url, config.wire_version));
        }
        Ok(true)
    })?;
    let mut created = Vec::with_capacity(active.len());
    // A 0.3 webhook gets the whole task, as it stands after this event, in 0.3 JSON.
    let body_v03 = active
        .iter()
        .any(|(_, _, version)| *version == crate::a2a::version::WireVersion::V0_3)
        .then(|| {
            crate::a2a::v03::task_from_v1(&serde_json::to_value(&record.task).unwrap_or_default())
                .to_string()
        });
    for (config_id, url, version) in active {
        let delivery = DeliveryRecord {
            id: Uuid::now_v7().to_string(),
            tenant: new.tenant.clone(),
            task_id: new.task_id.clone(),
            config_id: config_id.clone(),
            sequence,
            event_id: event_id.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at_ms: now,
            last_error: None,
            manual: false,
            body_v03: (version == crate::a2a::version::WireVersion::V0_3)
                .then(|| body_v03.clone())
                .flatten(),
            snapshot: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        tables.insert(
            Table::Deliveries,
            delivery.id.as_bytes(),
            &encode(&delivery)?,
        )?;
        let lane = with_sequence(config_key(&new.tenant, &new.task_id, &config_id), sequence);
        tables.insert(Table::Lanes, &lane, delivery.id.as_bytes())?;
        tables.insert(Table::Pending, &lane, delivery.id.as_bytes())?;
        created.push(CreatedDelivery {
            delivery_id: delivery.id,
            config_id,
            url,
        });
    }
    Ok(PublishedEvent {
        event_id,
        tenant: new.tenant,
        task_id: new.task_id,
        sequence,
        deliveries: created,
    })
}

#[async_trait::async_trait]
impl<B: Backend> Store for TableStore<B> {
    async fn put_config(
        &self,
        config: ConfigRecord,
        rules: ConfigRules,
    ) -> Result<ConfigWrite, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| put_config_in(&sealing, tables, config, rules))
            .await
    }

    async fn deliver_snapshot(
        &self,
        snapshot: ConfigSnapshot,
    ) -> Result<SnapshotOutcome, StoreError> {
        let sealing = self.sealing.clone();
        let outcome = self
            .write(move |tables| deliver_snapshot_in(&sealing, tables, snapshot))
            .await?;
        self.outbox
            .announce(outcome.pending.iter().cloned().collect());
        Ok(outcome)
    }

    async fn task_owner(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<String>, StoreError> {
        self.read(move |tables| get_json(tables, Table::Owners, &task_key(&tenant, &task_id)))
            .await
    }

    async fn get_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<ConfigRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            get_sealed(
                &sealing,
                tables,
                Table::Configs,
                &config_key(&tenant, &task_id, &id),
            )
        })
        .await
    }

    async fn list_configs(
        &self,
        tenant: String,
        task_id: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ConfigRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            let prefix = task_key(&tenant, &task_id);
            let start = match &after {
                // Start just after the last config of the previous page.
                Some(id) => {
                    let mut key = config_key(&tenant, &task_id, id);
                    key.push(0);
                    key
                }
                None => prefix.clone(),
            };
            page(tables, Table::Configs, &prefix, &start, limit, |value| {
                decode_sealed(&sealing, value)
            })
        })
        .await
    }

    async fn delete_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<bool, StoreError> {
        self.write(move |tables| {
            remove_config(tables, &config_key(&tenant, &task_id, &id), now_ms())
        })
        .await
    }

    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<PublishedEvent>, StoreError> {
        let sealing = self.sealing.clone();
        let reads = events
            .iter()
            .map(|event| (Table::Tasks, task_key(&event.tenant, &event.task_id)))
            .collect();
        let job = move |tables: &dyn TablesMut| {
            let now = now_ms();
            events
                .into_iter()
                .map(|event| publish_one(&sealing, tables, event, now))
                .collect()
        };
        let published: Vec<PublishedEvent> = self
            .backend
            .write(Urgency::Now, reads, Box::new(job))
            .await?;
        let now = now_ms();
        self.outbox
            .announce(published.iter().flat_map(|e| e.pending(now)).collect());
        Ok(published)
    }

    async fn get_task(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.read(move |tables| get_json(tables, Table::Tasks, &task_key(&tenant, &task_id)))
            .await
    }

    async fn get_event(
        &self,
        tenant: String,
        task_id: String,
        sequence: u64,
    ) -> Result<Option<EventRecord>, StoreError> {
        self.read(move |tables| {
            let key = with_sequence(task_key(&tenant, &task_id), sequence);
            get_json(tables, Table::Events, &key)
        })
        .await
    }

    async fn get_delivery(&self, id: String) -> Result<Option<DeliveryRecord>, StoreError> {
        self.read(move |tables| get_json(tables, Table::Deliveries, id.as_bytes()))
            .await
    }

    async fn delivery_counts(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<DeliveryCounts, StoreError> {
        self.read(move |tables| {
            let prefix = task_key(&tenant, &task_id);
            let mut counts = DeliveryCounts::default();
            for (_, delivery_id) in collect_prefix(tables, Table::Lanes, &prefix)? {
                if let Some(delivery) =
                    get_json::<DeliveryRecord>(tables, Table::Deliveries, &delivery_id)?
                {
                    match delivery.state {
                        DeliveryState::Pending => counts.pending += 1,
                        DeliveryState::Delivered => counts.delivered += 1,
                        DeliveryState::Dead => counts.dead += 1,
                        DeliveryState::Canceled => counts.canceled += 1,
                    }
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| pending_under(&sealing, tables, &[]))
            .await
    }

    async fn attempt_context(
        &self,
        delivery_id: String,
    ) -> Result<Option<AttemptContext>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            let Some(delivery) =
                get_json::<DeliveryRecord>(tables, Table::Deliveries, delivery_id.as_bytes())?
            else {
                return Ok(None);
            };
            let config = get_sealed(
                &sealing,
                tables,
                Table::Configs,
                &config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id),
            )?;
            let event = match &delivery.snapshot {
                Some(snapshot) => EventRecord {
                    event_id: delivery.event_id.clone(),
                    sequence: delivery.sequence,
                    received_at_ms: delivery.created_at_ms,
                    body: RawValue::from_string(snapshot.clone()).map_err(|e| {
                        StoreError::Corrupt(format!("snapshot of delivery {}: {e}", delivery.id))
                    })?,
                },
                None => {
                    let event_key = with_sequence(
                        task_key(&delivery.tenant, &delivery.task_id),
                        delivery.sequence,
                    );
                    get_json(tables, Table::Events, &event_key)?.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "event {} of delivery {} is missing",
                            delivery.sequence, delivery.id
                        ))
                    })?
                }
            };
            Ok(Some(AttemptContext {
                delivery,
                config,
                event,
            }))
        })
        .await
    }

    async fn start_follow(&self, follow: FollowRecord) -> Result<bool, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            let key = task_key(&follow.tenant, &follow.task_id);
            let held: Option<FollowRecord> = get_sealed(&sealing, tables, Table::Follows, &key)?;
            if held.is_some_and(|h| h.node != follow.node && h.lease_until_ms > now_ms()) {
                return Ok(false);
            }
            tables.insert(Table::Follows, &key, &encode_sealed(&sealing, &follow)?)?;
            Ok(true)
        })
        .await
    }

    async fn end_follow(
        &self,
        tenant: String,
        task_id: String,
        node: String,
    ) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            let key = task_key(&tenant, &task_id);
            let held: Option<FollowRecord> = get_sealed(&sealing, tables, Table::Follows, &key)?;
            if held.is_some_and(|h| h.node == node) {
                tables.remove(Table::Follows, &key)?;
            }
            Ok(())
        })
        .await
    }

    async fn hold_follows(
        &self,
        node: String,
        lease_until_ms: u64,
        take_all: bool,
    ) -> Result<Vec<FollowRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            let now = now_ms();
            let mut held = Vec::new();
            for (key, value) in collect_prefix(tables, Table::Follows, &[])? {
                let mut follow: FollowRecord = decode_sealed(&sealing, &value)?;
                if follow.node == node || follow.lease_until_ms <= now || take_all {
                    follow.node = node.clone();
                    follow.lease_until_ms = lease_until_ms;
                    tables.insert(Table::Follows, &key, &encode_sealed(&sealing, &follow)?)?;
                    held.push(follow);
                }
            }
            Ok(held)
        })
        .await
    }

    async fn purge_finished_tasks(
        &self,
        finished_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError> {
        self.write_lingering(move |tables| retention::purge_step(tables, finished_before_ms, &from))
            .await
    }

    async fn purge_gateway_intakes(
        &self,
        created_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError> {
        let sealing = self.sealing.clone();
        self.write_lingering(move |tables| {
            retention::purge_intakes_step(&sealing, tables, created_before_ms, &from)
        })
        .await
    }

    async fn purge_inbound_events(
        &self,
        received_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError> {
        self.write_lingering(move |tables| {
            retention::purge_inbound_events_step(tables, received_before_ms, &from)
        })
        .await
    }

    async fn index_finished_tasks(&self, from: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        self.write_lingering(move |tables| retention::index_step(tables, &from))
            .await
    }

    async fn record_attempt(
        &self,
        delivery_id: String,
        attempt: AttemptRecord,
        update: DeliveryUpdate,
    ) -> Result<Vec<String>, StoreError> {
        let sealing = self.sealing.clone();
        let reads = vec![(Table::Deliveries, delivery_id.as_bytes().to_vec())];
        self.backend
            .write(
                Urgency::Linger,
                reads,
                Box::new(move |tables| {
                    record_attempt_in(&sealing, tables, &delivery_id, attempt, update)
                }),
            )
            .await
    }

    async fn attempts(&self, delivery_id: String) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |tables| {
            let prefix = text_key(&[&delivery_id]);
            page(
                tables,
                Table::Attempts,
                &prefix,
                &prefix,
                usize::MAX,
                decode,
            )
        })
        .await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.read(move |tables| {
            let mut found: Vec<DeliveryRecord> = Vec::new();
            if limit == 0 {
                return Ok(found);
            }
            if let Some(task_id) = &filter.task_id {
                // A task's deliveries through the lane index, then in id (creation) order.
                let prefix = match &filter.config_id {
                    Some(config_id) => config_key(&filter.tenant, task_id, config_id),
                    None => task_key(&filter.tenant, task_id),
                };
                let mut ids: Vec<Vec<u8>> = collect_prefix(tables, Table::Lanes, &prefix)?
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect();
                ids.sort();
                for id in ids {
                    if after
                        .as_ref()
                        .is_some_and(|after| id.as_slice() <= after.as_bytes())
                    {
                        continue;
                    }
                    if let Some(delivery) =
                        get_json::<DeliveryRecord>(tables, Table::Deliveries, &id)?
                    {
                        if filter.matches(&delivery) {
                            found.push(delivery);
                            if found.len() >= limit {
                                break;
                            }
                        }
                    }
                }
                return Ok(found);
            }
            let start: Vec<u8> = match &after {
                Some(after) => {
                    let mut key = after.as_bytes().to_vec();
                    key.push(0);
                    key
                }
                None => Vec::new(),
            };
            tables.scan(Table::Deliveries, &[], &start, &mut |_, value| {
                let delivery: DeliveryRecord = decode(value)?;
                if filter.matches(&delivery) {
                    found.push(delivery);
                }
                Ok(found.len() < limit)
            })?;
            Ok(found)
        })
        .await
    }

    async fn replay(
        &self,
        delivery_ids: Vec<String>,
    ) -> Result<Vec<Result<PendingDelivery, ReplayRefusal>>, StoreError> {
        let sealing = self.sealing.clone();
        let results: Vec<Result<PendingDelivery, ReplayRefusal>> = self
            .write(move |tables| {
                let now = now_ms();
                delivery_ids
                    .iter()
                    .map(|id| replay_in(&sealing, tables, id, now))
                    .collect()
            })
            .await?;
        self.outbox.announce(
            results
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect(),
        );
        Ok(results)
    }

    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            page(tables, Table::Keys, &[], &[], usize::MAX, |value| {
                decode_sealed(&sealing, value)
            })
        })
        .await
    }

    async fn put_signing_keys(
        &self,
        records: Vec<KeyRecord>,
        retired: Vec<String>,
    ) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            for record in &records {
                tables.insert(
                    Table::Keys,
                    record.kid.as_bytes(),
                    &encode_sealed(&sealing, record)?,
                )?;
            }
            for kid in &retired {
                tables.remove(Table::Keys, kid.as_bytes())?;
            }
            Ok(())
        })
        .await
    }

    async fn put_subscription(&self, subscription: SubscriptionRecord) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |tables| {
            tables.insert(
                Table::Subscriptions,
                subscription.id.as_bytes(),
                &encode_sealed(&sealing, &subscription)?,
            )
        })
        .await
    }

    async fn get_subscription(&self, id: String) -> Result<Option<SubscriptionRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| get_sealed(&sealing, tables, Table::Subscriptions, id.as_bytes()))
            .await
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            page(
                tables,
                Table::Subscriptions,
                &[],
                &[],
                usize::MAX,
                |value| decode_sealed(&sealing, value),
            )
        })
        .await
    }

    async fn delete_subscription(&self, id: String) -> Result<bool, StoreError> {
        self.write(move |tables| delete_subscription_in(tables, &id))
            .await
    }

    async fn accept_inbound(&self, accept: InboundAccept) -> Result<InboundOutcome, StoreError> {
        let sealing = self.sealing.clone();
        let outcome = self
            .write(move |tables| accept_inbound_in(&sealing, tables, accept))
            .await?;
        if let InboundOutcome::Accepted {
            forwarded: Some(published),
            ..
        } = &outcome
        {
            self.outbox.announce(published.pending(now_ms()));
        }
        Ok(outcome)
    }

    fn announce_pending_to(&self, announce: Announce) {
        if self.outbox.0.set(announce).is_err() {
            tracing::error!("the store already announces its pending deliveries elsewhere");
        }
    }

    async fn add_receipt(
        &self,
        subscription_id: String,
        receipt: ReceiptRecord,
    ) -> Result<ReceiptRecord, StoreError> {
        self.write(move |tables| {
            let mut counters = counters(tables, &subscription_id)?;
            let receipt = insert_receipt(tables, &subscription_id, &mut counters, receipt)?;
            save_counters(tables, &subscription_id, &counters)?;
            Ok(receipt)
        })
        .await
    }

    async fn inbound_events(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboundEventRecord>, StoreError> {
        self.read(move |tables| {
            let prefix = text_key(&[&subscription_id]);
            let start = with_sequence(prefix.clone(), after.saturating_add(1));
            page(tables, Table::InboundEvents, &prefix, &start, limit, decode)
        })
        .await
    }

    async fn receipts(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ReceiptRecord>, StoreError> {
        self.read(move |tables| {
            let prefix = text_key(&[&subscription_id]);
            let start = with_sequence(prefix.clone(), after.saturating_add(1));
            page(tables, Table::Receipts, &prefix, &start, limit, decode)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tables| tables.get(Table::Tasks, &[]).map(|_| ()))
            .await
    }

    async fn close(&self) {
        self.backend.close().await;
    }

    async fn share_circuit(
        &self,
        origin: String,
        open_until: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write_lingering(move |tables| match open_until {
            Some(until) => tables.insert(Table::Circuits, origin.as_bytes(), &until.to_be_bytes()),
            None => tables.remove(Table::Circuits, origin.as_bytes()),
        })
        .await
    }

    async fn open_circuits(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|tables| {
            let now = now_ms();
            let mut open = Vec::new();
            for (origin, until) in collect_prefix(tables, Table::Circuits, &[])? {
                let until = until
                    .as_slice()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("a circuit entry is not a time".into()))?;
                if until > now {
                    open.push((String::from_utf8_lossy(&origin).into_owned(), until));
                }
            }
            Ok(open)
        })
        .await
    }

    async fn pending_in_lanes(
        &self,
        lanes: Vec<LaneId>,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |tables| {
            let mut found = Vec::new();
            for lane in &lanes {
                found.extend(pending_under(&sealing, tables, &lane.key())?);
            }
            Ok(found)
        })
        .await
    }

    fn shared(&self) -> bool {
        self.backend.shared()
    }

    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        self.backend.claim_lanes(lanes).await
    }

    async fn claim_abandoned_lanes(&self, limit: usize) -> Result<Vec<LaneId>, StoreError> {
        self.backend.claim_abandoned_lanes(limit).await
    }

    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        self.backend.renew_lanes(lanes).await
    }

    async fn release_lanes(&self) -> Result<(), StoreError> {
        self.backend.release_lanes().await
    }

    fn lane_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<LaneId>> {
        self.backend.lane_wakeups()
    }
}
