//! The connection to the Kubernetes API server: an HTTP/1.1 client over rustls that trusts
//! `-ca-file` (or the system roots), and the ServiceAccount token file, re-read when it changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::Config;
use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::read_ahead::ReadAheadConnector;
use crate::util::{file_digest, sha256};

/// The connector of every upstream client: TCP (reading ahead, [`crate::read_ahead`]), then TLS.
pub type Connector = hyper_rustls::HttpsConnector<ReadAheadConnector>;

/// The HTTP client type used for every upstream request.
pub type HttpClient = Client<Connector, Body>;

/// The rustls client configuration for the API server.
pub fn tls_client_config(config: &Config) -> Result<rustls::ClientConfig, ConfigError> {
    if config.skip_verify_tls {
        return tls_accepting(AnyCertificate);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let (added, _) = roots.add_parsable_certificates(ca_certificates(path)?);
            if added == 0 {
                return Err(ConfigError::File {
                    path: path.clone(),
                    message: "no CA certificate found for the API server".into(),
                });
            }
        }
        None => {
            let native = native_roots();
            let (added, _) = roots.add_parsable_certificates(native);
            if added == 0 {
                return Err(ConfigError::Invalid(
                    "no -ca-file and no system CA certificates: cannot verify the API server"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = tls_builder(provider)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // ALPN is set by the connector (HTTP/1.1 only: WebSocket upgrades need it).
    tls.alpn_protocols.clear();
    Ok(tls)
}

/// The certificates of the PEM file `path` (`-ca-file`).
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let file_error = |e: rustls::pki_types::pem::Error| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    CertificateDer::pem_file_iter(path)
        .map_err(file_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error)
}

fn tls_builder(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, ConfigError> {
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid(format!("TLS: {e}")))
}

/// Decides whether a server's certificate is accepted, in place of a chain and name check
/// ([`tls_accepting`]); the handshake signature is verified with the certificate either way.
pub trait AcceptCertificate: std::fmt::Debug + Send + Sync + 'static {
    /// Whether `end_entity` is accepted.
    fn accepts(&self, end_entity: &CertificateDer<'_>) -> bool;
}

/// Any certificate (`-skip-verify-tls`).
#[derive(Debug)]
struct AnyCertificate;

impl AcceptCertificate for AnyCertificate {
    fn accepts(&self, _: &CertificateDer<'_>) -> bool {
        true
    }
}

/// A TLS client configuration (ALPN left to the connector: HTTP/1.1) that accepts the server's
/// certificate when `check` does.
pub fn tls_accepting(check: impl AcceptCertificate) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(CheckedCertificate {
        check,
        provider: provider.clone(),
    });
    let mut tls = tls_builder(provider)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols.clear();
    Ok(tls)
}

/// The system's CA certificates.
pub fn native_roots() -> Vec<CertificateDer<'static>> {
    // Common system bundle locations (Debian/Alpine/RHEL); no extra dependency needed.
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(iter) = CertificateDer::pem_file_iter(path) {
            let certs: Vec<_> = iter.filter_map(Result::ok).collect();
            if !certs.is_empty() {
                return certs;
            }
        }
    }
    Vec::new()
}

/// Builds the upstream HTTP client.
pub fn http_client(config: &Config) -> Result<HttpClient, ConfigError> {
    let tls = tls_client_config(config)?;
    Ok(http1_client(tls, std::time::Duration::from_secs(10)))
}

/// An HTTP/1 client speaking `tls` to `https` URLs (plain HTTP to `http` ones), with TCP_NODELAY
/// and a connect timeout: the one client shape the gateway uses towards the API server, peer
/// replicas and identity providers; only the TLS trust differs between them.
pub fn http1_client<B>(
    tls: rustls::ClientConfig,
    connect_timeout: std::time::Duration,
) -> Client<Connector, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(ReadAheadConnector(http));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Joins the API server base URL with a path and query.
pub fn upstream_uri(base: &str, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let mut uri = String::with_capacity(base.len() + path.len() + query.map_or(0, str::len) + 1);
    uri.push_str(base);
    uri.push_str(path);
    if let Some(q) = query {
        uri.push('?');
        uri.push_str(q);
    }
    Ok(uri.parse::<Uri>()?)
}

/// A secret file (the ServiceAccount token), re-read when its content changes.
pub struct SecretFile {
    path: PathBuf,
    state: RwLock<Option<Arc<str>>>,
    digest: Mutex<Option<[u8; 32]>>,
    metrics: Arc<Metrics>,
}

impl SecretFile {
    /// Reads the file now; it must exist and be non-empty.
    pub fn load(path: &Path, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        if text.is_empty() {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                message: "the token file is empty".into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            state: RwLock::new(Some(Arc::from(text))),
            digest: Mutex::new(Some(sha256(&bytes))),
            metrics,
        })
    }

    /// The current value.
    pub fn get(&self) -> Option<Arc<str>> {
        self.state.read().ok().and_then(|s| s.clone())
    }

    /// Re-reads the file if it changed. An unreadable or empty file keeps the last value.
    pub fn reload(&self) -> bool {
        let digest = file_digest(&self.path);
        let Ok(mut last) = self.digest.lock() else {
            return false;
        };
        if digest.is_none() || digest == *last {
            return false;
        }
        let text =
            std::fs::read(&self.path).map(|b| String::from_utf8_lossy(&b).trim().to_string());
        match text {
            Ok(text) if !text.is_empty() => {
                if let Ok(mut s) = self.state.write() {
                    *s = Some(Arc::from(text));
                }
                *last = digest;
                self.metrics
                    .sa_token_reloads
                    .get_or_create(&[("result", "success")])
                    .inc();
                tracing::info!(file = %self.path.display(), "ServiceAccount token reloaded");
                true
            }
            _ => {
                self.metrics
                    .sa_token_reloads
                    .get_or_create(&[("result", "failure")])
                    .inc();
                false
            }
        }
    }
}

/// The verifier of [`tls_accepting`]: `check` for the certificate, the provider's algorithms for
/// the handshake signature.
#[derive(Debug)]
struct CheckedCertificate<A> {
    check: A,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl<A: AcceptCertificate> rustls::client::danger::ServerCertVerifier for CheckedCertificate<A> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.check.accepts(end_entity) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds kube clients for the API server of the configuration, each authenticating with the
/// bearer token a function returns at request time.
#[derive(Clone)]
pub struct KubeClients {
    config: kube::Config,
}

impl KubeClients {
    /// The API server, CA and TLS settings of `config`.
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        let uri: Uri = config
            .api_server
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("-api-server: {e}")))?;
        let mut kc = kube::Config::new(uri);
        if config.skip_verify_tls {
            kc.accept_invalid_certs = true;
        } else if let Some(ca) = &config.ca_file {
            let certs = ca_certificates(ca)?;
            kc.root_cert = Some(certs.iter().map(|c| c.as_ref().to_vec()).collect());
        }
        Ok(Self { config: kc })
    }

    /// A client whose requests carry `Authorization: Bearer <token()>`, read at each request (so
    /// a rotated ServiceAccount token is used as soon as it is re-read).
    pub fn with_token(
        &self,
        token: impl Fn() -> Option<Arc<str>> + Clone + Send + Sync + 'static,
    ) -> Result<kube::Client, ConfigError> {
        let builder = kube::client::ClientBuilder::try_from(self.config.clone())
            .map_err(|e| ConfigError::Invalid(format!("kube client: {e}")))?;
        let auth =
            tower::util::MapRequestLayer::new(move |mut req: http::Request<kube::client::Body>| {
                if let Some(token) = token()
                    && let Ok(mut value) = http::HeaderValue::from_str(&format!("Bearer {token}"))
                {
                    value.set_sensitive(true);
                    req.headers_mut().insert(http::header::AUTHORIZATION, value);
                }
                req
            });
        Ok(builder.with_layer(&auth).build())
    }

    /// A client for the gateway's own calls (the revocation watch), with the ServiceAccount token
    /// file as last (re-)read by `sa`.
    pub fn service_account(
        &self,
        sa: Option<Arc<SecretFile>>,
    ) -> Result<kube::Client, ConfigError> {
        self.with_token(move || sa.as_ref().and_then(|s| s.get()))
    }
}
