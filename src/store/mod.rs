//! Durable state behind the `Store` trait (DESIGN §3): push configs, folded tasks, events,
//! deliveries. Nothing outside this module knows the storage engine.
//!
//! "Accepted" means durable: `publish` writes an event, its deliveries and the task's new
//! state in one transaction and returns only after that transaction is on disk.

mod keys;
mod redb_store;

use std::time::{SystemTime, UNIX_EPOCH};

use a2a::{StreamResponse, Task};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use self::redb_store::RedbStore;
use crate::a2a::version::WireVersion;
use crate::config::Secret;

/// Why a store call failed. Never carries record contents, so never a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store's write queue is full; retry shortly")]
    Busy,
    #[error("the store is shut down")]
    Closed,
    #[error("storage failure: {0}")]
    Storage(String),
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

/// `Authorization: {scheme} {credentials}` to send with each delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authentication {
    pub scheme: String,
    pub credentials: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigState {
    Active,
    /// The receiver answered 410 Gone; nothing more is delivered.
    Disabled,
}

/// A push-notification config: where and how to deliver one task's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub tenant: String,
    pub task_id: String,
    pub id: String,
    pub url: String,
    pub token: Option<Secret>,
    pub authentication: Option<Authentication>,
    /// The A2A version the config was registered over; decides the body shape it receives.
    pub wire_version: WireVersion,
    pub state: ConfigState,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A task's current state, folded from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub tenant: String,
    pub task_id: String,
    pub task: Task,
    /// Sequence number of the newest event (1, 2, …).
    pub last_sequence: u64,
    pub terminal: bool,
    pub updated_at_ms: u64,
}

/// An event to publish: validated, with the exact bytes it was published as.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant: String,
    pub task_id: String,
    pub event: StreamResponse,
    pub body: Box<RawValue>,
}

/// A stored event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: String,
    pub sequence: u64,
    pub received_at_ms: u64,
    pub body: Box<RawValue>,
}

/// What `publish` created for one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedEvent {
    pub event_id: String,
    pub task_id: String,
    pub sequence: u64,
    pub deliveries: Vec<CreatedDelivery>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDelivery {
    pub delivery_id: String,
    pub config_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its turn in the lane or for its next attempt.
    Pending,
    Delivered,
    /// Retries exhausted or refused outright; stays visible for replay.
    Dead,
    /// Its config was deleted before it was delivered.
    Canceled,
}

/// One (event, config) pair to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub tenant: String,
    pub task_id: String,
    pub config_id: String,
    pub sequence: u64,
    pub event_id: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at_ms: u64,
    pub last_error: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// Deliveries of one task by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub canceled: u64,
}

/// The storage seam. Every method is safe to call from async code: implementations never
/// block a runtime worker thread.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces the config with the same (tenant, task, id).
    async fn put_config(&self, config: ConfigRecord) -> Result<(), StoreError>;
    async fn get_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<Option<ConfigRecord>, StoreError>;
    /// Configs of a task in a stable order, starting after config id `after`.
    async fn list_configs(
        &self,
        tenant: String,
        task_id: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<ConfigRecord>, StoreError>;
    /// Removes a config and cancels its undelivered deliveries; `false` if it did not exist.
    async fn delete_config(
        &self,
        tenant: String,
        task_id: String,
        id: String,
    ) -> Result<bool, StoreError>;
    /// Stores every event, its deliveries (one per active config of its task) and the folded
    /// task, atomically: all of them or none. Returns after the write is durable.
    async fn publish(&self, events: Vec<NewEvent>) -> Result<Vec<PublishedEvent>, StoreError>;
    async fn get_task(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<TaskRecord>, StoreError>;
    async fn get_event(
        &self,
        tenant: String,
        task_id: String,
        sequence: u64,
    ) -> Result<Option<EventRecord>, StoreError>;
    async fn get_delivery(&self, id: String) -> Result<Option<DeliveryRecord>, StoreError>;
    async fn delivery_counts(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<DeliveryCounts, StoreError>;
    /// Cheap round trip through the store, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Finishes queued writes and closes the store; later calls fail with `Closed`.
    async fn close(&self);
}
