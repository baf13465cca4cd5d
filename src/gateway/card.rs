//! The agent card served by the gateway: the upstream's, with its interface URLs pointing at
//! the hub and push notifications advertised.

use serde_json::{Value, json};

use crate::config::PublicAuth;

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
    // `get_mut`, never `card[name]` on a field that may be absent: indexing a JSON object
    // mutably adds the field as `null`, and card validators refuse `"additionalInterfaces": null`.
    for list in ["supportedInterfaces", "additionalInterfaces"] {
        if let Some(interfaces) = card.get_mut(list).and_then(Value::as_array_mut) {
            for interface in interfaces {
                if let Some(url) = interface.get_mut("url") {
                    swap(url);
                }
            }
        }
    }
    if let Some(url) = card.get_mut("url") {
        swap(url);
    }
    if !card["capabilities"].is_object() {
        card["capabilities"] = serde_json::json!({});
    }
    card["capabilities"]["pushNotifications"] = Value::Bool(true);
    card
}

/// The hub's own security scheme (`server.public_auth`), as A2A 1.0 declares schemes: the
/// `securitySchemes` entries and the `securityRequirements` that ask for one of them. `None`
/// when the public listener takes no credentials.
pub fn security(auth: PublicAuth) -> Option<(Value, Value)> {
    let requirement = |name: &str| json!({"schemes": {name: {"list": []}}});
    match auth {
        PublicAuth::None => None,
        PublicAuth::ApiKeys => Some((
            json!({
                "hubApiKey": {"httpAuthSecurityScheme": {"scheme": "Bearer", "description": "an API key of the hub's server.api_keys"}},
                "hubApiKeyHeader": {"apiKeySecurityScheme": {"location": "header", "name": "X-API-Key", "description": "the same API key, in its own header"}}
            }),
            json!([requirement("hubApiKey"), requirement("hubApiKeyHeader")]),
        )),
        PublicAuth::Jwt => Some((
            json!({"hubJwt": {"httpAuthSecurityScheme": {"scheme": "Bearer", "bearerFormat": "JWT", "description": "a JWT of the issuer the hub trusts (server.jwt)"}}}),
            json!([requirement("hubJwt")]),
        )),
    }
}

/// Adds the hub's scheme to an agent's card served by the gateway. The agent's own schemes and
/// requirements stay: they guard every method; the hub's guards the push-config methods too.
pub fn add_hub_security(card: &mut Value, auth: PublicAuth) {
    let Some((schemes, _)) = security(auth) else {
        return;
    };
    if !card["securitySchemes"].is_object() {
        card["securitySchemes"] = json!({});
    }
    if let (Some(card_schemes), Value::Object(hub_schemes)) =
        (card["securitySchemes"].as_object_mut(), schemes)
    {
        card_schemes.extend(hub_schemes);
    }
}

/// The card the hub serves without an agent behind it: what it is, where its two bindings
/// are, and the credentials it takes.
pub fn standalone(hub: &str, auth: PublicAuth) -> Value {
    let hub = hub.trim_end_matches('/');
    let mut card = json!({
        "name": "a2a-push-hub",
        "description": "Reliable, signed and observable A2A push notifications: this endpoint serves the push-notification config methods only.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [
            {"url": format!("{hub}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": hub, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}
        ],
        "capabilities": {"pushNotifications": true, "streaming": false},
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": []
    });
    if let Some((schemes, requirements)) = security(auth) {
        card["securitySchemes"] = schemes;
        card["securityRequirements"] = requirements;
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standalone_card_parses_as_an_a2a_card_and_declares_the_schemes_in_force() {
        for auth in [PublicAuth::None, PublicAuth::ApiKeys, PublicAuth::Jwt] {
            let card = standalone("https://hub.example", auth);
            let parsed: a2a::AgentCard = serde_json::from_value(card.clone()).unwrap();
            let schemes = parsed.security_schemes.map(|s| s.len()).unwrap_or(0);
            let expected = match auth {
                PublicAuth::None => 0,
                PublicAuth::ApiKeys => 2,
                PublicAuth::Jwt => 1,
            };
            assert_eq!(schemes, expected, "{card}");
            assert_eq!(
                parsed.security_requirements.map(|r| r.len()).unwrap_or(0),
                expected,
                "{card}"
            );
        }
    }

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

    #[test]
    fn fields_the_agents_card_lacks_stay_absent() {
        let card = json!({"name": "a", "version": "1", "capabilities": {},
            "supportedInterfaces": [{"url": "http://127.0.0.1:9999/", "protocolBinding": "JSONRPC"}, {"protocolBinding": "GRPC"}]});
        let out = rewrite(card, "http://127.0.0.1:9999/", "https://hub.example");
        let fields: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(
            fields,
            ["capabilities", "name", "supportedInterfaces", "version"]
        );
        assert_eq!(
            out["supportedInterfaces"][1],
            json!({"protocolBinding": "GRPC"})
        );
        assert!(!out.to_string().contains("null"), "{out}");
    }

    #[test]
    fn the_gateway_card_keeps_the_agents_schemes_and_adds_the_hubs() {
        let mut card = json!({"securitySchemes": {"agentKey": {"apiKeySecurityScheme": {"location": "header", "name": "X-Agent-Key"}}},
            "securityRequirements": [{"schemes": {"agentKey": {"list": []}}}]});
        add_hub_security(&mut card, PublicAuth::ApiKeys);
        let schemes = card["securitySchemes"].as_object().unwrap();
        assert!(
            schemes.contains_key("agentKey")
                && schemes.contains_key("hubApiKey")
                && schemes.contains_key("hubApiKeyHeader")
        );
        assert_eq!(
            card["securityRequirements"].as_array().unwrap().len(),
            1,
            "the agent's requirements stay"
        );
        let mut untouched = json!({"name": "a"});
        add_hub_security(&mut untouched, PublicAuth::None);
        assert_eq!(
            untouched,
            json!({"name": "a"}),
            "no field is added when the hub takes no credentials"
        );
    }
}
