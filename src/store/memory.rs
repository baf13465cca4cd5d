//! A backend in memory, for tests: the same tables and operations as the embedded store, kept
//! in one ordered map and lost when the process ends. The store's contract tests run on it
//! beside redb and PostgreSQL, and unit tests of table-level code use its tables directly.
//!
//! A write runs under the map's lock and keeps an undo log, so a write that fails leaves
//! nothing behind, as a rolled-back transaction does; reads wait for writes in progress.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::StoreError;
use super::ops::{AfterCommit, Backend, ReadJob, TableStore, Urgency, WriteJob};
use super::sealing::Sealing;
use super::tables::{ReadAhead, Table, Tables, TablesMut, Visit};

/// (table index, key).
type Key = (usize, Vec<u8>);
/// Every entry of every table.
type Contents = BTreeMap<Key, Vec<u8>>;
/// Each changed entry's value before the change, in the order of the changes.
type UndoLog = Vec<(Key, Option<Vec<u8>>)>;

/// The hub's store in memory.
pub type MemoryStore = TableStore<MemoryBackend>;

impl MemoryStore {
    /// An empty store.
    pub fn new(sealing: Sealing) -> MemoryStore {
        TableStore {
            backend: MemoryBackend::default(),
            sealing: Arc::new(sealing),
            outbox: Default::default(),
            fresh: Default::default(),
        }
    }
}

#[derive(Default)]
pub struct MemoryBackend {
    tables: Mutex<MemoryTables>,
}

impl MemoryBackend {
    fn lock(&self) -> Result<MutexGuard<'_, MemoryTables>, StoreError> {
        self.tables
            .lock()
            .map_err(|_| StoreError::Storage("the memory store was poisoned by a panic".into()))
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn read<R: Send + 'static>(&self, job: ReadJob<R>) -> Result<R, StoreError> {
        job(&*self.lock()?)
    }

    async fn write<R: Send + 'static>(
        &self,
        _urgency: Urgency,
        _reads: Vec<ReadAhead>,
        job: WriteJob<R>,
        after_commit: Option<AfterCommit<R>>,
    ) -> Result<R, StoreError> {
        let tables = self.lock()?;
        tables.undo.replace(Some(Vec::new()));
        let result = job(&*tables);
        let log = tables.undo.take().unwrap_or_default();
        match (&result, after_commit) {
            (Ok(done), Some(after_commit)) => after_commit(done),
            (Err(_), _) => tables.roll_back(log),
            _ => {}
        }
        result
    }

    async fn close(&self) {}
}

/// Ordered tables in memory, with the engines' key order (bytes, shorter first on a common
/// prefix). With an undo log, every change can be rolled back.
#[derive(Default)]
pub(crate) struct MemoryTables {
    contents: RefCell<Contents>,
    /// Each changed entry's value before the change, while a write is in progress.
    undo: RefCell<Option<UndoLog>>,
}

impl MemoryTables {
    fn roll_back(&self, log: UndoLog) {
        let mut contents = self.contents.borrow_mut();
        for (key, before) in log.into_iter().rev() {
            match before {
                Some(value) => contents.insert(key, value),
                None => contents.remove(&key),
            };
        }
    }

    fn log(&self, key: &Key) {
        if let Some(log) = self.undo.borrow_mut().as_mut() {
            log.push((key.clone(), self.contents.borrow().get(key).cloned()));
        }
    }

    /// Entries in `table`.
    pub(crate) fn count(&self, table: Table) -> usize {
        self.contents
            .borrow()
            .keys()
            .filter(|(t, _)| *t == table.index())
            .count()
    }
}

impl Tables for MemoryTables {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .contents
            .borrow()
            .get(&(table.index(), key.to_vec()))
            .cloned())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        // Copied out first: `visit` may read other entries meanwhile.
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self
            .contents
            .borrow()
            .range((table.index(), start.to_vec())..)
            .take_while(|((t, key), _)| *t == table.index() && key.starts_with(prefix))
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect();
        for (key, value) in entries {
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }
}

impl TablesMut for MemoryTables {
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let key = (table.index(), key.to_vec());
        self.log(&key);
        self.contents.borrow_mut().insert(key, value.to_vec());
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let key = (table.index(), key.to_vec());
        self.log(&key);
        self.contents.borrow_mut().remove(&key);
        Ok(())
    }
}
