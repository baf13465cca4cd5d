//! The embedded store: one redb file, one writer thread with group commit.
//!
//! Every write is a job sent to the writer thread. The thread takes every job that is queued
//! (up to `MAX_BATCH`), runs them in one write transaction, commits once (redb's default
//! durability fsyncs before `commit` returns), then answers each job. Under load a batch grows
//! by itself, so the fsync cost is shared. Reads run on the blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use a2a::TaskState;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::keys::{text_key, with_sequence};
use super::*;
use crate::a2a::fold;

const CONFIGS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("configs");
const TASKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tasks");
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");
/// (tenant, task, config, sequence) → delivery id: each lane's deliveries in order.
const LANES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lanes");

/// Most jobs committed together.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, writes fail fast with `Busy`.
const QUEUE_CAPACITY: usize = 8192;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write job: runs inside the batch transaction and returns whether it succeeded and how
/// to answer its caller once the commit outcome is known.
type Job = Box<dyn FnOnce(&WriteTransaction) -> (bool, Completion) + Send>;

enum Command {
    Write(Job),
    Stop(oneshot::Sender<()>),
}

pub struct RedbStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Command>,
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
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Storage(format!("cannot create store folder {}: {e}", dir.display()))
        })?;
        let path = dir.join("hub.redb");
        let db = Database::create(&path).map_err(|e| {
            StoreError::Storage(format!("cannot open store file {}: {e}", path.display()))
        })?;
        let txn = db.begin_write().map_err(StoreError::storage)?;
        for table in [CONFIGS, TASKS, EVENTS, DELIVERIES, LANES] {
            txn.open_table(table).map_err(StoreError::storage)?;
        }
        txn.commit().map_err(StoreError::storage)?;
        let db = Arc::new(db);
        let (writer, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let thread_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".to_string())
            .spawn(move || write_loop(&thread_db, jobs))
            .map_err(|e| StoreError::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore {
            db,
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
            .try_send(Command::Write(job))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
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

fn write_loop(db: &Database, mut commands: mpsc::Receiver<Command>) {
    let mut stop_reply = None;
    while stop_reply.is_none() {
        let Some(first) = commands.blocking_recv() else {
            break;
        };
        let mut batch = Vec::new();
        match first {
            Command::Write(job) => batch.push(job),
            Command::Stop(reply) => stop_reply = Some(reply),
        }
        while batch.len() < MAX_BATCH && stop_reply.is_none() {
            match commands.try_recv() {
                Ok(Command::Write(job)) => batch.push(job),
                Ok(Command::Stop(reply)) => stop_reply = Some(reply),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            commit_batch(db, batch);
        }
    }
    commands.close();
    // Answer anything that raced the stop, so no caller waits forever.
    while let Ok(command) = commands.try_recv() {
        if let Command::Write(job) = command {
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

fn publish_one(
    txn: &WriteTransaction,
    new: NewEvent,
    now: u64,
) -> Result<PublishedEvent, StoreError> {
    let mut tasks = txn.open_table(TASKS).map_err(StoreError::storage)?;
    let mut events = txn.open_table(EVENTS).map_err(StoreError::storage)?;
    let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
    let mut lanes = txn.open_table(LANES).map_err(StoreError::storage)?;
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
        let config: ConfigRecord = decode(value)?;
        if config.state == ConfigState::Active {
            active.push(config.id);
        }
        Ok(true)
    })?;
    let mut created = Vec::with_capacity(active.len());
    for config_id in active {
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
        created.push(CreatedDelivery {
            delivery_id: delivery.id,
            config_id,
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
        self.write(move |txn| {
            let mut configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            let key = config_key(&config.tenant, &config.task_id, &config.id);
            let mut config = config;
            if let Some(existing) = configs.get(key.as_slice()).map_err(StoreError::storage)? {
                let existing: ConfigRecord = decode(existing.value())?;
                config.created_at_ms = existing.created_at_ms;
            }
            configs
                .insert(key.as_slice(), encode(&config)?.as_slice())
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
        self.read(move |txn| {
            let configs = txn.open_table(CONFIGS).map_err(StoreError::storage)?;
            let key = config_key(&tenant, &task_id, &id);
            match configs.get(key.as_slice()).map_err(StoreError::storage)? {
                Some(bytes) => Ok(Some(decode(bytes.value())?)),
                None => Ok(None),
            }
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
                found.push(decode(value)?);
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
            let lanes = txn.open_table(LANES).map_err(StoreError::storage)?;
            let mut undelivered = Vec::new();
            scan_prefix(&lanes, &key, &key, |_, delivery_id| {
                undelivered.push(delivery_id.to_vec());
                Ok(true)
            })?;
            drop(lanes);
            let mut deliveries = txn.open_table(DELIVERIES).map_err(StoreError::storage)?;
            let now = now_ms();
            for delivery_id in undelivered {
                let Some(bytes) = deliveries
                    .get(delivery_id.as_slice())
                    .map_err(StoreError::storage)?
                else {
                    continue;
                };
                let mut delivery: DeliveryRecord = decode(bytes.value())?;
                drop(bytes);
                if delivery.state == DeliveryState::Pending {
                    delivery.state = DeliveryState::Canceled;
                    delivery.last_error = Some("its push config was deleted".to_string());
                    delivery.updated_at_ms = now;
                    deliveries
                        .insert(delivery_id.as_slice(), encode(&delivery)?.as_slice())
                        .map_err(StoreError::storage)?;
                }
            }
            Ok(existed)
        })
        .await
    }

    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<PublishedEvent>, StoreError> {
        self.write(move |txn| {
            let now = now_ms();
            events
                .into_iter()
                .map(|event| publish_one(txn, event, now))
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
        if self.writer.send(Command::Stop(reply)).await.is_ok() {
            let _ = done.await;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
