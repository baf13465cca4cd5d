//! The operator's view of deliveries: list with filters, one delivery with its attempt log,
//! and manual replay (one by one or by filter). A replayed delivery is attempted once more,
//! in its lane's order, with no further retries.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use std::sync::Arc;

use super::DomainError;
use crate::a2a::params::InvalidField;
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryState, ReplayRefusal, Store,
};

/// The operator's views of tasks and deliveries, and replay: what they need.
#[derive(Clone)]
pub struct Deliveries {
    pub store: Arc<dyn Store>,
}

pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;
/// Most deliveries one replay-by-filter call replays.
pub const MAX_REPLAY: usize = 1000;

pub(super) fn rfc3339(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A delivery as the admin API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    pub tenant: String,
    pub task_id: String,
    pub config_id: String,
    pub sequence: u64,
    pub event_id: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    /// The config's filter that held the event back (`skipped` deliveries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_by: Option<String>,
    pub manual_replay: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> DeliveryView {
        DeliveryView {
            next_attempt_at: (d.state == DeliveryState::Pending)
                .then(|| rfc3339(d.next_attempt_at_ms)),
            created_at: rfc3339(d.created_at_ms),
            updated_at: rfc3339(d.updated_at_ms),
            id: d.id,
            tenant: d.tenant,
            task_id: d.task_id,
            config_id: d.config_id,
            sequence: d.sequence,
            event_id: d.event_id,
            state: d.state,
            attempts: d.attempts,
            last_error: d.last_error,
            skipped_by: d.skipped_by,
            manual_replay: d.manual,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub number: u32,
    pub started_at: String,
    pub duration_ms: u64,
    pub status: Option<u16>,
    pub error_class: String,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    /// The attempt's span in the publisher's trace, as sent; absent outside a trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The credential and signature headers sent, masked (`Bearer <JWT alg=EdDSA kid=…,
    /// masked>`, `webhook-signature: v1a,AbCdEfGh…`, a token as `****`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> AttemptView {
        AttemptView {
            number: a.number,
            started_at: rfc3339(a.started_at_ms),
            duration_ms: a.duration_ms,
            status: a.status,
            error_class: a.error_class,
            error: a.error,
            response_snippet: a.response_snippet,
            traceparent: a.traceparent,
            credentials: a.credentials,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    pub attempt_log: Vec<AttemptView>,
}

/// Parses `pending|delivered|dead|canceled|skipped`.
pub fn parse_state(field: &str, text: &str) -> Result<DeliveryState, InvalidField> {
    match text {
        "pending" => Ok(DeliveryState::Pending),
        "delivered" => Ok(DeliveryState::Delivered),
        "dead" => Ok(DeliveryState::Dead),
        "canceled" => Ok(DeliveryState::Canceled),
        "skipped" => Ok(DeliveryState::Skipped),
        other => Err(InvalidField::new(
            field,
            format!("must be one of pending, delivered, dead, canceled, skipped; got {other:?}"),
        )),
    }
}

/// Parses an RFC 3339 time into milliseconds since the epoch.
pub fn parse_time(field: &str, text: &str) -> Result<u64, InvalidField> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis().max(0) as u64)
        .map_err(|e| {
            InvalidField::new(
                field,
                format!("must be an RFC 3339 time such as 2026-11-28T10:00:00Z: {e}"),
            )
        })
}

/// A listing's page size: `DEFAULT_LIST_LIMIT` unless asked, at most `MAX_LIST_LIMIT`.
pub fn page_limit(limit: Option<usize>) -> Result<usize, InvalidField> {
    match limit {
        None => Ok(DEFAULT_LIST_LIMIT),
        Some(0) => Err(InvalidField::new("limit", "must be at least 1")),
        Some(n) => Ok(n.min(MAX_LIST_LIMIT)),
    }
}

pub async fn list(
    deliveries: &Deliveries,
    filter: DeliveryFilter,
    after: Option<String>,
    limit: Option<usize>,
) -> Result<DeliveryPage, DomainError> {
    let limit = page_limit(limit)?;
    let found = deliveries
        .store
        .list_deliveries(filter, after, limit)
        .await?;
    let next_cursor = (found.len() == limit)
        .then(|| found.last().map(|d| d.id.clone()))
        .flatten();
    Ok(DeliveryPage {
        deliveries: found.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    })
}

pub async fn show(deliveries: &Deliveries, id: &str) -> Result<DeliveryDetail, DomainError> {
    let delivery = deliveries
        .store
        .get_delivery(id.to_string())
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("delivery {id:?} does not exist")))?;
    let attempts = deliveries.store.attempts(id.to_string()).await?;
    Ok(DeliveryDetail {
        delivery: delivery.into(),
        attempt_log: attempts.into_iter().map(AttemptView::from).collect(),
    })
}

/// Why one delivery was not replayed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub delivery_id: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayOutcome {
    pub replayed: Vec<String>,
    pub refused: Vec<Refused>,
    /// More deliveries matched than one call replays; call again.
    pub more: bool,
}

/// Replays one delivery; refusals become errors a user can act on.
pub async fn replay_one(deliveries: &Deliveries, id: &str) -> Result<String, DomainError> {
    let outcome = replay_ids(deliveries, vec![id.to_string()]).await?;
    if let Some(refused) = outcome.refused.into_iter().next() {
        return Err(DomainError::Conflict(refused.reason));
    }
    Ok(id.to_string())
}

/// Replays every delivery matching `filter` (at most `MAX_REPLAY` per call).
pub async fn replay_matching(
    deliveries: &Deliveries,
    filter: DeliveryFilter,
) -> Result<ReplayOutcome, DomainError> {
    let found = deliveries
        .store
        .list_deliveries(filter, None, MAX_REPLAY + 1)
        .await?;
    let more = found.len() > MAX_REPLAY;
    let ids = found.into_iter().take(MAX_REPLAY).map(|d| d.id).collect();
    let mut outcome = replay_ids(deliveries, ids).await?;
    outcome.more = more;
    Ok(outcome)
}

async fn replay_ids(
    deliveries: &Deliveries,
    ids: Vec<String>,
) -> Result<ReplayOutcome, DomainError> {
    let results = deliveries.store.replay(ids.clone()).await?;
    let mut outcome = ReplayOutcome {
        replayed: Vec::new(),
        refused: Vec::new(),
        more: false,
    };
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(_) => outcome.replayed.push(id),
            Err(ReplayRefusal::NotFound(_)) => {
                return Err(DomainError::NotFound(format!(
                    "delivery {id:?} does not exist"
                )));
            }
            Err(refusal) => outcome.refused.push(Refused {
                delivery_id: id,
                reason: refusal.to_string(),
            }),
        }
    }
    if !outcome.replayed.is_empty() {
        tracing::info!(count = outcome.replayed.len(), "deliveries replayed");
    }
    Ok(outcome)
}
