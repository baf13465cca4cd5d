//! Signed deliveries: the hub's keyring (an Ed25519 key for Standard Webhooks `v1a`, an ES256
//! key for JWTs; rotation with a grace period), signing of each delivery attempt, the public
//! JWKS, and verification as a library API for receivers, the inbound role and the CLI.
//!
//! Keys are kept through the `Store` trait; nothing here knows HTTP.

mod compact_json;
pub mod jwt;
pub mod keys;
pub mod verify;
pub mod webhooks;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, KeyPair, UnparsedPublicKey};
use serde::Serialize;
use serde_json::{Value, json};

use self::keys::{ALG_ED25519, ALG_ES256, LoadedKey, Signer};
use crate::store::{KeyRecord, Store, StoreError, now_ms};

/// Why signing could not happen. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("crypto failure: {0}")]
    Crypto(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a request did not verify; each variant says which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    #[error("the timestamp is {age_s}s old, beyond the tolerance")]
    TooOld { age_s: i64 },
    #[error("the timestamp is {ahead_s}s in the future, beyond the tolerance")]
    FromTheFuture { ahead_s: i64 },
    #[error("no signature matches the keys given")]
    NoValidSignature,
    #[error("the token is malformed: {0}")]
    BadToken(String),
    #[error(
        "algorithm {0:?} is not accepted for this key (the JWKS decides: RS256, PS256, ES256, ES384 or EdDSA)"
    )]
    AlgorithmNotAllowed(String),
    #[error("no key {0:?} in the JWKS")]
    UnknownKey(String),
    #[error("the token expired {expired_s_ago}s ago")]
    Expired { expired_s_ago: i64 },
    #[error("the token is for audience {0:?}, not this receiver")]
    WrongAudience(String),
    #[error("the token was issued by {0:?}, not the expected issuer")]
    WrongIssuer(String),
    #[error("request_body_sha256 does not match the body")]
    BodyHashMismatch,
}

/// A key as the admin API lists it (never private material).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    /// `active` (signs), `retiring` (still in the JWKS; Ed25519 keys still co-sign).
    pub state: &'static str,
    pub created_at_ms: u64,
    pub retire_at_ms: Option<u64>,
}

/// The keys in force at one moment.
pub struct KeySet {
    keys: Vec<LoadedKey>,
}

impl KeySet {
    /// A key set of the given keys (the keyring builds its own; this is for tools and tests).
    pub fn new(keys: Vec<LoadedKey>) -> KeySet {
        KeySet { keys }
    }

    fn usable(&self, now_ms: u64) -> impl Iterator<Item = &LoadedKey> {
        self.keys
            .iter()
            .filter(move |k| k.record.retire_at_ms.is_none_or(|at| at > now_ms))
    }

    /// Every Ed25519 key that signs `v1a` now: the current one and those in their grace period.
    pub fn v1a_signers(&self, now_ms: u64) -> impl Iterator<Item = &LoadedKey> {
        self.usable(now_ms).filter(|k| k.record.alg == ALG_ED25519)
    }

    /// The ES256 key that signs JWTs (the newest active one).
    pub fn jwt_signer(&self) -> Option<&LoadedKey> {
        self.keys
            .iter()
            .filter(|k| k.record.alg == ALG_ES256 && k.record.retire_at_ms.is_none())
            .max_by_key(|k| k.record.created_at_ms)
    }

    /// The public JWKS document: every key not yet retired.
    pub fn jwks(&self, now_ms: u64) -> Value {
        json!({"keys": self.usable(now_ms).map(|k| keys::jwk(&k.record)).collect::<Vec<_>>()})
    }

    pub fn info(&self, now_ms: u64) -> Vec<KeyInfo> {
        self.usable(now_ms)
            .map(|k| KeyInfo {
                kid: k.record.kid.clone(),
                alg: k.record.alg.clone(),
                state: if k.record.retire_at_ms.is_none() {
                    "active"
                } else {
                    "retiring"
                },
                created_at_ms: k.record.created_at_ms,
                retire_at_ms: k.record.retire_at_ms,
            })
            .collect()
    }
}

/// The hub's signing keys, shared by delivery (signing) and the API (JWKS, rotation).
pub struct Keyring {
    store: Arc<dyn Store>,
    grace: Duration,
    current: RwLock<Arc<KeySet>>,
    rotation: tokio::sync::Mutex<()>,
}

/// Signs and verifies once, so a broken crypto backend stops the start, not a delivery.
fn self_test(key: &LoadedKey) -> Result<(), SigningError> {
    let message = b"a2a-push-hub signing self-test";
    let failed = || SigningError::Crypto(format!("self-test of key {} failed", key.record.kid));
    match &key.signer {
        Signer::Ed25519(pair) => {
            let signature = pair.sign(message);
            UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref())
                .verify(message, signature.as_ref())
                .map_err(|_| failed())
        }
        Signer::Es256(pair) => {
            let signature = pair
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map_err(|_| failed())?;
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
                .verify(message, signature.as_ref())
                .map_err(|_| failed())
        }
    }
}

impl Keyring {
    /// Loads the keys from the store, generates the missing ones (first start), forgets
    /// retired ones, and self-tests every key.
    pub async fn open(store: Arc<dyn Store>, grace: Duration) -> Result<Keyring, SigningError> {
        let now = now_ms();
        let records = store.signing_keys().await?;
        let (retired, kept): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| r.retire_at_ms.is_some_and(|at| at <= now));
        let mut loaded = kept
            .into_iter()
            .map(keys::load)
            .collect::<Result<Vec<_>, _>>()?;
        let mut created = Vec::new();
        for alg in [ALG_ED25519, ALG_ES256] {
            if !loaded
                .iter()
                .any(|k| k.record.alg == alg && k.record.retire_at_ms.is_none())
            {
                let key = keys::generate(alg, now)?;
                tracing::info!(kid = %key.record.kid, alg, "generated a signing key");
                created.push(key.record.clone());
                loaded.push(key);
            }
        }
        for key in &loaded {
            self_test(key)?;
        }
        let retired: Vec<String> = retired.into_iter().map(|r| r.kid).collect();
        let generated = !created.is_empty();
        if generated || !retired.is_empty() {
            store.put_signing_keys(created, retired).await?;
        }
        let keyring = Keyring {
            store,
            grace,
            current: RwLock::new(Arc::new(KeySet { keys: loaded })),
            rotation: tokio::sync::Mutex::new(()),
        };
        if keyring.store.shared() && generated {
            keyring.settle_first_keys(now).await?;
        }
        Ok(keyring)
    }

    /// Nodes that started together on an empty database may each have generated keys: every
    /// node keeps the oldest active key of each algorithm (the same one everywhere) and puts
    /// the others into their grace period, then loads what the store holds.
    async fn settle_first_keys(&self, now: u64) -> Result<(), SigningError> {
        let records = self.store.signing_keys().await?;
        let mut retiring = Vec::new();
        for alg in [ALG_ED25519, ALG_ES256] {
            let mut active: Vec<&KeyRecord> = records
                .iter()
                .filter(|r| r.alg == alg && r.retire_at_ms.is_none())
                .collect();
            active.sort_by(|a, b| (a.created_at_ms, &a.kid).cmp(&(b.created_at_ms, &b.kid)));
            for loser in active.iter().skip(1) {
                let mut record = (*loser).clone();
                record.retire_at_ms = Some(now + self.grace.as_millis() as u64);
                retiring.push(record);
            }
        }
        if !retiring.is_empty() {
            tracing::info!(
                keys = retiring.len(),
                "another node generated keys at the same time; keeping the oldest"
            );
            self.store.put_signing_keys(retiring, Vec::new()).await?;
        }
        self.reload().await
    }

    /// Loads the keys the store holds now: on a store several nodes share, a rotation made by
    /// one node reaches the others this way.
    pub async fn reload(&self) -> Result<(), SigningError> {
        let now = now_ms();
        let loaded = self
            .store
            .signing_keys()
            .await?
            .into_iter()
            .filter(|r| r.retire_at_ms.is_none_or(|at| at > now))
            .map(keys::load)
            .collect::<Result<Vec<_>, _>>()?;
        for key in &loaded {
            self_test(key)?;
        }
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(KeySet { keys: loaded });
        }
        Ok(())
    }

    /// The keys in force now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// New keys sign from now on; the previous ones stay in the JWKS (and Ed25519 keys keep
    /// co-signing) for the grace period, then retire.
    pub async fn rotate(&self) -> Result<Vec<KeyInfo>, SigningError> {
        let _one_at_a_time = self.rotation.lock().await;
        let now = now_ms();
        let retire_at = now + self.grace.as_millis() as u64;
        let mut records = Vec::new();
        let mut retired = Vec::new();
        for key in &self.current().keys {
            let mut record = key.record.clone();
            match record.retire_at_ms {
                Some(at) if at <= now => retired.push(record.kid),
                Some(_) => records.push(record),
                None => {
                    record.retire_at_ms = Some(retire_at);
                    records.push(record);
                }
            }
        }
        let mut changed = records.clone();
        let mut loaded = records
            .into_iter()
            .map(keys::load)
            .collect::<Result<Vec<_>, _>>()?;
        for alg in [ALG_ED25519, ALG_ES256] {
            let key = keys::generate(alg, now)?;
            self_test(&key)?;
            tracing::info!(kid = %key.record.kid, alg, "rotated in a new signing key");
            changed.push(key.record.clone());
            loaded.push(key);
        }
        self.store.put_signing_keys(changed, retired).await?;
        let set = Arc::new(KeySet { keys: loaded });
        let info = set.info(now);
        if let Ok(mut current) = self.current.write() {
            *current = set;
        }
        Ok(info)
    }
}

/// What a delivery attempt is signed over.
pub struct SigningInput<'a> {
    pub webhook_id: &'a str,
    pub timestamp_s: u64,
    pub body: &'a [u8],
    /// The config's `whsec_` secret, decoded, when its token is one.
    pub hmac_secret: Option<&'a [u8]>,
    /// Set when the config asks for a JWT (`scheme: Bearer` without credentials).
    pub jwt: Option<JwtInput<'a>>,
}

pub struct JwtInput<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub task_id: &'a str,
    pub jti: String,
}

/// The signature headers of one attempt.
pub struct DeliverySignature {
    /// `webhook-signature`: `v1a,…` per active Ed25519 key, and `v1,…` with a `whsec_` secret.
    pub signature: String,
    /// `Bearer <JWT>` when asked for.
    pub authorization: Option<String>,
}

pub fn sign_delivery(
    keys: &KeySet,
    input: &SigningInput,
    now_ms: u64,
) -> Result<DeliverySignature, SigningError> {
    let timestamp = input.timestamp_s.to_string();
    let content = webhooks::signed_content(input.webhook_id, &timestamp, input.body);
    let mut signatures: Vec<String> = keys
        .v1a_signers(now_ms)
        .filter_map(|key| match &key.signer {
            Signer::Ed25519(pair) => Some(webhooks::sign_v1a(pair, &content)),
            Signer::Es256(_) => None,
        })
        .collect();
    if let Some(secret) = input.hmac_secret {
        signatures.push(webhooks::sign_v1(secret, &content));
    }
    let authorization = match &input.jwt {
        None => None,
        Some(jwt_input) => {
            let key = keys
                .jwt_signer()
                .ok_or_else(|| SigningError::Crypto("no active ES256 key".to_string()))?;
            let Signer::Es256(pair) = &key.signer else {
                return Err(SigningError::Crypto("the JWT key is not ES256".to_string()));
            };
            let iat = input.timestamp_s as i64;
            let claims = jwt::Claims {
                iss: jwt_input.issuer.to_string(),
                aud: jwt_input.audience.to_string(),
                iat,
                exp: iat + jwt::LIFETIME_S,
                jti: jwt_input.jti.clone(),
                task_id: jwt_input.task_id.to_string(),
                request_body_sha256: jwt::body_sha256(input.body),
            };
            Some(format!(
                "Bearer {}",
                jwt::sign(pair, &key.record.kid, &claims)?
            ))
        }
    };
    Ok(DeliverySignature {
        signature: signatures.join(" "),
        authorization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;

    async fn keyring(dir: &std::path::Path, grace: Duration) -> (Arc<dyn Store>, Keyring) {
        let store: Arc<dyn Store> = Arc::new(
            RedbStore::open_sealed(dir, crate::store::Sealing::none(), 1 << 20, None).unwrap(),
        );
        let keyring = Keyring::open(store.clone(), grace).await.unwrap();
        (store, keyring)
    }

    #[tokio::test]
    async fn keys_are_generated_once_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, first) = keyring(dir.path(), Duration::from_secs(60)).await;
        let kids: Vec<String> = first
            .current()
            .info(now_ms())
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids.len(), 2);
        drop(first);
        let again = Keyring::open(store.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        let again_kids: Vec<String> = again
            .current()
            .info(now_ms())
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, again_kids);
        store.close().await;
    }

    #[tokio::test]
    async fn rotation_co_signs_during_the_grace_period_then_retires_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (store, keyring) = keyring(dir.path(), Duration::from_millis(300)).await;
        let old = keyring.current();
        let old_jwt_kid = old.jwt_signer().unwrap().record.kid.clone();
        let info = keyring.rotate().await.unwrap();
        assert_eq!(info.iter().filter(|k| k.state == "active").count(), 2);
        assert_eq!(info.iter().filter(|k| k.state == "retiring").count(), 2);
        let now = now_ms();
        let keys = keyring.current();
        assert_eq!(
            keys.v1a_signers(now).count(),
            2,
            "old and new Ed25519 keys co-sign"
        );
        assert_ne!(
            keys.jwt_signer().unwrap().record.kid,
            old_jwt_kid,
            "the new ES256 key signs JWTs"
        );
        assert_eq!(keys.jwks(now)["keys"].as_array().unwrap().len(), 4);
        let later = now + 1_000;
        assert_eq!(
            keys.v1a_signers(later).count(),
            1,
            "after the grace period only the new key signs"
        );
        assert_eq!(keys.jwks(later)["keys"].as_array().unwrap().len(), 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let reopened = Keyring::open(store.clone(), Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(
            reopened.current().info(now_ms()).len(),
            2,
            "retired keys are forgotten"
        );
        assert_eq!(store.signing_keys().await.unwrap().len(), 2);
        store.close().await;
    }
}
