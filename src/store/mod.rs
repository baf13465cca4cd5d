//! Durable state behind the `Store` trait (README, "Storage and durability"): push configs, folded tasks, events,
//! deliveries. Nothing outside this module knows the storage engine.
//!
//! "Accepted" means durable: `publish` writes an event, its deliveries and the task's new
//! state in one transaction and returns only after that transaction is on disk.

#[cfg(test)]
pub(crate) mod contract_tests;
mod journal;
mod journal_thread;
mod keys;
#[cfg(test)]
mod memory;
mod model;
mod ops;
mod postgres;
mod redb_file;
mod redb_layout;
mod redb_store;
mod sealing;
mod tables;

pub(crate) use self::tables::Table;
mod writer;

use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(test)]
pub use self::memory::MemoryStore;
pub use self::model::*;
pub use self::ops::Announce;
pub use self::ops::retention::PurgeStep;
pub use self::ops::{
    BackupStore, Browse, BrowseStore, ConfigStore, DeliveryStore, EventStore, FollowStore,
    InboundStore, KeyStore, LaneStore, OperatorEventStore, RetentionStore, TaskOverview,
};
pub use self::postgres::{LeaseSettings, PostgresSettings, PostgresStore};
pub use self::redb_store::{REDB_FILE, RedbStore};

/// The PostgreSQL schema: applying migrations, and the version this build writes.
pub mod postgres_schema {
    pub use super::postgres::{
        create_schema, database_counters, drop_schema, in_schema, migrate, parse_url,
        schema_for_folder, schema_version,
    };
}
pub use self::sealing::Sealing;

/// Why a store call failed. Never carries record contents, so never a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store's write queue is full; retry shortly")]
    Busy,
    #[error("the store is shut down")]
    Closed,
    #[error("storage failure: {0}")]
    Storage(String),
    /// The database cannot be reached (PostgreSQL): nothing was stored; retry later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn storage(e: impl std::fmt::Display) -> StoreError {
        StoreError::Storage(e.to_string())
    }
}

/// Milliseconds since the Unix epoch, the time unit of every record.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The storage seam. Every method is safe to call from async code: implementations never
/// block a runtime worker thread.
#[async_trait::async_trait]
pub trait Store:
    ConfigStore
    + EventStore
    + DeliveryStore
    + InboundStore
    + FollowStore
    + KeyStore
    + RetentionStore
    + LaneStore
    + OperatorEventStore
    + BackupStore
    + BrowseStore
    + Send
    + Sync
    + 'static
{
    /// Where every commit that makes deliveries pending (`publish`, `deliver_snapshot`,
    /// `replay`, a forwarded `accept_inbound`) announces them once durable: the scheduler, set
    /// once at start.
    fn announce_pending_to(&self, announce: Announce);
    /// Cheap round trip through the store, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Finishes queued writes and closes the store; later calls fail with `Closed`.
    async fn close(&self);

    /// The writer's queue and commit times, for the metrics.
    fn writer_stats(&self) -> Option<std::sync::Arc<crate::metrics::WriterStats>>;
    /// The embedded store's file size (`None` for a database).
    fn file_bytes(&self) -> Option<u64>;
}
