//! Server-Sent Events of numbered records — a subscription's accepted events, the operator
//! events: each event's `id:` is its sequence, so a consumer that reconnects with
//! `Last-Event-ID` resumes with the next one — every event exactly once. Events come from the
//! store; the stream only waits for news: from this node when it accepts an event, and, when
//! nodes share the store or there is no such news, by looking again every `POLL`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::AppState;
use crate::store::{InboundEventRecord, StoreError};

const BATCH: usize = 100;
/// How often a stream without news of its own (or on a shared store, for what other nodes
/// wrote) looks for new events.
const POLL: Duration = Duration::from_secs(1);

pub fn event_json(record: &InboundEventRecord) -> Value {
    let event: Value = serde_json::from_str(record.event.get()).unwrap_or(Value::Null);
    json!({"sequence": record.sequence, "taskId": record.task_id, "receivedAtMs": record.received_at_ms, "event": event})
}

/// One event of a stream: its sequence (the SSE `id:`) and what it carries.
pub type Sequenced = (u64, Value);

struct Cursor<F> {
    state: AppState,
    after: u64,
    buffer: VecDeque<Sequenced>,
    /// News of this node; without it, or when nodes share the store, the stream also looks
    /// again every `POLL`.
    news: Option<watch::Receiver<u64>>,
    fetch: F,
    name: &'static str,
}

/// A subscription's accepted events.
pub async fn events(
    state: AppState,
    id: String,
    after: u64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let news = state.inbound.watch(&id).await;
    let store = state.store.clone();
    stream(state, after, Some(news), "a2a-event", move |after| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let records = store.inbound_events(id, after, BATCH).await?;
            Ok(records
                .iter()
                .map(|r| (r.sequence, event_json(r)))
                .collect())
        }
    })
}

/// Every event `fetch` reads after `after`, then each new one as it comes, named `name`.
pub fn stream<F, Fut>(
    state: AppState,
    after: u64,
    news: Option<watch::Receiver<u64>>,
    name: &'static str,
    fetch: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<Sequenced>, StoreError>> + Send,
{
    let cursor = Cursor {
        state,
        after,
        buffer: VecDeque::new(),
        news,
        fetch,
        name,
    };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some((sequence, data)) = cursor.buffer.pop_front() {
                cursor.after = sequence;
                let event = Event::default()
                    .id(sequence.to_string())
                    .event(cursor.name)
                    .data(data.to_string());
                return Some((Ok(event), cursor));
            }
            match (cursor.fetch)(cursor.after).await {
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
            let poll = cursor.news.is_none() || cursor.state.store.shared();
            let news = async {
                match &mut cursor.news {
                    Some(news) => news.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                alive = news => {
                    if !alive {
                        return None;
                    }
                }
                _ = tokio::time::sleep(POLL), if poll => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
