//! A fake A2A agent that answers SendMessage and streams, silent at first: what the gateway
//! follows.

use serde_json::{Value, json};
use std::sync::Arc;

use super::*;

/// An A2A agent whose card declares no push support, so the gateway follows its tasks through
/// `SubscribeToTask`. Every send starts task `t-new`. The first subscription stays silent (its
/// answer is held until the agent is dropped); later ones stream `events` and end.
pub struct SilentFirstAgent {
    pub agent: Receiver,
    /// How many `SubscribeToTask` requests arrived.
    pub subscriptions: Arc<std::sync::atomic::AtomicUsize>,
    held: Arc<tokio::sync::Notify>,
}

impl SilentFirstAgent {
    pub async fn start(events: Vec<Value>) -> SilentFirstAgent {
        let agent = Receiver::start_on("127.0.0.1").await;
        let subscriptions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let held = Arc::new(tokio::sync::Notify::new());
        let (count, hold) = (subscriptions.clone(), held.clone());
        agent.script(move |r| {
            let json = |body: Value| {
                let mut reply = Reply::ok().header("content-type", "application/json");
                reply.body = body.to_string();
                reply
            };
            if r.path == "/.well-known/agent-card.json" {
                return json(json!({"name": "no-push", "capabilities": {"streaming": true, "pushNotifications": false}}));
            }
            let request = r.json();
            let id = request["id"].clone();
            if request["method"] != "SubscribeToTask" {
                return json(json!({"jsonrpc": "2.0", "id": id, "result": {"task": {"id": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}}}));
            }
            let mut stream = Reply::ok().header("content-type", "text/event-stream");
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return stream.hold(hold.clone());
            }
            stream.body = events
                .iter()
                .map(|e| format!("data: {}\n\n", json!({"jsonrpc": "2.0", "id": id, "result": e})))
                .collect();
            stream
        });
        SilentFirstAgent {
            agent,
            subscriptions,
            held,
        }
    }

    pub fn subscribed(&self) -> usize {
        self.subscriptions.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentFirstAgent {
    fn drop(&mut self) {
        self.held.notify_waiters();
    }
}

/// A JSON-RPC `SendMessage` with an inline push config to `webhook`.
pub fn send_with_inline_config(webhook: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
        "configuration": {"returnImmediately": true, "taskPushNotificationConfig": {"url": webhook}}}})
}
