//! Verifying what the hub sends, for receivers written in Rust: the same code the hub's own
//! inbound role and `a2a-push-hub verify` use.
//!
//! A delivery carries a Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`: `v1` with a shared `whsec_` secret, `v1a` with the hub's Ed25519 key)
//! and, when the config asks for it, a JWT (`Authorization: Bearer …`, ES256, key in the hub's
//! JWKS) bound to the body by `request_body_sha256`. `spec/signing.md` defines both, with test
//! vectors.
//!
//! ```
//! use a2a_push_hub::verify::{CapturedRequest, VerifyOptions, verify_request, webhooks};
//!
//! let raw = b"POST /hook HTTP/1.1\r\nwebhook-id: msg_1\r\n\r\n{}";
//! let request = CapturedRequest::parse(raw).unwrap();
//! let options = VerifyOptions {
//!     secret: webhooks::parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
//!     tolerance_s: 300,
//!     now_s: 1_700_000_000,
//!     ..VerifyOptions::default()
//! };
//! let checks = verify_request(&request, &options);
//! assert!(!checks.iter().all(|check| check.passed), "no signature: refused");
//! ```

use std::sync::Arc;

pub use crate::signing::VerifyError;
pub use crate::signing::verify::{
    CapturedRequest, Check, VerifyOptions, ed25519_keys, verify_request,
};

/// Standard Webhooks: the signed content, `v1` and `v1a` signatures, the key formats.
pub mod webhooks {
    pub use crate::signing::webhooks::{
        Matched, PUBLIC_KEY_PREFIX, SECRET_PREFIX, WebhookKeys, format_public_key,
        parse_public_key, parse_secret, sign_v1, sign_v1a, signed_content, verify,
    };
}

/// The hub's delivery JWT: its claims, the body hash, and verifying it against a JWKS.
pub mod jwt {
    pub use crate::signing::jwt::{Claims, Expectations, body_sha256, header_field, verify};
}

/// Largest JWKS document `fetch_jwks` reads.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Fetches a JWKS document through the hub's SSRF guard: loopback, private and link-local
/// addresses are refused unless `allow_private_networks`, redirects are not followed, and
/// at most 1 MiB is read.
pub async fn fetch_jwks(
    url: &str,
    allow_private_networks: bool,
) -> Result<serde_json::Value, String> {
    let security = crate::config::SecuritySettings {
        allow_private_networks,
        ..Default::default()
    };
    let policy = Arc::new(crate::ssrf::Policy::from_settings(&security));
    let client =
        crate::delivery::client::GuardedClient::new(policy, crate::delivery::request::USER_AGENT)
            .map_err(|e| e.to_string())?;
    let fetched = client
        .fetch_json(url, MAX_JWKS_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    Ok(fetched.body)
}
