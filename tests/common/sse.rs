//! Reading a server-sent events stream event by event.

use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Reads Server-Sent Events from a streaming response: (id, data) pairs.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event with data, within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> (String, Value) {
        tokio::time::timeout(deadline, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut id = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if !data.is_empty() {
                        return (id, serde_json::from_str(&data).unwrap());
                    }
                    continue;
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream stays open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an SSE event within the deadline")
    }
}
