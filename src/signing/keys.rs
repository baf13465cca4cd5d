//! Signing key material: generation, parsing from PKCS#8, key ids, and JWK rendering.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::SigningError;
use crate::secret::Secret;
use crate::store::KeyRecord;

pub const ALG_ED25519: &str = "EdDSA";
pub const ALG_ES256: &str = "ES256";

/// A parsed key, ready to sign.
pub enum Signer {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

/// A key of the keyring: its record (for JWKS and listing) and its parsed signer.
pub struct LoadedKey {
    pub record: KeyRecord,
    pub signer: Signer,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("kid", &self.record.kid)
            .field("alg", &self.record.alg)
            .finish()
    }
}

fn kid_for(alg: &str, public_key: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key);
    let prefix = if alg == ALG_ED25519 {
        "ed25519"
    } else {
        "es256"
    };
    format!(
        "{prefix}-{}",
        &URL_SAFE_NO_PAD.encode(digest.as_ref())[..16]
    )
}

/// Generates a new key of `alg` (`EdDSA` or `ES256`).
pub fn generate(alg: &str, now_ms: u64) -> Result<LoadedKey, SigningError> {
    let rng = SystemRandom::new();
    let pkcs8 = match alg {
        ALG_ED25519 => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SigningError::Crypto("Ed25519 key generation failed".into()))?,
        ALG_ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| SigningError::Crypto("P-256 key generation failed".into()))?,
        other => {
            return Err(SigningError::Crypto(format!(
                "unknown key algorithm {other:?}"
            )));
        }
    };
    let signer = parse(alg, pkcs8.as_ref())?;
    let public_key = public_key_of(&signer);
    let record = KeyRecord {
        kid: kid_for(alg, &public_key),
        alg: alg.to_string(),
        private_pkcs8: Secret::new(STANDARD.encode(pkcs8.as_ref())),
        public_key: URL_SAFE_NO_PAD.encode(&public_key),
        created_at_ms: now_ms,
        retire_at_ms: None,
    };
    Ok(LoadedKey { record, signer })
}

fn parse(alg: &str, pkcs8: &[u8]) -> Result<Signer, SigningError> {
    match alg {
        ALG_ED25519 => Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(Signer::Ed25519)
            .map_err(|e| SigningError::Crypto(format!("stored Ed25519 key is unusable: {e}"))),
        ALG_ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map(Signer::Es256)
            .map_err(|e| SigningError::Crypto(format!("stored P-256 key is unusable: {e}"))),
        other => Err(SigningError::Crypto(format!(
            "unknown key algorithm {other:?}"
        ))),
    }
}

fn public_key_of(signer: &Signer) -> Vec<u8> {
    match signer {
        Signer::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
        Signer::Es256(pair) => pair.public_key().as_ref().to_vec(),
    }
}

/// Parses a stored key.
pub fn load(record: KeyRecord) -> Result<LoadedKey, SigningError> {
    let pkcs8 = STANDARD
        .decode(record.private_pkcs8.expose())
        .map_err(|_| SigningError::Crypto(format!("stored key {} is not base64", record.kid)))?;
    let signer = parse(&record.alg, &pkcs8)?;
    Ok(LoadedKey { record, signer })
}

/// The public JWK of a key (`kid`, `alg`, `use: sig`).
pub fn jwk(record: &KeyRecord) -> Value {
    let public = URL_SAFE_NO_PAD
        .decode(&record.public_key)
        .unwrap_or_default();
    match record.alg.as_str() {
        ALG_ED25519 => json!({"kty": "OKP", "crv": "Ed25519", "x": record.public_key,
            "kid": record.kid, "alg": ALG_ED25519, "use": "sig"}),
        _ => {
            let (x, y) = if public.len() == 65 {
                (&public[1..33], &public[33..])
            } else {
                (&[][..], &[][..])
            };
            json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                "kid": record.kid, "alg": ALG_ES256, "use": "sig"})
        }
    }
}
