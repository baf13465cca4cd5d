//! Encryption at rest of the records that hold secrets (push configs with their tokens and
//! credentials, signing keys), with AES-256-GCM under a key derived from
//! `store.encryption_key`. Records written without a key stay readable and are sealed the
//! next time they are written with one.

use std::borrow::Cow;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::StoreError;

/// Marks a sealed value: magic, then the nonce, then ciphertext and tag.
const MAGIC: &[u8] = b"a2a-push-hub:sealed:v1:";

/// Seals and opens secret-bearing records. Without a key it passes bytes through.
pub struct Sealing {
    key: Option<LessSafeKey>,
    rng: SystemRandom,
}

impl Sealing {
    pub fn none() -> Sealing {
        Sealing {
            key: None,
            rng: SystemRandom::new(),
        }
    }

    /// A sealing key derived (SHA-256) from the operator's secret.
    pub fn with_key(secret: &str) -> Sealing {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        let key = UnboundKey::new(&AES_256_GCM, digest.as_ref())
            .map(LessSafeKey::new)
            .ok();
        Sealing {
            key,
            rng: SystemRandom::new(),
        }
    }

    pub fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let Some(key) = &self.key else {
            return Ok(plain);
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Storage("no randomness for sealing".into()))?;
        let mut data = plain;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(MAGIC),
            &mut data,
        )
        .map_err(|_| StoreError::Storage("sealing a record failed".into()))?;
        let mut sealed = Vec::with_capacity(MAGIC.len() + NONCE_LEN + data.len());
        sealed.extend_from_slice(MAGIC);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&data);
        Ok(sealed)
    }

    pub fn open<'a>(&self, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, StoreError> {
        let Some(rest) = stored.strip_prefix(MAGIC) else {
            return Ok(Cow::Borrowed(stored));
        };
        let key = self.key.as_ref().ok_or_else(|| {
            StoreError::Corrupt("the store holds encrypted secrets: set store.encryption_key to the key they were written with".into())
        })?;
        if rest.len() < NONCE_LEN {
            return Err(StoreError::Corrupt("a sealed record is truncated".into()));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| StoreError::Corrupt("bad nonce".into()))?;
        let mut data = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(MAGIC), &mut data)
            .map_err(|_| StoreError::Corrupt("a sealed record does not open: store.encryption_key differs from the one it was written with".into()))?;
        Ok(Cow::Owned(plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_records_open_only_with_their_key() {
        let sealing = Sealing::with_key("correct horse battery staple, but longer");
        let sealed = sealing.seal(b"{\"token\":\"s3cret\"}".to_vec()).unwrap();
        assert!(
            !sealed.windows(6).any(|w| w == b"s3cret"),
            "the secret is not stored in clear"
        );
        assert_eq!(&*sealing.open(&sealed).unwrap(), b"{\"token\":\"s3cret\"}");
        assert!(
            Sealing::with_key("another key entirely, also long")
                .open(&sealed)
                .is_err()
        );
        assert!(
            Sealing::none()
                .open(&sealed)
                .unwrap_err()
                .to_string()
                .contains("encryption_key")
        );
        assert_eq!(
            &*sealing.open(b"{\"plain\":1}").unwrap(),
            b"{\"plain\":1}",
            "old plain records stay readable"
        );
    }
}
