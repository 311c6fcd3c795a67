//! Serving TLS: a rustls configuration whose certificate and key are reloaded when the files change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::util::file_digest;

/// A file's content hash (`None`: unreadable).
type Digest = Option<[u8; 32]>;

/// A certificate resolver that serves the latest successfully loaded certificate and key.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    digests: Mutex<(Digest, Digest)>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

fn load(
    cert_file: &Path,
    key_file: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, ConfigError> {
    let file_err = |path: &Path, message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_err(cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(cert_file, "no certificate found".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_err(key_file, e.to_string()))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| {
        file_err(
            key_file,
            format!("certificate and key do not form a usable pair: {e}"),
        )
    })
}

impl ReloadingCert {
    /// Loads the pair now (both files must be valid).
    pub fn new(cert_file: &Path, key_file: &Path) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = load(cert_file, key_file, &provider)?;
        Ok(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(Arc::new(key)),
            digests: Mutex::new((file_digest(cert_file), file_digest(key_file))),
            provider,
        })
    }

    /// Reloads when either file changed and the new pair is valid; otherwise keeps the old pair.
    pub fn reload(&self, metrics: &Metrics) -> bool {
        let now = (file_digest(&self.cert_file), file_digest(&self.key_file));
        let Ok(mut last) = self.digests.lock() else {
            return false;
        };
        if now == *last || now.0.is_none() || now.1.is_none() {
            return false;
        }
        match load(&self.cert_file, &self.key_file, &self.provider) {
            Ok(key) => {
                if let Ok(mut c) = self.current.write() {
                    *c = Arc::new(key);
                }
                *last = now;
                metrics
                    .cert_reloads
                    .get_or_create(&[("result", "success")])
                    .inc();
                tracing::info!(cert = %self.cert_file.display(), "serving certificate reloaded");
                true
            }
            Err(e) => {
                // Probably caught between the two writes of a rotation: retried next time.
                metrics
                    .cert_reloads
                    .get_or_create(&[("result", "failure")])
                    .inc();
                tracing::warn!(error = %e, "serving certificate not reloaded");
                false
            }
        }
    }

    /// The certificate served now (the chain's first), which peer replicas must present.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        let current = self.current.read().ok()?;
        current.cert.first().cloned()
    }

    /// A server configuration using this resolver (HTTP/1.1 only: WebSocket upgrades need it).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, ConfigError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Invalid(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}
