//! A secret value (a token, a credential, a key, a password in a URL): readable by the code that
//! needs it, never printed by `Debug`, so that no log line or error message carries it. And the
//! one secret format the hub reads: a Standard Webhooks `whsec_` secret. And how a header that
//! may carry a credential is shown to people (receipts, probe reports).

use std::fmt;

use base64::Engine;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret: `expose` reads it; `Debug` never prints it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Decodes a `whsec_…` secret (base64, padding optional) into its key bytes.
pub fn parse_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?.trim_end_matches('=');
    let key = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .ok()?;
    (!key.is_empty()).then_some(key)
}

/// Headers whose values are credentials.
const SECRET_HEADERS: [&str; 5] = [
    "authorization",
    "x-a2a-notification-token",
    "a2a-notification-token",
    "cookie",
    "proxy-authorization",
];
/// Parts of header names that suggest the value is a credential (`x-api-key`,
/// `x-session-token`, `x-client-secret`, …): masked whatever the header is.
const SECRET_NAME_PARTS: [&str; 8] = [
    "auth",
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "session",
    "credential",
];
/// Whether a header carries credentials by its name (`Authorization`, the token headers,
/// `X-Api-Key`, anything with "token", "secret", "session", …).
pub fn is_credential_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&lower.as_str())
        || SECRET_NAME_PARTS.iter().any(|part| lower.contains(part))
}

/// Longest header value shown; the rest is cut.
const MAX_SHOWN_HEADER_VALUE: usize = 512;

/// A header's value as shown to people: masked when the header carries credentials by its name,
/// or when the value holds one of `secrets` (the Authorization scheme is kept); otherwise cut
/// to 512 characters.
pub fn masked_header_value(name: &str, value: &str, secrets: &[&str]) -> String {
    let lower = name.to_ascii_lowercase();
    if is_credential_header(name) || secrets.iter().any(|s| !s.is_empty() && value.contains(s)) {
        match (lower.as_str(), value.split_once(' ')) {
            ("authorization" | "proxy-authorization", Some((scheme, _))) => {
                format!("{scheme} ****")
            }
            _ => "****".to_string(),
        }
    } else {
        value.chars().take(MAX_SHOWN_HEADER_VALUE).collect()
    }
}
