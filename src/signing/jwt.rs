//! The hub's JWT profile: `Authorization: Bearer <JWT>`, ES256 with `kid`, claims `iss`,
//! `aud`, `iat`, `exp`, `jti`, `taskId`, `request_body_sha256`. Signed by hand with a cached
//! key (re-parsing the key per token would cost more than the signature), verified against a
//! JWKS with only ES256 accepted — the `alg` of a token never chooses the algorithm.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, EcdsaKeyPair, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
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

/// The P-256 public point (uncompressed) of the JWK with `kid` in a JWKS document.
fn p256_key(jwks: &Value, kid: &str) -> Result<Vec<u8>, VerifyError> {
    let key = find_key(jwks, kid)?;
    if key["kty"] != "EC" || key["crv"] != "P-256" {
        return Err(VerifyError::BadToken(format!(
            "key {kid} is not a P-256 key"
        )));
    }
    let coordinate = |name: &str| {
        key[name]
            .as_str()
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .filter(|v| v.len() == 32)
            .ok_or_else(|| VerifyError::BadToken(format!("key {kid} has no valid `{name}`")))
    };
    let mut point = vec![4u8];
    point.extend(coordinate("x")?);
    point.extend(coordinate("y")?);
    Ok(point)
}

/// The `kid` in a compact JWS's header, read before anything is verified (to pick the key).
pub fn header_kid(token: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<Value>(&header)
        .ok()?
        .get("kid")?
        .as_str()
        .map(str::to_string)
}

/// Checks a compact JWS's signature against the JWKS key its `kid` names, with one of
/// `algorithms` (the token's `alg` only picks among those); returns the claims' JSON bytes.
fn verified_claims(token: &str, jwks: &Value, algorithms: &[&str]) -> Result<Vec<u8>, VerifyError> {
    let bad = |why: &str| VerifyError::BadToken(why.to_string());
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a compact JWS (three dot-separated parts)"));
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| bad("the header is not base64url JSON"))?;
    let alg = header["alg"].as_str().unwrap_or_default();
    if !algorithms.contains(&alg) {
        return Err(VerifyError::AlgorithmNotAllowed(alg.to_string()));
    }
    let kid = header["kid"]
        .as_str()
        .ok_or_else(|| bad("the header has no `kid`"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| bad("the signature is not base64url"))?;
    let signed = &token.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
    let valid = match alg {
        "RS256" => {
            let (n, e) = rsa_key(jwks, kid)?;
            RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, signed, &signature)
                .is_ok()
        }
        _ => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, p256_key(jwks, kid)?)
            .verify(signed, &signature)
            .is_ok(),
    };
    if !valid {
        return Err(VerifyError::NoValidSignature);
    }
    URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| bad("the claims are not base64url"))
}

/// The RSA modulus and exponent of the JWK with `kid`.
fn rsa_key(jwks: &Value, kid: &str) -> Result<(Vec<u8>, Vec<u8>), VerifyError> {
    let key = find_key(jwks, kid)?;
    if key["kty"] != "RSA" {
        return Err(VerifyError::BadToken(format!(
            "key {kid} is not an RSA key"
        )));
    }
    let part = |name: &str| {
        key[name]
            .as_str()
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| VerifyError::BadToken(format!("key {kid} has no valid `{name}`")))
    };
    Ok((part("n")?, part("e")?))
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
}

/// Verifies a caller's bearer JWT (an identity provider's access token: ES256 or RS256, `iss`,
/// `aud` as a string or a list, `exp`, optional `iat` and `nbf`, `sub`).
pub fn verify_caller(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
    leeway_s: i64,
    now_s: i64,
) -> Result<Caller, VerifyError> {
    let claims: Value = serde_json::from_slice(&verified_claims(token, jwks, &["ES256", "RS256"])?)
        .map_err(|_| VerifyError::BadToken("the claims are not JSON".to_string()))?;
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
    let claims: Claims = serde_json::from_slice(&verified_claims(token, jwks, &["ES256"])?)
        .map_err(|_| {
            VerifyError::BadToken(
                "the claims are not JSON with every claim of the profile".to_string(),
            )
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
        // A push token of the hub's profile accepts ES256 only.
        assert!(matches!(
            verify(&token, &jwks, &Expectations::default(), b"", 1_100),
            Err(VerifyError::AlgorithmNotAllowed(_))
        ));
    }
}
