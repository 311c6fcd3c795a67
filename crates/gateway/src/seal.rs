//! Sealed cookies: values only this gateway (and its replicas, which share the key) can read or
//! make. AES-256-GCM (aws-lc-rs) with a random 96-bit nonce per value; the cookie's name is the
//! associated data, so a value sealed for one cookie (the sign-in flow) is refused as another
//! (the session). No state is kept on the server: a sealed session survives a restart and is
//! valid on every replica holding the same key file.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ConfigError;
use crate::util::sha256;

/// Fewest bytes of key material accepted from the key file.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a sealed value was refused. Deliberately coarse: a forger learns nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not base64url, too short, tampered with, sealed with another key or for another cookie.
    #[error("the sealed value does not open (tampered with, or sealed with another key)")]
    Tampered,
    /// Opened, but the content is not what this gateway writes.
    #[error("the sealed value has an unknown layout")]
    Layout,
    /// Sealing failed (randomness or serialisation).
    #[error("cannot seal: {0}")]
    Seal(&'static str),
}

/// Seals and opens cookie values with one key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// A sealer whose key is derived from `material` (at least [`MIN_KEY_BYTES`] bytes). The
    /// derivation binds the purpose, so the same bytes used elsewhere give another key.
    pub fn new(material: &[u8]) -> Result<Self, String> {
        if material.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the cookie-sealing key has {} bytes; at least {MIN_KEY_BYTES} random bytes are needed",
                material.len()
            ));
        }
        let mut input = b"virt-gateway sign-in cookie sealing v1\0".to_vec();
        input.extend_from_slice(material);
        let key = UnboundKey::new(&AES_256_GCM, &sha256(&input))
            .map_err(|_| "cannot build the cookie-sealing key".to_string())?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// A sealer keyed by the content of `path` (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let text = String::from_utf8_lossy(&bytes);
        Self::new(text.trim().as_bytes()).map_err(|message| ConfigError::File {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Seals `value` (as JSON) for the cookie `name`: base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal<T: Serialize>(&self, name: &str, value: &T) -> Result<String, SealError> {
        let mut data =
            serde_json::to_vec(value).map_err(|_| SealError::Seal("cannot serialise"))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SealError::Seal("no randomness"))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Seal("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(B64.encode(out))
    }

    /// Opens a value sealed by [`Sealer::seal`] for the cookie `name`.
    pub fn open<T: DeserializeOwned>(&self, name: &str, sealed: &str) -> Result<T, SealError> {
        let mut bytes = B64.decode(sealed.trim()).map_err(|_| SealError::Tampered)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Tampered);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plain = self
            .key
            .open_within(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut bytes,
                NONCE_LEN..,
            )
            .map_err(|_| SealError::Tampered)?;
        serde_json::from_slice(plain).map_err(|_| SealError::Layout)
    }

    /// Random bytes, base64url (for `state`, `nonce` and PKCE verifiers): `n` bytes of entropy.
    pub fn random(&self, n: usize) -> Result<String, SealError> {
        let mut bytes = vec![0u8; n];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| SealError::Seal("no randomness"))?;
        Ok(B64.encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_same_key_and_cookie_open_a_value() {
        let s = Sealer::new(KEY).unwrap();
        let sealed = s.seal("a", &vec!["x".to_string()]).unwrap();
        assert_eq!(s.open::<Vec<String>>("a", &sealed).unwrap(), vec!["x"]);
        // Sealed for another cookie, with another key, or any byte flipped: refused.
        assert_eq!(
            s.open::<Vec<String>>("b", &sealed),
            Err(SealError::Tampered)
        );
        let other = Sealer::new(b"another key of at least thirty-two bytes").unwrap();
        assert_eq!(
            other.open::<Vec<String>>("a", &sealed),
            Err(SealError::Tampered)
        );
        let mut raw = B64.decode(&sealed).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            assert_eq!(
                s.open::<Vec<String>>("a", &B64.encode(&raw)),
                Err(SealError::Tampered),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        for garbage in ["", "!!", "AAAA"] {
            assert_eq!(
                s.open::<Vec<String>>("a", garbage),
                Err(SealError::Tampered)
            );
        }
        // Two seals of one value differ (random nonce).
        assert_ne!(sealed, s.seal("a", &vec!["x".to_string()]).unwrap());
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(Sealer::new(b"short").is_err());
    }
}
