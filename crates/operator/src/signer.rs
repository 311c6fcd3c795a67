//! The signing pool: RSA-4096 signing (several milliseconds per token) and key generation run on
//! Tokio's blocking threads, at most `threads` at a time, so that a burst of tokens uses every
//! core without starving the async reconcilers. Parsed private keys are cached by the Secret's
//! uid and resourceVersion, so a burst of tokens parses its key once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use tokio::sync::Semaphore;
use virt_gateway_auth::jwt::{self, Claims};
use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};

use crate::error::{Error, Result};
use crate::keysecret::{self, KeySecretError};
use crate::metrics::{AlgLabels, Metrics};

type CachedKey = (String, Result<Arc<KeyPair>, KeySecretError>);

/// The signing pool and key cache.
#[derive(Debug)]
pub struct Signer {
    slots: Arc<Semaphore>,
    threads: usize,
    // namespace -> (uid/resourceVersion, parsed key)
    keys: Mutex<HashMap<String, CachedKey>>,
}

/// A token signed by [`Signer::sign`].
#[derive(Debug, Clone)]
pub struct Signed {
    /// The compact JWS.
    pub token: String,
    /// The algorithm (`RS256`, `ES256`, `EdDSA`).
    pub alg: &'static str,
    /// The key id.
    pub kid: String,
}

impl Signer {
    /// A pool running at most `threads` signatures or key generations at once (at least 1).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            slots: Arc::new(Semaphore::new(threads)),
            threads,
            keys: Mutex::default(),
        }
    }

    /// How many signatures may run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The private key of a key Secret, parsed once per version of the Secret.
    pub fn key_of(&self, secret: &Secret) -> Result<Arc<KeyPair>, KeySecretError> {
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let version = format!(
            "{}/{}",
            secret.metadata.uid.as_deref().unwrap_or_default(),
            secret
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or_default()
        );
        if let Ok(cache) = self.keys.lock()
            && let Some((v, key)) = cache.get(&ns)
            && *v == version
        {
            return key.clone();
        }
        let parsed = keysecret::private_key(secret).map(Arc::new);
        if let Ok(mut cache) = self.keys.lock() {
            cache.insert(ns, (version, parsed.clone()));
        }
        parsed
    }

    /// Signs `claims` with `key` on the pool.
    pub async fn sign(
        &self,
        key: Arc<KeyPair>,
        claims: Claims,
        metrics: &Metrics,
    ) -> Result<Signed> {
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        let (token, took) = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let token = jwt::sign(&key, &claims);
            (token.map(|t| (t, key)), start.elapsed())
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        let (token, key) = token.map_err(Error::Sign)?;
        let alg = key.algorithm().jws_alg();
        metrics.sign_duration.observe(took.as_secs_f64());
        metrics.signed.get_or_create(&AlgLabels { alg }).inc();
        Ok(Signed {
            token,
            alg,
            kid: key.kid().to_owned(),
        })
    }

    /// Generates a key pair on the pool (RSA-4096 takes a second or more).
    pub async fn generate(&self, algorithm: KeyAlgorithm) -> Result<KeyPair> {
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || KeyPair::generate(algorithm))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(Error::KeyGeneration)
    }
}
