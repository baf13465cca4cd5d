//! Server-Sent Events of a subscription's accepted events: each event's `id:` is its
//! sequence, so a consumer that reconnects with `Last-Event-ID` resumes with the next one —
//! every event exactly once. Events come from the store; the stream only waits for news: from
//! this node when it accepts an event, and, when nodes share the store, by looking again every
//! `SHARED_STORE_POLL` for events other nodes accepted.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::AppState;
use crate::store::InboundEventRecord;

const BATCH: usize = 100;
/// How often a stream on a shared store looks for events other nodes accepted.
const SHARED_STORE_POLL: Duration = Duration::from_secs(1);

pub fn event_json(record: &InboundEventRecord) -> Value {
    let event: Value = serde_json::from_str(record.event.get()).unwrap_or(Value::Null);
    json!({"sequence": record.sequence, "taskId": record.task_id, "receivedAtMs": record.received_at_ms, "event": event})
}

struct Cursor {
    state: AppState,
    id: String,
    after: u64,
    buffer: VecDeque<InboundEventRecord>,
    news: watch::Receiver<u64>,
}

pub async fn events(
    state: AppState,
    id: String,
    after: u64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let news = state.inbound.watch(&id).await;
    let cursor = Cursor {
        state,
        id,
        after,
        buffer: VecDeque::new(),
        news,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(record) = cursor.buffer.pop_front() {
                cursor.after = record.sequence;
                let event = Event::default()
                    .id(record.sequence.to_string())
                    .event("a2a-event")
                    .data(event_json(&record).to_string());
                return Some((Ok(event), cursor));
            }
            match cursor
                .state
                .store
                .inbound_events(cursor.id.clone(), cursor.after, BATCH)
                .await
            {
                Ok(records) if !records.is_empty() => {
                    cursor.buffer.extend(records);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "SSE read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            // Caught up: wait for news; a deleted subscription or a shutdown ends the stream.
            let shutdown = cursor.state.shutdown.clone();
            let shared = cursor.state.store.shared();
            tokio::select! {
                changed = cursor.news.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = tokio::time::sleep(SHARED_STORE_POLL), if shared => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
