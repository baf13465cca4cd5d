//! Standard Webhooks (https://www.standardwebhooks.com): the `webhook-signature` header.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{raw body}` — raw bytes, no UTF-8
//! requirement. `v1` is HMAC-SHA256 with the `whsec_` secret; `v1a` is Ed25519. Both are
//! standard base64; several signatures are separated by spaces.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::VerifyError;

pub use crate::secret::{SECRET_PREFIX, parse_secret};

pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// `{id}.{timestamp}.{body}`.
pub fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Decodes a `whpk_…` Ed25519 public key (base64 of the 32 raw bytes).
pub fn parse_public_key(key: &str) -> Option<Vec<u8>> {
    let encoded = key.strip_prefix(PUBLIC_KEY_PREFIX)?.trim_end_matches('=');
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .ok()?;
    (raw.len() == 32).then_some(raw)
}

/// `whpk_…` for a raw Ed25519 public key.
pub fn format_public_key(raw: &[u8]) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(raw))
}

pub fn sign_v1(secret: &[u8], content: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("v1,{}", STANDARD.encode(hmac::sign(&key, content).as_ref()))
}

pub fn sign_v1a(key: &Ed25519KeyPair, content: &[u8]) -> String {
    format!("v1a,{}", STANDARD.encode(key.sign(content).as_ref()))
}

/// Which signature matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched {
    /// `v1` with the shared secret.
    Hmac,
    /// `v1a` with the public key at this index of the list given.
    Ed25519(usize),
}

/// What a receiver checks a Standard Webhooks request against.
#[derive(Debug, Clone, Default)]
pub struct WebhookKeys {
    /// Shared secrets (`v1`): more than one while a rotation is under way.
    pub secrets: Vec<Vec<u8>>,
    pub public_keys: Vec<Vec<u8>>,
}

/// Verifies `webhook-signature` over the request and checks `webhook-timestamp` is within
/// `tolerance_s` of `now_s` in both directions.
pub fn verify(
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    keys: &WebhookKeys,
    now_s: i64,
    tolerance_s: i64,
) -> Result<Matched, VerifyError> {
    let id = id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signature = signature.ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp(timestamp.to_string()))?;
    if at < now_s - tolerance_s {
        return Err(VerifyError::TooOld { age_s: now_s - at });
    }
    if at > now_s + tolerance_s {
        return Err(VerifyError::FromTheFuture {
            ahead_s: at - now_s,
        });
    }
    let content = signed_content(id, timestamp, body);
    let expected_hmacs: Vec<hmac::Tag> = keys
        .secrets
        .iter()
        .map(|secret| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &content))
        .collect();
    for entry in signature.split(' ').filter(|s| !s.is_empty()) {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        let Ok(given) = STANDARD.decode(encoded) else {
            continue;
        };
        match version {
            "v1" => {
                for expected in &expected_hmacs {
                    if aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_ref(), &given)
                        .is_ok()
                    {
                        return Ok(Matched::Hmac);
                    }
                }
            }
            "v1a" => {
                for (index, public) in keys.public_keys.iter().enumerate() {
                    if UnparsedPublicKey::new(&ED25519, public)
                        .verify(&content, &given)
                        .is_ok()
                    {
                        return Ok(Matched::Ed25519(index));
                    }
                }
            }
            _ => {}
        }
    }
    Err(VerifyError::NoValidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks project's published test vector.
    #[test]
    fn the_public_standard_webhooks_vector_verifies() {
        let secret = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let content = signed_content(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sign_v1(&secret, &content),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let keys = WebhookKeys {
            secrets: vec![secret],
            public_keys: vec![],
        };
        let ok = verify(
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            Some("1614265330"),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            br#"{"test": 2432232314}"#,
            &keys,
            1614265330,
            300,
        );
        assert_eq!(ok, Ok(Matched::Hmac));
    }

    #[test]
    fn tampering_and_stale_timestamps_are_refused() {
        let secret = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let keys = WebhookKeys {
            secrets: vec![secret.clone()],
            public_keys: vec![],
        };
        let sig = sign_v1(&secret, &signed_content("id", "1000", b"body"));
        let check = |id, ts, body: &[u8], now| {
            verify(Some(id), Some(ts), Some(&sig), body, &keys, now, 300)
        };
        assert_eq!(check("id", "1000", b"body", 1000), Ok(Matched::Hmac));
        assert_eq!(
            check("id", "1000", b"bodY", 1000),
            Err(VerifyError::NoValidSignature)
        );
        assert_eq!(
            check("iD", "1000", b"body", 1000),
            Err(VerifyError::NoValidSignature)
        );
        assert_eq!(
            check("id", "1001", b"body", 1000),
            Err(VerifyError::NoValidSignature)
        );
        assert_eq!(
            check("id", "1000", b"body", 1301),
            Err(VerifyError::TooOld { age_s: 301 })
        );
        assert_eq!(
            check("id", "1000", b"body", 699),
            Err(VerifyError::FromTheFuture { ahead_s: 301 })
        );
        let other = WebhookKeys {
            secrets: vec![b"another".to_vec()],
            public_keys: vec![],
        };
        assert_eq!(
            verify(
                Some("id"),
                Some("1000"),
                Some(&sig),
                b"body",
                &other,
                1000,
                300
            ),
            Err(VerifyError::NoValidSignature)
        );
        assert_eq!(
            verify(None, Some("1000"), Some(&sig), b"body", &keys, 1000, 300),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
    }

    #[test]
    fn secrets_and_public_keys_parse_with_or_without_padding() {
        assert_eq!(parse_secret("whsec_AAEC").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_secret("whsec_AAECAw==").unwrap(), vec![0, 1, 2, 3]);
        assert!(parse_secret("nope_AAEC").is_none());
        let raw = [7u8; 32];
        assert_eq!(
            parse_public_key(&format_public_key(&raw)).unwrap(),
            raw.to_vec()
        );
    }
}

#[cfg(test)]
mod ed25519_tests {
    use super::*;
    use crate::signing::keys::{ALG_ED25519, Signer, generate};
    use aws_lc_rs::signature::KeyPair;

    fn pair() -> Ed25519KeyPair {
        let Signer::Ed25519(pair) = generate(ALG_ED25519, 0).unwrap().signer else {
            unreachable!()
        };
        pair
    }

    #[test]
    fn v1a_verifies_with_the_signing_key_only() {
        let (signer, stranger) = (pair(), pair());
        let sig = sign_v1a(
            &signer,
            &signed_content("id", "1000", b"\xff\xfe raw bytes"),
        );
        let keys = |pair: &Ed25519KeyPair| WebhookKeys {
            secrets: vec![],
            public_keys: vec![pair.public_key().as_ref().to_vec()],
        };
        let check = |keys: &WebhookKeys, body: &[u8]| {
            verify(Some("id"), Some("1000"), Some(&sig), body, keys, 1000, 300)
        };
        assert_eq!(
            check(&keys(&signer), b"\xff\xfe raw bytes"),
            Ok(Matched::Ed25519(0))
        );
        assert_eq!(
            check(&keys(&stranger), b"\xff\xfe raw bytes"),
            Err(VerifyError::NoValidSignature)
        );
        assert_eq!(
            check(&keys(&signer), b"\xff\xfe raw byteS"),
            Err(VerifyError::NoValidSignature)
        );
        let both = WebhookKeys {
            secrets: vec![],
            public_keys: vec![
                stranger.public_key().as_ref().to_vec(),
                signer.public_key().as_ref().to_vec(),
            ],
        };
        assert_eq!(
            check(&both, b"\xff\xfe raw bytes"),
            Ok(Matched::Ed25519(1)),
            "any listed key may match"
        );
    }
}
