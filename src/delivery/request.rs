//! Rendering the outbound request of DESIGN §5 (signature headers come with signing): the
//! headers every attempt carries, computed from the config, the delivery and the attempt time.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::store::{ConfigRecord, DeliveryRecord};

pub const USER_AGENT: &str = concat!("a2a-push-hub/", env!("CARGO_PKG_VERSION"));

/// Headers of one attempt. Fails when a stored value cannot be an HTTP header (the config is
/// then unusable; registration refuses such values, so this guards old or foreign data).
pub fn headers(
    config: &ConfigRecord,
    delivery: &DeliveryRecord,
    content_type: &HeaderValue,
    timestamp_s: u64,
) -> Result<HeaderMap, String> {
    let value = |what: &str, text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| format!("the {what} is not a valid HTTP header value"))
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, content_type.clone());
    headers.insert(
        HeaderName::from_static("a2a-version"),
        HeaderValue::from_static("1.0"),
    );
    if let Some(auth) = &config.authentication {
        if let Some(credentials) = &auth.credentials {
            let mut header = value(
                "authentication",
                &format!("{} {}", auth.scheme, credentials.expose()),
            )?;
            header.set_sensitive(true);
            headers.insert(AUTHORIZATION, header);
        }
    }
    if let Some(token) = &config.token {
        let mut header = value("token", token.expose())?;
        header.set_sensitive(true);
        headers.insert(
            HeaderName::from_static("x-a2a-notification-token"),
            header.clone(),
        );
        headers.insert(HeaderName::from_static("a2a-notification-token"), header);
    }
    headers.insert(
        HeaderName::from_static("webhook-id"),
        value("delivery id", &delivery.id)?,
    );
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(timestamp_s),
    );
    headers.insert(
        HeaderName::from_static("x-a2a-push-sequence"),
        HeaderValue::from(delivery.sequence),
    );
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::version::WireVersion;
    use crate::config::Secret;
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
            }),
            wire_version: WireVersion::V1_0,
            state: ConfigState::Active,
            created_at_ms: 0,
            updated_at_ms: 0,
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
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn every_header_of_the_design_is_present() {
        let ct = HeaderValue::from_static("application/a2a+json");
        let h = headers(
            &config(Some("tok"), Some(("Bearer", Some("cred")))),
            &delivery(),
            &ct,
            1700000000,
        )
        .unwrap();
        assert_eq!(h["content-type"], "application/a2a+json");
        assert_eq!(h["a2a-version"], "1.0");
        assert_eq!(h["authorization"], "Bearer cred");
        assert_eq!(h["x-a2a-notification-token"], "tok");
        assert_eq!(h["a2a-notification-token"], "tok");
        assert_eq!(h["webhook-id"], "01a2-delivery");
        assert_eq!(h["webhook-timestamp"], "1700000000");
        assert_eq!(h["x-a2a-push-sequence"], "7");
    }

    #[test]
    fn authorization_needs_both_scheme_and_credentials() {
        let ct = HeaderValue::from_static("application/json");
        let h = headers(&config(None, Some(("Bearer", None))), &delivery(), &ct, 1).unwrap();
        assert!(h.get("authorization").is_none());
        assert!(h.get("x-a2a-notification-token").is_none());
    }
}
