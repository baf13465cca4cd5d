//! Publishing task events: validate every event of a request, then store them together with
//! their deliveries in one durable transaction (all or nothing).

use serde_json::Value;
use serde_json::value::RawValue;

use std::sync::Arc;

use super::DomainError;
use crate::a2a::event::parse_event;
use crate::a2a::params::InvalidField;
use crate::metrics::Metrics;
use crate::store::{ConfigSnapshot, NewEvent, PublishedEvent, Store};
use crate::telemetry::Telemetry;
use crate::trace::{TraceContext, TraceError};

/// Publishing: what it needs.
#[derive(Clone)]
pub struct Events {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Records a `create` span per event.
    pub telemetry: Telemetry,
}

/// Most events in one batch request.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Publishes one event given as raw JSON bytes, in the trace `trace` (the request's) unless
/// the event names its own.
pub async fn publish_one(
    events: &Events,
    tenant: &str,
    body: &[u8],
    trace: Option<&TraceContext>,
) -> Result<PublishedEvent, DomainError> {
    let raw: Box<RawValue> = serde_json::from_slice(body)
        .map_err(|e| InvalidField::new("body", format!("is not valid JSON: {e}")))?;
    let event = validate(tenant, raw, "", trace)?;
    let mut published = store_events(events, vec![event]).await?;
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
    let new = items
        .into_iter()
        .enumerate()
        .map(|(i, raw)| validate(tenant, raw, &format!("[{i}]"), trace))
        .collect::<Result<Vec<_>, _>>()?;
    store_events(events, new).await
}

/// Stores the events durably (the store hands their deliveries to the scheduler), each with
/// its `create` span.
async fn store_events(
    events: &Events,
    mut new: Vec<NewEvent>,
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
        Ok(published) => published,
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
    }
    events.metrics.events_published(published.len() as u64);
    Ok(published)
}

/// Longest principal name the event API accepts as an `owner`.
const MAX_OWNER_LEN: usize = 256;

/// The hub's own fields beside an event: taken out so receivers get the event exactly as the
/// A2A protocol defines it.
const HUB_FIELDS: [&str; 4] = ["owner", "traceparent", "tracestate", "baggage"];

fn validate(
    tenant: &str,
    raw: Box<RawValue>,
    at: &str,
    request_trace: Option<&TraceContext>,
) -> Result<NewEvent, InvalidField> {
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
    let [owner, traceparent, tracestate, baggage] = &mut hub_fields;
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
    let body = if !had_hub_fields {
        raw
    } else {
        serde_json::value::to_raw_value(&value)
            .map_err(|e| InvalidField::new("body", format!("cannot be stored: {e}")))?
    };
    Ok(NewEvent {
        tenant: tenant.to_string(),
        task_id: parsed.task_id,
        event: parsed.event,
        body,
        owner,
        trace: own_trace.or_else(|| request_trace.cloned()),
        origin_span: None,
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
