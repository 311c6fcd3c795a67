//! The identity provider, as the gateway's sign-in sees it: where to send the person
//! (authorization endpoint), where to redeem a code or a refresh token (token endpoint), and, in
//! OpenID Connect mode, how to verify an ID token (the provider's JWKS, issuer, audience =
//! client ID, expiry, nonce). Endpoints are discovered on first use (OIDC discovery, or the API
//! server's `/.well-known/oauth-authorization-server` for OpenShift OAuth) unless given, so the
//! gateway starts while the provider is down.
//!
//! Crates: `jsonwebtoken` (already the workspace's JWT library, on aws-lc-rs) verifies ID tokens
//! against `jwk::JwkSet`; the HTTP exchange is plain OAuth 2.0 over the same hyper/rustls client
//! as the API proxy. See the README for why not `openidconnect`/`oauth2`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{OnceCell, RwLock};

use crate::error::ConfigError;
use crate::util::sha256;

/// Largest provider response read (discovery, JWKS, token responses).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Time the provider has to answer one request.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Fewest seconds between two JWKS fetches caused by an unknown `kid` (a forger's tokens must not
/// make the gateway hammer the provider).
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Which protocol the provider speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OpenID Connect: an ID token, verified here, is the person's Kubernetes credential.
    Oidc {
        /// The issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
        issuer: String,
    },
    /// OAuth 2.0 (the OpenShift OAuth server): the access token is the person's credential,
    /// checked by the API server (the gateway never reads it).
    OAuth {
        /// Authorization endpoint; `None`: discovered from the API server.
        auth_url: Option<String>,
        /// Token endpoint; `None`: discovered from the API server.
        token_url: Option<String>,
        /// Where `/.well-known/oauth-authorization-server` is (the API server URL).
        discovery_base: String,
    },
}

/// The validated sign-in settings.
#[derive(Clone, Debug)]
pub struct SignInConfig {
    /// OIDC or OAuth.
    pub protocol: Protocol,
    /// The client ID (the audience of ID tokens).
    pub client_id: String,
    /// Where the client secret comes from.
    pub client_secret: ClientSecret,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The claim shown as the person's name (`/auth/session`).
    pub username_claim: String,
    /// The claim listing the person's groups (`/auth/session`).
    pub groups_claim: String,
    /// This gateway's `/auth/callback`, as registered at the provider.
    pub redirect_url: String,
    /// CA bundle for the provider; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// The cookie-sealing key file.
    pub session_key_file: PathBuf,
    /// Longest a session lives, refreshes included.
    pub session_max_age: Duration,
}

/// The client secret: a file (ours), or the upstream literal `-oauth-client-secret=…` (the
/// operator passes it from a Secret through an environment variable). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// Read from this file at startup.
    File(PathBuf),
    /// Given on the command line.
    Value(String),
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// Why a provider step failed. Messages never include a token, code or secret.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached or answered garbage.
    #[error("the identity provider could not be used: {0}")]
    Unavailable(String),
    /// The token endpoint refused (an OAuth `error` code, e.g. `invalid_grant`).
    #[error("the identity provider refused: {0}")]
    Refused(String),
    /// The ID token did not verify.
    #[error("the ID token was refused: {0}")]
    IdToken(String),
}

/// A token endpoint answer.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// The ID token (OIDC).
    #[serde(default)]
    pub id_token: Option<String>,
    /// The refresh token, when the provider issues one (Dex: scope `offline_access`).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Lifetime of the access token in seconds (signed: a misconfigured provider may send a
    /// negative one, which must read as "expired", not as garbage).
    #[serde(default)]
    pub expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse(<redacted>)")
    }
}

/// The claims of a verified ID token that the gateway uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `exp`.
    pub expires: u64,
    /// The username claim's value (or `sub` when absent).
    pub username: String,
    /// The groups claim's values.
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
struct Endpoints {
    authorization: String,
    token: String,
    jwks: Option<String>,
}

type ProviderClient = Client<crate::upstream::Connector, Full<Bytes>>;

/// The provider.
pub struct Provider {
    config: SignInConfig,
    client_secret: String,
    http: ProviderClient,
    /// For OAuth discovery at the API server (its CA, not the provider's).
    api_http: Option<crate::upstream::HttpClient>,
    endpoints: OnceCell<Endpoints>,
    keys: RwLock<(JwkSet, Option<Instant>)>,
}

impl Provider {
    /// The provider of `config`: reads the client secret, builds the HTTPS client. No request
    /// is made yet. `api_http` reaches the API server (OAuth endpoint discovery).
    pub fn new(
        config: SignInConfig,
        api_http: Option<crate::upstream::HttpClient>,
    ) -> Result<Self, ConfigError> {
        let client_secret = match &config.client_secret {
            ClientSecret::Value(v) => v.trim().to_string(),
            ClientSecret::File(path) => std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?
                .trim()
                .to_string(),
        };
        if client_secret.is_empty() {
            return Err(ConfigError::Invalid(
                "the sign-in client secret is empty".into(),
            ));
        }
        let http = https_client(config.ca_file.as_ref())?;
        Ok(Self {
            config,
            client_secret,
            http,
            api_http,
            endpoints: OnceCell::new(),
            keys: RwLock::new((JwkSet { keys: Vec::new() }, None)),
        })
    }

    /// The settings.
    pub fn config(&self) -> &SignInConfig {
        &self.config
    }

    /// Whether ID tokens are expected (OIDC) rather than opaque access tokens (OAuth).
    pub fn is_oidc(&self) -> bool {
        matches!(self.config.protocol, Protocol::Oidc { .. })
    }

    async fn endpoints(&self) -> Result<&Endpoints, ProviderError> {
        self.endpoints
            .get_or_try_init(|| async { self.discover().await })
            .await
    }

    async fn discover(&self) -> Result<Endpoints, ProviderError> {
        match &self.config.protocol {
            Protocol::Oidc { issuer } => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc = self.get_json(&url).await?;
                // OIDC Discovery §4.3: the document must name exactly the configured issuer.
                if doc["issuer"].as_str() != Some(issuer.as_str()) {
                    return Err(ProviderError::Unavailable(format!(
                        "the discovery document names issuer {} instead of {issuer}",
                        doc["issuer"]
                    )));
                }
                Ok(Endpoints {
                    authorization: https_field(&doc, "authorization_endpoint")?,
                    token: https_field(&doc, "token_endpoint")?,
                    jwks: Some(https_field(&doc, "jwks_uri")?),
                })
            }
            Protocol::OAuth {
                auth_url,
                token_url,
                discovery_base,
            } => {
                if let (Some(a), Some(t)) = (auth_url, token_url) {
                    return Ok(Endpoints {
                        authorization: a.clone(),
                        token: t.clone(),
                        jwks: None,
                    });
                }
                let url = format!("{discovery_base}/.well-known/oauth-authorization-server");
                let doc = self.get_api_json(&url).await?;
                Ok(Endpoints {
                    authorization: match auth_url {
                        Some(a) => a.clone(),
                        None => https_field(&doc, "authorization_endpoint")?,
                    },
                    token: match token_url {
                        Some(t) => t.clone(),
                        None => https_field(&doc, "token_endpoint")?,
                    },
                    jwks: None,
                })
            }
        }
    }

    /// The authorization URL for one sign-in: code flow, PKCE S256, `state` and (OIDC) `nonce`.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, ProviderError> {
        let endpoints = self.endpoints().await?;
        let mut url = url::Url::parse(&endpoints.authorization)
            .map_err(|e| ProviderError::Unavailable(format!("authorization endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", &self.config.redirect_url)
                .append_pair("scope", &self.config.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("code_challenge", &pkce_challenge(verifier))
                .append_pair("code_challenge_method", "S256");
            if self.is_oidc() {
                q.append_pair("nonce", nonce);
            }
        }
        Ok(url.into())
    }

    /// Redeems an authorization code (with the PKCE verifier) at the token endpoint.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("code_verifier", verifier)
            .finish();
        self.token_request(form).await
    }

    /// Redeems a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, ProviderError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .finish();
        self.token_request(form).await
    }

    async fn token_request(&self, form: String) -> Result<TokenResponse, ProviderError> {
        let endpoints = self.endpoints().await?;
        // client_secret_basic (RFC 6749 §2.3.1: each part form-encoded first).
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&self.config.client_id),
            enc(&self.client_secret)
        ));
        let request = http::Request::post(&endpoints.token)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| ProviderError::Unavailable(format!("token request: {e}")))?;
        let (status, body) = send(&self.http, request).await?;
        if status != 200 {
            // Only the OAuth error code: descriptions may echo what was sent.
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(ProviderError::Refused(code));
        }
        serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable("the token response is not valid JSON".into()))
    }

    /// Verifies an ID token: signature by a key of the provider's JWKS (asymmetric algorithms
    /// only), `iss` = issuer, `aud` contains the client ID (and `azp` is it when there are
    /// several), `exp` not passed (`leeway` allowed), and `nonce` equal to `expected_nonce` when
    /// given (sign-in; refreshed tokens need not repeat it).
    pub async fn verify_id_token(
        &self,
        token: &str,
        expected_nonce: Option<&str>,
        leeway: Duration,
    ) -> Result<Identity, ProviderError> {
        let Protocol::Oidc { issuer } = &self.config.protocol else {
            return Err(ProviderError::IdToken(
                "not an OpenID Connect provider".into(),
            ));
        };
        let bad = |m: &str| ProviderError::IdToken(m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(bad("its algorithm is not an asymmetric signature"));
        }
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = leeway.as_secs();
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            bad(match e.kind() {
                K::ExpiredSignature => "it has expired",
                K::InvalidAudience => "it was issued to another client (aud)",
                K::InvalidIssuer => "it was issued by another issuer (iss)",
                K::InvalidSignature => "its signature does not verify",
                K::MissingRequiredClaim(_) => "a required claim is missing",
                _ => "it is malformed",
            })
        })?;
        let claims = data.claims;
        // OIDC Core §3.1.3.7: with several audiences, azp must be us.
        let several = claims["aud"].as_array().is_some_and(|a| a.len() > 1);
        if (several || claims.get("azp").is_some())
            && claims["azp"].as_str() != Some(self.config.client_id.as_str())
        {
            return Err(bad("it was issued to another client (azp)"));
        }
        if let Some(expected) = expected_nonce
            && claims["nonce"].as_str() != Some(expected)
        {
            return Err(bad("its nonce is not this sign-in's"));
        }
        Ok(self.identity(&claims))
    }

    fn identity(&self, claims: &Value) -> Identity {
        let subject = claims["sub"].as_str().unwrap_or_default().to_string();
        let username = claims[&self.config.username_claim]
            .as_str()
            .map_or_else(|| subject.clone(), str::to_owned);
        let groups = match &claims[&self.config.groups_claim] {
            Value::Array(a) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        Identity {
            expires: claims["exp"].as_u64().unwrap_or(0),
            subject,
            username,
            groups,
        }
    }

    /// The JWKS key for `kid`, fetching the set again (rate-limited) when it is unknown, so the
    /// provider may rotate its keys.
    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, ProviderError> {
        if let Some(key) = find_key(&self.keys.read().await.0, kid, alg)? {
            return Ok(key);
        }
        let mut keys = self.keys.write().await;
        let recent = keys
            .1
            .is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL);
        if !recent {
            let endpoints = self.endpoints().await?;
            let Some(url) = &endpoints.jwks else {
                return Err(ProviderError::IdToken("the provider has no JWKS".into()));
            };
            let doc = self.get_json(url).await?;
            keys.0 = serde_json::from_value(doc).map_err(|_| {
                ProviderError::Unavailable("the provider's JWKS is not a key set".into())
            })?;
            keys.1 = Some(Instant::now());
        }
        find_key(&keys.0, kid, alg)?
            .ok_or_else(|| ProviderError::IdToken("no key of the provider has its kid".into()))
    }

    async fn get_json(&self, url: &str) -> Result<Value, ProviderError> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ProviderError::Unavailable(format!("{url}: {e}")))?;
        let (status, body) = send(&self.http, request).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "{url} answered {status}"
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable(format!("{url} did not answer JSON")))
    }

    /// Who the API server says `token` is (a SelfSubjectReview made with it): the name and
    /// groups of an OAuth session, and the proof that the API server accepts the token at all.
    pub async fn who_is(&self, token: &str) -> Result<(String, Vec<String>), ProviderError> {
        let (Protocol::OAuth { discovery_base, .. }, Some(client)) =
            (&self.config.protocol, &self.api_http)
        else {
            return Err(ProviderError::Unavailable("no API server to ask".into()));
        };
        let url = format!("{discovery_base}/apis/authentication.k8s.io/v1/selfsubjectreviews");
        let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
        let request = http::Request::post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(axum::body::Body::from(body))
            .map_err(|e| ProviderError::Unavailable(format!("{url}: {e}")))?;
        let (status, body) = send(client, request).await?;
        if status == 401 {
            return Err(ProviderError::Refused(
                "the API server does not accept the provider's token".into(),
            ));
        }
        if status != 201 && status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "{url} answered {status}"
            )));
        }
        let review: Value = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable(format!("{url} did not answer JSON")))?;
        let user = &review["status"]["userInfo"];
        let groups = user["groups"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            user["username"].as_str().unwrap_or_default().to_string(),
            groups,
        ))
    }

    async fn get_api_json(&self, url: &str) -> Result<Value, ProviderError> {
        let Some(client) = &self.api_http else {
            return self.get_json(url).await;
        };
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(axum::body::Body::empty())
            .map_err(|e| ProviderError::Unavailable(format!("{url}: {e}")))?;
        let (status, body) = send(client, request).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "{url} answered {status}"
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable(format!("{url} did not answer JSON")))
    }
}

fn find_key(
    set: &JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<DecodingKey>, ProviderError> {
    let candidates: Vec<_> = set
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
        .collect();
    // Without a kid, only an unambiguous set will do.
    let Some(jwk) = (match (kid, candidates.as_slice()) {
        (None, [one]) | (Some(_), [one, ..]) => Some(*one),
        _ => None,
    }) else {
        return Ok(None);
    };
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return Err(ProviderError::IdToken(
            "its algorithm is not its key's".into(),
        ));
    }
    DecodingKey::from_jwk(jwk)
        .map(Some)
        .map_err(|_| ProviderError::Unavailable("a JWKS key cannot be used".into()))
}

fn https_field(doc: &Value, name: &str) -> Result<String, ProviderError> {
    let value = doc[name].as_str().ok_or_else(|| {
        ProviderError::Unavailable(format!("the discovery document has no {name}"))
    })?;
    let url = url::Url::parse(value)
        .map_err(|_| ProviderError::Unavailable(format!("{name} is not a URL")))?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]");
    if url.scheme() != "https" && !loopback {
        return Err(ProviderError::Unavailable(format!(
            "{name} is not an https URL"
        )));
    }
    Ok(value.to_string())
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    B64.encode(sha256(verifier.as_bytes()))
}

/// One request to the provider or the API server, bounded in time and size. Generic over the
/// request body because the provider's client sends `Full` bodies and the API server's the
/// gateway's own `Body`.
async fn send<B>(
    client: &Client<crate::upstream::Connector, B>,
    request: http::Request<B>,
) -> Result<(u16, Bytes), ProviderError>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The URL names only the provider's endpoint, never a token.
    let uri = request.uri().clone();
    let response = tokio::time::timeout(PROVIDER_TIMEOUT, client.request(request))
        .await
        .map_err(|_| ProviderError::Unavailable(format!("{uri} did not answer in time")))?
        .map_err(|e| ProviderError::Unavailable(format!("{uri}: {e}")))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|_| ProviderError::Unavailable(format!("{uri}: response too large")))?
        .to_bytes();
    Ok((status, body))
}

fn https_client(ca_file: Option<&PathBuf>) -> Result<ProviderClient, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?,
        None => crate::upstream::native_roots(),
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ConfigError::Invalid(
            "no CA certificate to verify the identity provider (set --signin-ca-file)".into(),
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConfigError::Invalid(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(crate::upstream::http1_client(tls, PROVIDER_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn discovery_endpoints_must_be_https_unless_loopback() {
        let doc = serde_json::json!({
            "a": "https://idp.example.com/auth",
            "b": "http://idp.example.com/auth",
            "c": "http://127.0.0.1:5556/auth",
            "d": "javascript:alert(1)",
        });
        assert!(https_field(&doc, "a").is_ok());
        assert!(https_field(&doc, "b").is_err());
        assert!(https_field(&doc, "c").is_ok());
        assert!(https_field(&doc, "d").is_err());
        assert!(https_field(&doc, "missing").is_err());
    }
}
