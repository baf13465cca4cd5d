//! JWTs. The hub's own profile: `Authorization: Bearer <JWT>`, ES256 with `kid`, claims `iss`,
//! `aud`, `iat`, `exp`, `jti`, `taskId`, `request_body_sha256`, signed by hand with a cached
//! key (re-parsing the key per token would cost more than the signature).
//!
//! Verifying — a peer's push or a caller's bearer token — goes through the `jsonwebtoken`
//! crate against a JWKS: RS256, PS256, ES256, ES384 or EdDSA, the algorithm decided by the key
//! the `kid` names (its `alg`, else its type and curve), never by the token's header alone.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::EcdsaKeyPair;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::{SigningError, VerifyError};

/// A token's lifetime.
pub const LIFETIME_S: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(rename = "taskId")]
    pub task_id: String,
    pub request_body_sha256: String,
}

/// Hex SHA-256 of the raw body bytes.
pub fn body_sha256(body: &[u8]) -> String {
    crate::digest::sha256_hex(body)
}

pub fn sign(key: &EcdsaKeyPair, kid: &str, claims: &Claims) -> Result<String, SigningError> {
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let claims = serde_json::to_vec(claims).map_err(|e| SigningError::Crypto(e.to_string()))?;
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let signature = key
        .sign(&SystemRandom::new(), token.as_bytes())
        .map_err(|_| SigningError::Crypto("ES256 signing failed".into()))?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
    Ok(token)
}

/// What a receiver expects of a token.
#[derive(Debug, Clone, Default)]
pub struct Expectations<'a> {
    /// The webhook URL the token must be for (`aud`); `None` skips the check.
    pub audience: Option<&'a str>,
    /// The hub's public base URL (`iss`); `None` skips the check.
    pub issuer: Option<&'a str>,
    /// Accepted clock difference, seconds.
    pub leeway_s: i64,
}

/// A field of a compact JWS's header (`kid`, `alg`), read before anything is verified (to
/// pick the key; after a verification, `alg` is the algorithm that verified it).
pub fn header_field(token: &str, name: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<Value>(&header)
        .ok()?
        .get(name)?
        .as_str()
        .map(str::to_string)
}

/// The algorithms the verifier accepts.
const ACCEPTED: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The algorithm `jwk` verifies: its `alg` when it names one, else what its type and curve
/// allow. An RSA key without `alg` serves RS256 and PS256 alike, so there the token's header
/// picks between those two, and only those. The header must always agree.
fn algorithm_of(jwk: &Jwk, kid: &str, asked: &str) -> Result<Algorithm, VerifyError> {
    let refused = || VerifyError::AlgorithmNotAllowed(asked.to_string());
    let decided = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(named), _) => match named {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            _ => return Err(refused()),
        },
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err(refused()),
        },
        (None, AlgorithmParameters::OctetKeyPair(okp)) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        (None, AlgorithmParameters::RSA(_)) => match asked {
            "RS256" => Algorithm::RS256,
            "PS256" => Algorithm::PS256,
            _ => return Err(refused()),
        },
        _ => {
            return Err(VerifyError::BadToken(format!(
                "key {kid} is not a key this hub verifies with"
            )));
        }
    };
    if !ACCEPTED.contains(&decided) || format!("{decided:?}") != asked {
        return Err(refused());
    }
    Ok(decided)
}

/// Checks a compact JWS's signature against the JWKS key its `kid` names; returns the claims
/// (unchecked: each profile checks its own) and the algorithm that verified them.
fn verified_claims(token: &str, jwks: &Value) -> Result<(Value, Algorithm), VerifyError> {
    let bad = |why: &str| VerifyError::BadToken(why.to_string());
    if token.split('.').count() != 3 {
        return Err(bad("not a compact JWS (three dot-separated parts)"));
    }
    let header: Value = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| bad("the header is not base64url JSON"))?;
    let asked = header["alg"].as_str().unwrap_or_default();
    let kid = header["kid"]
        .as_str()
        .ok_or_else(|| bad("the header has no `kid`"))?;
    let unusable = |e: &dyn std::fmt::Display| {
        VerifyError::BadToken(format!("key {kid} is not a usable JWK: {e}"))
    };
    let jwk: Jwk =
        serde_json::from_value(find_key(jwks, kid)?.clone()).map_err(|e| unusable(&e))?;
    let algorithm = algorithm_of(&jwk, kid, asked)?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| unusable(&e))?;
    // The signature only: each profile checks its claims itself, with errors that say which.
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => Ok((data.claims, algorithm)),
        Err(e) => Err(match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::NoValidSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                VerifyError::AlgorithmNotAllowed(asked.to_string())
            }
            _ => VerifyError::BadToken(e.to_string()),
        }),
    }
}

fn find_key<'a>(jwks: &'a Value, kid: &str) -> Result<&'a Value, VerifyError> {
    jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .ok_or_else(|| VerifyError::UnknownKey(kid.to_string()))
}

/// Checks a token's lifetime: not expired, not issued in the future (beyond `leeway_s`).
fn check_lifetime(
    exp: i64,
    iat: Option<i64>,
    leeway_s: i64,
    now_s: i64,
) -> Result<(), VerifyError> {
    if exp < now_s - leeway_s {
        return Err(VerifyError::Expired {
            expired_s_ago: now_s - exp,
        });
    }
    if let Some(iat) = iat {
        if iat > now_s + leeway_s {
            return Err(VerifyError::FromTheFuture {
                ahead_s: iat - now_s,
            });
        }
    }
    Ok(())
}

/// What a caller's bearer JWT says of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `sub`: the principal.
    pub subject: String,
    pub expires_at_s: i64,
    /// The algorithm that verified it.
    pub algorithm: Algorithm,
}

/// Verifies a caller's bearer JWT (an identity provider's access token: any algorithm the
/// verifier accepts, `iss`,
/// `aud` as a string or a list, `exp`, optional `iat` and `nbf`, `sub`).
pub fn verify_caller(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
    leeway_s: i64,
    now_s: i64,
) -> Result<Caller, VerifyError> {
    let (claims, algorithm) = verified_claims(token, jwks)?;
    let exp = claims["exp"]
        .as_i64()
        .ok_or_else(|| VerifyError::BadToken("the token has no `exp`".to_string()))?;
    check_lifetime(exp, claims["iat"].as_i64(), leeway_s, now_s)?;
    if let Some(nbf) = claims["nbf"].as_i64() {
        if nbf > now_s + leeway_s {
            return Err(VerifyError::FromTheFuture {
                ahead_s: nbf - now_s,
            });
        }
    }
    let iss = claims["iss"].as_str().unwrap_or_default();
    if iss != issuer {
        return Err(VerifyError::WrongIssuer(iss.to_string()));
    }
    let audience_matches = match &claims["aud"] {
        Value::String(aud) => aud == audience,
        Value::Array(auds) => auds.iter().any(|a| a == audience),
        _ => false,
    };
    if !audience_matches {
        return Err(VerifyError::WrongAudience(claims["aud"].to_string()));
    }
    let subject = claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| VerifyError::BadToken("the token has no `sub`".to_string()))?;
    Ok(Caller {
        subject: subject.to_string(),
        expires_at_s: exp,
        algorithm,
    })
}

/// Which spelling of the body a token's `request_body_sha256` was computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyHash {
    /// The bytes as received.
    Raw,
    /// The body re-spelled compactly (Python's `json.dumps` with `separators=(",", ":")`,
    /// `ensure_ascii=False`), as the A2A sample sender computes it.
    Compact,
}

/// What verified in a token of the A2A samples' profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleVerified {
    pub iat: i64,
    pub algorithm: Algorithm,
    pub body_hash: BodyHash,
}

/// Verifies a token of the profile the A2A samples' push sender (and the many agents that
/// copied it) uses: signed by a JWKS key, claims `iat` and `request_body_sha256` only (no `aud`,
/// `iss` or `jti`), `iat` within `tolerance_s` of now, the hash over the raw body or over its
/// compact re-spelling. An `exp`, when present, must not have passed.
pub fn verify_sample(
    token: &str,
    jwks: &Value,
    body: &[u8],
    tolerance_s: i64,
    now_s: i64,
) -> Result<SampleVerified, VerifyError> {
    let (claims, algorithm) = verified_claims(token, jwks)?;
    let iat = claims["iat"]
        .as_i64()
        .ok_or_else(|| VerifyError::BadToken("the token has no `iat`".to_string()))?;
    if iat < now_s - tolerance_s {
        return Err(VerifyError::TooOld { age_s: now_s - iat });
    }
    if let Some(exp) = claims["exp"].as_i64() {
        check_lifetime(exp, None, 0, now_s)?;
    }
    check_lifetime(i64::MAX, Some(iat), tolerance_s, now_s)?;
    let claimed = claims["request_body_sha256"].as_str().ok_or_else(|| {
        VerifyError::BadToken("the token has no `request_body_sha256`".to_string())
    })?;
    let matches = |digest: String| bool::from(claimed.as_bytes().ct_eq(digest.as_bytes()));
    let body_hash = if matches(body_sha256(body)) {
        BodyHash::Raw
    } else if super::compact_json::compact(body).is_some_and(|c| matches(body_sha256(c.as_bytes())))
    {
        BodyHash::Compact
    } else {
        return Err(VerifyError::BodyHashMismatch);
    };
    Ok(SampleVerified {
        iat,
        algorithm,
        body_hash,
    })
}

/// Verifies a token of the hub's profile against a JWKS document and the raw body.
pub fn verify(
    token: &str,
    jwks: &Value,
    expect: &Expectations,
    body: &[u8],
    now_s: i64,
) -> Result<Claims, VerifyError> {
    let (claims, _) = verified_claims(token, jwks)?;
    let claims: Claims = serde_json::from_value(claims).map_err(|_| {
        VerifyError::BadToken("the claims are not JSON with every claim of the profile".to_string())
    })?;
    check_lifetime(claims.exp, Some(claims.iat), expect.leeway_s, now_s)?;
    if let Some(audience) = expect.audience {
        if claims.aud != audience {
            return Err(VerifyError::WrongAudience(claims.aud));
        }
    }
    if let Some(issuer) = expect.issuer {
        if claims.iss != issuer {
            return Err(VerifyError::WrongIssuer(claims.iss));
        }
    }
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        claims.request_body_sha256.as_bytes(),
        body_sha256(body).as_bytes(),
    )) {
        return Err(VerifyError::BodyHashMismatch);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::keys::{ALG_ES256, Signer, generate, jwk};

    fn setup() -> (EcdsaKeyPair, String, Value) {
        let key = generate(ALG_ES256, 0).unwrap();
        let jwks = serde_json::json!({"keys": [jwk(&key.record)]});
        let kid = key.record.kid.clone();
        let Signer::Es256(pair) = key.signer else {
            unreachable!()
        };
        (pair, kid, jwks)
    }

    fn claims(body: &[u8]) -> Claims {
        Claims {
            iss: "https://hub.example".into(),
            aud: "https://receiver.example/hook".into(),
            iat: 1_000,
            exp: 1_300,
            jti: "d1.1".into(),
            task_id: "t1".into(),
            request_body_sha256: body_sha256(body),
        }
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            audience: Some("https://receiver.example/hook"),
            issuer: Some("https://hub.example"),
            leeway_s: 0,
        }
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let (pair, kid, jwks) = setup();
        let token = sign(&pair, &kid, &claims(b"body")).unwrap();
        assert_eq!(
            verify(&token, &jwks, &expect(), b"body", 1_100).unwrap(),
            claims(b"body")
        );
    }

    #[test]
    fn every_tampering_is_refused_with_its_reason() {
        let (pair, kid, jwks) = setup();
        let token = sign(&pair, &kid, &claims(b"body")).unwrap();
        assert_eq!(
            verify(&token, &jwks, &expect(), b"other body", 1_100),
            Err(VerifyError::BodyHashMismatch)
        );
        assert_eq!(
            verify(&token, &jwks, &expect(), b"body", 1_301),
            Err(VerifyError::Expired { expired_s_ago: 1 })
        );
        assert_eq!(
            verify(&token, &jwks, &expect(), b"body", 999),
            Err(VerifyError::FromTheFuture { ahead_s: 1 })
        );
        let elsewhere = Expectations {
            audience: Some("https://other.example/"),
            ..expect()
        };
        assert!(matches!(
            verify(&token, &jwks, &elsewhere, b"body", 1_100),
            Err(VerifyError::WrongAudience(_))
        ));
        let impostor = Expectations {
            issuer: Some("https://evil.example"),
            ..expect()
        };
        assert!(matches!(
            verify(&token, &jwks, &impostor, b"body", 1_100),
            Err(VerifyError::WrongIssuer(_))
        ));
        let (_, _, other_jwks) = setup();
        assert!(matches!(
            verify(&token, &other_jwks, &expect(), b"body", 1_100),
            Err(VerifyError::UnknownKey(_))
        ));

        // The same key id in another key set: the signature does not match.
        let (other_pair, _, _) = setup();
        let forged = sign(&other_pair, &kid, &claims(b"body")).unwrap();
        assert_eq!(
            verify(&forged, &jwks, &expect(), b"body", 1_100),
            Err(VerifyError::NoValidSignature)
        );

        // A changed claim breaks the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut changed = claims(b"body");
        changed.task_id = "t2".into();
        let altered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap()),
            parts[2]
        );
        assert_eq!(
            verify(&altered, &jwks, &expect(), b"body", 1_100),
            Err(VerifyError::NoValidSignature)
        );
    }

    #[test]
    fn an_alg_swap_is_refused_before_any_key_is_used() {
        let (pair, kid, jwks) = setup();
        let token = sign(&pair, &kid, &claims(b"body")).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        for alg in ["none", "HS256", "RS256", "EdDSA"] {
            let header =
                URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": alg, "kid": kid}).to_string());
            let swapped = format!("{header}.{}.{}", parts[1], parts[2]);
            assert_eq!(
                verify(&swapped, &jwks, &expect(), b"body", 1_100),
                Err(VerifyError::AlgorithmNotAllowed(alg.to_string()))
            );
        }
        assert!(matches!(
            verify("a.b", &jwks, &expect(), b"body", 1_100),
            Err(VerifyError::BadToken(_))
        ));
    }

    /// A caller JWT as an identity provider signs it: RS256, `aud` a list.
    fn rs256_token(claims: &Value) -> (String, Value) {
        use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
        use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256};
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = key.public_key();
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "rsa-1",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero())}]});
        let header = serde_json::json!({"alg": "RS256", "kid": "rsa-1"});
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signed.as_bytes(),
            &mut signature,
        )
        .unwrap();
        (format!("{signed}.{}", b64(&signature)), jwks)
    }

    #[test]
    fn a_callers_rs256_jwt_verifies_to_its_subject_and_every_mismatch_is_refused() {
        let claims = serde_json::json!({"iss": "https://idp", "aud": ["x", "hub"], "sub": "alice",
            "iat": 1_000, "exp": 1_300});
        let (token, jwks) = rs256_token(&claims);
        let caller = verify_caller(&token, &jwks, "https://idp", "hub", 0, 1_100).unwrap();
        assert_eq!(caller.subject, "alice");
        assert!(matches!(
            verify_caller(&token, &jwks, "https://other", "hub", 0, 1_100),
            Err(VerifyError::WrongIssuer(_))
        ));
        assert!(matches!(
            verify_caller(&token, &jwks, "https://idp", "nobody", 0, 1_100),
            Err(VerifyError::WrongAudience(_))
        ));
        assert!(matches!(
            verify_caller(&token, &jwks, "https://idp", "hub", 0, 2_000),
            Err(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            verify_caller(&token, &jwks, "https://idp", "hub", 0, 900),
            Err(VerifyError::FromTheFuture { .. })
        ));
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(verify_caller(&tampered, &jwks, "https://idp", "hub", 0, 1_100).is_err());
        // The token's `alg` never picks an algorithm the hub does not accept for callers.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa-1"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert!(matches!(
            verify_caller(&none, &jwks, "https://idp", "hub", 0, 1_100),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
        // An identity provider's token is no push of the hub's profile (its claims differ).
        assert!(matches!(
            verify(&token, &jwks, &Expectations::default(), b"", 1_100),
            Err(VerifyError::BadToken(_))
        ));
    }

    /// Signs `claims` as a compact JWS with aws-lc-rs directly (not the verifier's library).
    fn signed(alg: &str, kid: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let header = serde_json::json!({"alg": alg, "kid": kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sign(input.as_bytes())))
    }

    /// A token and a JWKS (the key without `alg`: its type and curve decide) per algorithm.
    fn token_of_every_algorithm(claims: &Value) -> Vec<(&'static str, String, Value)> {
        use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, Ed25519KeyPair,
            KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
        };
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let rsa_jwk = serde_json::json!({"kty": "RSA", "kid": "k",
            "n": b64(rsa.public_key().modulus().big_endian_without_leading_zero()),
            "e": b64(rsa.public_key().exponent().big_endian_without_leading_zero())});
        let rsa_sign = |padding: &'static dyn aws_lc_rs::signature::RsaEncoding| {
            let rsa = &rsa;
            move |input: &[u8]| {
                let mut out = vec![0; rsa.public_modulus_len()];
                rsa.sign(padding, &SystemRandom::new(), input, &mut out)
                    .unwrap();
                out
            }
        };
        let ec =
            |alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm, crv: &str, half: usize| {
                let key = EcdsaKeyPair::generate(alg).unwrap();
                let point = key.public_key().as_ref().to_vec();
                let jwk = serde_json::json!({"kty": "EC", "crv": crv, "kid": "k",
                "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])});
                (key, jwk)
            };
        let (p256, p256_jwk) = ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32);
        let (p384, p384_jwk) = ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48);
        let ed = Ed25519KeyPair::generate().unwrap();
        let ed_jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "k",
            "x": b64(ed.public_key().as_ref())});
        let ecdsa = |key: &EcdsaKeyPair, input: &[u8]| {
            key.sign(&SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec()
        };
        let jwks = |jwk: Value| serde_json::json!({"keys": [jwk]});
        vec![
            (
                "RS256",
                signed("RS256", "k", claims, rsa_sign(&RSA_PKCS1_SHA256)),
                jwks(rsa_jwk.clone()),
            ),
            (
                "PS256",
                signed("PS256", "k", claims, rsa_sign(&RSA_PSS_SHA256)),
                jwks(rsa_jwk),
            ),
            (
                "ES256",
                signed("ES256", "k", claims, |i| ecdsa(&p256, i)),
                jwks(p256_jwk),
            ),
            (
                "ES384",
                signed("ES384", "k", claims, |i| ecdsa(&p384, i)),
                jwks(p384_jwk),
            ),
            (
                "EdDSA",
                signed("EdDSA", "k", claims, |i| ed.sign(i).as_ref().to_vec()),
                jwks(ed_jwk),
            ),
        ]
    }

    #[test]
    fn every_accepted_algorithm_verifies_and_the_key_not_the_header_decides() {
        let claims =
            serde_json::json!({"iss": "i", "aud": "a", "sub": "s", "iat": 1_000, "exp": 1_300});
        for (alg, token, jwks) in token_of_every_algorithm(&claims) {
            let caller = verify_caller(&token, &jwks, "i", "a", 0, 1_100)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(format!("{:?}", caller.algorithm), alg);
            // The same token claiming another algorithm in its header is refused.
            let (_, rest) = token.split_once('.').unwrap();
            for other in [
                "HS256",
                "none",
                "ES512",
                if alg == "ES256" { "ES384" } else { "ES256" },
            ] {
                let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{other}","kid":"k"}}"#));
                let swapped = format!("{header}.{rest}");
                assert!(
                    matches!(
                        verify_caller(&swapped, &jwks, "i", "a", 0, 1_100),
                        Err(VerifyError::AlgorithmNotAllowed(_))
                    ),
                    "{alg} key, header {other}"
                );
            }
            // A key that names its algorithm holds the token to it.
            let mut pinned = jwks.clone();
            pinned["keys"][0]["alg"] =
                serde_json::json!(if alg == "PS256" { "RS256" } else { "PS256" });
            assert!(
                verify_caller(&token, &pinned, "i", "a", 0, 1_100).is_err(),
                "{alg} pinned"
            );
        }
    }
}
