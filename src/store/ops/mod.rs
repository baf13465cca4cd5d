//! Every operation of the store, written once over ordered tables (`tables.rs`) and run by a
//! backend that provides transactions: the embedded redb file, a PostgreSQL database, or memory
//! (tests). One file per aggregate, each with the trait callers see and its implementation:
//! `configs.rs`, `events.rs` (with `idempotency.rs`), `deliveries.rs`, `inbound.rs`, `follows.rs`, `signing_keys.rs`,
//! `retention.rs`, `lanes.rs`, `browse.rs` (the operator's listings across tasks); `fresh.rs`
//! keeps what a just-published delivery's first attempt needs; this file has what they share
//! (the backend seam, the outbox, key builders).
//!
//! A backend runs a read in one read transaction and a write in one write transaction. Writes
//! share commits (group commit, `writer.rs`), and a batch commits whole or not at all: should
//! one write of a batch fail, every write of that batch fails with it and nothing of any of them
//! is stored, so each caller is told to retry (the API answers 503, nothing accepted). A write
//! fails only on a storage fault (the engine's error, a record that does not decode or unseal);
//! refusals (a task with too many configs, another principal's task, a duplicate push) are
//! answers, not errors, and never touch the other writes of their batch.

use std::sync::Arc;

use a2a::TaskState;
use uuid::Uuid;

use super::keys::{text_key, with_sequence};
use super::sealing::Sealing;
use super::tables::*;
use super::*;
use crate::a2a::fold;

mod backup;
mod browse;
mod configs;
mod deliveries;
mod events;
mod finished;
mod follows;
mod fresh;
mod idempotency;
mod inbound;
mod lanes;
pub(super) mod operator;
pub(super) mod retention;
mod signing_keys;

pub use backup::BackupStore;
pub use browse::{Browse, BrowseStore, TaskOverview};
pub use configs::ConfigStore;
pub use deliveries::DeliveryStore;
pub use events::EventStore;
pub use follows::FollowStore;
pub use inbound::InboundStore;
pub use lanes::LaneStore;
pub use operator::OperatorEventStore;
pub use retention::RetentionStore;
pub use signing_keys::KeyStore;

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
/// What a write does with its result once its commit is durable, before its caller hears of it,
/// on the thread that answers commits (the writer's, or the embedded store's journal thread):
/// so in commit order.
pub type AfterCommit<R> = Box<dyn FnOnce(&R) + Send>;

/// A storage engine: transactions over the tables of `Table::ALL`.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `job` off the async runtime, on committed state. A backend whose reads cost a round
    /// trip may run each of the job's reads on its own (PostgreSQL does): a job that must see
    /// several tables at one moment uses `read_snapshot`.
    async fn read<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError>;
    /// Runs `job` in one read transaction: every read sees the same moment.
    async fn read_snapshot<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        self.read(job).await
    }
    /// Runs `job`, which reads `reads` (and perhaps more), on the committed state. A backend
    /// whose reads cost a round trip runs the jobs that arrive together as one, reading all
    /// their entries in one statement: the reads of the attempts starting at once.
    async fn read_ahead<R: Send + 'static>(
        &self,
        reads: Vec<ReadAhead>,
        job: ReadJob<R>,
    ) -> Result<R, StoreError> {
        let _ = reads;
        self.read(job).await
    }
    /// Runs `job` in a write transaction and returns its result once the commit is durable;
    /// `reads` are entries it will read (a hint: they may be fetched together first);
    /// `after_commit` runs on a successful job's result once the commit is durable, in commit
    /// order.
    async fn write<R: Send + 'static>(
        &self,
        urgency: Urgency,
        reads: Vec<ReadAhead>,
        job: WriteJob<R>,
        after_commit: Option<AfterCommit<R>>,
    ) -> Result<R, StoreError>;
    /// Finishes the writes in progress and releases the engine.
    async fn close(&self);
    /// See `Store::writer_stats`.
    fn writer_stats(&self) -> Option<Arc<crate::metrics::WriterStats>> {
        None
    }
    /// See `Store::file_bytes`.
    fn file_bytes(&self) -> Option<u64> {
        None
    }

    /// Lane leases, for a backend several nodes share (see `Store::shared`); a backend of
    /// one node holds every lane.
    fn shared(&self) -> bool {
        false
    }
    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<ClaimedLane>, StoreError> {
        Ok(lanes
            .into_iter()
            .map(|lane| ClaimedLane { lane, kept: true })
            .collect())
    }
    async fn claim_abandoned_lanes(&self, _limit: usize) -> Result<Vec<LaneId>, StoreError> {
        Ok(Vec::new())
    }
    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<RenewedLanes, StoreError> {
        Ok(RenewedLanes {
            held: lanes.clone(),
            extended: lanes,
        })
    }
    async fn release_lanes(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn lane_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<LaneId>> {
        None
    }
    /// See `LaneStore::live_nodes`.
    async fn live_nodes(&self) -> Result<usize, StoreError> {
        Ok(1)
    }
    /// Whether `read_long` gives one consistent snapshot of every table (see `BackupStore`).
    fn can_read_long(&self) -> bool {
        false
    }
    /// Runs a long read (a whole-store copy) in one read transaction on a thread of its own,
    /// so that it holds neither a runtime worker nor the writer.
    async fn read_long<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        self.read(job).await
    }
}

/// Receives the deliveries a commit made pending, once the commit is durable.
pub type Announce = Box<dyn Fn(Vec<PendingDelivery>) + Send + Sync>;

/// Where the store announces the deliveries its commits make pending (docs/ARCHITECTURE.md,
/// "Nothing pending is forgotten"): the delivery scheduler,
/// once it runs. Every write that makes deliveries pending (publish, a snapshot for a new
/// config, replay, an accepted inbound push that is forwarded) announces them here itself
/// (`write_announcing`), so no caller can forget to, and from the thread that committed, so in
/// commit order; before the scheduler runs they wait in the store, which the scheduler reads at
/// start.
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
    pub(super) outbox: Arc<Outbox>,
    /// The contexts of deliveries just published, for their first attempts (`fresh.rs`).
    pub(super) fresh: Arc<fresh::FreshContexts>,
}

impl<B: Backend> TableStore<B> {
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Tables) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend.read(Box::new(f)).await
    }

    /// A read whose parts must agree with each other (`Backend::read_snapshot`).
    async fn read_snapshot<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Tables) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend.read_snapshot(Box::new(f)).await
    }

    /// A read that declares what it will read (`Backend::read_ahead`).
    async fn read_ahead<R, F>(&self, reads: Vec<ReadAhead>, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Tables) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend.read_ahead(reads, Box::new(f)).await
    }

    /// One record by its key, read with the others asked for at the same moment: the hot
    /// path's point reads (a push's subscription, a gateway task's config) cost a database a
    /// statement per batch rather than per request.
    async fn record<T>(&self, table: Table, key: Vec<u8>) -> Result<Option<T>, StoreError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let sealing = self.sealing.clone();
        let reads = vec![ReadAhead::Key(table, key.clone())];
        self.read_ahead(reads, move |tables| {
            get_record(&sealing, tables, table, &key)
        })
        .await
    }

    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send + 'static,
    {
        self.write_reading(Vec::new(), f).await
    }

    /// A write that declares what it will read, for its batch to read ahead.
    async fn write_reading<R, F>(&self, reads: Vec<ReadAhead>, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend
            .write(Urgency::Now, reads, self.dropping_fresh(f), None)
            .await
    }

    /// `f`, first dropping the kept contexts when it runs: a write may change a delivery or a
    /// config (`fresh.rs`).
    fn dropping_fresh<R, F>(&self, f: F) -> WriteJob<R>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send + 'static,
    {
        let fresh = self.fresh.clone();
        Box::new(move |tables| {
            fresh.drop_all();
            f(tables)
        })
    }

    /// A write that makes deliveries pending (`pending_of` its result): they are announced
    /// once its commit is durable, in commit order, so that the new deliveries of a lane reach
    /// the scheduler in sequence (`Machine::on_offer` queues those without reading the lane).
    /// It may change any delivery or config, so it drops the contexts kept (`fresh.rs`).
    async fn write_announcing<R, F>(
        &self,
        urgency: Urgency,
        reads: Vec<ReadAhead>,
        f: F,
        pending_of: impl FnOnce(&R) -> Vec<PendingDelivery> + Send + 'static,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send + 'static,
    {
        let job = move |tables: &dyn TablesMut, handover: &mut fresh::Handover| {
            handover.changed_existing();
            f(tables)
        };
        self.write_keeping_fresh(urgency, reads, job, pending_of)
            .await
    }

    /// A write that announces what it makes pending, as `write_announcing`, and keeps the
    /// contexts kept so far unless it says, through its `Handover`, that it changed a delivery
    /// or a config that existed before it (`fresh.rs`). The context of each delivery it hands
    /// over is kept for that delivery's first attempt once the commit is durable.
    async fn write_keeping_fresh<R, F>(
        &self,
        urgency: Urgency,
        reads: Vec<ReadAhead>,
        f: F,
        pending_of: impl FnOnce(&R) -> Vec<PendingDelivery> + Send + 'static,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut, &mut fresh::Handover) -> Result<R, StoreError> + Send + 'static,
    {
        // Handed from the job, on the writer's thread, to the announcement after the commit.
        let staged = Arc::new(std::sync::Mutex::new(None));
        let staging = staged.clone();
        let fresh = self.fresh.clone();
        let job: WriteJob<R> = Box::new(move |tables| {
            let generation = fresh.generation();
            let mut handover = fresh::Handover::default();
            let result = f(tables, &mut handover)?;
            if handover.changed_existing {
                fresh.drop_all();
            } else if let Ok(mut staged) = staging.lock() {
                *staged = Some((generation, handover.contexts));
            }
            Ok(result)
        });
        let (outbox, fresh) = (self.outbox.clone(), self.fresh.clone());
        let announce: AfterCommit<R> = Box::new(move |result| {
            if let Some((generation, contexts)) = staged.lock().ok().and_then(|mut s| s.take()) {
                fresh.keep(generation, contexts, now_ms());
            }
            outbox.announce(pending_of(result))
        });
        self.backend
            .write(urgency, reads, job, Some(announce))
            .await
    }

    /// A write nobody waits on to answer someone: it may wait to share a later commit.
    async fn write_lingering<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn TablesMut) -> Result<R, StoreError> + Send + 'static,
    {
        self.backend
            .write(Urgency::Linger, Vec::new(), self.dropping_fresh(f), None)
            .await
    }
}

fn config_key(tenant: &str, task_id: &str, id: &str) -> Vec<u8> {
    text_key(&[tenant, task_id, id])
}

fn task_key(tenant: &str, task_id: &str) -> Vec<u8> {
    text_key(&[tenant, task_id])
}

/// A new delivery of `lane` at `sequence`, pending and due now; its body is the event's unless
/// the caller sets `body_v03` or `snapshot`.
fn new_delivery(lane: &LaneId, sequence: u64, event_id: String, now: u64) -> DeliveryRecord {
    DeliveryRecord {
        id: Uuid::now_v7().to_string(),
        tenant: lane.tenant.clone(),
        task_id: lane.task_id.clone(),
        config_id: lane.config_id.clone(),
        sequence,
        event_id,
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at_ms: now,
        last_error: None,
        manual: false,
        body_v03: None,
        snapshot: None,
        snapshot_trace: None,
        lane_failing: false,
        skipped_by: None,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// Stores a new pending delivery with its lane and pending entries.
fn add_pending(tables: &dyn TablesMut, delivery: &DeliveryRecord) -> Result<(), StoreError> {
    add_to_lane(tables, delivery)?;
    tables.insert(Table::Pending, &lane_key(delivery), delivery.id.as_bytes())
}

/// Stores a delivery and its lane entry, not pending (so as it stands: one a filter skipped).
fn add_to_lane(tables: &dyn TablesMut, delivery: &DeliveryRecord) -> Result<(), StoreError> {
    let id = delivery.id.as_bytes();
    tables.insert(Table::Deliveries, id, &encode(delivery)?)?;
    tables.insert(Table::Lanes, &lane_key(delivery), id)
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
/// Removes a delivery with its attempt log, lane entry and pending entry (if any); how many
/// records went.
fn remove_delivery(
    tables: &dyn TablesMut,
    lane_key: &[u8],
    delivery_id: &[u8],
) -> Result<usize, StoreError> {
    let attempts = text_key(&[&String::from_utf8_lossy(delivery_id)]);
    let logged = collect_prefix(tables, Table::Attempts, &attempts)?;
    for (key, _) in &logged {
        tables.remove(Table::Attempts, key)?;
    }
    tables.remove(Table::Deliveries, delivery_id)?;
    tables.remove(Table::Lanes, lane_key)?;
    tables.remove(Table::Pending, lane_key)?;
    Ok(2 + logged.len())
}

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

#[async_trait::async_trait]
impl<B: Backend> Store for TableStore<B> {
    fn announce_pending_to(&self, announce: Announce) {
        if self.outbox.0.set(announce).is_err() {
            tracing::error!("the store already announces its pending deliveries elsewhere");
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tables| tables.get(Table::Tasks, &[]).map(|_| ()))
            .await
    }

    async fn close(&self) {
        self.backend.close().await;
    }

    fn writer_stats(&self) -> Option<Arc<crate::metrics::WriterStats>> {
        self.backend.writer_stats()
    }

    fn file_bytes(&self) -> Option<u64> {
        self.backend.file_bytes()
    }
}
