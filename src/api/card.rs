//! `GET /.well-known/agent-card.json`: the hub's own card, or in gateway mode the agent's,
//! rewritten to point at the hub. Either way with an `ETag` over the bytes served, so clients
//! (and conformance kits, which require it) revalidate with `If-None-Match` and get a 304.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::AppState;
use crate::gateway::{card, upstream};

/// Largest agent card the gateway reads from the agent.
const MAX_CARD_BYTES: usize = 4 * 1024 * 1024;
/// When the agent says nothing of caching: five minutes, then ask again (cheaply, by `ETag`).
const DEFAULT_CACHE_CONTROL: &str = "public, max-age=300";

pub async fn agent_card(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let auth = state.settings.server.public_auth;
    let Some(gateway) = state.gateway.clone() else {
        let card = card::standalone(&state.public_base_url, auth);
        return answer(&headers, &card, None, None);
    };
    // The client's validators are for the hub's bytes, not the agent's: the agent answers in
    // full, and the hub decides about the 304.
    let mut asked = headers.clone();
    asked.remove(header::IF_NONE_MATCH);
    asked.remove(header::IF_MODIFIED_SINCE);
    let response = match upstream::proxy(
        &gateway,
        Method::GET,
        "/.well-known/agent-card.json",
        &asked,
        Vec::new(),
    )
    .await
    {
        Ok(response) => response,
        Err(error) => return super::gateway_configs::unreachable_rest(&error),
    };
    if !response.status().is_success() {
        return response;
    }
    let cache_control = response.headers().get(header::CACHE_CONTROL).cloned();
    let last_modified = response.headers().get(header::LAST_MODIFIED).cloned();
    let Ok(bytes) = axum::body::to_bytes(response.into_body(), MAX_CARD_BYTES).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let Ok(agents) = serde_json::from_slice::<Value>(&bytes) else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut card = card::rewrite(agents, gateway.upstream.as_str(), &state.public_base_url);
    card::add_hub_security(&mut card, auth);
    answer(&headers, &card, cache_control, last_modified)
}

/// The card with its validators: 304 when the client's `If-None-Match` names its `ETag`.
fn answer(
    request: &HeaderMap,
    card: &Value,
    cache_control: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
) -> Response {
    let body = Bytes::from(serde_json::to_vec(card).unwrap_or_default());
    let etag = etag_of(&body);
    let not_modified = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| matches_etag(v, &etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        cache_control.unwrap_or(HeaderValue::from_static(DEFAULT_CACHE_CONTROL)),
    );
    if let Some(value) = last_modified {
        headers.insert(header::LAST_MODIFIED, value);
    }
    response
}

/// A strong `ETag`: the first 16 bytes of the body's SHA-256, base64url.
fn etag_of(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]))
}

/// Whether an `If-None-Match` value (`*`, or a list of entity tags, weak or strong) names
/// `etag` (RFC 9110 §13.1.2: weak comparison).
fn matches_etag(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_compared_weakly_in_a_list_or_as_a_star() {
        let etag = etag_of(b"{}");
        assert!(matches_etag(&etag, &etag));
        assert!(matches_etag(&format!("W/{etag}"), &etag));
        assert!(matches_etag(&format!("\"other\", {etag}"), &etag));
        assert!(matches_etag("*", &etag));
        assert!(!matches_etag("\"other\"", &etag));
        assert_ne!(etag_of(b"{}"), etag_of(b"{ }"));
    }
}
