//! Rendering the outbound request (docs/DELIVERY.md; spec/signing.md) (signature headers come with signing): the
//! headers every attempt carries, computed from the config, the delivery and the attempt time.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::a2a::version::WireVersion;
use crate::signing::{JwtInput, KeySet, SigningInput, sign_delivery, webhooks};
use crate::store::{ConfigRecord, DeliveryRecord};

pub const USER_AGENT: &str = concat!("a2a-push-hub/", env!("CARGO_PKG_VERSION"));

/// The attempt being rendered.
pub struct Attempt<'a> {
    /// 1 for the first attempt of the delivery.
    pub number: u32,
    /// `webhook-timestamp`, `iat`.
    pub timestamp_s: u64,
    pub now_ms: u64,
    /// The hub's public base URL (`iss`).
    pub issuer: &'a str,
    /// The attempt's place in the publisher's trace, when the event has one.
    pub trace: Option<&'a AttemptTrace<'a>>,
}

/// W3C Trace Context and Baggage headers of one attempt.
pub struct AttemptTrace<'a> {
    /// The attempt's own span in the publisher's trace.
    pub traceparent: String,
    pub tracestate: Option<&'a str>,
    pub baggage: Option<&'a str>,
}

/// Headers of one attempt, signatures included. Fails when a stored value cannot be an HTTP
/// header (registration refuses such values, so this guards old or foreign data).
pub fn headers(
    config: &ConfigRecord,
    delivery: &DeliveryRecord,
    content_type: &HeaderValue,
    body: &[u8],
    keys: &KeySet,
    attempt: &Attempt<'_>,
) -> Result<HeaderMap, String> {
    let value = |what: &str, text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| format!("the {what} is not a valid HTTP header value"))
    };
    let sensitive = |what: &str, text: &str| {
        value(what, text).map(|mut header| {
            header.set_sensitive(true);
            header
        })
    };
    let mut headers = HeaderMap::new();
    // A 0.3 webhook gets what 0.3 SDKs send: plain JSON, version 0.3.
    let (content_type, version) = match config.wire_version {
        WireVersion::V0_3 => (HeaderValue::from_static("application/json"), "0.3"),
        WireVersion::V1_0 => (content_type.clone(), "1.0"),
    };
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(
        HeaderName::from_static("a2a-version"),
        HeaderValue::from_static(version),
    );
    let token = config.token.as_ref().map(|t| t.expose());
    // A `whsec_` token is a Standard Webhooks secret: it signs (`v1`) and is never sent.
    let hmac_secret = token.and_then(webhooks::parse_secret);
    if let (Some(token), None) = (token, &hmac_secret) {
        let header = sensitive("token", token)?;
        headers.insert(
            HeaderName::from_static("x-a2a-notification-token"),
            header.clone(),
        );
        headers.insert(HeaderName::from_static("a2a-notification-token"), header);
    }
    let mut wants_jwt = false;
    if let Some(auth) = &config.authentication {
        match &auth.credentials {
            Some(credentials) => {
                let header = sensitive(
                    "authentication",
                    &format!("{} {}", auth.scheme, credentials.expose()),
                )?;
                headers.insert(AUTHORIZATION, header);
            }
            None => wants_jwt = auth.scheme.eq_ignore_ascii_case("bearer"),
        }
    }
    let input = SigningInput {
        webhook_id: &delivery.id,
        timestamp_s: attempt.timestamp_s,
        body,
        hmac_secret: hmac_secret.as_deref(),
        jwt: wants_jwt.then(|| JwtInput {
            issuer: attempt.issuer,
            audience: &config.url,
            task_id: &delivery.task_id,
            jti: format!("{}.{}", delivery.id, attempt.number),
        }),
    };
    let signed =
        sign_delivery(keys, &input, attempt.now_ms).map_err(|e| format!("signing failed: {e}"))?;
    if let Some(authorization) = signed.authorization {
        headers.insert(AUTHORIZATION, sensitive("JWT", &authorization)?);
    }
    headers.insert(
        HeaderName::from_static("webhook-id"),
        value("delivery id", &delivery.id)?,
    );
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(attempt.timestamp_s),
    );
    if !signed.signature.is_empty() {
        headers.insert(
            HeaderName::from_static("webhook-signature"),
            value("signature", &signed.signature)?,
        );
    }
    headers.insert(
        HeaderName::from_static("x-a2a-push-sequence"),
        HeaderValue::from(delivery.sequence),
    );
    if !config.filter.is_all() {
        // Sequence numbers skip what the filter held back; this says why.
        headers.insert(
            HeaderName::from_static("x-a2a-push-filter"),
            HeaderValue::from_static(config.filter.name()),
        );
    }
    if let Some(trace) = attempt.trace {
        headers.insert(
            HeaderName::from_static("traceparent"),
            value("traceparent", &trace.traceparent)?,
        );
        if let Some(tracestate) = trace.tracestate {
            headers.insert(
                HeaderName::from_static("tracestate"),
                value("tracestate", tracestate)?,
            );
        }
        if let Some(baggage) = trace.baggage {
            headers.insert(
                HeaderName::from_static("baggage"),
                value("baggage", baggage)?,
            );
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::signing::keys::{ALG_ED25519, ALG_ES256, generate};
    use crate::store::{Authentication, ConfigState, DeliveryState};

    fn config(token: Option<&str>, auth: Option<(&str, Option<&str>)>) -> ConfigRecord {
        ConfigRecord {
            tenant: String::new(),
            task_id: "t".into(),
            id: "c".into(),
            url: "https://example.com/".into(),
            token: token.map(Secret::new),
            authentication: auth.map(|(scheme, credentials)| Authentication {
                scheme: scheme.into(),
                credentials: credentials.map(Secret::new),
                schemes_v03: Vec::new(),
            }),
            wire_version: WireVersion::V1_0,
            state: ConfigState::Active,
            created_at_ms: 0,
            updated_at_ms: 0,
            filter: Default::default(),
            owner: None,
        }
    }

    fn delivery() -> DeliveryRecord {
        DeliveryRecord {
            id: "01a2-delivery".into(),
            tenant: String::new(),
            task_id: "t".into(),
            config_id: "c".into(),
            sequence: 7,
            event_id: "e".into(),
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at_ms: 0,
            last_error: None,
            manual: false,
            body_v03: None,
            snapshot: None,
            snapshot_trace: None,
            lane_failing: false,
            skipped_by: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn render(config: &ConfigRecord) -> HeaderMap {
        let keys = KeySet::new(vec![
            generate(ALG_ED25519, 0).unwrap(),
            generate(ALG_ES256, 0).unwrap(),
        ]);
        let attempt = Attempt {
            number: 1,
            timestamp_s: 1_700_000_000,
            now_ms: 1_700_000_000_000,
            issuer: "https://hub",
            trace: None,
        };
        let ct = HeaderValue::from_static("application/a2a+json");
        headers(config, &delivery(), &ct, b"{}", &keys, &attempt).unwrap()
    }

    #[test]
    fn every_header_of_the_design_is_present() {
        let h = render(&config(Some("tok"), Some(("Bearer", Some("cred")))));
        assert_eq!(h["content-type"], "application/a2a+json");
        assert_eq!(h["a2a-version"], "1.0");
        assert_eq!(h["authorization"], "Bearer cred");
        assert_eq!(h["x-a2a-notification-token"], "tok");
        assert_eq!(h["a2a-notification-token"], "tok");
        assert_eq!(h["webhook-id"], "01a2-delivery");
        assert_eq!(h["webhook-timestamp"], "1700000000");
        assert_eq!(h["x-a2a-push-sequence"], "7");
        assert!(h["webhook-signature"].to_str().unwrap().starts_with("v1a,"));
    }

    #[test]
    fn a_bearer_scheme_without_credentials_gets_a_jwt_and_other_schemes_nothing() {
        let h = render(&config(None, Some(("Bearer", None))));
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("Bearer ey") && auth.matches('.').count() == 2,
            "{auth}"
        );
        let h = render(&config(None, Some(("Basic", None))));
        assert!(h.get("authorization").is_none());
        assert!(h.get("x-a2a-notification-token").is_none());
    }

    #[test]
    fn a_whsec_token_signs_v1_and_is_never_sent() {
        let h = render(&config(
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            None,
        ));
        assert!(h.get("x-a2a-notification-token").is_none());
        assert!(h.get("a2a-notification-token").is_none());
        let signature = h["webhook-signature"].to_str().unwrap();
        assert!(signature.contains(" v1,"), "{signature}");
    }
}

/// The credential and signature headers of a request as the attempt log keeps them: enough to
/// see how the request was signed, never enough to replay it. A token or a configured
/// credential shows as `****`; the hub's own JWT as its algorithm and key id; a signature by
/// its scheme and first characters.
pub fn masked_credentials(headers: &HeaderMap) -> Vec<String> {
    let mut masked = Vec::new();
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        let shown = match jwt_summary(credential) {
            Some(summary) => format!("{scheme} <JWT {summary}, masked>"),
            None => format!("{scheme} ****"),
        };
        masked.push(format!("authorization: {shown}"));
    }
    if headers.contains_key("x-a2a-notification-token") {
        masked.push("x-a2a-notification-token: ****".to_string());
    }
    if let Some(value) = headers
        .get("webhook-signature")
        .and_then(|v| v.to_str().ok())
    {
        let shown: Vec<String> = value
            .split(' ')
            .map(|signature| {
                let (scheme, bytes) = signature.split_once(',').unwrap_or(("", signature));
                let start: String = bytes.chars().take(8).collect();
                format!("{scheme},{start}…")
            })
            .collect();
        masked.push(format!("webhook-signature: {}", shown.join(" ")));
    }
    masked
}

/// `alg=… kid=…` of a compact JWT's header, or `None` when `credential` is not one.
fn jwt_summary(credential: &str) -> Option<String> {
    use base64::Engine;
    let mut parts = credential.split('.');
    let (header, _, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let alg = header.get("alg")?.as_str()?;
    let kid = header.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
    Some(format!("alg={alg} kid={kid}"))
}

#[cfg(test)]
mod masking_tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_signatures_shortened() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-a2a-notification-token",
            HeaderValue::from_static("tok-secret-123"),
        );
        headers.insert(
            "webhook-signature",
            HeaderValue::from_static("v1a,QUJDREVGR0hJSktM v1,MTIzNDU2Nzg5MA=="),
        );
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        let masked = masked_credentials(&headers).join("\n");
        assert_eq!(
            masked,
            "authorization: Basic ****\nx-a2a-notification-token: ****\nwebhook-signature: v1a,QUJDREVG… v1,MTIzNDU2…"
        );
    }

    #[test]
    fn the_hubs_jwt_shows_its_algorithm_and_key_only() {
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#,
        );
        let mut headers = HeaderMap::new();
        let jwt = format!("Bearer {header}.eyJzdWIiOiJ4In0.c2lnbmF0dXJl");
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&jwt).unwrap());
        let masked = masked_credentials(&headers);
        assert_eq!(
            masked,
            vec!["authorization: Bearer <JWT alg=EdDSA kid=k1, masked>".to_string()]
        );
        assert!(!masked[0].contains("eyJzdWIi"));
    }
}
