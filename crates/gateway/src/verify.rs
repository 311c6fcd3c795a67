//! Token verification: verification keys from files (several, reloaded when they change) and a
//! cache of verified tokens keyed by a SHA-256 hash of the token, each entry valid until the
//! token's expiry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use virt_gateway_auth::jwt::{AudiencePolicy, TokenError, VerifiedToken, Verifier};
use virt_gateway_auth::keys::{self, PublicKey};

use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::util::{file_digest, sha256};

/// Largest number of cached tokens; when full, expired entries are purged, then everything.
pub const CACHE_CAPACITY: usize = 10_000;

struct KeyFile {
    path: PathBuf,
    digest: Option<[u8; 32]>,
    keys: Vec<PublicKey>,
}

struct CacheEntry {
    token: Arc<VerifiedToken>,
    valid_until: u64,
}

/// Verification keys plus the token cache.
pub struct TokenVerifier {
    files: Mutex<Vec<KeyFile>>,
    verifier: RwLock<Arc<Verifier>>,
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    leeway: Duration,
    audience: AudiencePolicy,
    metrics: Arc<Metrics>,
}

fn read_keys(path: &Path) -> Result<(Vec<PublicKey>, [u8; 32]), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let keys = keys::public_keys_from_pem(&bytes).map_err(|e| e.to_string())?;
    if keys.is_empty() {
        return Err("no public key found".into());
    }
    Ok((keys, sha256(&bytes)))
}

impl TokenVerifier {
    /// Loads every key file; each must hold at least one usable public key.
    pub fn load(
        paths: &[PathBuf],
        leeway: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let mut files = Vec::new();
        for path in paths {
            let (keys, digest) = read_keys(path).map_err(|message| ConfigError::File {
                path: path.clone(),
                message,
            })?;
            files.push(KeyFile {
                path: path.clone(),
                digest: Some(digest),
                keys,
            });
        }
        Ok(Self::with_files(files, leeway, metrics))
    }

    /// A verifier for `keys` that never reloads (tests and embedding).
    pub fn from_keys(keys: Vec<PublicKey>, leeway: Duration, metrics: Arc<Metrics>) -> Self {
        let file = KeyFile {
            path: PathBuf::new(),
            digest: None,
            keys,
        };
        Self::with_files(vec![file], leeway, metrics)
    }

    fn with_files(files: Vec<KeyFile>, leeway: Duration, metrics: Arc<Metrics>) -> Self {
        let all: Vec<PublicKey> = files.iter().flat_map(|f| f.keys.iter().cloned()).collect();
        metrics.verification_keys.set(all.len() as i64);
        let audience = AudiencePolicy::default();
        let verifier = Verifier::new(all)
            .with_leeway(leeway)
            .with_audience(audience.clone());
        Self {
            files: Mutex::new(files),
            verifier: RwLock::new(Arc::new(verifier)),
            cache: Mutex::new(HashMap::new()),
            leeway,
            audience,
            metrics,
        }
    }

    /// Checks `aud` and `iss` with `policy` (review §6). The default policy accepts tokens
    /// without `aud` and refuses every token bound to an audience.
    #[must_use]
    pub fn with_audience(mut self, policy: AudiencePolicy) -> Self {
        let keys = self.current().keys().to_vec();
        self.verifier = RwLock::new(Arc::new(
            Verifier::new(keys)
                .with_leeway(self.leeway)
                .with_audience(policy.clone()),
        ));
        self.audience = policy;
        self
    }

    /// Re-reads the key files; when any changed, rebuilds the key set and empties the cache. A file
    /// that disappeared or no longer parses contributes no key (its tokens stop verifying).
    /// Returns whether the key set changed.
    pub fn reload(&self) -> bool {
        let Ok(mut files) = self.files.lock() else {
            return false;
        };
        let mut changed = false;
        for file in files.iter_mut().filter(|f| !f.path.as_os_str().is_empty()) {
            let digest = file_digest(&file.path);
            if digest == file.digest {
                continue;
            }
            changed = true;
            match read_keys(&file.path) {
                Ok((keys, digest)) => {
                    tracing::info!(file = %file.path.display(), keys = keys.len(), "verification key file reloaded");
                    file.keys = keys;
                    file.digest = Some(digest);
                    self.metrics
                        .key_reloads
                        .get_or_create(&[("result", "success")])
                        .inc();
                }
                Err(message) => {
                    tracing::error!(file = %file.path.display(), error = %message, "verification key file unusable; its keys are dropped");
                    file.keys.clear();
                    file.digest = digest;
                    self.metrics
                        .key_reloads
                        .get_or_create(&[("result", "failure")])
                        .inc();
                }
            }
        }
        if changed {
            let all: Vec<PublicKey> = files.iter().flat_map(|f| f.keys.iter().cloned()).collect();
            self.metrics.verification_keys.set(all.len() as i64);
            let verifier = Verifier::new(all)
                .with_leeway(self.leeway)
                .with_audience(self.audience.clone());
            if let Ok(mut v) = self.verifier.write() {
                *v = Arc::new(verifier);
            }
            if let Ok(mut cache) = self.cache.lock() {
                cache.clear();
            }
        }
        changed
    }

    /// The current keys.
    pub fn keys(&self) -> Vec<PublicKey> {
        self.current().keys().to_vec()
    }

    fn current(&self) -> Arc<Verifier> {
        self.verifier
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The leeway applied to `exp`/`nbf`/`iat`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` at `now`, from the cache when possible.
    pub fn verify(&self, token: &str, now: u64) -> Result<Arc<VerifiedToken>, TokenError> {
        let key = sha256(token.as_bytes());
        if let Ok(mut cache) = self.cache.lock()
            && let Some(entry) = cache.get(&key)
        {
            if now <= entry.valid_until {
                self.metrics.token_cache(true);
                return Ok(entry.token.clone());
            }
            cache.remove(&key);
        }
        self.metrics.token_cache(false);
        let verifier = self.current();
        let verified = Arc::new(verifier.verify(token, now)?);
        let valid_until = verified.claims.exp.saturating_add(self.leeway.as_secs());
        if let Ok(mut cache) = self.cache.lock() {
            // Review §10: a reload between `current()` and here swapped the keys and emptied the
            // cache; caching now would keep a token of a removed key valid until its expiry.
            // `reload` swaps the verifier before it takes the cache lock, so checking under the
            // lock that the keys are still those we verified with closes the window.
            if !Arc::ptr_eq(&verifier, &self.current()) {
                return Ok(verified);
            }
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, e| e.valid_until >= now);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                CacheEntry {
                    token: verified.clone(),
                    valid_until,
                },
            );
        }
        Ok(verified)
    }

    /// Whether at least one key is loaded.
    pub fn has_keys(&self) -> bool {
        !self.current().keys().is_empty()
    }
}
