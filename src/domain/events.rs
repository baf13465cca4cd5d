//! Publishing task events: validate every event of a request, then store them together with
//! their deliveries in one durable transaction (all or nothing).

use serde_json::Value;
use serde_json::value::RawValue;

use std::sync::Arc;
use std::time::Duration;

use super::DomainError;
use crate::a2a::event::parse_event;
use crate::a2a::params::InvalidField;
use crate::config::HumanDuration;
use crate::delivery::backpressure::Backpressure;
use crate::metrics::Metrics;
use crate::store::{
    ConfigSnapshot, ConflictWith, IdempotencyClaim, KeyConflict, NewEvent, Published,
    PublishedEvent, Store, now_ms,
};
use crate::telemetry::Telemetry;
use crate::trace::{TraceContext, TraceError};

/// Publishing: what it needs.
#[derive(Clone)]
pub struct Events {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Records a `create` span per event.
    pub telemetry: Telemetry,
    /// How long an idempotency key answers its first event (`retention.idempotency_keys`).
    pub idempotency_window: Duration,
    /// How long a publisher waits for delivery to catch up.
    pub backpressure: Backpressure,
}

/// Longest idempotency key, as other webhook and payment APIs accept.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The request header that carries a single event's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Most events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Publishes one event given as raw JSON bytes, in the trace `trace` (the request's) unless
/// the event names its own; `key` is the request's `Idempotency-Key`.
pub async fn publish_one(
    events: &Events,
    tenant: &str,
    body: &[u8],
    trace: Option<&TraceContext>,
    key: Option<&str>,
) -> Result<PublishedEvent, DomainError> {
    let raw: Box<RawValue> = serde_json::from_slice(body)
        .map_err(|e| InvalidField::new("body", format!("is not valid JSON: {e}")))?;
    let request = Request {
        tenant,
        trace,
        key,
        window: events.idempotency_window,
    };
    let event = validate(&request, raw, "")?;
    let key_field = if key.is_some() {
        IDEMPOTENCY_KEY_HEADER
    } else {
        "idempotencyKey"
    };
    let mut published = store_events(events, vec![event], |_| key_field.to_string()).await?;
    published.pop().ok_or_else(|| {
        DomainError::Store(crate::store::StoreError::Storage(
            "publish returned nothing".to_string(),
        ))
    })
}

/// Publishes a JSON array of events atomically: one invalid event rejects the whole batch.
/// Each event is in the trace it names, or else in `trace` (the request's).
pub async fn publish_batch(
    events: &Events,
    tenant: &str,
    body: &[u8],
    trace: Option<&TraceContext>,
) -> Result<Vec<PublishedEvent>, DomainError> {
    let items: Vec<Box<RawValue>> = serde_json::from_slice(body).map_err(|e| {
        InvalidField::new(
            "body",
            format!("must be a JSON array of A2A StreamResponse events: {e}"),
        )
    })?;
    if items.is_empty() {
        return Err(InvalidField::new("body", "must contain at least one event").into());
    }
    if items.len() > MAX_BATCH_EVENTS {
        return Err(InvalidField::new(
            "body",
            format!(
                "holds {} events; at most {MAX_BATCH_EVENTS} per batch",
                items.len()
            ),
        )
        .into());
    }
    let request = Request {
        tenant,
        trace,
        key: None,
        window: events.idempotency_window,
    };
    let new = items
        .into_iter()
        .enumerate()
        .map(|(i, raw)| validate(&request, raw, &format!("[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    store_events(events, new, |i| format!("[{i}].idempotencyKey")).await
}

/// Stores the events durably (the store hands their deliveries to the scheduler), each with
/// its `create` span, then waits if delivery to their receivers is behind
/// (`delivery/backpressure.rs`); `key_field` names the idempotency key of the `i`th event in
/// an error.
async fn store_events(
    events: &Events,
    mut new: Vec<NewEvent>,
    key_field: impl Fn(usize) -> String,
) -> Result<Vec<PublishedEvent>, DomainError> {
    let mut spans = Vec::new();
    if events.telemetry.is_on() {
        for event in &mut new {
            let span = events
                .telemetry
                .create(event.trace.as_ref(), &event.task_id);
            // Deliveries are children of the publisher's span, or of this one when the
            // publisher sent none, and link to it.
            event.origin_span = span.span_id();
            if event.trace.is_none() {
                event.trace = span.context();
            }
            spans.push(span);
        }
    }
    let published = match events.store.publish(new).await {
        Ok(Published::Events(published)) => published,
        Ok(Published::KeyConflict(conflict)) => {
            for span in &mut spans {
                span.fail("the idempotency key stands for another event");
            }
            let reason = conflict_reason(&conflict, events.idempotency_window);
            return Err(DomainError::ConflictingField(InvalidField::new(
                key_field(conflict.index),
                reason,
            )));
        }
        Err(e) => {
            for span in &mut spans {
                span.fail("the event could not be stored");
            }
            return Err(e.into());
        }
    };
    for (span, event) in spans.iter_mut().zip(&published) {
        span.set("messaging.message.id", event.event_id.clone());
        span.set("a2a.event.sequence", event.sequence as i64);
        span.set("a2a.deliveries", event.deliveries.len() as i64);
        if event.replayed {
            span.set("a2a.event.replayed", true);
        }
    }
    let replayed = published.iter().filter(|e| e.replayed).count() as u64;
    events.metrics.events_replayed(replayed);
    events
        .metrics
        .events_published(published.len() as u64 - replayed);
    // Durable now: if delivery to these receivers is behind, the answer waits a little, so
    // that a publisher keeping up with its answers slows to what delivery keeps up with.
    let wait = events.backpressure.wait_for(
        published
            .iter()
            .filter(|event| !event.replayed)
            .flat_map(|event| event.deliveries.iter().map(|d| d.url.as_str())),
        now_ms(),
    );
    events.backpressure.slow_down(wait, &events.metrics).await;
    Ok(published)
}

/// What a conflicting idempotency key already stands for, and what to do about it.
fn conflict_reason(conflict: &KeyConflict, window: Duration) -> String {
    let key = &conflict.key;
    match &conflict.with {
        ConflictWith::Stored {
            event_id,
            task_id,
            sequence,
        } => format!(
            "{key:?} was used within the last {} for another event (event {event_id}: task {task_id:?}, sequence {sequence}); \
             a retry must repeat the event as it was (its trace may differ), a new event needs a new key",
            HumanDuration(window)
        ),
        ConflictWith::Batch(first) => format!(
            "{key:?} is also the key of event [{first}] of this batch, a different event; each event needs its own key"
        ),
    }
}

/// What every event of one request shares.
struct Request<'a> {
    tenant: &'a str,
    /// The request's trace context, for events that name none.
    trace: Option<&'a TraceContext>,
    /// The `Idempotency-Key` header (a single event's).
    key: Option<&'a str>,
    window: Duration,
}

/// Longest principal name the event API accepts as an `owner`.
const MAX_OWNER_LEN: usize = 256;

/// The hub's own fields beside an event: taken out so receivers get the event exactly as the
/// A2A protocol defines it.
const HUB_FIELDS: [&str; 5] = [
    "owner",
    "traceparent",
    "tracestate",
    "baggage",
    "idempotencyKey",
];

fn validate(request: &Request<'_>, raw: Box<RawValue>, at: &str) -> Result<NewEvent, InvalidField> {
    let mut value: Value = serde_json::from_str(raw.get()).map_err(|e| {
        InvalidField::new(
            if at.is_empty() { "body" } else { at },
            format!("is not valid JSON: {e}"),
        )
    })?;
    let field = |name: &str| format!("{at}{}{name}", if at.is_empty() { "" } else { "." });
    let mut hub_fields =
        HUB_FIELDS.map(|name| value.as_object_mut().and_then(|event| event.remove(name)));
    let had_hub_fields = hub_fields.iter().any(Option::is_some);
    let [owner, traceparent, tracestate, baggage, key] = &mut hub_fields;
    let owner = match owner.take() {
        None => None,
        Some(Value::String(owner)) if (1..=MAX_OWNER_LEN).contains(&owner.len()) => Some(owner),
        Some(_) => {
            return Err(InvalidField::new(
                field("owner"),
                format!(
                    "must be the principal the task belongs to: a string of 1 to {MAX_OWNER_LEN} characters"
                ),
            ));
        }
    };
    let text = |name: &str, value: &Option<Value>| match value {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(InvalidField::new(
            field(name),
            "must be a string (a W3C Trace Context or Baggage header value)",
        )),
    };
    let (traceparent, tracestate, baggage) = (
        text("traceparent", traceparent)?,
        text("tracestate", tracestate)?,
        text("baggage", baggage)?,
    );
    let own_trace = TraceContext::parse(
        traceparent.as_deref(),
        tracestate.as_deref(),
        baggage.as_deref(),
    )
    .map_err(|e| {
        let name = match e {
            TraceError::Tracestate => "tracestate",
            TraceError::Baggage => "baggage",
            TraceError::Traceparent | TraceError::Orphan => "traceparent",
        };
        InvalidField::new(field(name), e.to_string())
    })?;
    let parsed = parse_event(&value, at)?;
    let key = match (request.key, text("idempotencyKey", key)?) {
        (Some(header), Some(given)) if header != given => {
            return Err(InvalidField::new(
                field("idempotencyKey"),
                format!("differs from the {IDEMPOTENCY_KEY_HEADER} header; give the key once"),
            ));
        }
        (Some(header), _) => Some((IDEMPOTENCY_KEY_HEADER.to_string(), header.to_string())),
        (None, field_key) => field_key.map(|k| (field("idempotencyKey"), k)),
    };
    let idempotency = match key {
        None => None,
        Some((name, key)) => {
            if key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY_LEN
                || !key.bytes().all(|b| (0x20..0x7f).contains(&b))
            {
                return Err(InvalidField::new(
                    name,
                    format!(
                        "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters (a UUID is a good key)"
                    ),
                ));
            }
            // What the event says, in one spelling (object keys sorted): a retry matches
            // whatever its whitespace, key order or trace.
            let said = serde_json::json!({"event": &value, "owner": &owner});
            Some(IdempotencyClaim {
                key,
                fingerprint: crate::digest::sha256_hex(said.to_string().as_bytes()),
                recorded_after_ms: now_ms().saturating_sub(request.window.as_millis() as u64),
            })
        }
    };
    let body = if !had_hub_fields {
        raw
    } else {
        serde_json::value::to_raw_value(&value)
            .map_err(|e| InvalidField::new("body", format!("cannot be stored: {e}")))?
    };
    Ok(NewEvent {
        tenant: request.tenant.to_string(),
        task_id: parsed.task_id,
        event: parsed.event,
        body,
        owner,
        trace: own_trace.or_else(|| request.trace.cloned()),
        origin_span: None,
        idempotency,
    })
}

/// Sends a task's snapshot (`{"task": …}`) to one config only, ahead of the events it has not
/// received yet (a config created on a running task), in the trace of the request that
/// created the config. Returns the task's newest sequence number at that moment.
pub async fn snapshot_to_config(
    events: &Events,
    tenant: &str,
    task_id: &str,
    config_id: &str,
    task: &Value,
    trace: Option<TraceContext>,
) -> Result<u64, DomainError> {
    let value = serde_json::json!({ "task": task });
    let parsed = parse_event(&value, "")?;
    let a2a::StreamResponse::Task(snapshot) = parsed.event else {
        return Err(InvalidField::new("task", "is not a task").into());
    };
    let body = serde_json::value::to_raw_value(&value)
        .map_err(|e| InvalidField::new("task", format!("cannot be stored: {e}")))?;
    let outcome = events
        .store
        .deliver_snapshot(ConfigSnapshot {
            tenant: tenant.to_string(),
            task_id: task_id.to_string(),
            config_id: config_id.to_string(),
            task: snapshot,
            body,
            trace,
        })
        .await?;
    Ok(outcome.last_sequence)
}
