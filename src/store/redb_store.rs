//! The embedded store: one redb file, one writer thread with group commit.
//!
//! Every write is a job sent to the writer thread. The thread takes every job that is queued
//! (up to `MAX_BATCH`), runs them in one write transaction, commits once (redb's default
//! durability fsyncs before `commit` returns), then answers each job. Under load a batch grows
//! by itself, so the fsync cost is shared. Attempt outcomes nobody waits on may linger up to
//! `OUTCOME_LINGER` for the next write that someone does wait on (an event's intake, an API
//! call), so they ride in its commit instead of costing one of their own. Reads run on the
//! blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as sync_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use a2a::TaskState;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::keys::{text_key, with_sequence};
use super::sealing::Sealing;
use super::*;
use crate::a2a::fold;

/// Page cache of a store opened without settings (the hub's own default is `store.cache_mib`).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

const CONFIGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("configs");
const TASKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tasks");
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");
/// (tenant, task, config, sequence) → delivery id: each lane's deliveries in order.
const LANES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lanes");
/// The same key, for pending deliveries only: what the scheduler loads at start.
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// (delivery id, attempt number) → attempt record.
const ATTEMPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("attempts");

/// kid → signing key.
const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("signing_keys");

/// Subscription id → subscription (sealed: it holds the secrets peers must present).
const SUBSCRIPTIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("subscriptions");
/// (subscription, sequence) → accepted inbound event.
const INBOUND_EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("inbound_events");
/// (subscription, receipt number) → receipt.
const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("receipts");
/// (subscription) → counters: last event sequence, last receipt number.
const INBOUND_COUNTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("inbound_counters");
/// (subscription, task) → the task's inbound progress, for order notes.
const INBOUND_TASKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("inbound_tasks");
/// (subscription, replay key) → first seen (ms); and (subscription, ms, replay key) → () to
/// expire them in time order.
const REPLAY: TableDefinition<&[u8], u64> = TableDefinition::new("replay");
const REPLAY_BY_TIME: TableDefinition<&[u8], &[u8]> = TableDefinition::new("replay_by_time");

/// Receipts kept per subscription; older ones are dropped.
const MAX_RECEIPTS: u64 = 1000;
/// Expired replay entries removed per accepted request (bounds the work of one request).
const REPLAY_PRUNE_BATCH: usize = 64;

/// Attempts kept per delivery; older ones are dropped from the log.
const MAX_ATTEMPTS_LOGGED: u32 = 50;

/// Most jobs committed together.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, writes fail fast with `Busy`.
const QUEUE_CAPACITY: usize = 8192;
/// Longest an attempt outcome waits for company before it is committed on its own.
const OUTCOME_LINGER: Duration = Duration::from_millis(2);

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write job: runs inside the batch transaction and returns whether it succeeded and how
/// to answer its caller once the commit outcome is known.
type Job = Box<dyn FnOnce(&WriteTransaction) -> (bool, Completion) + Send>;

/// Whether a write may wait briefly to share a later commit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Urgency {
    /// A caller is waiting to answer someone: commit as soon as possible.
    Now,
    /// Nobody is waiting on it (an attempt's outcome, whose lane has moved on): it may wait up
    /// to `OUTCOME_LINGER` for another write.
    Linger,
}

enum Command {
    Write(Job, Urgency),
    Stop(oneshot::Sender<()>),
}

pub struct RedbStore {
    db: Arc<Database>,
    sealing: Arc<Sealing>,
    writer: sync_mpsc::SyncSender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`. Blocking: call before serving requests.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        RedbStore::open_sealed(dir, Sealing::none(), DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with secret-bearing records sealed by `sealing`, caching at most
    /// `cache_bytes` of its pages in memory.
    pub fn open_sealed(
        dir: &Path,
        sealing: Sealing,
        cache_bytes: usize,
    ) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Storage(format!("cannot create store folder {}: {e}", dir.display()))
        })?;
        // The store holds secrets (tokens, credentials, signing keys): only the hub's user.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join("hub.redb");
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| {
                StoreError::Storage(format!("cannot open store file {}: {e}", path.display()))
            })?;
        let txn = db.begin_write().map_err(StoreError::storage)?;
        for table in [
            CONFIGS,
            TASKS,
            EVENTS,
            DELIVERIES,
            LANES,
            PENDING,
            ATTEMPTS,
            KEYS,
            SUBSCRIPTIONS,
            INBOUND_EVENTS,
            RECEIPTS,
            INBOUND_COUNTERS,
            INBOUND_TASKS,
            REPLAY_BY_TIME,
        ] {
            txn.open_table(table).map_err(StoreError::storage)?;
        }
        txn.open_table(REPLAY).map_err(StoreError::storage)?;
        txn.commit().map_err(StoreError::storage)?;
        let db = Arc::new(db);
        let (writer, jobs) = sync_mpsc::sync_channel(QUEUE_CAPACITY);
        let thread_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".to_string())
            .spawn(move || write_loop(&thread_db, jobs))
            .map_err(|e| StoreError::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore {
            db,
            sealing: Arc::new(sealing),
            writer,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `f` in the next group commit and returns its result once the commit is durable.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    {
        self.write_with(Urgency::Now, f).await
    }

    async fn write_with<R, F>(&self, urgency: Urgency, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let result = f(txn);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            });
            (ok, completion)
        });
        self.writer
            .try_send(Command::Write(job, urgency))
            .map_err(|e| match e {
                sync_mpsc::TrySendError::Full(_) => StoreError::Busy,
                sync_mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
            })?;
        answer.await.map_err(|_| {
            StoreError::Storage("the write was not committed (see the hub's log)".to_string())
        })?
    }

    /// Runs a read transaction on the blocking pool.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&::redb::ReadTransaction) -> Result<R, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StoreError::storage)?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Storage(format!("read task failed: {e}")))?
    }
}

fn write_loop(db: &Database, commands: sync_mpsc::Receiver<Command>) {
    let mut stop_reply = None;
    while stop_reply.is_none() {
        let Ok(first) = commands.recv() else {
            break;
        };
        let mut batch = Vec::new();
        let mut urgent = false;
        let linger_until = Instant::now() + OUTCOME_LINGER;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(job, urgency) => {
                    batch.push(job);
                    urgent |= urgency == Urgency::Now;
                }
                Command::Stop(reply) => stop_reply = Some(reply),
            }
            if batch.len() >= MAX_BATCH || stop_reply.is_some() {
                break;
            }
            next = match commands.try_recv() {
                Ok(command) => Some(command),
                // Only outcomes so far: wait a little for a write that will be committed anyway.
                Err(sync_mpsc::TryRecvError::Empty) if !urgent => commands
                    .recv_timeout(linger_until.saturating_duration_since(Instant::now()))
                    .ok(),
                Err(_) => None,
            };
        }
        if !batch.is_empty() {
            commit_batch(db, batch);
        }
    }
    // Answer anything that raced the stop, so no caller waits forever.
    while let Ok(command) = commands.try_recv() {
        if let Command::Write(job, _) = command {
            commit_batch(db, vec![job]);
        }
    }
    if let Some(reply) = stop_reply {
        let _ = reply.send(());
    }
}

fn commit_batch(db: &Database, batch: Vec<Job>) {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            // Dropping the jobs drops their reply channels: each caller learns that its
            // write was not committed.
            tracing::error!(error = %e, jobs = batch.len(), "store write transaction could not start");
            return;
        }
    };
    let mut completions = Vec::with_capacity(batch.len());
    let mut all_ok = true;
    for job in batch {
        let (ok, completion) = job(&txn);
        all_ok &= ok;
        completions.push(completion);
    }
    let outcome = if all_ok {
        txn.commit().map_err(StoreError::storage)
    } else {
        // A job hit a storage error part-way: nothing of this batch may become visible.
        let _ = txn.abort();
        Err(StoreError::Storage(
            "a write in the same commit batch failed; nothing was stored".to_string(),
        ))
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "store commit failed");
    }
    for completion in completions {
        completion(outcome.clone());
    }
}

fn config_key(tenant: &str, task_id: &str, id: &str) -> Vec<u8> {
    text_key(&[tenant, task_id, id])
}

fn task_key(tenant: &str, task_id: &str) -> Vec<u8> {
    text_key(&[tenant, task_id])
}

/// Visits every (key, value) whose key starts with `prefix`, in key order, after `start`.
fn scan_prefix<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    prefix: &[u8],
    start: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    for entry in table.range::<&[u8]>(start..).map_err(StoreError::storage)? {
        let (key, value) = entry.map_err(StoreError::storage)?;
        if !key.value().starts_with(prefix) {
            break;
        }
        if !visit(key.value(), value.value())? {
            break;
        }
    }
    Ok(())
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Removes and returns every (key, value) whose key starts with `prefix`.
fn take_prefix(
    table: &mut ::redb::Table<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Entries, StoreError> {
    let mut found = Vec::new();
    scan_prefix(&*table, prefix, prefix, |key, value| {
        found.push((key.to_vec(), value.to_vec()));
        Ok(true)
    })?;
    for (key, _) in &found {
        table.remove(key.as_slice()).map_err(StoreError::storage)?;
    }
    Ok(found)
}

/// Reads, changes and writes back one delivery; `None` if it does not exist.
fn update_delivery(
    deliveries: &mut ::redb::Table<&'static [u8], &'static [u8]>,
    delivery_id: &[u8],
    change: impl FnOnce(&mut DeliveryRecord),
) -> Result<Option<DeliveryRecord>, StoreError> {
    let Some(bytes) = deliveries.get(delivery_id).map_err(StoreError::storage)? else {
        return Ok(None);
    };
    let mut delivery: DeliveryRecord = decode(bytes.value())?;
    drop(bytes);
    change(&mut delivery);
    deliveries
        .insert(delivery_id, encode(&delivery)?.as_slice())
        .map_err(StoreError::storage)?;
    Ok(Some(delivery))
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

fn encode_sealed<T: Serialize>(sealing: &Sealing, value: &T) -> Result<Vec<u8>, StoreError> {
    sealing.seal(encode(value)?)
}

fn decode_sealed<T: serde::de::DeserializeOwned>(
    sealing: &Sealing,
    bytes: &[u8],
) -> Result<T, StoreError> {
    decode(&sealing.open(bytes)?)
}

fn get_sealed<T: serde::de::DeserializeOwned>(
    sealing: &Sealing,
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(StoreError::storage)? {
        Some(bytes) => Ok(Some(decode_sealed(sealing, bytes.value())?)),
        None => Ok(None),
    }
}

fn get_json<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(StoreError::storage)? {
        Some(bytes) => Ok(Some(decode(bytes.value())?)),
        None => Ok(None),
    }
}

fn record_attempt_in(
    sealing: &Sealing,
    txn: &WriteTransaction,
    delivery_id: &str,
    attempt: AttemptRecord,
    update: DeliveryUpdate,
) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    let mut attempts = txn.open_table(ATTEMPTS).map_err(StoreError::storage)?;
    let number = attempt.number;
    attempts
        .insert(
            attempt_key(delivery_id, number).as_slice(),
            encode(&attempt)?.as_slice(),
        )
        .map_err(StoreError::storage)?;
    if number > MAX_ATTEMPTS_LOGGED {
        attempts
            .remove(attempt_key(delivery_id, number - MAX_ATTEMPTS_LOGGED).as_slice())
            .map_err(StoreError::storage)?;
    }
    drop(attempts);
    let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
    let mut pending = txn.open_table(PENDING).map_err(StoreError::storage)?;
    let Some(current) = get_json::<DeliveryRecord>(&deliveries, delivery_id.as_bytes())? else {
        return Ok(Vec::new());
    };
    let still_pending = current.state == DeliveryState::Pending;
    update_delivery(&mut deliveries, delivery_id.as_bytes(), |delivery| {
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
        pending
            .remove(lane_key(&current).as_slice())
            .map_err(StoreError::storage)?;
    }
    let DeliveryUpdate::DisableConfig { error } = update else {
        return Ok(Vec::new());
    };
    let ckey = config_key(&current.tenant, &current.task_id, &current.config_id);
    let mut killed = Vec::new();
    for (_, other) in take_prefix(&mut pending, &ckey)? {
        update_delivery(&mut deliveries, &other, |delivery| {
            delivery.state = DeliveryState::Dead;
            delivery.last_error = Some(format!("its push config was disabled: {error}"));
            delivery.updated_at_ms = now;
        })?;
        killed.push(String::from_utf8_lossy(&other).into_owned());
    }
    drop(deliveries);
    drop(pending);
    let mut configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
    if let Some(mut config) = get_sealed::<ConfigRecord>(sealing, &configs, &ckey)? {
        config.state = ConfigState::Disabled;
        config.updated_at_ms = now;
        configs
            .insert(ckey.as_slice(), encode_sealed(sealing, &config)?.as_slice())
            .map_err(StoreError::storage)?;
    }
    Ok(killed)
}

fn replay_in(
    sealing: &Sealing,
    txn: &WriteTransaction,
    delivery_id: &str,
    now: u64,
) -> Result<Result<PendingDelivery, ReplayRefusal>, StoreError> {
    let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
    let configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
    let Some(delivery) = get_json::<DeliveryRecord>(&deliveries, delivery_id.as_bytes())? else {
        return Ok(Err(ReplayRefusal::NotFound(delivery_id.to_string())));
    };
    if delivery.state == DeliveryState::Pending {
        return Ok(Err(ReplayRefusal::AlreadyPending(delivery_id.to_string())));
    }
    let ckey = config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id);
    let Some(config) = get_sealed::<ConfigRecord>(sealing, &configs, &ckey)? else {
        return Ok(Err(ReplayRefusal::ConfigDeleted(delivery_id.to_string())));
    };
    if config.state != ConfigState::Active {
        return Ok(Err(ReplayRefusal::ConfigDisabled(delivery_id.to_string())));
    }
    update_delivery(&mut deliveries, delivery_id.as_bytes(), |d| {
        d.state = DeliveryState::Pending;
        d.manual = true;
        d.next_attempt_at_ms = now;
        d.updated_at_ms = now;
    })?;
    let mut pending = txn.open_table(PENDING).map_err(StoreError::storage)?;
    pending
        .insert(lane_key(&delivery).as_slice(), delivery_id.as_bytes())
        .map_err(StoreError::storage)?;
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
}

fn counters(txn: &WriteTransaction, subscription_id: &str) -> Result<InboundCounters, StoreError> {
    let table = txn
        .open_table(INBOUND_COUNTERS)
        .map_err(StoreError::storage)?;
    Ok(get_json(&table, subscription_id.as_bytes())?.unwrap_or_default())
}

fn save_counters(
    txn: &WriteTransaction,
    subscription_id: &str,
    counters: &InboundCounters,
) -> Result<(), StoreError> {
    let mut table = txn
        .open_table(INBOUND_COUNTERS)
        .map_err(StoreError::storage)?;
    table
        .insert(subscription_id.as_bytes(), encode(counters)?.as_slice())
        .map_err(StoreError::storage)?;
    Ok(())
}

/// Numbers and stores a receipt, dropping the oldest beyond `MAX_RECEIPTS`.
fn insert_receipt(
    txn: &WriteTransaction,
    subscription_id: &str,
    counters: &mut InboundCounters,
    mut receipt: ReceiptRecord,
) -> Result<ReceiptRecord, StoreError> {
    counters.last_receipt += 1;
    receipt.number = counters.last_receipt;
    let mut receipts = txn.open_table(RECEIPTS).map_err(StoreError::storage)?;
    let prefix = text_key(&[subscription_id]);
    receipts
        .insert(
            with_sequence(prefix.clone(), receipt.number).as_slice(),
            encode(&receipt)?.as_slice(),
        )
        .map_err(StoreError::storage)?;
    if receipt.number > MAX_RECEIPTS {
        receipts
            .remove(with_sequence(prefix, receipt.number - MAX_RECEIPTS).as_slice())
            .map_err(StoreError::storage)?;
    }
    Ok(receipt)
}

/// Records the replay key; `Some(first seen)` when it was already seen within the window.
fn replay_check(
    txn: &WriteTransaction,
    subscription_id: &str,
    key: &str,
    window_ms: u64,
    now: u64,
) -> Result<Option<u64>, StoreError> {
    let mut replay = txn.open_table(REPLAY).map_err(StoreError::storage)?;
    let mut by_time = txn
        .open_table(REPLAY_BY_TIME)
        .map_err(StoreError::storage)?;
    let prefix = text_key(&[subscription_id]);
    let expired_before = now.saturating_sub(window_ms);
    let mut expired = Vec::new();
    scan_prefix(&by_time, &prefix, &prefix, |time_key, replay_key| {
        let at = u64::from_be_bytes(
            time_key[prefix.len()..prefix.len() + 8]
                .try_into()
                .unwrap_or_default(),
        );
        if at >= expired_before || expired.len() >= REPLAY_PRUNE_BATCH {
            return Ok(false);
        }
        expired.push((time_key.to_vec(), replay_key.to_vec()));
        Ok(true)
    })?;
    for (time_key, replay_key) in expired {
        by_time
            .remove(time_key.as_slice())
            .map_err(StoreError::storage)?;
        replay
            .remove(replay_key.as_slice())
            .map_err(StoreError::storage)?;
    }
    let replay_key = text_key(&[subscription_id, key]);
    if let Some(first) = replay
        .get(replay_key.as_slice())
        .map_err(StoreError::storage)?
    {
        let first = first.value();
        if first >= expired_before {
            return Ok(Some(first));
        }
    }
    replay
        .insert(replay_key.as_slice(), now)
        .map_err(StoreError::storage)?;
    let mut time_key = with_sequence(prefix, now);
    time_key.extend_from_slice(key.as_bytes());
    by_time
        .insert(time_key.as_slice(), replay_key.as_slice())
        .map_err(StoreError::storage)?;
    Ok(None)
}

fn accept_inbound_in(
    sealing: &Sealing,
    txn: &WriteTransaction,
    accept: InboundAccept,
) -> Result<InboundOutcome, StoreError> {
    let now = now_ms();
    let id = accept.subscription_id.clone();
    let mut counters = counters(txn, &id)?;
    let mut receipt = accept.receipt;
    receipt.task_id = Some(accept.task_id.clone());
    if replay_check(txn, &id, &accept.replay_key, accept.replay_window_ms, now)?.is_some() {
        receipt.verdict = "duplicate".to_string();
        receipt
            .notes
            .push("already accepted within its window: acknowledged, not routed again".to_string());
        let receipt = insert_receipt(txn, &id, &mut counters, receipt)?;
        save_counters(txn, &id, &counters)?;
        return Ok(InboundOutcome::Duplicate { receipt });
    }
    let task_key = text_key(&[&id, &accept.task_id]);
    let mut tasks = txn.open_table(INBOUND_TASKS).map_err(StoreError::storage)?;
    let progress: fold::Progress = get_json(&tasks, &task_key)?.unwrap_or_default();
    let (notes, progress) = fold::progress_notes(&progress, &accept.event, accept.push_sequence);
    tasks
        .insert(task_key.as_slice(), encode(&progress)?.as_slice())
        .map_err(StoreError::storage)?;
    drop(tasks);
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
    let mut events = txn
        .open_table(INBOUND_EVENTS)
        .map_err(StoreError::storage)?;
    events
        .insert(
            with_sequence(text_key(&[&id]), sequence).as_slice(),
            encode(&record)?.as_slice(),
        )
        .map_err(StoreError::storage)?;
    drop(events);
    let forwarded = match accept.route {
        InboundRoute::Log => None,
        InboundRoute::Publish { tenant } => {
            let event = NewEvent {
                tenant,
                task_id: accept.task_id.clone(),
                event: accept.event,
                body: accept.body,
            };
            Some(publish_one(sealing, txn, event, now)?)
        }
        InboundRoute::Forward { tenant, url } => {
            let mut configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            let ckey = config_key(&tenant, &accept.task_id, FORWARD_CONFIG_ID);
            if configs
                .get(ckey.as_slice())
                .map_err(StoreError::storage)?
                .is_none()
            {
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
                };
                configs
                    .insert(ckey.as_slice(), encode_sealed(sealing, &config)?.as_slice())
                    .map_err(StoreError::storage)?;
            }
            drop(configs);
            let event = NewEvent {
                tenant,
                task_id: accept.task_id.clone(),
                event: accept.event,
                body: accept.body,
            };
            Some(publish_one(sealing, txn, event, now)?)
        }
    };
    let receipt = insert_receipt(txn, &id, &mut counters, receipt)?;
    save_counters(txn, &id, &counters)?;
    Ok(InboundOutcome::Accepted {
        sequence,
        forwarded,
        receipt,
    })
}

fn publish_one(
    sealing: &Sealing,
    txn: &WriteTransaction,
    new: NewEvent,
    now: u64,
) -> Result<PublishedEvent, StoreError> {
    let mut tasks = txn.open_table(TASKS).map_err(StoreError::storage)?;
    let mut events = txn.open_table(EVENTS).map_err(StoreError::storage)?;
    let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
    let mut lanes = txn.open_table(LANES).map_err(StoreError::storage)?;
    let mut pending = txn.open_table(PENDING).map_err(StoreError::storage)?;
    let configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;

    let tkey = task_key(&new.tenant, &new.task_id);
    let previous: Option<TaskRecord> =
        match tasks.get(tkey.as_slice()).map_err(StoreError::storage)? {
            Some(bytes) => Some(decode(bytes.value())?),
            None => None,
        };
    let sequence = previous.as_ref().map_or(0, |t| t.last_sequence) + 1;
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
    tasks
        .insert(tkey.as_slice(), encode(&record)?.as_slice())
        .map_err(StoreError::storage)?;

    let event_id = Uuid::now_v7().to_string();
    let event = EventRecord {
        event_id: event_id.clone(),
        sequence,
        received_at_ms: now,
        body: new.body,
    };
    events
        .insert(
            with_sequence(tkey.clone(), sequence).as_slice(),
            encode(&event)?.as_slice(),
        )
        .map_err(StoreError::storage)?;

    let mut active = Vec::new();
    scan_prefix(&configs, &tkey, &tkey, |_, value| {
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
            created_at_ms: now,
            updated_at_ms: now,
        };
        deliveries
            .insert(delivery.id.as_bytes(), encode(&delivery)?.as_slice())
            .map_err(StoreError::storage)?;
        let lane = with_sequence(config_key(&new.tenant, &new.task_id, &config_id), sequence);
        lanes
            .insert(lane.as_slice(), delivery.id.as_bytes())
            .map_err(StoreError::storage)?;
        pending
            .insert(lane.as_slice(), delivery.id.as_bytes())
            .map_err(StoreError::storage)?;
        created.push(CreatedDelivery {
            delivery_id: delivery.id,
            config_id,
            url,
        });
    }
    Ok(PublishedEvent {
        event_id,
        task_id: new.task_id,
        sequence,
        deliveries: created,
    })
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn put_config(&self, config: ConfigRecord) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |txn| {
            let mut configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            let key = config_key(&config.tenant, &config.task_id, &config.id);
            let mut config = config;
            if let Some(existing) = configs.get(key.as_slice()).map_err(StoreError::storage)? {
                let existing: ConfigRecord = decode_sealed(&sealing, existing.value())?;
                config.created_at_ms = existing.created_at_ms;
            }
            configs
                .insert(key.as_slice(), encode_sealed(&sealing, &config)?.as_slice())
                .map_err(StoreError::storage)?;
            Ok(())
        })
        .await
    }

    async fn get_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<ConfigRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |txn| {
            let configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            get_sealed(&sealing, &configs, &config_key(&tenant, &task_id, &id))
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
        self.read(move |txn| {
            let configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
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
            let mut found = Vec::new();
            scan_prefix(&configs, &prefix, &start, |_, value| {
                found.push(decode_sealed(&sealing, value)?);
                Ok(found.len() < limit)
            })?;
            Ok(found)
        })
        .await
    }

    async fn delete_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            let key = config_key(&tenant, &task_id, &id);
            let existed = configs
                .remove(key.as_slice())
                .map_err(StoreError::storage)?
                .is_some();
            drop(configs);
            let now = now_ms();
            let mut pending = txn.open_table(PENDING).map_err(StoreError::storage)?;
            let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
            for (_, delivery_id) in take_prefix(&mut pending, &key)? {
                update_delivery(&mut deliveries, &delivery_id, |delivery| {
                    delivery.state = DeliveryState::Canceled;
                    delivery.last_error = Some("its push config was deleted".to_string());
                    delivery.updated_at_ms = now;
                })?;
            }
            Ok(existed)
        })
        .await
    }

    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<PublishedEvent>, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |txn| {
            let now = now_ms();
            events
                .into_iter()
                .map(|event| publish_one(&sealing, txn, event, now))
                .collect()
        })
        .await
    }

    async fn get_task(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.read(move |txn| {
            let tasks = txn.open_table(TASKS).map_err(StoreError::storage)?;
            match tasks
                .get(task_key(&tenant, &task_id).as_slice())
                .map_err(StoreError::storage)?
            {
                Some(bytes) => Ok(Some(decode(bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn get_event(
        &self,
        tenant: String,
        task_id: String,
        sequence: u64,
    ) -> Result<Option<EventRecord>, StoreError> {
        self.read(move |txn| {
            let events = txn.open_table(EVENTS).map_err(StoreError::storage)?;
            let key = with_sequence(task_key(&tenant, &task_id), sequence);
            match events.get(key.as_slice()).map_err(StoreError::storage)? {
                Some(bytes) => Ok(Some(decode(bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn get_delivery(&self, id: String) -> Result<Option<DeliveryRecord>, StoreError> {
        self.read(move |txn| {
            let deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
            match deliveries.get(id.as_bytes()).map_err(StoreError::storage)? {
                Some(bytes) => Ok(Some(decode(bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn delivery_counts(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<DeliveryCounts, StoreError> {
        self.read(move |txn| {
            let lanes = txn.open_table(LANES).map_err(StoreError::storage)?;
            let deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
            let prefix = task_key(&tenant, &task_id);
            let mut counts = DeliveryCounts::default();
            scan_prefix(&lanes, &prefix, &prefix, |_, delivery_id| {
                if let Some(bytes) = deliveries.get(delivery_id).map_err(StoreError::storage)? {
                    let delivery: DeliveryRecord = decode(bytes.value())?;
                    match delivery.state {
                        DeliveryState::Pending => counts.pending += 1,
                        DeliveryState::Delivered => counts.delivered += 1,
                        DeliveryState::Dead => counts.dead += 1,
                        DeliveryState::Canceled => counts.canceled += 1,
                    }
                }
                Ok(true)
            })?;
            Ok(counts)
        })
        .await
    }

    async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |txn| {
            let pending = txn.open_table(PENDING).map_err(StoreError::storage)?;
            let deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
            let configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            let mut found = Vec::new();
            let mut url_of_lane: Option<(Vec<u8>, String)> = None;
            for entry in pending.iter().map_err(StoreError::storage)? {
                let (_, delivery_id) = entry.map_err(StoreError::storage)?;
                let Some(delivery) = get_json::<DeliveryRecord>(&deliveries, delivery_id.value())?
                else {
                    continue;
                };
                let ckey = config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id);
                let url = match &url_of_lane {
                    Some((key, url)) if *key == ckey => url.clone(),
                    _ => {
                        let Some(config) = get_sealed::<ConfigRecord>(&sealing, &configs, &ckey)?
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
        })
        .await
    }

    async fn attempt_context(
        &self,
        delivery_id: String,
    ) -> Result<Option<AttemptContext>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |txn| {
            let deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
            let Some(delivery) = get_json::<DeliveryRecord>(&deliveries, delivery_id.as_bytes())?
            else {
                return Ok(None);
            };
            let configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            let config = get_sealed(
                &sealing,
                &configs,
                &config_key(&delivery.tenant, &delivery.task_id, &delivery.config_id),
            )?;
            let events = txn.open_table(EVENTS).map_err(StoreError::storage)?;
            let event_key = with_sequence(
                task_key(&delivery.tenant, &delivery.task_id),
                delivery.sequence,
            );
            let event = get_json(&events, &event_key)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "event {} of delivery {} is missing",
                    delivery.sequence, delivery.id
                ))
            })?;
            Ok(Some(AttemptContext {
                delivery,
                config,
                event,
            }))
        })
        .await
    }

    async fn record_attempt(
        &self,
        delivery_id: String,
        attempt: AttemptRecord,
        update: DeliveryUpdate,
    ) -> Result<Vec<String>, StoreError> {
        let sealing = self.sealing.clone();
        self.write_with(Urgency::Linger, move |txn| {
            record_attempt_in(&sealing, txn, &delivery_id, attempt, update)
        })
        .await
    }

    async fn attempts(&self, delivery_id: String) -> Result<Vec<AttemptRecord>, StoreError> {
        self.read(move |txn| {
            let attempts = txn.open_table(ATTEMPTS).map_err(StoreError::storage)?;
            let prefix = text_key(&[&delivery_id]);
            let mut found = Vec::new();
            scan_prefix(&attempts, &prefix, &prefix, |_, value| {
                found.push(decode(value)?);
                Ok(true)
            })?;
            Ok(found)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.read(move |txn| {
            let deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
            let mut found: Vec<DeliveryRecord> = Vec::new();
            if let Some(task_id) = &filter.task_id {
                // A task's deliveries through the lane index, then in id (creation) order.
                let lanes = txn.open_table(LANES).map_err(StoreError::storage)?;
                let prefix = match &filter.config_id {
                    Some(config_id) => config_key(&filter.tenant, task_id, config_id),
                    None => task_key(&filter.tenant, task_id),
                };
                let mut ids = Vec::new();
                scan_prefix(&lanes, &prefix, &prefix, |_, id| {
                    ids.push(id.to_vec());
                    Ok(true)
                })?;
                ids.sort();
                for id in ids {
                    if after
                        .as_ref()
                        .is_some_and(|after| id.as_slice() <= after.as_bytes())
                    {
                        continue;
                    }
                    if let Some(delivery) = get_json::<DeliveryRecord>(&deliveries, &id)? {
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
            for entry in deliveries
                .range::<&[u8]>(start.as_slice()..)
                .map_err(StoreError::storage)?
            {
                let (_, value) = entry.map_err(StoreError::storage)?;
                let delivery: DeliveryRecord = decode(value.value())?;
                if filter.matches(&delivery) {
                    found.push(delivery);
                    if found.len() >= limit {
                        break;
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    async fn replay(
        &self,
        delivery_ids: Vec<String>,
    ) -> Result<Vec<Result<PendingDelivery, ReplayRefusal>>, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |txn| {
            let now = now_ms();
            delivery_ids
                .iter()
                .map(|id| replay_in(&sealing, txn, id, now))
                .collect()
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |txn| {
            let keys = txn.open_table(KEYS).map_err(StoreError::storage)?;
            let mut found = Vec::new();
            for entry in keys.iter().map_err(StoreError::storage)? {
                let (_, value) = entry.map_err(StoreError::storage)?;
                found.push(decode_sealed(&sealing, value.value())?);
            }
            Ok(found)
        })
        .await
    }

    async fn put_signing_keys(
        &self,
        records: Vec<KeyRecord>,
        retired: Vec<String>,
    ) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |txn| {
            let mut keys = txn.open_table(KEYS).map_err(StoreError::storage)?;
            for record in &records {
                keys.insert(
                    record.kid.as_bytes(),
                    encode_sealed(&sealing, record)?.as_slice(),
                )
                .map_err(StoreError::storage)?;
            }
            for kid in &retired {
                keys.remove(kid.as_bytes()).map_err(StoreError::storage)?;
            }
            Ok(())
        })
        .await
    }

    async fn put_subscription(&self, subscription: SubscriptionRecord) -> Result<(), StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |txn| {
            let mut table = txn.open_table(SUBSCRIPTIONS).map_err(StoreError::storage)?;
            table
                .insert(
                    subscription.id.as_bytes(),
                    encode_sealed(&sealing, &subscription)?.as_slice(),
                )
                .map_err(StoreError::storage)?;
            Ok(())
        })
        .await
    }

    async fn get_subscription(&self, id: String) -> Result<Option<SubscriptionRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |txn| {
            let table = txn.open_table(SUBSCRIPTIONS).map_err(StoreError::storage)?;
            get_sealed(&sealing, &table, id.as_bytes())
        })
        .await
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let sealing = self.sealing.clone();
        self.read(move |txn| {
            let table = txn.open_table(SUBSCRIPTIONS).map_err(StoreError::storage)?;
            let mut found = Vec::new();
            for entry in table.iter().map_err(StoreError::storage)? {
                let (_, value) = entry.map_err(StoreError::storage)?;
                found.push(decode_sealed(&sealing, value.value())?);
            }
            Ok(found)
        })
        .await
    }

    async fn delete_subscription(&self, id: String) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(SUBSCRIPTIONS).map_err(StoreError::storage)?;
            let existed = table
                .remove(id.as_bytes())
                .map_err(StoreError::storage)?
                .is_some();
            drop(table);
            let prefix = text_key(&[&id]);
            for name in [INBOUND_EVENTS, RECEIPTS, INBOUND_TASKS, REPLAY_BY_TIME] {
                let mut table = txn.open_table(name).map_err(StoreError::storage)?;
                take_prefix(&mut table, &prefix)?;
            }
            let mut replay = txn.open_table(REPLAY).map_err(StoreError::storage)?;
            let keys: Vec<Vec<u8>> = replay
                .range::<&[u8]>(prefix.as_slice()..)
                .map_err(StoreError::storage)?
                .map_while(|entry| entry.ok().map(|(k, _)| k.value().to_vec()))
                .take_while(|k| k.starts_with(&prefix))
                .collect();
            for key in keys {
                replay.remove(key.as_slice()).map_err(StoreError::storage)?;
            }
            let mut counters = txn
                .open_table(INBOUND_COUNTERS)
                .map_err(StoreError::storage)?;
            counters
                .remove(id.as_bytes())
                .map_err(StoreError::storage)?;
            Ok(existed)
        })
        .await
    }

    async fn accept_inbound(&self, accept: InboundAccept) -> Result<InboundOutcome, StoreError> {
        let sealing = self.sealing.clone();
        self.write(move |txn| accept_inbound_in(&sealing, txn, accept))
            .await
    }

    async fn add_receipt(
        &self,
        subscription_id: String,
        receipt: ReceiptRecord,
    ) -> Result<ReceiptRecord, StoreError> {
        self.write(move |txn| {
            let mut counters = counters(txn, &subscription_id)?;
            let receipt = insert_receipt(txn, &subscription_id, &mut counters, receipt)?;
            save_counters(txn, &subscription_id, &counters)?;
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
        self.read(move |txn| {
            let events = txn
                .open_table(INBOUND_EVENTS)
                .map_err(StoreError::storage)?;
            let prefix = text_key(&[&subscription_id]);
            let start = with_sequence(prefix.clone(), after.saturating_add(1));
            let mut found = Vec::new();
            scan_prefix(&events, &prefix, &start, |_, value| {
                found.push(decode(value)?);
                Ok(found.len() < limit)
            })?;
            Ok(found)
        })
        .await
    }

    async fn receipts(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ReceiptRecord>, StoreError> {
        self.read(move |txn| {
            let receipts = txn.open_table(RECEIPTS).map_err(StoreError::storage)?;
            let prefix = text_key(&[&subscription_id]);
            let start = with_sequence(prefix.clone(), after.saturating_add(1));
            let mut found = Vec::new();
            scan_prefix(&receipts, &prefix, &start, |_, value| {
                found.push(decode(value)?);
                Ok(found.len() < limit)
            })?;
            Ok(found)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|txn| {
            txn.open_table(TASKS)
                .map(|_| ())
                .map_err(StoreError::storage)
        })
        .await
    }

    async fn close(&self) {
        let (reply, done) = oneshot::channel();
        let writer = self.writer.clone();
        // `send` waits for room in the queue, so it runs off the runtime.
        let sent = tokio::task::spawn_blocking(move || writer.send(Command::Stop(reply)).is_ok())
            .await
            .unwrap_or(false);
        if sent {
            let _ = done.await;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
