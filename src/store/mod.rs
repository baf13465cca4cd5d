//! Durable state behind the `Store` trait (README, "Storage and durability"): push configs, folded tasks, events,
//! deliveries. Nothing outside this module knows the storage engine.
//!
//! "Accepted" means durable: `publish` writes an event, its deliveries and the task's new
//! state in one transaction and returns only after that transaction is on disk.

mod keys;
mod ops;
mod postgres_lanes;
mod postgres_store;
mod postgres_tls;
mod redb_store;
mod retention;
mod sealing;
mod tables;
mod writer;

use std::time::{SystemTime, UNIX_EPOCH};

use a2a::{StreamResponse, Task};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use self::ops::Announce;
pub use self::postgres_lanes::LeaseSettings;
pub use self::postgres_store::{PostgresSettings, PostgresStore};
pub use self::redb_store::RedbStore;
pub use self::retention::PurgeStep;

/// The PostgreSQL schema: applying migrations, and the version this build writes.
pub mod postgres_schema {
    pub use super::postgres_store::{
        create_schema, drop_schema, in_schema, migrate, parse_url, schema_for_folder,
        schema_version,
    };
}
pub use self::sealing::Sealing;
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

/// `Authorization: {scheme} {credentials}` to send with each delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authentication {
    pub scheme: String,
    pub credentials: Option<Secret>,
    /// Every scheme a 0.3 client gave (`schemes[]`), answered back on 0.3 reads; the first is
    /// `scheme`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemes_v03: Vec<String>,
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
    /// The authenticated principal that registered it (`None` without `public_auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// What a config write must respect, checked in the write's own transaction so that two
/// callers racing for one task cannot both pass.
#[derive(Debug, Clone)]
pub struct ConfigRules {
    /// The caller. `Some`: the task must be theirs or nobody's yet (it becomes theirs).
    pub principal: Option<String>,
    /// Configs the task may have; replacing one of them is always allowed.
    pub max_per_task: usize,
}

/// What `put_config` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWrite {
    Stored,
    /// The task belongs to another principal; nothing was written.
    NotOwner,
    /// The task has its `max_per_task` configs already; nothing was written.
    TooMany,
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
    /// The principal the publisher declares the task belongs to: it becomes the task's owner,
    /// and configs another principal registered are removed.
    pub owner: Option<String>,
}

/// A task snapshot for one config (see `Store::deliver_snapshot`).
#[derive(Debug, Clone)]
pub struct ConfigSnapshot {
    pub tenant: String,
    pub task_id: String,
    pub config_id: String,
    pub task: Task,
    /// `{"task": …}` as it will be sent to a 1.0 webhook.
    pub body: Box<RawValue>,
}

/// What `deliver_snapshot` did.
#[derive(Debug, Clone)]
pub struct SnapshotOutcome {
    /// The task's newest sequence number when the snapshot was taken in.
    pub last_sequence: u64,
    /// The snapshot's delivery, for the scheduler; `None` when none was needed.
    pub pending: Option<PendingDelivery>,
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
    /// For the scheduler; answers are per tenant already.
    #[serde(skip)]
    pub tenant: String,
    pub task_id: String,
    pub sequence: u64,
    pub deliveries: Vec<CreatedDelivery>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDelivery {
    pub delivery_id: String,
    pub config_id: String,
    /// The config's webhook URL, for the scheduler; not part of any answer.
    #[serde(skip)]
    pub url: String,
}

impl PublishedEvent {
    /// The deliveries this event created, as the scheduler takes them.
    pub fn pending(&self, now_ms: u64) -> Vec<PendingDelivery> {
        self.deliveries
            .iter()
            .map(|d| PendingDelivery {
                tenant: self.tenant.clone(),
                task_id: self.task_id.clone(),
                config_id: d.config_id.clone(),
                delivery_id: d.delivery_id.clone(),
                sequence: self.sequence,
                next_attempt_at_ms: now_ms,
                url: d.url.clone(),
            })
            .collect()
    }
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
    /// Set by a manual replay: the next attempt is the only one (no retries).
    #[serde(default)]
    pub manual: bool,
    /// The body for a config registered over A2A 0.3: the whole Task in 0.3 JSON as it stood
    /// right after the event, fixed when the delivery is created. `None`: the event's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_v03: Option<String>,
    /// A task snapshot this delivery sends instead of an event (a 1.0 `StreamResponse`): what a
    /// config created on a running task gets first, alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// One attempt to deliver, as kept in the attempt log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// 1 for the first attempt of the delivery, then 2, 3, …
    pub number: u32,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// `success`, `http_status`, `timeout`, `connect`, `refused`, `invalid_url`, `redirect`.
    pub error_class: String,
    pub error: Option<String>,
    /// The first bytes of the receiver's answer (lossy UTF-8).
    pub response_snippet: Option<String>,
}

/// What an attempt decided for its delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryUpdate {
    Delivered,
    /// Failed; attempt again at this time.
    Retry {
        next_attempt_at_ms: u64,
        error: String,
    },
    /// Failed for good (retries exhausted, refused URL, failed manual replay).
    Dead {
        error: String,
    },
    /// The receiver answered 410 Gone: this delivery and every pending one of its lane are
    /// dead, and the config is disabled.
    DisableConfig {
        error: String,
    },
}

/// The id of the config that forwards a subscription's accepted events.
pub const FORWARD_CONFIG_ID: &str = "forward";

/// A pending delivery as the scheduler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    pub tenant: String,
    pub task_id: String,
    pub config_id: String,
    pub delivery_id: String,
    pub sequence: u64,
    pub next_attempt_at_ms: u64,
    /// The config's webhook URL (the scheduler groups lanes by origin).
    pub url: String,
}

/// Everything one attempt needs, read in one transaction.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    pub delivery: DeliveryRecord,
    /// `None` when the config was deleted.
    pub config: Option<ConfigRecord>,
    pub event: EventRecord,
}

/// Which deliveries to list or replay.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub tenant: String,
    pub task_id: Option<String>,
    pub config_id: Option<String>,
    pub state: Option<DeliveryState>,
    pub created_after_ms: Option<u64>,
    pub created_before_ms: Option<u64>,
}

impl DeliveryFilter {
    pub fn matches(&self, delivery: &DeliveryRecord) -> bool {
        delivery.tenant == self.tenant
            && self.task_id.as_ref().is_none_or(|t| *t == delivery.task_id)
            && self
                .config_id
                .as_ref()
                .is_none_or(|c| *c == delivery.config_id)
            && self.state.is_none_or(|s| s == delivery.state)
            && self
                .created_after_ms
                .is_none_or(|t| delivery.created_at_ms >= t)
            && self
                .created_before_ms
                .is_none_or(|t| delivery.created_at_ms < t)
    }
}

/// Why a delivery could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRefusal {
    #[error("delivery {0} does not exist")]
    NotFound(String),
    #[error("delivery {0} is already pending")]
    AlreadyPending(String),
    #[error("delivery {0} cannot be replayed: its push config was deleted")]
    ConfigDeleted(String),
    #[error(
        "delivery {0} cannot be replayed: its push config is disabled (the receiver answered 410 Gone); register the config again first"
    )]
    ConfigDisabled(String),
}

/// Deliveries of one task by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub canceled: u64,
}

/// A signing key of the hub. The private key is PKCS#8, base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    /// `EdDSA` (Ed25519, Standard Webhooks `v1a`) or `ES256` (JWT).
    pub alg: String,
    pub private_pkcs8: Secret,
    /// Raw public key, base64url without padding (32 bytes for Ed25519, the 65-byte
    /// uncompressed point for P-256).
    pub public_key: String,
    pub created_at_ms: u64,
    /// Set by a rotation: the key still verifies (and Ed25519 keys still co-sign) until then.
    pub retire_at_ms: Option<u64>,
}

/// The A2A agent a subscription registered the hub with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteAgent {
    pub url: String,
    /// `JSONRPC` or `HTTP+JSON`.
    pub binding: String,
    /// The config id the agent assigned, to delete it there later.
    pub remote_config_id: Option<String>,
}

/// A task the gateway follows through `SubscribeToTask`, for an agent that does not push:
/// stored, so that the follow survives a restart and moves to another node when its node dies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowRecord {
    pub tenant: String,
    pub task_id: String,
    /// The caller's headers the agent needs to show the task (`authorization`, `x-…`).
    pub headers: Vec<(String, Secret)>,
    /// The node following it, until when (ms since the epoch).
    pub node: String,
    pub lease_until_ms: u64,
}

/// What the hub expects from one peer (or one task) pushing to `/inbound/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: String,
    pub tenant: String,
    /// Accept only pushes for this task.
    pub task_id: Option<String>,
    /// Expected in `X-A2A-Notification-Token` / `A2A-Notification-Token`.
    pub token: Option<Secret>,
    /// Expected `Authorization: {scheme} {credentials}`, exactly.
    pub authentication: Option<Authentication>,
    /// A JWT is required, verified against this JWKS.
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    /// Which claims that JWT carries.
    #[serde(default)]
    pub jwt_profile: JwtProfile,
    /// Standard Webhooks `v1` is required, with this secret…
    pub webhook_secret: Option<Secret>,
    /// …or one of these (several while the peer rotates its secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_webhook_secrets: Vec<Secret>,
    /// Standard Webhooks `v1a` is required, with one of these keys (`whpk_…`).
    pub webhook_public_keys: Vec<String>,
    pub tolerance_s: u64,
    /// Accepted events are delivered here through the outbound engine.
    pub forward_to: Option<String>,
    pub agent: Option<RemoteAgent>,
    /// Set for the gateway's intake subscriptions: accepted events are published as the
    /// task's events under this tenant.
    #[serde(default)]
    pub gateway: Option<GatewayIntake>,
    pub created_at_ms: u64,
}

/// The claims a subscription's peer puts in its push JWTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JwtProfile {
    /// The hub's own: `iss`, `aud` (the inbound URL), `iat`, `exp`, `jti`, `taskId`, and
    /// `request_body_sha256` over the raw body.
    #[default]
    Hub,
    /// The A2A samples' sender: `iat` and `request_body_sha256` (over the raw body or its
    /// compact re-spelling) only.
    A2aSamples,
}

impl JwtProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtProfile::Hub => "hub",
            JwtProfile::A2aSamples => "a2a-samples",
        }
    }
}

/// A gateway intake: where an upstream agent pushes one request's task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayIntake {
    pub tenant: String,
    /// The client's inline config, stored for the task when its first event arrives (its
    /// `task_id` is filled in then).
    pub client_config: Option<ConfigRecord>,
}

/// One accepted inbound event, normalised to an A2A 1.0 `StreamResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundEventRecord {
    /// Per subscription: 1, 2, … (the SSE event id).
    pub sequence: u64,
    pub received_at_ms: u64,
    pub task_id: String,
    pub event: Box<RawValue>,
}

/// The result of one check of an inbound request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Every inbound request, with its verdict: what a conformance harness reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRecord {
    /// Per subscription: 1, 2, …
    pub number: u64,
    pub received_at_ms: u64,
    /// `accepted`, `duplicate`, `unauthorized`, `malformed`, `rate_limited`, `too_large`.
    pub verdict: String,
    pub status: u16,
    pub checks: Vec<CheckResult>,
    /// Request headers, with secret values masked.
    pub headers: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub task_id: Option<String>,
    pub event_sequence: Option<u64>,
}

/// An event that passed verification, to accept.
pub struct InboundAccept {
    pub subscription_id: String,
    /// Every identifier of the push, each kept until the credential it came with could no
    /// longer verify: a push is a duplicate when any of them was seen before.
    pub replay_keys: Vec<ReplayKey>,
    /// Replay entries the subscription may keep; past it the soonest to expire go first.
    pub replay_max_entries: usize,
    pub task_id: String,
    /// The peer's `X-A2A-Push-Sequence`, when it sent one.
    pub push_sequence: Option<u64>,
    pub event: StreamResponse,
    /// The event as a 1.0 `StreamResponse`, as stored and forwarded.
    pub body: Box<RawValue>,
    /// Where the accepted event goes besides the subscription's own log.
    pub route: InboundRoute,
    pub receipt: ReceiptRecord,
}

/// One identifier of an inbound push for the replay cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayKey {
    /// `jti:…`, `webhook-id:…` or `sha256:…` (a body hash).
    pub key: String,
    /// Until when a push bearing it is refused as a replay (ms since the epoch).
    pub expires_at_ms: u64,
}

/// Where an accepted inbound event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundRoute {
    /// Only the subscription's log (pull, SSE).
    Log,
    /// Also delivered to `url` through the outbound engine, under `tenant`.
    Forward { tenant: String, url: String },
    /// Also published as the task's event under `tenant`, to every config of the task (the
    /// gateway: an upstream agent's pushes become the hub's deliveries).
    Publish { tenant: String },
}

/// What accepting decided.
#[derive(Debug, Clone)]
pub enum InboundOutcome {
    Accepted {
        sequence: u64,
        forwarded: Option<PublishedEvent>,
        receipt: ReceiptRecord,
        /// Replay entries dropped before they expired, to keep the cache within its bound.
        replay_evicted: u64,
    },
    /// Seen within its window: acknowledged, not routed again.
    Duplicate { receipt: ReceiptRecord },
}

/// A lane: the deliveries of one task to one of its configs, attempted in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneId {
    pub tenant: String,
    pub task_id: String,
    pub config_id: String,
}

impl LaneId {
    /// The lane's key: the prefix of its entries in the lane and pending tables.
    pub(crate) fn key(&self) -> Vec<u8> {
        keys::text_key(&[&self.tenant, &self.task_id, &self.config_id])
    }

    pub(crate) fn from_key(key: &[u8]) -> Option<LaneId> {
        let mut parts = keys::parse_text_key(key)?.into_iter();
        let lane = LaneId {
            tenant: parts.next()?,
            task_id: parts.next()?,
            config_id: parts.next()?,
        };
        parts.next().is_none().then_some(lane)
    }
}

impl PendingDelivery {
    pub fn lane(&self) -> LaneId {
        LaneId {
            tenant: self.tenant.clone(),
            task_id: self.task_id.clone(),
            config_id: self.config_id.clone(),
        }
    }
}

/// The storage seam. Every method is safe to call from async code: implementations never
/// block a runtime worker thread.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces the config with the same (tenant, task, id).
    async fn put_config(
        &self,
        config: ConfigRecord,
        rules: ConfigRules,
    ) -> Result<ConfigWrite, StoreError>;
    /// The principal a task belongs to, if any.
    async fn task_owner(
        &self,
        tenant: String,
        task_id: String,
    ) -> Result<Option<String>, StoreError>;
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
    /// Gives one config a snapshot of its task, ahead of every event it has not received yet;
    /// no other config sees it and no sequence number is used up. Nothing is written when the
    /// config is gone or has deliveries already (they carry the task's state).
    async fn deliver_snapshot(
        &self,
        snapshot: ConfigSnapshot,
    ) -> Result<SnapshotOutcome, StoreError>;
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
    /// Every pending delivery, grouped by lane and in sequence order within a lane (the
    /// scheduler's state at start).
    async fn pending_deliveries(&self) -> Result<Vec<PendingDelivery>, StoreError>;
    /// The delivery, its config and its event, or `None` if the delivery does not exist.
    async fn attempt_context(
        &self,
        delivery_id: String,
    ) -> Result<Option<AttemptContext>, StoreError>;
    /// Appends to the attempt log (bounded per delivery) and applies `update`, atomically.
    /// Returns the ids of other deliveries it made dead (410 Gone kills the whole lane).
    /// Nobody answers a client with it, so an implementation may hold it briefly to commit it
    /// together with other writes.
    async fn record_attempt(
        &self,
        delivery_id: String,
        attempt: AttemptRecord,
        update: DeliveryUpdate,
    ) -> Result<Vec<String>, StoreError>;
    /// One bounded step of retention: purges finished tasks that finished before
    /// `finished_before_ms` and have no pending delivery, with their events, configs,
    /// deliveries and attempt logs. Start with an empty `from`, go on from each step's `next`
    /// until it is `None`.
    async fn purge_finished_tasks(
        &self,
        finished_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError>;
    /// One bounded step of removing gateway intakes (subscriptions the gateway made for the
    /// agent to push to) created before `created_before_ms` whose tasks are all gone: purged
    /// by retention, with nothing left for the agent to push. Cursor as above.
    async fn purge_gateway_intakes(
        &self,
        created_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError>;
    /// One bounded step of removing accepted inbound events received before
    /// `received_before_ms`, every subscription's. Cursor as above.
    async fn purge_inbound_events(
        &self,
        received_before_ms: u64,
        from: Vec<u8>,
    ) -> Result<PurgeStep, StoreError>;
    /// One bounded step of adding tasks that finished before retention's index existed to it.
    /// Start with an empty `from`, go on from each returned key until `None`.
    async fn index_finished_tasks(&self, from: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError>;
    /// Records that this node (`follow.node`) follows a task, unless another node holds a live
    /// lease on it; whether this node holds it now.
    async fn start_follow(&self, follow: FollowRecord) -> Result<bool, StoreError>;
    /// Forgets a follow that ended for good (its task finished, or the agent gave no stream),
    /// if `node` holds it.
    async fn end_follow(
        &self,
        tenant: String,
        task_id: String,
        node: String,
    ) -> Result<(), StoreError>;
    /// Renews `node`'s follows until `lease_until_ms` and takes those whose lease ran out (every
    /// one, with `take_all`: a store no other node shares); every follow `node` holds now. A
    /// `lease_until_ms` in the past gives them up.
    async fn hold_follows(
        &self,
        node: String,
        lease_until_ms: u64,
        take_all: bool,
    ) -> Result<Vec<FollowRecord>, StoreError>;
    /// The attempt log of a delivery, oldest first.
    async fn attempts(&self, delivery_id: String) -> Result<Vec<AttemptRecord>, StoreError>;
    /// Deliveries matching `filter`, oldest first, starting after delivery id `after`.
    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Makes each delivery pending again for one manual attempt. Per id: the pending
    /// delivery, or why it was not replayed.
    async fn replay(
        &self,
        delivery_ids: Vec<String>,
    ) -> Result<Vec<Result<PendingDelivery, ReplayRefusal>>, StoreError>;
    /// Every signing key that has not retired.
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Inserts or replaces keys (by kid), and deletes `retired` ones, atomically.
    async fn put_signing_keys(
        &self,
        keys: Vec<KeyRecord>,
        retired: Vec<String>,
    ) -> Result<(), StoreError>;
    async fn put_subscription(&self, subscription: SubscriptionRecord) -> Result<(), StoreError>;
    async fn get_subscription(&self, id: String) -> Result<Option<SubscriptionRecord>, StoreError>;
    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// Removes a subscription with its events, receipts and replay cache.
    async fn delete_subscription(&self, id: String) -> Result<bool, StoreError>;
    /// In one transaction: the replay check, the event, its forwarding deliveries, the receipt
    /// (numbered here, with order notes added).
    async fn accept_inbound(&self, accept: InboundAccept) -> Result<InboundOutcome, StoreError>;
    /// Where every commit that makes deliveries pending (`publish`, `deliver_snapshot`,
    /// `replay`, a forwarded `accept_inbound`) announces them once durable: the scheduler, set
    /// once at start.
    fn announce_pending_to(&self, announce: Announce);
    /// Records a refused request; returns the receipt as numbered.
    async fn add_receipt(
        &self,
        subscription_id: String,
        receipt: ReceiptRecord,
    ) -> Result<ReceiptRecord, StoreError>;
    /// Accepted events after `after`, oldest first.
    async fn inbound_events(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboundEventRecord>, StoreError>;
    /// Receipts after number `after`, oldest first.
    async fn receipts(
        &self,
        subscription_id: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ReceiptRecord>, StoreError>;
    /// Cheap round trip through the store, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Pending deliveries of these lanes, each lane in sequence order.
    async fn pending_in_lanes(
        &self,
        lanes: Vec<LaneId>,
    ) -> Result<Vec<PendingDelivery>, StoreError>;
    /// Whether several hub nodes may share this store; they then deliver a lane only while
    /// they hold its lease (the methods below). A store of one node holds every lane.
    fn shared(&self) -> bool {
        false
    }
    /// Takes `lanes` for this node, except those another node holds a live lease on; returns
    /// the lanes taken (or renewed).
    async fn claim_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        Ok(lanes)
    }
    /// Takes up to `limit` lanes with pending deliveries whose lease ran out (their node
    /// stopped or died) or that nobody took.
    async fn claim_abandoned_lanes(&self, _limit: usize) -> Result<Vec<LaneId>, StoreError> {
        Ok(Vec::new())
    }
    /// Extends this node's leases on `lanes`; returns those it still holds.
    async fn renew_lanes(&self, lanes: Vec<LaneId>) -> Result<Vec<LaneId>, StoreError> {
        Ok(lanes)
    }
    /// Tells the nodes sharing this store that `origin`'s circuit is open until `open_until`
    /// (ms since the epoch), or closed again (`None`).
    async fn share_circuit(
        &self,
        origin: String,
        open_until: Option<u64>,
    ) -> Result<(), StoreError>;
    /// The circuits some node reported open and that are still open, with until when.
    async fn open_circuits(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Gives up every lane this node holds (at shutdown, once no attempt is in flight).
    async fn release_lanes(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Lanes of this node that got new pending deliveries written by another node.
    fn lane_wakeups(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<LaneId>> {
        None
    }
    /// Finishes queued writes and closes the store; later calls fail with `Closed`.
    async fn close(&self);
}
