//! A consistent copy of the embedded store while the hub runs, and loading one into a fresh
//! store (the file format is `crate::backup`).

use super::*;

/// Records written per transaction while loading a backup.
const LOAD_BATCH: usize = 5_000;

/// Receives every record of a dump, in table and key order; `false` stops it.
pub type DumpVisit = Box<dyn FnMut(Table, &[u8], &[u8]) -> Result<bool, StoreError> + Send>;

#[async_trait::async_trait]
pub trait BackupStore: Send + Sync {
    /// Whether `dump` can copy this store: the embedded one. A database is backed up with its
    /// own tools (for PostgreSQL, `pg_dump`), which see the hub's tables like any others.
    fn can_dump(&self) -> bool {
        false
    }
    /// Gives every record of every table to `visit`, all from one read transaction (so the
    /// copy is of one moment, whatever is written meanwhile), on a thread of its own.
    async fn dump(&self, _visit: DumpVisit) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable(
            "this store is backed up with its database's own tools".to_string(),
        ))
    }
    /// Writes records into the store (meant for an empty one), `LOAD_BATCH` per transaction.
    async fn load(&self, records: Vec<(Table, Vec<u8>, Vec<u8>)>) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<B: Backend> BackupStore for TableStore<B> {
    fn can_dump(&self) -> bool {
        self.backend.can_read_long()
    }

    async fn dump(&self, mut visit: DumpVisit) -> Result<u64, StoreError> {
        self.backend
            .read_long(Box::new(move |tables: &dyn Tables| {
                let mut records = 0u64;
                for table in Table::ALL {
                    let mut going = true;
                    tables.scan(table, &[], &[], &mut |key, value| {
                        records += 1;
                        going = visit(table, key, value)?;
                        Ok(going)
                    })?;
                    if !going {
                        break;
                    }
                }
                Ok(records)
            }))
            .await
    }

    async fn load(&self, records: Vec<(Table, Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let batch: Vec<_> = records.by_ref().take(LOAD_BATCH).collect();
            self.write(move |tables| {
                batch
                    .iter()
                    .try_for_each(|(table, key, value)| tables.insert(*table, key, value))
            })
            .await?;
        }
        Ok(())
    }
}
