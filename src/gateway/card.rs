//! The agent card served by the gateway: the upstream's, with its interface URLs pointing at
//! the hub and push notifications advertised.

use serde_json::Value;

/// Rewrites URLs under `upstream` to the same path under `hub`, in the 1.0 fields
/// (`supportedInterfaces[].url`) and the 0.3 ones (`url`, `additionalInterfaces[].url`), and
/// sets `capabilities.pushNotifications`.
pub fn rewrite(mut card: Value, upstream: &str, hub: &str) -> Value {
    let upstream = upstream.trim_end_matches('/');
    let hub = hub.trim_end_matches('/');
    let swap = |url: &mut Value| {
        if let Some(text) = url.as_str() {
            let path = match text.strip_prefix(upstream) {
                Some(path) => path.to_string(),
                None => url::Url::parse(text)
                    .map(|u| u.path().to_string())
                    .unwrap_or_else(|_| "/".to_string()),
            };
            *url = Value::String(format!("{hub}{path}"));
        }
    };
    for list in ["supportedInterfaces", "additionalInterfaces"] {
        if let Some(interfaces) = card[list].as_array_mut() {
            for interface in interfaces {
                swap(&mut interface["url"]);
            }
        }
    }
    if card.get("url").is_some() {
        swap(&mut card["url"]);
    }
    if !card["capabilities"].is_object() {
        card["capabilities"] = serde_json::json!({});
    }
    card["capabilities"]["pushNotifications"] = Value::Bool(true);
    card
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interface_urls_point_at_the_hub_and_push_is_advertised() {
        let card = json!({"name": "a", "capabilities": {"streaming": true},
            "supportedInterfaces": [{"url": "http://127.0.0.1:9999/", "protocolBinding": "JSONRPC"},
                                    {"url": "http://127.0.0.1:9999/rest", "protocolBinding": "HTTP+JSON"}],
            "url": "http://127.0.0.1:9999/"});
        let out = rewrite(card, "http://127.0.0.1:9999/", "https://hub.example");
        assert_eq!(out["supportedInterfaces"][0]["url"], "https://hub.example/");
        assert_eq!(
            out["supportedInterfaces"][1]["url"],
            "https://hub.example/rest"
        );
        assert_eq!(out["url"], "https://hub.example/");
        assert_eq!(
            out["capabilities"],
            json!({"streaming": true, "pushNotifications": true})
        );
    }
}
