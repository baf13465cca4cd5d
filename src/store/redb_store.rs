//! The embedded backend: one redb file and its journal. Writes go through the group-commit
//! writer (`writer.rs`); a batch is durable once redb has fsynced its commit, or, with
//! `store.journal`, once its record is in the journal (`journal.rs`), written by a thread of
//! its own while the writer goes on (`journal_thread.rs`), redb's own fsync then running only
//! at checkpoints, on a thread of its own too (`redb_file.rs`). Reads run on the calling task.

use std::cell::{OnceCell, RefCell};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ::redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, WriteTransaction,
};

use super::StoreError;
use super::journal::{self, Journal, Recording};
use super::journal_thread::{self, Committed, Failed, InFlight, Published, Record, Shared};
use super::ops::{AfterCommit, Backend, ReadJob, TableStore, Urgency, WriteJob};
use super::redb_file::{Checkpoints, StoreFile};
use super::redb_layout::{self, Group, grouped};
use super::sealing::Sealing;
use super::tables::{ReadAhead, Table, Tables, TablesMut, Visit};
use super::writer::{self, Job, Queued, Writer};

type Bytes = &'static [u8];

/// The tree of a table kept on its own.
fn bytes_definition(table: Table) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(table.name())
}

/// The replay table's tree in layout 1, whose values were times (u64); in layout 2 the table
/// is grouped, its values the same times as 8 bytes big-endian.
const REPLAY: TableDefinition<Bytes, u64> = TableDefinition::new("replay");

fn replay_value(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("a replay entry is not an 8-byte time".to_string()))
}

/// The embedded store's file in its folder (`store.path`).
pub const REDB_FILE: &str = "hub.redb";

/// The layout of the file's tables this build reads and writes. A build that changes it (how
/// records are keyed, which tree holds them) raises it and moves an older file's records at
/// open; a file of a newer layout is refused, so that going back to an earlier build never
/// serves a store it would read as empty or write beside records it cannot see. Layout 1 kept
/// every table in a tree of its own; layout 2 groups some by owner (`redb_layout.rs`); layout 3
/// is layout 2 with the journal, which a build of layout 2 would not apply; layout 4 writes the
/// journal to two files in turn, whose second a build of layout 3 would not read.
const FORMAT: u64 = 4;
const FORMAT_TABLE: TableDefinition<&str, u64> = TableDefinition::new("hub_format");
const FORMAT_KEY: &str = "layout";
/// Names this file to its journal (a random number chosen with the file).
const STORE_ID_KEY: &str = "store id";
/// The last journal record the file holds, written by every commit that adds one.
const APPLIED_KEY: &str = "journal applied";

/// Records the file's layout, or refuses a file of a newer one.
fn check_format(txn: &WriteTransaction, path: &Path) -> Result<(), StoreError> {
    match read_meta(txn, FORMAT_KEY)? {
        Some(layout) if layout > FORMAT => Err(StoreError::Storage(format!(
            "the store file {} has layout {layout}, newer than this hub reads ({FORMAT}): run the \
             newer hub that wrote it, or restore a backup into an empty folder",
            path.display()
        ))),
        Some(FORMAT) => Ok(()),
        // A new file, an older layout, or a file from before the layout was recorded (layout
        // 1). Recorded before the records move, so that the builds of layout 1 refuse the
        // file from then on; the move goes on at each open until the old trees are gone.
        _ => write_meta(txn, FORMAT_KEY, FORMAT),
    }
}

/// The embedded store: the hub's store on a redb file.
pub type RedbStore = TableStore<RedbBackend>;

pub struct RedbBackend {
    /// With the journal: what readers read, its thread, and whether it failed. (Before `db`:
    /// its read transaction ends before the database closes.)
    journaled: Option<JournalReaders>,
    db: Arc<Database>,
    writer: Writer,
    path: std::path::PathBuf,
    #[cfg(test)]
    checkpoints: Checkpoints,
}

impl RedbStore {
    /// Opens the store with secret-bearing records sealed by `sealing`, caching at most
    /// `cache_bytes` of its pages in memory; with `journal` (a checkpoint every so many bytes
    /// of it), commits are durable through the journal, otherwise each through redb's own
    /// fsync.
    pub fn open_sealed(
        dir: &Path,
        sealing: Sealing,
        cache_bytes: usize,
        journal: Option<u64>,
    ) -> Result<RedbStore, StoreError> {
        Ok(TableStore {
            backend: RedbBackend::open(dir, cache_bytes, journal)?,
            sealing: Arc::new(sealing),
            outbox: Default::default(),
            fresh: Default::default(),
        })
    }
}

impl RedbBackend {
    fn open(
        dir: &Path,
        cache_bytes: usize,
        journal: Option<u64>,
    ) -> Result<RedbBackend, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Storage(format!("cannot create store folder {}: {e}", dir.display()))
        })?;
        // The store holds secrets (tokens, credentials, signing keys): only the hub's user.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join(REDB_FILE);
        let (file, checkpoints) = StoreFile::open(&path, journal.is_some())?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create_with_backend(file)
            .map_err(|e| {
                StoreError::Storage(format!("cannot open store file {}: {e}", path.display()))
            })?;
        let txn = db.begin_write().map_err(StoreError::storage)?;
        // Before anything is created: a newer file is left as it is.
        check_format(&txn, &path)?;
        txn.commit().map_err(StoreError::storage)?;
        let moved = redb_layout::move_into_groups(&db, REPLAY)?;
        if moved > 0 {
            tracing::info!(
                records = moved,
                "the store's records moved to the grouped layout"
            );
        }
        let txn = db.begin_write().map_err(StoreError::storage)?;
        for table in Table::ALL.into_iter().filter(|t| grouped(*t).is_none()) {
            txn.open_table(bytes_definition(table))
                .map_err(StoreError::storage)?;
        }
        for group in Group::ALL {
            txn.open_table(group.tree()).map_err(StoreError::storage)?;
        }
        txn.commit().map_err(StoreError::storage)?;
        // Whatever the setting: a journal written before it changed is applied.
        #[cfg(test)]
        let test_checkpoints = checkpoints.clone();
        let (recovered, next_seq) = recover(&db, dir)?;
        let db = Arc::new(db);
        let Some(checkpoint_bytes) = journal else {
            let writer_db = db.clone();
            let writer =
                Writer::start("store-writer", Default::default(), move |batch, queued| {
                    commit_batch(&writer_db, None, batch, queued)
                })?;
            return Ok(RedbBackend {
                db,
                writer,
                journaled: None,
                path,
                #[cfg(test)]
                checkpoints: test_checkpoints,
            });
        };
        let published = Arc::new(Published::new(
            db.begin_read().map_err(StoreError::storage)?,
        ));
        let failed = Failed::default();
        let in_flight = InFlight::default();
        let stats = Arc::new(crate::metrics::WriterStats::default());
        let (to_journal, batches) = journal_thread::channel();
        let mut journaled = Journaled {
            next_seq,
            checkpoints,
            checkpoint_bytes,
            since_checkpoint: 0,
            to_journal,
            failed: failed.clone(),
            in_flight: in_flight.clone(),
        };
        let writer_db = db.clone();
        let writer = Writer::start("store-writer", stats.clone(), move |batch, queued| {
            commit_batch(&writer_db, Some(&mut journaled), batch, queued)
        })?;
        let thread = journal_thread::start(
            recovered,
            batches,
            Shared {
                published: published.clone(),
                failed: failed.clone(),
                in_flight,
                stats,
                waker: writer.waker(),
            },
        )?;
        Ok(RedbBackend {
            db,
            writer,
            journaled: Some(JournalReaders {
                published,
                thread: std::sync::Mutex::new(Some(thread.thread)),
                failed,
                #[cfg(test)]
                gate: thread.gate,
            }),
            path,
            #[cfg(test)]
            checkpoints: test_checkpoints,
        })
    }
}

/// The writer's side of the journal: the number the next record gets, the file's
/// checkpoints, and the thread that writes the records.
struct Journaled {
    next_seq: u64,
    checkpoints: Checkpoints,
    /// Journal bytes after which a batch is a checkpoint.
    checkpoint_bytes: u64,
    /// Journal bytes of the records since the last checkpoint.
    since_checkpoint: u64,
    to_journal: std::sync::mpsc::SyncSender<Committed>,
    failed: Failed,
    /// Records handed to the journal thread and not yet written.
    in_flight: InFlight,
}

/// The readers' side of the journal.
struct JournalReaders {
    /// The newest store that is all on disk: what reads read.
    published: Arc<Published>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    failed: Failed,
    #[cfg(test)]
    gate: Arc<journal_thread::Gate>,
}

fn read_meta(txn: &WriteTransaction, key: &str) -> Result<Option<u64>, StoreError> {
    let table = txn.open_table(FORMAT_TABLE).map_err(StoreError::storage)?;
    let value = table.get(key).map_err(StoreError::storage)?;
    Ok(value.map(|v| v.value()))
}

fn write_meta(txn: &WriteTransaction, key: &str, value: u64) -> Result<(), StoreError> {
    let mut table = txn.open_table(FORMAT_TABLE).map_err(StoreError::storage)?;
    table.insert(key, value).map_err(StoreError::storage)?;
    Ok(())
}

/// Applies the journal's records the file does not hold yet, makes them part of the file with
/// a checkpoint, and returns the journal ready for the next record, and that record's number.
fn recover(db: &Database, dir: &Path) -> Result<(Journal, u64), StoreError> {
    let txn = db.begin_write().map_err(StoreError::storage)?;
    let store_id = match read_meta(&txn, STORE_ID_KEY)? {
        Some(id) => id,
        None => {
            let id = fastrand::u64(1..);
            write_meta(&txn, STORE_ID_KEY, id)?;
            id
        }
    };
    let applied = read_meta(&txn, APPLIED_KEY)?.unwrap_or(0);
    let (mut journal, contents) = Journal::open(dir, store_id)?;
    let last = contents
        .records
        .last()
        .map_or(applied, |r| r.seq.max(applied));
    let pending: Vec<_> = contents
        .records
        .iter()
        .filter(|r| r.seq > applied)
        .collect();
    if let Some(first) = pending.first()
        && first.seq != applied + 1
    {
        return Err(StoreError::Corrupt(format!(
            "the journal {} goes on from record {} but the store file holds records up to {applied} \
             only: the file is older than its journal (restored from a copy?). Restore a backup \
             into an empty folder instead",
            dir.join(journal::JOURNAL_FILES[0]).display(),
            first.seq
        )));
    }
    if let Some(pair) = pending
        .windows(2)
        .find(|pair| pair[1].seq != pair[0].seq + 1)
    {
        return Err(StoreError::Corrupt(format!(
            "the journal files {} and {} miss the records between {} and {}",
            dir.join(journal::JOURNAL_FILES[0]).display(),
            dir.join(journal::JOURNAL_FILES[1]).display(),
            pair[0].seq,
            pair[1].seq
        )));
    }
    if !pending.is_empty() {
        let tables = RedbWrite::new(&txn);
        for record in &pending {
            journal::apply(journal::decode(contents.body(record))?, &tables)?;
        }
        drop(tables);
        write_meta(&txn, APPLIED_KEY, last)?;
        tracing::info!(
            records = pending.len(),
            "the store applied the writes its journal holds beyond the file's last checkpoint"
        );
    }
    txn.commit().map_err(StoreError::storage)?;
    journal.restart();
    Ok((journal, last + 1))
}

impl RedbBackend {
    /// What a read reads: with the journal, the newest store whose writes are all on disk
    /// (redb's newest commit may not be yet), unless the journal failed; without, redb's
    /// newest commit.
    fn read_transaction(&self) -> Result<Arc<ReadTransaction>, StoreError> {
        match &self.journaled {
            Some(journaled) if journaled.failed.load(Ordering::Acquire) => {
                Err(journal_thread::journal_failed())
            }
            Some(journaled) => Ok(journaled.published.current()),
            None => Ok(Arc::new(self.db.begin_read().map_err(StoreError::storage)?)),
        }
    }
}

#[async_trait::async_trait]
impl Backend for RedbBackend {
    /// Runs the read on the calling task. A read transaction never waits for the writer (redb
    /// keeps the last committed version for readers), and the pages it reads are in redb's
    /// cache or the OS page cache: a few microseconds, where handing each read to the blocking
    /// pool cost a thread wake-up and two context switches — a fifth of the hub's CPU per
    /// delivery under single-event load (docs/PERFORMANCE.md).
    async fn read<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        let txn = self.read_transaction()?;
        job(&RedbRead::new(&txn))
    }

    async fn write<R: Send + 'static>(
        &self,
        urgency: Urgency,
        reads: Vec<ReadAhead>,
        job: WriteJob<R>,
        after_commit: Option<AfterCommit<R>>,
    ) -> Result<R, StoreError> {
        self.writer.write(urgency, reads, job, after_commit).await
    }

    async fn close(&self) {
        self.writer.stop().await;
        if let Some(journaled) = &self.journaled {
            // Its last records answered, the writer gone: the thread ends.
            let thread = journaled.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(thread) = thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
        // A checkpoint: the file alone then holds every write, for whatever opens it next. After
        // the journal failed too: the batches redb holds beyond it are each whole, and redb's
        // own close would keep them anyway.
        let checkpoint = self
            .db
            .begin_write()
            .map_err(StoreError::storage)
            .and_then(|txn| txn.commit().map_err(StoreError::storage));
        if let Err(e) = checkpoint {
            tracing::warn!(error = %e, "the store's last checkpoint failed; its journal still holds the writes");
        }
    }

    fn can_read_long(&self) -> bool {
        true
    }

    fn writer_stats(&self) -> Option<Arc<crate::metrics::WriterStats>> {
        Some(self.writer.stats())
    }

    fn file_bytes(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.len())
    }

    async fn read_long<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        let txn = self.read_transaction()?;
        tokio::task::spawn_blocking(move || job(&RedbRead::new(&txn)))
            .await
            .map_err(|e| StoreError::Storage(format!("the copy stopped: {e}")))?
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

/// A read transaction's trees, each opened on first use.
struct RedbRead<'t> {
    txn: &'t ReadTransaction,
    own: [OnceCell<ReadOnlyTable<Bytes, Bytes>>; Table::ALL.len()],
    groups: [OnceCell<ReadOnlyTable<Bytes, Bytes>>; Group::ALL.len()],
}

impl<'t> RedbRead<'t> {
    fn new(txn: &'t ReadTransaction) -> Self {
        RedbRead {
            txn,
            own: std::array::from_fn(|_| OnceCell::new()),
            groups: std::array::from_fn(|_| OnceCell::new()),
        }
    }

    /// The tree that holds `table`'s records.
    fn tree(&self, table: Table) -> Result<&ReadOnlyTable<Bytes, Bytes>, StoreError> {
        let (cell, definition) = match grouped(table) {
            Some(g) => (&self.groups[g.group.index()], g.group.tree()),
            None => (&self.own[table.index()], bytes_definition(table)),
        };
        if let Some(open) = cell.get() {
            return Ok(open);
        }
        let open = self
            .txn
            .open_table(definition)
            .map_err(StoreError::storage)?;
        Ok(cell.get_or_init(|| open))
    }
}

/// A table's entry in its tree.
fn get_in(
    tree: &impl ReadableTable<Bytes, Bytes>,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let tree_key = match grouped(table) {
        Some(g) => match g.tree_key(key) {
            Some(tree_key) => std::borrow::Cow::Owned(tree_key),
            // No record can have a key without an owner.
            None => return Ok(None),
        },
        None => std::borrow::Cow::Borrowed(key),
    };
    let found = tree.get(&*tree_key).map_err(StoreError::storage)?;
    Ok(found.map(|v| v.value().to_vec()))
}

/// A table's entries in its tree, as `Tables::scan`.
fn scan_in(
    tree: &impl ReadableTable<Bytes, Bytes>,
    table: Table,
    prefix: &[u8],
    start: &[u8],
    visit: Visit<'_>,
) -> Result<(), StoreError> {
    match grouped(table) {
        Some(g) => g.scan(tree, prefix, start, visit),
        None => scan_table(tree, prefix, start, |v| v.to_vec(), visit),
    }
}

impl Tables for RedbRead<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get_in(self.tree(table)?, table, key)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        scan_in(self.tree(table)?, table, prefix, start, visit)
    }
}

type WriteTable<'t> = RefCell<::redb::Table<'t, Bytes, Bytes>>;

/// A write transaction's trees, each opened on first use. Writing to a tree while it is being
/// scanned is refused (an error, never a panic): the tables of a group share theirs.
struct RedbWrite<'t> {
    txn: &'t WriteTransaction,
    own: [OnceCell<WriteTable<'t>>; Table::ALL.len()],
    groups: [OnceCell<WriteTable<'t>>; Group::ALL.len()],
}

impl<'t> RedbWrite<'t> {
    fn new(txn: &'t WriteTransaction) -> Self {
        RedbWrite {
            txn,
            own: std::array::from_fn(|_| OnceCell::new()),
            groups: std::array::from_fn(|_| OnceCell::new()),
        }
    }

    /// The tree that holds `table`'s records.
    fn tree(&self, table: Table) -> Result<&WriteTable<'t>, StoreError> {
        let (cell, definition) = match grouped(table) {
            Some(g) => (&self.groups[g.group.index()], g.group.tree()),
            None => (&self.own[table.index()], bytes_definition(table)),
        };
        if let Some(open) = cell.get() {
            return Ok(open);
        }
        let open = self
            .txn
            .open_table(definition)
            .map_err(StoreError::storage)?;
        Ok(cell.get_or_init(|| RefCell::new(open)))
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
        let tree = self
            .tree(table)?
            .try_borrow()
            .map_err(|_| busy_table(table))?;
        get_in(&*tree, table, key)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let tree = self
            .tree(table)?
            .try_borrow()
            .map_err(|_| busy_table(table))?;
        scan_in(&*tree, table, prefix, start, visit)
    }
}

impl TablesMut for RedbWrite<'_> {
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if table == Table::Replay {
            replay_value(value)?;
        }
        let mut tree = self
            .tree(table)?
            .try_borrow_mut()
            .map_err(|_| busy_table(table))?;
        let tree_key = match grouped(table) {
            Some(g) => std::borrow::Cow::Owned(g.tree_key(key).ok_or_else(|| {
                StoreError::Storage(format!(
                    "a key of {} bytes for table {} names no owner",
                    key.len(),
                    table.name()
                ))
            })?),
            None => std::borrow::Cow::Borrowed(key),
        };
        tree.insert(&*tree_key, value)
            .map_err(StoreError::storage)?;
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let mut tree = self
            .tree(table)?
            .try_borrow_mut()
            .map_err(|_| busy_table(table))?;
        let tree_key = match grouped(table) {
            Some(g) => match g.tree_key(key) {
                Some(tree_key) => std::borrow::Cow::Owned(tree_key),
                None => return Ok(()),
            },
            None => std::borrow::Cow::Borrowed(key),
        };
        tree.remove(&*tree_key).map_err(StoreError::storage)?;
        Ok(())
    }
}

/// Runs a batch in one transaction and commits it: through the journal when there is one,
/// otherwise with redb's own fsync.
fn commit_batch(
    db: &Database,
    journaled: Option<&mut Journaled>,
    batch: Vec<Job>,
    queued: &mut Queued<'_>,
) {
    if journaled
        .as_ref()
        .is_some_and(|j| j.failed.load(Ordering::Acquire))
    {
        // Dropping the jobs drops their reply channels: each caller learns that its write
        // was not committed. The journal thread logged why.
        return;
    }
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            tracing::error!(error = %e, jobs = batch.len(), "store write transaction could not start");
            return;
        }
    };
    let tables = RedbWrite::new(&txn);
    let Some(journaled) = journaled else {
        let (all_ok, completions) = writer::run_jobs(&tables, batch);
        drop(tables);
        let outcome = if all_ok {
            txn.commit().map_err(StoreError::storage)
        } else {
            let _ = txn.abort();
            Err(writer::batch_failed())
        };
        writer::complete(completions, outcome);
        return;
    };
    let recording = Recording::new(&tables);
    let (mut all_ok, mut completions) = writer::run_jobs(&recording, batch);
    // While the record before is being written, the jobs that arrive join this batch: it is
    // committed once that record is on disk, as large as it would have been had the writer
    // waited for the sync, and its jobs already run.
    while all_ok
        && journaled.in_flight.load(Ordering::Acquire) > 0
        && completions.len() < writer::MAX_BATCH
        && !queued.stopping()
    {
        let mut more = Vec::new();
        queued.wait(&mut more, writer::MAX_BATCH - completions.len());
        let (ok, more_completions) = writer::run_jobs(&recording, more);
        all_ok &= ok;
        completions.extend(more_completions);
    }
    let body = recording.into_body();
    drop(tables);
    let outcome = if all_ok {
        commit_journaled(db, txn, journaled, body)
    } else {
        let _ = txn.abort();
        Err(writer::batch_failed())
    };
    if matches!(outcome, Ok(Some(_))) {
        journaled.in_flight.fetch_add(1, Ordering::AcqRel);
    }
    let committed = Committed {
        outcome,
        completions,
    };
    if let Err(unsent) = journaled.to_journal.send(committed) {
        // The thread is gone (it panicked): nothing more becomes durable.
        journaled.failed.store(true, Ordering::Release);
        writer::complete(unsent.0.completions, Err(journal_thread::journal_failed()));
    }
}

/// Commits a batch that wrote `body` to redb without an fsync: its record, handed to the
/// journal thread with the read transaction of what the commit left, makes it durable. Once
/// the journal holds a checkpoint's worth, the commit is a checkpoint too: redb's own, whose
/// pages the flusher writes and syncs while the next batches go on (`redb_file.rs`); the
/// records after it go to the journal's other file.
fn commit_journaled(
    db: &Database,
    mut txn: WriteTransaction,
    journaled: &mut Journaled,
    body: Vec<u8>,
) -> Result<Option<Record>, StoreError> {
    if body.is_empty() {
        // Nothing to make durable; its answer still waits for the batches before it, which
        // it may have read.
        txn.set_durability(Durability::None)
            .map_err(StoreError::storage)?;
        txn.commit().map_err(StoreError::storage)?;
        return Ok(None);
    }
    let seq = journaled.next_seq;
    let checkpoint = journaled.since_checkpoint >= journaled.checkpoint_bytes;
    if !checkpoint {
        txn.set_durability(Durability::None)
            .map_err(StoreError::storage)?;
    }
    write_meta(&txn, APPLIED_KEY, seq)?;
    if checkpoint {
        journaled.checkpoints.run(|| txn.commit())
    } else {
        txn.commit()
    }
    .map_err(StoreError::storage)?;
    // From here on, redb holds the batch and the next batches build on it: its record must
    // follow the one before in the journal, or no later one may be written.
    journaled.next_seq += 1;
    journaled.since_checkpoint = if checkpoint {
        0
    } else {
        journaled.since_checkpoint + journal::record_len(&body)
    };
    let snapshot = db.begin_read().map_err(|e| {
        journaled.failed.store(true, Ordering::Release);
        StoreError::storage(e)
    })?;
    Ok(Some(Record {
        seq,
        body,
        checkpoint,
        snapshot,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_of(dir: &Path) -> Option<u64> {
        let db = Database::open(dir.join(REDB_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(FORMAT_TABLE).ok()?;
        table.get(FORMAT_KEY).unwrap().map(|v| v.value())
    }

    fn set_layout(dir: &Path, layout: Option<u64>) {
        let db = Database::open(dir.join(REDB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        match layout {
            Some(layout) => {
                txn.open_table(FORMAT_TABLE)
                    .unwrap()
                    .insert(FORMAT_KEY, layout)
                    .unwrap();
            }
            None => {
                txn.delete_table(FORMAT_TABLE).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        RedbStore::open_sealed(
            dir,
            Sealing::none(),
            1 << 20,
            Some(journal::DEFAULT_CHECKPOINT_BYTES),
        )
    }

    async fn stop(store: RedbStore) {
        store.backend.writer.stop().await;
    }

    use ::redb::TableHandle;

    use crate::store::keys::{text_key, with_sequence};
    use crate::store::ops::Backend;
    use crate::store::{BackupStore, Store};

    /// Records of every grouped table (and two kept on their own) for owners whose keys sort
    /// differently as bytes and as text parts, with more events than one move batch.
    fn layout_1_records() -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        let mut records = Vec::new();
        for (tenant, task) in [("", "t1"), ("", "t10"), ("", "t2"), ("acme", "t1")] {
            let task_key = text_key(&[tenant, task]);
            records.push((
                Table::Tasks,
                task_key.clone(),
                format!("task {tenant}/{task}").into_bytes(),
            ));
            let events = if task == "t10" { 10_050 } else { 3 };
            for n in 1..=events {
                records.push((
                    Table::Events,
                    with_sequence(task_key.clone(), n),
                    n.to_be_bytes().to_vec(),
                ));
            }
            for config in ["a", "b"] {
                let lane = text_key(&[tenant, task, config]);
                records.push((Table::Lanes, with_sequence(lane.clone(), 1), b"d1".to_vec()));
                records.push((Table::Configs, lane, b"config".to_vec()));
            }
        }
        for subscription in ["s", "s-long", "r"] {
            let owner = text_key(&[subscription]);
            records.push((
                Table::InboundCounters,
                subscription.as_bytes().to_vec(),
                b"{}".to_vec(),
            ));
            records.push((
                Table::InboundTasks,
                text_key(&[subscription, "t1"]),
                b"{}".to_vec(),
            ));
            for n in 1..=2 {
                records.push((
                    Table::InboundEvents,
                    with_sequence(owner.clone(), n),
                    b"e".to_vec(),
                ));
                let replay_key = text_key(&[subscription, &format!("k{n}")]);
                records.push((
                    Table::Replay,
                    replay_key.clone(),
                    (1_000 + n).to_be_bytes().to_vec(),
                ));
                let mut by_time = with_sequence(owner.clone(), 1_000 + n);
                by_time.extend_from_slice(format!("k{n}").as_bytes());
                records.push((Table::ReplayByTime, by_time, replay_key));
            }
        }
        records.push((Table::Deliveries, b"d1".to_vec(), b"delivery".to_vec()));
        records.sort_by(|a, b| (a.0.index(), &a.1).cmp(&(b.0.index(), &b.1)));
        records
    }

    /// Writes `records` as layout 1 kept them: a tree per table, replay times as u64.
    fn write_layout_1(dir: &Path, records: &[(Table, Vec<u8>, Vec<u8>)]) {
        let db = Database::create(dir.join(REDB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(FORMAT_TABLE)
            .unwrap()
            .insert(FORMAT_KEY, 1)
            .unwrap();
        for (table, key, value) in records {
            if *table == Table::Replay {
                let mut tree = txn.open_table(REPLAY).unwrap();
                tree.insert(key.as_slice(), replay_value(value).unwrap())
                    .unwrap();
            } else {
                let mut tree = txn.open_table(bytes_definition(*table)).unwrap();
                tree.insert(key.as_slice(), value.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    async fn dumped(store: &RedbStore) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        let records = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = records.clone();
        store
            .dump(Box::new(move |table, key, value| {
                sink.lock()
                    .unwrap()
                    .push((table, key.to_vec(), value.to_vec()));
                Ok(true)
            }))
            .await
            .unwrap();
        Arc::try_unwrap(records).unwrap().into_inner().unwrap()
    }

    #[tokio::test]
    async fn a_layout_1_file_is_moved_into_the_groups_record_for_record() {
        let dir = tempfile::tempdir().unwrap();
        let records = layout_1_records();
        write_layout_1(dir.path(), &records);
        let store = open(dir.path()).unwrap();
        assert_eq!(
            dumped(&store).await,
            records,
            "every record, in table and key order"
        );
        stop(store).await;
        assert_eq!(layout_of(dir.path()), Some(FORMAT));
        let db = Database::open(dir.path().join(REDB_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let trees: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        for table in Table::ALL.into_iter().filter(|t| grouped(*t).is_some()) {
            assert!(!trees.contains(&table.name().to_string()), "{trees:?}");
        }
        drop(txn);
        drop(db);
        // Opened again: nothing left to move, the same records.
        let store = open(dir.path()).unwrap();
        assert_eq!(dumped(&store).await, records);
        stop(store).await;
    }

    #[tokio::test]
    async fn scans_across_owners_see_one_table_in_key_order_from_their_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        store.load(layout_1_records()).await.unwrap();
        let scan = |table: Table, prefix: Vec<u8>, start: Vec<u8>, limit: usize| {
            store.backend.read(Box::new(move |tables| {
                let mut keys = Vec::new();
                tables.scan(table, &prefix, &start, &mut |key, _| {
                    keys.push(key.to_vec());
                    Ok(keys.len() < limit)
                })?;
                Ok(keys)
            }))
        };
        let task = |tenant: &str, task: &str| text_key(&[tenant, task]);
        assert_eq!(
            scan(Table::Tasks, Vec::new(), Vec::new(), 10)
                .await
                .unwrap(),
            // Text parts sort by length first.
            [
                task("", "t1"),
                task("", "t2"),
                task("", "t10"),
                task("acme", "t1")
            ]
        );
        assert_eq!(
            scan(Table::Tasks, Vec::new(), task("", "t2"), 2)
                .await
                .unwrap(),
            [task("", "t2"), task("", "t10")],
            "from a cursor, at most the limit"
        );
        assert_eq!(
            scan(Table::Tasks, text_key(&["acme"]), Vec::new(), 10)
                .await
                .unwrap(),
            [task("acme", "t1")],
            "one tenant's"
        );
        let lanes = scan(Table::Lanes, text_key(&[""]), Vec::new(), 10)
            .await
            .unwrap();
        assert_eq!(
            lanes.len(),
            6,
            "the default tenant's three tasks, two lanes each"
        );
        assert!(lanes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            scan(
                Table::Events,
                task("", "t2"),
                with_sequence(task("", "t2"), 2),
                10
            )
            .await
            .unwrap(),
            [
                with_sequence(task("", "t2"), 2),
                with_sequence(task("", "t2"), 3)
            ],
            "one owner's, from a cursor"
        );
        assert_eq!(
            scan(Table::InboundCounters, Vec::new(), b"s".to_vec(), 10)
                .await
                .unwrap(),
            [b"s".to_vec(), b"s-long".to_vec()],
            "counters in the order of their keys as bytes"
        );
        stop(store).await;
    }

    #[tokio::test]
    async fn a_file_records_its_layout_and_one_of_a_newer_layout_is_refused_untouched() {
        use crate::store::InboundStore;
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        stop(store).await;
        assert_eq!(layout_of(dir.path()), Some(FORMAT), "a new file is marked");

        // A file from before the layout was recorded opens and is marked.
        set_layout(dir.path(), None);
        let store = open(dir.path()).unwrap();
        assert!(store.get_subscription("s".into()).await.unwrap().is_none());
        stop(store).await;
        assert_eq!(layout_of(dir.path()), Some(FORMAT));

        set_layout(dir.path(), Some(FORMAT + 1));
        let error = open(dir.path()).err().expect("a newer layout is refused");
        let message = error.to_string();
        assert!(
            message.contains("newer than this hub reads") && message.contains(REDB_FILE),
            "{message}"
        );
        assert_eq!(layout_of(dir.path()), Some(FORMAT + 1), "left as it was");
    }

    /// The folder's files as a crash would leave them: what is on disk now, with no close.
    fn crash_image(dir: &Path) -> tempfile::TempDir {
        let image = tempfile::tempdir().unwrap();
        for file in [
            REDB_FILE,
            journal::JOURNAL_FILES[0],
            journal::JOURNAL_FILES[1],
        ] {
            std::fs::copy(dir.join(file), image.path().join(file)).unwrap();
        }
        image
    }

    fn remove_journal(dir: &Path) {
        for file in journal::JOURNAL_FILES {
            std::fs::remove_file(dir.join(file)).unwrap();
        }
    }

    /// The records of one task's events as a test writes them.
    fn events(task: &str, n: u64) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        (1..=n)
            .map(|seq| {
                let key = with_sequence(text_key(&["", task]), seq);
                (Table::Events, key, format!("event {seq}").into_bytes())
            })
            .collect()
    }

    fn events_in_file(dir: &Path) -> usize {
        let db = Database::open(dir.join(REDB_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let tree = txn.open_table(Group::ByTask.tree()).unwrap();
        tree.iter().unwrap().count()
    }

    #[tokio::test]
    async fn writes_acknowledged_before_a_crash_are_in_the_store_after_it_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        let written = events("t1", 30);
        for record in &written {
            // One commit each: thirty journal records.
            store.load(vec![record.clone()]).await.unwrap();
        }
        let image = crash_image(dir.path());
        assert_eq!(
            events_in_file(image.path()),
            0,
            "the file alone has none of them: they were made durable by the journal"
        );
        let recovered = open(image.path()).unwrap();
        assert_eq!(dumped(&recovered).await, written);
        // Recovery was a checkpoint: the file alone now holds them, and writes go on.
        stop(recovered).await;
        let recovered = open(image.path()).unwrap();
        recovered.load(events("t2", 1)).await.unwrap();
        assert_eq!(dumped(&recovered).await.len(), 31);
        stop(recovered).await;
        store.close().await;
    }

    /// Waits until the writer has made `commits` commits.
    async fn commits_reach(store: &RedbStore, commits: u64) {
        let stats = store.backend.writer.stats();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stats.commits.count() < commits {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer made {} commits, not {commits}",
                stats.commits.count()
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Writes a task's event in a job of its own, which says when the writer runs it.
    fn write_signalled(
        store: &Arc<RedbStore>,
        task: &'static str,
    ) -> (
        tokio::task::JoinHandle<Result<(), StoreError>>,
        std::sync::mpsc::Receiver<()>,
    ) {
        let (ran, runs) = std::sync::mpsc::channel();
        let store = store.clone();
        let write = tokio::spawn(async move {
            let job: WriteJob<()> = Box::new(move |tables| {
                let _ = ran.send(());
                let (table, key, value) = events(task, 1).remove(0);
                tables.insert(table, &key, &value)
            });
            store
                .backend
                .write(Urgency::Now, Vec::new(), job, None)
                .await
        });
        (write, runs)
    }

    async fn ran(runs: std::sync::mpsc::Receiver<()>) {
        tokio::task::spawn_blocking(move || runs.recv_timeout(std::time::Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the writer ran the job");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_runs_the_next_jobs_while_a_record_is_synced_and_nobody_reads_a_write_before_its_record_is_on_disk()
     {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()).unwrap());
        store.load(events("t1", 1)).await.unwrap();
        let gate = store.backend.journaled.as_ref().unwrap().gate.clone();
        let commits = store.backend.writer.stats().commits.count();
        gate.hold(true);
        let (second, runs) = write_signalled(&store, "t2");
        ran(runs).await;
        commits_reach(&store, commits + 1).await;
        // The second's record waits for the disk; the writer runs the next jobs meanwhile.
        let (third, runs) = write_signalled(&store, "t3");
        ran(runs).await;
        let (fourth, runs) = write_signalled(&store, "t4");
        ran(runs).await;
        assert!(
            !second.is_finished() && !third.is_finished() && !fourth.is_finished(),
            "none is answered before its record is on disk"
        );
        assert_eq!(
            dumped(&store).await,
            events("t1", 1),
            "a read sees none of them: a crash could take them back"
        );
        let image = crash_image(dir.path());
        let recovered = open(image.path()).unwrap();
        assert_eq!(dumped(&recovered).await, events("t1", 1));
        stop(recovered).await;

        gate.hold(false);
        for write in [second, third, fourth] {
            write.await.unwrap().unwrap();
        }
        assert_eq!(
            store.backend.writer.stats().commits.count(),
            commits + 2,
            "the third and fourth were committed together, once the second's record was on disk"
        );
        let all: Vec<_> = ["t1", "t2", "t3", "t4"]
            .iter()
            .flat_map(|t| events(t, 1))
            .collect();
        assert_eq!(dumped(&store).await, all, "answered, and read");
        let image = crash_image(dir.path());
        let recovered = open(image.path()).unwrap();
        assert_eq!(dumped(&recovered).await, all, "and on disk");
        stop(recovered).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_that_cannot_be_written_fails_the_store_until_a_restart_applies_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        store.load(events("t1", 1)).await.unwrap();
        let gate = store.backend.journaled.as_ref().unwrap().gate.clone();
        gate.fail(true);
        let error = store.load(events("t2", 1)).await.unwrap_err().to_string();
        assert!(error.contains("failed the journal's disk"), "{error}");
        // The disk is back; after a failed sync nothing tells what reached it.
        gate.fail(false);
        assert!(store.load(events("t3", 1)).await.is_err());
        let unready = store.ping().await.unwrap_err().to_string();
        assert!(
            unready.contains("journal could not be written") && unready.contains("restarts"),
            "{unready}"
        );
        let image = crash_image(dir.path());
        let recovered = open(image.path()).unwrap();
        assert_eq!(
            dumped(&recovered).await,
            events("t1", 1),
            "a crash: the journal holds what was acknowledged"
        );
        stop(recovered).await;
        store.close().await;
        drop(store);
        let restarted = open(dir.path()).unwrap();
        restarted.load(events("t4", 1)).await.unwrap();
        let after = dumped(&restarted).await;
        assert!(
            after.contains(&events("t1", 1)[0])
                && after.contains(&events("t4", 1)[0])
                && !after.contains(&events("t3", 1)[0]),
            "a restart serves again; the write made after the failure is not there"
        );
        restarted.close().await;
    }

    #[tokio::test]
    async fn without_the_journal_each_commit_is_in_the_file_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_sealed(dir.path(), Sealing::none(), 1 << 20, None).unwrap();
        for record in events("t1", 3) {
            store.load(vec![record]).await.unwrap();
        }
        let image = crash_image(dir.path());
        remove_journal(image.path());
        assert_eq!(events_in_file(image.path()), 3);
        store.close().await;
    }

    #[tokio::test]
    async fn a_closed_store_s_file_holds_every_write_without_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        for record in events("t1", 5) {
            store.load(vec![record]).await.unwrap();
        }
        store.close().await;
        // Copied while the database is still open, so that only the close's own checkpoint
        // can have put them in the file.
        let image = crash_image(dir.path());
        remove_journal(image.path());
        assert_eq!(events_in_file(image.path()), 5);
    }

    /// Writes one 1 MiB event per commit, `from..=to`, to a task, and returns the records.
    async fn big_events(store: &RedbStore, from: u64, to: u64) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        let mut written = Vec::new();
        for seq in from..=to {
            let key = with_sequence(text_key(&["", "big"]), seq);
            let record = (Table::Events, key, vec![seq as u8; 1024 * 1024]);
            store.load(vec![record.clone()]).await.unwrap();
            written.push(record);
        }
        written
    }

    /// Commits of 1 MiB that fill the journal, so that a checkpoint falls among them.
    fn past_a_checkpoint() -> u64 {
        journal::DEFAULT_CHECKPOINT_BYTES / (1024 * 1024) + 8
    }

    #[tokio::test]
    async fn a_full_journal_is_checkpointed_and_the_next_records_go_to_its_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        let commits = past_a_checkpoint();
        let written = big_events(&store, 1, commits).await;
        store.backend.checkpoints.wait();
        let journal_bytes = |file: usize| {
            std::fs::metadata(dir.path().join(journal::JOURNAL_FILES[file]))
                .unwrap()
                .len()
        };
        assert!(
            journal_bytes(0) >= journal::DEFAULT_CHECKPOINT_BYTES
                && journal_bytes(1) > 0
                && journal_bytes(1) < 10 * 1024 * 1024,
            "the records after the checkpoint went to the second file: {} and {} bytes",
            journal_bytes(0),
            journal_bytes(1)
        );
        let image = crash_image(dir.path());
        let in_file = events_in_file(image.path()) as u64;
        assert!(
            in_file > 0 && in_file < commits,
            "the file holds what the checkpoint did ({in_file} of {commits})"
        );
        let recovered = open(image.path()).unwrap();
        assert_eq!(dumped(&recovered).await, written);
        stop(recovered).await;
        store.close().await;
    }

    #[tokio::test]
    async fn writes_go_on_while_a_checkpoint_is_flushed_and_a_crash_then_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        let before = big_events(&store, 1, 3).await;
        let checkpoints = store.backend.checkpoints.clone();
        checkpoints.hold_flushes(true);
        // The checkpoint among these returns with none of its pages on disk, and the writes
        // after it go on, held in memory.
        let during = big_events(&store, 4, past_a_checkpoint()).await;
        let image = crash_image(dir.path());
        assert_eq!(
            events_in_file(image.path()),
            0,
            "the file is still as the last checkpoint on disk left it"
        );
        // What the commits after the checkpoint read back comes from memory.
        let expected: Vec<_> = before.iter().chain(&during).cloned().collect();
        assert_eq!(dumped(&store).await, expected);
        let recovered = open(image.path()).unwrap();
        assert_eq!(
            dumped(&recovered).await,
            expected,
            "every acknowledged write is back"
        );
        stop(recovered).await;

        checkpoints.hold_flushes(false);
        checkpoints.wait();
        let image = crash_image(dir.path());
        let in_file = events_in_file(image.path());
        assert!(
            in_file > 0 && in_file < expected.len(),
            "once flushed, the file holds what the checkpoint did ({in_file})"
        );
        let recovered = open(image.path()).unwrap();
        assert_eq!(dumped(&recovered).await, expected);
        stop(recovered).await;
        store.close().await;
        let image = crash_image(dir.path());
        remove_journal(image.path());
        assert_eq!(
            events_in_file(image.path()),
            expected.len(),
            "the close checkpoint"
        );
    }

    #[tokio::test]
    async fn a_journal_that_goes_on_past_a_gap_after_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        store.close().await;
        drop(store);
        let store_id = {
            let db = Database::open(dir.path().join(REDB_FILE)).unwrap();
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(FORMAT_TABLE).unwrap();
            table.get(STORE_ID_KEY).unwrap().unwrap().value()
        };
        let (mut journal, _) = Journal::open(dir.path(), store_id).unwrap();
        let mut body = Vec::new();
        journal::encode(&mut body, Table::Events, b"k", Some(b"v"));
        journal.append(5, &body).unwrap();
        drop(journal);
        let error = open(dir.path()).err().expect("refused");
        let message = error.to_string();
        assert!(
            message.contains(journal::JOURNAL_FILES[0])
                && message.contains("older than its journal"),
            "{message}"
        );
    }
}
