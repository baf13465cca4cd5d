//! The embedded backend: one redb file, one writer thread with group commit.
//!
//! Every write is a job sent to the writer thread. The thread takes every job that is queued
//! (up to `MAX_BATCH`), runs them in one write transaction, commits once (redb's default
//! durability fsyncs before `commit` returns), then answers each job. Under load a batch grows
//! by itself, so the fsync cost is shared. Attempt outcomes nobody waits on may linger up to
//! `OUTCOME_LINGER` for the next write that someone does wait on (an event's intake, an API
//! call), so they ride in its commit instead of costing one of their own. Reads run on the
//! blocking pool.

use std::cell::{OnceCell, RefCell};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as sync_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use tokio::sync::oneshot;

use super::StoreError;
use super::ops::{Backend, ReadJob, TableStore, Urgency, WriteJob};
use super::sealing::Sealing;
use super::tables::{Table, Tables, TablesMut, Visit};

/// Page cache of a store opened without settings (the hub's own default is `store.cache_mib`).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Most jobs committed together.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, writes fail fast with `Busy`.
const QUEUE_CAPACITY: usize = 8192;
/// Longest an attempt outcome waits for company before it is committed on its own.
const OUTCOME_LINGER: Duration = Duration::from_millis(2);

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write job: runs inside the batch transaction and returns whether it succeeded and how
/// to answer its caller once the commit outcome is known.
type Job = Box<dyn FnOnce(&dyn TablesMut) -> (bool, Completion) + Send>;

enum Command {
    Write(Job, Urgency),
    Stop(oneshot::Sender<()>),
}

type Bytes = &'static [u8];

/// Every table holds bytes but the replay table, whose values are times (u64): it was
/// created that way, and the format of existing store files is kept.
fn bytes_definition(table: Table) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(table.name())
}

const REPLAY: TableDefinition<Bytes, u64> = TableDefinition::new("replay");

fn replay_value(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("a replay entry is not an 8-byte time".to_string()))
}

/// The embedded store: the hub's store on a redb file.
pub type RedbStore = TableStore<RedbBackend>;

pub struct RedbBackend {
    db: Arc<Database>,
    writer: sync_mpsc::SyncSender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
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
        Ok(TableStore {
            backend: RedbBackend::open(dir, cache_bytes)?,
            sealing: Arc::new(sealing),
        })
    }
}

impl RedbBackend {
    fn open(dir: &Path, cache_bytes: usize) -> Result<RedbBackend, StoreError> {
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
        for table in Table::ALL {
            if table == Table::Replay {
                txn.open_table(REPLAY).map_err(StoreError::storage)?;
            } else {
                txn.open_table(bytes_definition(table))
                    .map_err(StoreError::storage)?;
            }
        }
        txn.commit().map_err(StoreError::storage)?;
        let db = Arc::new(db);
        let (writer, jobs) = sync_mpsc::sync_channel(QUEUE_CAPACITY);
        let thread_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".to_string())
            .spawn(move || write_loop(&thread_db, jobs))
            .map_err(|e| StoreError::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbBackend {
            db,
            writer,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }
}

#[async_trait::async_trait]
impl Backend for RedbBackend {
    async fn read<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StoreError::storage)?;
            job(&RedbRead::new(&txn))
        })
        .await
        .map_err(|e| StoreError::Storage(format!("read task failed: {e}")))?
    }

    async fn write<R: Send + 'static>(
        &self,
        urgency: Urgency,
        job: WriteJob<R>,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |tables| {
            let result = job(tables);
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

/// Visits a redb table's entries under `prefix` from `start`, giving each value as bytes.
fn scan_table<V: ::redb::Value + 'static>(
    table: &impl ReadableTable<Bytes, V>,
    prefix: &[u8],
    start: &[u8],
    value_bytes: impl Fn(V::SelfType<'_>) -> Vec<u8>,
    visit: Visit<'_>,
) -> Result<(), StoreError> {
    for entry in table.range::<&[u8]>(start..).map_err(StoreError::storage)? {
        let (key, value) = entry.map_err(StoreError::storage)?;
        if !key.value().starts_with(prefix) {
            break;
        }
        if !visit(key.value(), &value_bytes(value.value()))? {
            break;
        }
    }
    Ok(())
}

/// A read transaction's tables, each opened on first use.
struct RedbRead<'t> {
    txn: &'t ReadTransaction,
    bytes: [OnceCell<ReadOnlyTable<Bytes, Bytes>>; Table::ALL.len()],
    replay: OnceCell<ReadOnlyTable<Bytes, u64>>,
}

impl<'t> RedbRead<'t> {
    fn new(txn: &'t ReadTransaction) -> Self {
        RedbRead {
            txn,
            bytes: std::array::from_fn(|_| OnceCell::new()),
            replay: OnceCell::new(),
        }
    }

    fn bytes(&self, table: Table) -> Result<&ReadOnlyTable<Bytes, Bytes>, StoreError> {
        let cell = &self.bytes[table.index()];
        if let Some(open) = cell.get() {
            return Ok(open);
        }
        let open = self
            .txn
            .open_table(bytes_definition(table))
            .map_err(StoreError::storage)?;
        Ok(cell.get_or_init(|| open))
    }

    fn replay(&self) -> Result<&ReadOnlyTable<Bytes, u64>, StoreError> {
        if let Some(open) = self.replay.get() {
            return Ok(open);
        }
        let open = self.txn.open_table(REPLAY).map_err(StoreError::storage)?;
        Ok(self.replay.get_or_init(|| open))
    }
}

impl Tables for RedbRead<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if table == Table::Replay {
            let found = self.replay()?.get(key).map_err(StoreError::storage)?;
            return Ok(found.map(|v| v.value().to_be_bytes().to_vec()));
        }
        let found = self.bytes(table)?.get(key).map_err(StoreError::storage)?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        if table == Table::Replay {
            return scan_table(
                self.replay()?,
                prefix,
                start,
                |v| v.to_be_bytes().to_vec(),
                visit,
            );
        }
        scan_table(self.bytes(table)?, prefix, start, |v| v.to_vec(), visit)
    }
}

type WriteTable<'t, V> = RefCell<::redb::Table<'t, Bytes, V>>;

/// A write transaction's tables, each opened on first use. Writing to a table while it is
/// being scanned is refused (an error, never a panic).
struct RedbWrite<'t> {
    txn: &'t WriteTransaction,
    bytes: [OnceCell<WriteTable<'t, Bytes>>; Table::ALL.len()],
    replay: OnceCell<WriteTable<'t, u64>>,
}

impl<'t> RedbWrite<'t> {
    fn new(txn: &'t WriteTransaction) -> Self {
        RedbWrite {
            txn,
            bytes: std::array::from_fn(|_| OnceCell::new()),
            replay: OnceCell::new(),
        }
    }

    fn bytes(&self, table: Table) -> Result<&WriteTable<'t, Bytes>, StoreError> {
        let cell = &self.bytes[table.index()];
        if let Some(open) = cell.get() {
            return Ok(open);
        }
        let open = self
            .txn
            .open_table(bytes_definition(table))
            .map_err(StoreError::storage)?;
        Ok(cell.get_or_init(|| RefCell::new(open)))
    }

    fn replay(&self) -> Result<&WriteTable<'t, u64>, StoreError> {
        if let Some(open) = self.replay.get() {
            return Ok(open);
        }
        let open = self.txn.open_table(REPLAY).map_err(StoreError::storage)?;
        Ok(self.replay.get_or_init(|| RefCell::new(open)))
    }
}

fn busy_table(table: Table) -> StoreError {
    StoreError::Storage(format!(
        "table {} was written while being scanned",
        table.name()
    ))
}

impl Tables for RedbWrite<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if table == Table::Replay {
            let open = self.replay()?.try_borrow().map_err(|_| busy_table(table))?;
            let found = open.get(key).map_err(StoreError::storage)?;
            return Ok(found.map(|v| v.value().to_be_bytes().to_vec()));
        }
        let open = self
            .bytes(table)?
            .try_borrow()
            .map_err(|_| busy_table(table))?;
        let found = open.get(key).map_err(StoreError::storage)?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        if table == Table::Replay {
            let open = self.replay()?.try_borrow().map_err(|_| busy_table(table))?;
            return scan_table(&*open, prefix, start, |v| v.to_be_bytes().to_vec(), visit);
        }
        let open = self
            .bytes(table)?
            .try_borrow()
            .map_err(|_| busy_table(table))?;
        scan_table(&*open, prefix, start, |v| v.to_vec(), visit)
    }
}

impl TablesMut for RedbWrite<'_> {
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if table == Table::Replay {
            let mut open = self
                .replay()?
                .try_borrow_mut()
                .map_err(|_| busy_table(table))?;
            open.insert(key, replay_value(value)?)
                .map_err(StoreError::storage)?;
            return Ok(());
        }
        let mut open = self
            .bytes(table)?
            .try_borrow_mut()
            .map_err(|_| busy_table(table))?;
        open.insert(key, value).map_err(StoreError::storage)?;
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, StoreError> {
        if table == Table::Replay {
            let mut open = self
                .replay()?
                .try_borrow_mut()
                .map_err(|_| busy_table(table))?;
            return Ok(open.remove(key).map_err(StoreError::storage)?.is_some());
        }
        let mut open = self
            .bytes(table)?
            .try_borrow_mut()
            .map_err(|_| busy_table(table))?;
        Ok(open.remove(key).map_err(StoreError::storage)?.is_some())
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
    {
        let tables = RedbWrite::new(&txn);
        for job in batch {
            let (ok, completion) = job(&tables);
            all_ok &= ok;
            completions.push(completion);
        }
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
