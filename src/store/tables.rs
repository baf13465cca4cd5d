//! The seam between the store's operations and a storage engine: a fixed set of ordered
//! tables from byte keys to byte values, read and written inside one transaction.
//!
//! Every operation of the hub's store (`ops/`) is written once against these traits; each
//! engine (redb, PostgreSQL) only has to provide ordered tables and transactions. Keys compare
//! as bytes (shorter first on a common prefix), which both engines do natively.

use serde::Serialize;

use super::sealing::Sealing;
use super::{DeliveryRecord, StoreError};

/// The tables of the store. Names are part of the on-disk and in-database format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// (tenant, task, config) → config (sealed: it holds the webhook's credentials).
    Configs,
    /// (tenant, task) → folded task.
    Tasks,
    /// (tenant, task, sequence) → event.
    Events,
    /// Delivery id → delivery.
    Deliveries,
    /// (tenant, task, config, sequence) → delivery id: each lane's deliveries in order.
    Lanes,
    /// The same key, for pending deliveries only: what the scheduler loads at start.
    Pending,
    /// (delivery id, attempt number) → attempt record.
    Attempts,
    /// kid → signing key (sealed).
    Keys,
    /// Subscription id → subscription (sealed: it holds the secrets peers must present).
    Subscriptions,
    /// (subscription, sequence) → accepted inbound event.
    InboundEvents,
    /// (subscription, receipt number) → receipt.
    Receipts,
    /// (subscription) → counters: last event sequence, last receipt number.
    InboundCounters,
    /// (subscription, task) → the task's inbound progress, for order notes.
    InboundTasks,
    /// (subscription, replay key) → first seen (ms since the epoch, 8 bytes big-endian).
    Replay,
    /// (subscription, ms, replay key) → replay key, to expire replay entries in time order.
    ReplayByTime,
    /// Origin → until when its circuit is open (ms, 8 bytes big-endian), for the nodes that
    /// share a store.
    Circuits,
    /// (when it finished: ms, 8 bytes big-endian; tenant, task) → nothing: finished tasks in
    /// the order retention purges them. The empty key marks that every task finished before
    /// this index existed has been added to it.
    FinishedTasks,
    /// (tenant, task) → the gateway's follow of the task (sealed: it holds the caller's
    /// credentials for the agent), with the node that holds it and until when.
    Follows,
    /// (tenant, task) → the principal whose task it is (JSON string): the first to register a
    /// config for it, or the owner the event API declared.
    Owners,
    /// (tenant, idempotency key) → the event first published with that key.
    IdempotencyKeys,
    /// (ms, 8 bytes big-endian; tenant, idempotency key) → nothing: keys in the order
    /// retention purges them.
    IdempotencyByTime,
    /// (tenant, task, config) → the config's failing streak, while its latest attempts fail.
    FailingStreaks,
    /// Sequence (8 bytes big-endian) → operator event; the empty key holds the next sequence.
    OperatorEvents,
    /// Tenant → what a new config of the tenant starts with (its event filter).
    TenantDefaults,
    /// (task, subscription id) → nothing: the subscriptions bound to a task, for the gateway
    /// and the delegation tools to find a task's without reading every subscription. The empty
    /// key marks that every subscription stored before this index existed has been added to it.
    SubscriptionsByTask,
}

impl Table {
    pub const ALL: [Table; 25] = [
        Table::Configs,
        Table::Tasks,
        Table::Events,
        Table::Deliveries,
        Table::Lanes,
        Table::Pending,
        Table::Attempts,
        Table::Keys,
        Table::Subscriptions,
        Table::InboundEvents,
        Table::Receipts,
        Table::InboundCounters,
        Table::InboundTasks,
        Table::Replay,
        Table::ReplayByTime,
        Table::Circuits,
        Table::FinishedTasks,
        Table::Follows,
        Table::Owners,
        Table::IdempotencyKeys,
        Table::IdempotencyByTime,
        Table::FailingStreaks,
        Table::OperatorEvents,
        Table::TenantDefaults,
        Table::SubscriptionsByTask,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Configs => "configs",
            Table::Tasks => "tasks",
            Table::Events => "events",
            Table::Deliveries => "deliveries",
            Table::Lanes => "lanes",
            Table::Pending => "pending",
            Table::Attempts => "attempts",
            Table::Keys => "signing_keys",
            Table::Subscriptions => "subscriptions",
            Table::InboundEvents => "inbound_events",
            Table::Receipts => "receipts",
            Table::InboundCounters => "inbound_counters",
            Table::InboundTasks => "inbound_tasks",
            Table::Replay => "replay",
            Table::ReplayByTime => "replay_by_time",
            Table::Circuits => "circuits",
            Table::FinishedTasks => "finished_tasks",
            Table::Follows => "follows",
            Table::Owners => "task_owners",
            Table::IdempotencyKeys => "idempotency_keys",
            Table::IdempotencyByTime => "idempotency_by_time",
            Table::FailingStreaks => "failing_streaks",
            Table::OperatorEvents => "operator_events",
            Table::TenantDefaults => "tenant_defaults",
            Table::SubscriptionsByTask => "subscriptions_by_task",
        }
    }

    /// Whether its records hold secrets, and so are sealed at rest (`sealing.rs`) when the
    /// store has an encryption key. Decided here, for every read and write of the table.
    pub const fn sealed(self) -> bool {
        matches!(
            self,
            Table::Configs | Table::Keys | Table::Subscriptions | Table::Follows
        )
    }

    /// Position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// (key, value) pairs read out of a table.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What a write job will read, declared ahead so that a database backend reads the entries
/// of a whole batch together (a round trip per table, not one per read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadAhead {
    /// One entry, by key.
    Key(Table, Vec<u8>),
    /// Every entry whose key starts with this prefix: a scan the job will make from it.
    Prefix(Table, Vec<u8>),
}

/// Visitor of a scan: gets (key, value), returns whether to go on.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError>;

/// Reading inside a transaction.
pub trait Tables {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Reads ahead entries the transaction is about to read, where that saves round trips
    /// (a database); a no-op elsewhere.
    fn prefetch(&self, _reads: &[ReadAhead]) -> Result<(), StoreError> {
        Ok(())
    }
    /// The values of `keys`, in their order.
    fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|key| self.get(table, key)).collect()
    }
    /// Visits, in key order from `start`, the entries whose keys start with `prefix`, until
    /// `visit` returns `false`. `visit` may read (not write) other entries meanwhile.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        visit: Visit<'_>,
    ) -> Result<(), StoreError>;
}

/// Writing inside a transaction; nothing is visible to others before the commit.
pub trait TablesMut: Tables {
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes the entry, if there is one.
    fn remove(&self, table: Table, key: &[u8]) -> Result<(), StoreError>;
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A record of `table` as stored: sealed when the table holds secrets (`Table::sealed`).
pub fn encode_record<T: Serialize>(
    sealing: &Sealing,
    table: Table,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    let bytes = encode(value)?;
    if table.sealed() {
        sealing.seal(bytes)
    } else {
        Ok(bytes)
    }
}

/// A stored record of `table`, unsealed when the table holds secrets.
pub fn decode_record<T: serde::de::DeserializeOwned>(
    sealing: &Sealing,
    table: Table,
    bytes: &[u8],
) -> Result<T, StoreError> {
    if table.sealed() {
        decode(&sealing.open(bytes)?)
    } else {
        decode(bytes)
    }
}

/// The record of `table` at `key`, unsealed when the table holds secrets.
pub fn get_record<T: serde::de::DeserializeOwned>(
    sealing: &Sealing,
    tables: &dyn Tables,
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    tables
        .get(table, key)?
        .map(|bytes| decode_record(sealing, table, &bytes))
        .transpose()
}

/// The record at `key` of a table that holds no secrets (no sealing to undo).
pub fn get_json<T: serde::de::DeserializeOwned>(
    tables: &dyn Tables,
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    debug_assert!(
        !table.sealed(),
        "{} is sealed: read it with get_record",
        table.name()
    );
    tables
        .get(table, key)?
        .map(|bytes| decode(&bytes))
        .transpose()
}

/// Every (key, value) whose key starts with `prefix`, in key order.
pub fn collect_prefix(
    tables: &dyn Tables,
    table: Table,
    prefix: &[u8],
) -> Result<Entries, StoreError> {
    first_under(tables, table, prefix, usize::MAX)
}

/// The first `limit` (key, value) whose key starts with `prefix`, in key order.
pub fn first_under(
    tables: &dyn Tables,
    table: Table,
    prefix: &[u8],
    limit: usize,
) -> Result<Entries, StoreError> {
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    tables.scan(table, prefix, prefix, &mut |key, value| {
        found.push((key.to_vec(), value.to_vec()));
        Ok(found.len() < limit)
    })?;
    Ok(found)
}

/// Removes and returns every (key, value) whose key starts with `prefix`.
pub fn take_prefix(
    tables: &dyn TablesMut,
    table: Table,
    prefix: &[u8],
) -> Result<Entries, StoreError> {
    let found = collect_prefix(tables, table, prefix)?;
    for (key, _) in &found {
        tables.remove(table, key)?;
    }
    Ok(found)
}

/// Reads, changes and writes back one delivery; `None` if it does not exist.
pub fn update_delivery(
    tables: &dyn TablesMut,
    delivery_id: &[u8],
    change: impl FnOnce(&mut DeliveryRecord),
) -> Result<Option<DeliveryRecord>, StoreError> {
    let Some(mut delivery) = get_json::<DeliveryRecord>(tables, Table::Deliveries, delivery_id)?
    else {
        return Ok(None);
    };
    change(&mut delivery);
    tables.insert(Table::Deliveries, delivery_id, &encode(&delivery)?)?;
    Ok(Some(delivery))
}
