//! A cache of peers' JWKS documents: per URL, kept for the `Cache-Control: max-age` the peer
//! sends (clamped to [1 min, 1 h]), refetched on an unknown `kid` at most once a minute,
//! size-limited, fetched through the SSRF-guarded client.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::delivery::client::GuardedClient;

const MIN_AGE: Duration = Duration::from_secs(60);
const MAX_AGE: Duration = Duration::from_secs(3600);
/// Least time between two fetches of one URL (refetch on an unknown key included).
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
const MAX_ENTRIES: usize = 1024;

struct Entry {
    document: Value,
    fetched_at: Instant,
    max_age: Duration,
}

pub struct JwksCache {
    client: GuardedClient,
    entries: Mutex<HashMap<String, Entry>>,
}

fn has_kid(document: &Value, kid: &str) -> bool {
    document["keys"]
        .as_array()
        .is_some_and(|keys| keys.iter().any(|k| k["kid"] == kid))
}

impl JwksCache {
    pub fn new(client: GuardedClient) -> JwksCache {
        JwksCache {
            client,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The JWKS at `url`, refreshed when stale or when it lacks `kid` (rate-limited). A
    /// failed refresh falls back to the cached document.
    pub async fn get(&self, url: &str, kid: Option<&str>) -> Result<Value, String> {
        let mut entries = self.entries.lock().await;
        if let Some(entry) = entries.get(url) {
            let age = entry.fetched_at.elapsed();
            let fresh = age < entry.max_age;
            let has_key = kid.is_none_or(|kid| has_kid(&entry.document, kid));
            if (fresh && has_key) || age < REFETCH_INTERVAL {
                return Ok(entry.document.clone());
            }
        }
        match self.client.fetch_json(url, MAX_DOCUMENT_BYTES).await {
            Ok(answer) => {
                if !answer.body["keys"].is_array() {
                    return Err(format!("{url} is not a JWKS (no `keys` array)"));
                }
                let max_age =
                    Duration::from_secs(answer.max_age.unwrap_or(300)).clamp(MIN_AGE, MAX_AGE);
                if entries.len() >= MAX_ENTRIES && !entries.contains_key(url) {
                    let oldest = entries
                        .iter()
                        .min_by_key(|(_, e)| e.fetched_at)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        entries.remove(&oldest);
                    }
                }
                entries.insert(
                    url.to_string(),
                    Entry {
                        document: answer.body.clone(),
                        fetched_at: Instant::now(),
                        max_age,
                    },
                );
                Ok(answer.body)
            }
            Err(error) => match entries.get_mut(url) {
                Some(entry) => {
                    tracing::warn!(url, %error, "JWKS refresh failed; using the cached keys");
                    entry.fetched_at = Instant::now();
                    Ok(entry.document.clone())
                }
                None => Err(error.to_string()),
            },
        }
    }
}
