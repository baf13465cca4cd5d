//! The embedded backend: one redb file. Writes go through the group-commit writer
//! (`writer.rs`); redb's default durability fsyncs before a commit returns. Reads run on the
//! blocking pool.

use std::cell::{OnceCell, RefCell};
use std::path::Path;
use std::sync::Arc;

use ::redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use super::StoreError;
use super::ops::{AfterCommit, Backend, ReadJob, TableStore, Urgency, WriteJob};
use super::sealing::Sealing;
use super::tables::{ReadAhead, Table, Tables, TablesMut, Visit};
use super::writer::{self, Job, Writer};

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

/// The embedded store's file in its folder (`store.path`).
pub const REDB_FILE: &str = "hub.redb";

/// The layout of the file's tables this build reads and writes. A build that changes it (how
/// records are keyed, which tree holds them) raises it and moves an older file's records at
/// open; a file of a newer layout is refused, so that going back to an earlier build never
/// serves a store it would read as empty or write beside records it cannot see.
const FORMAT: u64 = 1;
const FORMAT_TABLE: TableDefinition<&str, u64> = TableDefinition::new("hub_format");
const FORMAT_KEY: &str = "layout";

/// Records the file's layout, or refuses a file of a newer one.
fn check_format(txn: &WriteTransaction, path: &Path) -> Result<(), StoreError> {
    let mut table = txn.open_table(FORMAT_TABLE).map_err(StoreError::storage)?;
    let found = table
        .get(FORMAT_KEY)
        .map_err(StoreError::storage)?
        .map(|v| v.value());
    match found {
        Some(layout) if layout > FORMAT => Err(StoreError::Storage(format!(
            "the store file {} has layout {layout}, newer than this hub reads ({FORMAT}): run the \
             newer hub that wrote it, or restore a backup into an empty folder",
            path.display()
        ))),
        Some(_) => Ok(()),
        // A new file, or one from before the layout was recorded: the same tables.
        None => {
            table
                .insert(FORMAT_KEY, FORMAT)
                .map_err(StoreError::storage)?;
            Ok(())
        }
    }
}

/// The embedded store: the hub's store on a redb file.
pub type RedbStore = TableStore<RedbBackend>;

pub struct RedbBackend {
    db: Arc<Database>,
    writer: Writer,
    path: std::path::PathBuf,
}

impl RedbStore {
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
            outbox: Default::default(),
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
        let path = dir.join(REDB_FILE);
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| {
                StoreError::Storage(format!("cannot open store file {}: {e}", path.display()))
            })?;
        let txn = db.begin_write().map_err(StoreError::storage)?;
        // Before anything is created: a newer file is left as it is.
        check_format(&txn, &path)?;
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
        let writer_db = db.clone();
        let writer = Writer::start("store-writer", move |batch| commit_batch(&writer_db, batch))?;
        Ok(RedbBackend { db, writer, path })
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
        let txn = self.db.begin_read().map_err(StoreError::storage)?;
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
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StoreError::storage)?;
            job(&RedbRead::new(&txn))
        })
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

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        if table == Table::Replay {
            let mut open = self
                .replay()?
                .try_borrow_mut()
                .map_err(|_| busy_table(table))?;
            open.remove(key).map_err(StoreError::storage)?;
            return Ok(());
        }
        let mut open = self
            .bytes(table)?
            .try_borrow_mut()
            .map_err(|_| busy_table(table))?;
        open.remove(key).map_err(StoreError::storage)?;
        Ok(())
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
    let (all_ok, completions) = writer::run_jobs(&RedbWrite::new(&txn), batch);
    let outcome = if all_ok {
        txn.commit().map_err(StoreError::storage)
    } else {
        let _ = txn.abort();
        Err(writer::batch_failed())
    };
    writer::complete(completions, outcome);
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
        RedbStore::open_sealed(dir, Sealing::none(), 1 << 20)
    }

    async fn stop(store: RedbStore) {
        store.backend.writer.stop().await;
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
}
