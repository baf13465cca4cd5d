//! The records the store keeps and the values its operations take and give: what a push
//! config, a task, an event, a delivery, an attempt, a subscription, a receipt and a follow
//! are. Plain data; how they are keyed and kept is `tables.rs` and `ops/`.

use a2a::{StreamResponse, Task};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::keys;
use crate::a2a::filter::EventFilter;
pub use crate::a2a::push_config::Authentication;
use crate::a2a::push_config::ConfigView;
use crate::a2a::version::WireVersion;
use crate::secret::Secret;
use crate::trace::TraceContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigState {
    Active,
    /// The receiver answered 410 Gone; nothing more is delivered.
    Disabled,
    /// Its deliveries failed continuously for `delivery.disable_after`: new events still make
    /// deliveries, held pending until the config is enabled again.
    Suspended,
}

impl ConfigState {
    /// Whether a new event makes a delivery for the config (delivered now, or held).
    pub fn takes_events(self) -> bool {
        matches!(self, ConfigState::Active | ConfigState::Suspended)
    }
}

/// A config whose latest attempts all failed: since when, how many. Kept from its first
/// failure after a success until its next success, so a success costs no write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailingStreak {
    /// When the first failed attempt of the streak started.
    pub since_ms: u64,
    pub failures: u64,
    pub last_failure_at_ms: u64,
    /// The latest failure's class (`http_status`, `timeout`, …) and HTTP status.
    pub last_class: String,
    pub last_status: Option<u16>,
}

/// What a config's health is computed from (see `ConfigStore::config_health`).
#[derive(Debug, Clone)]
pub struct ConfigHealthData {
    pub config: ConfigRecord,
    pub streak: Option<FailingStreak>,
    /// The lane's newest deliveries (at most `HEALTH_SAMPLE`), oldest first, each with its
    /// attempt log.
    pub recent: Vec<(DeliveryRecord, Vec<AttemptRecord>)>,
    /// How many deliveries of the lane are pending (counted up to `HEALTH_PENDING_COUNTED`).
    pub pending: usize,
    pub oldest_pending: Option<DeliveryRecord>,
}

/// Deliveries of a lane whose attempts a health answer looks at.
pub const HEALTH_SAMPLE: u64 = 200;
/// Pending deliveries of a lane a health answer counts, at most.
pub const HEALTH_PENDING_COUNTED: usize = 100_000;

/// What enabling a config did.
#[derive(Debug, Clone, PartialEq)]
pub struct Enabled {
    /// Its state before.
    pub was: ConfigState,
    /// Its held deliveries, due now, handed to the scheduler in lane order.
    pub resumed: Vec<PendingDelivery>,
}

/// The tenants where the hub keeps what an inbound subscription forwards:
/// `inbound:{subscriptionId}`.
pub const FORWARDING_TENANTS: &str = "inbound:";

/// Where the operator webhook's deliveries live: a lane of their own, in a tenant no API caller
/// can name (tenants may not hold control characters).
pub const OPERATOR_TENANT: &str = "\u{1}operator";
pub const OPERATOR_TASK: &str = "events";
pub const OPERATOR_CONFIG: &str = "webhook";

/// Operator events kept (the newest); older ones go, with their webhook deliveries.
pub const OPERATOR_EVENTS_KEPT: u64 = 10_000;

/// Something an operator should know, before it is numbered and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOperatorEvent {
    /// `delivery.dead`, `config.disabled`, `config.recovered`, `circuit.opened`,
    /// `circuit.closed`, `inbound.rejected`.
    pub kind: &'static str,
    /// What happened, without secrets: ids, counts, classes, statuses, origins.
    pub data: serde_json::Value,
}

/// A stored operator event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorEvent {
    /// 1, 2, … in the order they were recorded.
    pub sequence: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub at_ms: u64,
    pub data: serde_json::Value,
    /// Its delivery to the operator webhook, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
}

/// What recording an attempt did besides the attempt itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// Other deliveries of the lane made dead (a 410 Gone disables the config).
    pub killed: Vec<String>,
    /// The config failed for `delivery.disable_after` and is suspended now: its lane holds.
    pub suspended: bool,
    /// Operator events recorded with it.
    pub operator_events: Vec<&'static str>,
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
    /// Which events it receives; the others are recorded as skipped deliveries.
    #[serde(default, skip_serializing_if = "EventFilter::is_all")]
    pub filter: EventFilter,
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

/// What a tenant's new configs start with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantDefaults {
    /// The event filter of a config created from now on (set per config afterwards).
    #[serde(default)]
    pub filter: EventFilter,
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
    /// The trace the publisher was in: every attempt to deliver the event is a span of it.
    pub trace: Option<TraceContext>,
    /// The span id of the event's `create` or `receive` span, which each attempt's span links
    /// to (when telemetry is on).
    pub origin_span: Option<String>,
    /// The publisher's idempotency key: the same key again answers this event.
    pub idempotency: Option<IdempotencyClaim>,
}

/// An idempotency key given with an event. Within its window the same key answers the event
/// first published with it, without storing anything; with another event it is a conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyClaim {
    pub key: String,
    /// SHA-256 (hex) of what the event says — its body and owner, not its trace — so that a
    /// retry is recognised whatever trace it is sent in.
    pub fingerprint: String,
    /// Keys recorded before this moment (ms) have expired: the key is free again.
    pub recorded_after_ms: u64,
}

/// What an idempotency key stands for, stored with the event in its transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    pub recorded_at_ms: u64,
    pub event_id: String,
    pub task_id: String,
    pub sequence: u64,
    /// (delivery id, config id) of each delivery the event made.
    pub deliveries: Vec<(String, String)>,
}

/// A request whose idempotency key is taken by another event: nothing was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyConflict {
    /// Which event of the request (0 for a single event).
    pub index: usize,
    pub key: String,
    pub with: ConflictWith,
}

/// What an idempotency key in conflict already stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum ConflictWith {
    /// An event stored earlier with that key.
    Stored {
        event_id: String,
        task_id: String,
        sequence: u64,
    },
    /// An earlier, different event of the same request.
    Batch(usize),
}

/// What `publish` did: the events stored (or answered again), or nothing, for a conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    Events(Vec<PublishedEvent>),
    KeyConflict(KeyConflict),
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
    /// The trace of the request that created the config.
    pub trace: Option<TraceContext>,
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
    /// Kept so that every attempt, after a restart too, joins the publisher's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_span: Option<String>,
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
    /// Answered again for an idempotency key: nothing new was stored or queued.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
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
        if self.replayed {
            return Vec::new();
        }
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
                again: false,
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
    /// Its config's filter held the event back: never sent, kept so the gap is explained.
    Skipped,
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
    /// A snapshot's trace (an event's is kept with the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_trace: Option<TraceContext>,
    /// Its lane's config is failing (see `FailingStreak`): set on a failed attempt and handed
    /// to the next delivery when this one dies, so that only a success of such a delivery
    /// has a streak to end — a success of any other costs no read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lane_failing: bool,
    /// The filter (`state_changes`, `terminal`, `match`) that skipped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_by: Option<String>,
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
    /// The `traceparent` the attempt sent: the attempt's span in the publisher's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// How the request was signed and authenticated, masked (`request::masked_credentials`):
    /// never a credential.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
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
    /// Made pending again (a replay, its config enabled again) rather than new: it may be older
    /// than deliveries of its lane the scheduler already had.
    pub again: bool,
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
        "delivery {0} cannot be replayed: its push config is disabled (the receiver answered 410 Gone); enable it (POST …/configs/{{configId}}:enable) or register it again first"
    )]
    ConfigDisabled(String),
    #[error(
        "delivery {0} cannot be replayed: its push config is suspended after failing continuously; enable it (POST …/configs/{{configId}}:enable) and its held deliveries resume in order"
    )]
    ConfigSuspended(String),
}

/// Deliveries of one task by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub canceled: u64,
    pub skipped: u64,
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
    /// Set when the hub itself delegated the task (the MCP bridge's `delegate_task`): the
    /// agent it sent the message to, to reply to and cancel the task there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Delegation>,
    pub created_at_ms: u64,
}

/// A task the hub delegated to a remote agent, with this subscription as its webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delegation {
    pub agent_url: String,
    /// `JSONRPC` or `HTTP+JSON`, as chosen from the agent's card.
    pub binding: String,
    pub context_id: Option<String>,
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
    /// The trace of the client's request that opened the intake: the agent's pushes, which
    /// carry none, join it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// One accepted inbound event, normalised to an A2A 1.0 `StreamResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboundEventRecord {
    /// Per subscription: 1, 2, … (the SSE event id).
    pub sequence: u64,
    pub received_at_ms: u64,
    pub task_id: String,
    pub event: Box<RawValue>,
    /// The receipt of the push that carried it, kept with it: one record written per accepted
    /// push instead of two (docs/PERFORMANCE.md). Events accepted before receipts were kept
    /// this way have none; their receipts are in the receipts table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptRecord>,
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
    /// The peer's trace context, carried on to where the event is routed.
    pub trace: Option<TraceContext>,
    /// The `receive` span's id, which the routed event's attempts link to.
    pub origin_span: Option<String>,
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
        /// Replay entries dropped before they expired, to keep the cache within its bound.
        replay_evicted: u64,
    },
    /// Seen within its window: acknowledged, not routed again.
    Duplicate,
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

/// A lane a node took or kept (`LaneStore::claim_lanes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedLane {
    pub lane: LaneId,
    /// The node held the lane already, and no other node held it since: what the node knows of
    /// the lane (which deliveries it has queued) is still true.
    pub kept: bool,
}

/// What a renewal of lane leases found (`LaneStore::renew_lanes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenewedLanes {
    /// The lanes this node still holds.
    pub held: Vec<LaneId>,
    /// Those of them whose lease now lasts a whole lease from the renewal; the others were
    /// being written to at that moment and keep the end they had.
    pub extended: Vec<LaneId>,
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

impl ConfigRecord {
    /// A config the hub makes for itself (an inbound subscription's forwarding, the operator
    /// webhook): active, A2A 1.0, nobody's, without credentials.
    pub fn hub_made(tenant: String, task_id: String, id: &str, url: String, now: u64) -> Self {
        ConfigRecord {
            tenant,
            task_id,
            id: id.to_string(),
            url,
            token: None,
            authentication: None,
            wire_version: crate::a2a::version::WireVersion::V1_0,
            state: ConfigState::Active,
            created_at_ms: now,
            updated_at_ms: now,
            owner: None,
            filter: EventFilter::All,
        }
    }

    /// What the A2A bindings answer about the config (never its secrets).
    pub fn view(&self) -> ConfigView<'_> {
        ConfigView {
            tenant: &self.tenant,
            task_id: &self.task_id,
            id: &self.id,
            url: &self.url,
            authentication: self.authentication.as_ref(),
        }
    }
}
