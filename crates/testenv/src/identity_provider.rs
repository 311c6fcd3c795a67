//! A real OpenID Connect provider for tests and the demo: Dex (built by `testenv/build-dex.sh`),
//! served on loopback with a certificate from the test CA, with static clients and a static user
//! whose password is random per run. [`authentication_config`] is the kube-apiserver
//! `AuthenticationConfiguration` that makes the control plane trust it, and
//! [`IdentityProvider::sign_in`] gets an ID token the way a browser would: through Dex's own
//! login form, then the authorization code exchange.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use url::Url;

use crate::Error;
use crate::binaries::repo_root;
use crate::certs::Authority;
use crate::control_plane::{free_port, random_suffix};

/// The client ID the API server accepts as audience (the gateway's, later).
pub const CLIENT_ID: &str = "virt-gateway";
/// A second registered client: its tokens carry another audience, which the API server refuses.
pub const OTHER_CLIENT_ID: &str = "another-app";
/// The static user's e-mail, which is also the Kubernetes user name (after [`USERNAME_PREFIX`]).
pub const USER_EMAIL: &str = "alice@virt-gateway.test";
/// A second static user with the same password. Dex keeps one refresh token per user and
/// client: a sign-in replaces (deletes) the refresh token of that user's earlier sign-in, so a
/// test that refreshes must not share its user with tests signing in at the same time.
pub const SECOND_USER_EMAIL: &str = "bob@virt-gateway.test";
/// Dex's built-in test connector `mockCallback` signs in this fixed user, with groups. Dex
/// v2.41's static passwords carry no groups, so this is how a groups claim is tested.
pub const GROUPS_USER_EMAIL: &str = "kilgore@kilgore.trout";
/// The groups the `mockCallback` connector puts in its user's token.
pub const GROUPS_USER_GROUPS: &[&str] = &["authors"];
/// Prefix the API server puts before the `email` claim to make the user name, so provider users
/// can never pass for `system:` users or client-certificate users.
pub const USERNAME_PREFIX: &str = "oidc:";
/// Prefix the API server puts before each `groups` claim value (`system:masters` stays out).
pub const GROUPS_PREFIX: &str = "oidc:";
/// The redirect URI registered for both clients. Nothing listens there: sign-in stops at the
/// redirect and reads the code from its `Location`.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// How to run one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSettings {
    /// A short name (file names, logs).
    pub name: String,
    /// Dex's `expiry.idTokens`, a Go duration. A negative one ("-1h") makes every ID token
    /// expired when issued: the honest way to get an expired token from the real provider.
    pub id_token_lifetime: String,
    /// Redirect URIs registered for both clients besides [`REDIRECT_URI`] (a gateway's
    /// `/auth/callback`).
    pub redirect_uris: Vec<String>,
}

impl ProviderSettings {
    /// A provider issuing ID tokens valid for an hour.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            id_token_lifetime: "1h".to_string(),
            redirect_uris: Vec::new(),
        }
    }
}

/// A registered (static) client.
#[derive(Clone, Debug)]
pub struct StaticClient {
    /// Client ID, the `aud` of its ID tokens.
    pub id: String,
    /// Client secret (random per run).
    pub secret: String,
}

/// How the person signs in at the provider.
#[derive(Clone, Debug)]
pub enum Login<'a> {
    /// Dex's password form (the `local` connector, static passwords).
    Password {
        /// The e-mail typed in the form.
        email: &'a str,
        /// The password typed in the form.
        password: &'a str,
    },
    /// Dex's `mockCallback` test connector: no form, a fixed user with groups.
    TestUserWithGroups,
}

/// The tokens of a successful sign-in.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Tokens {
    /// The ID token (a JWT signed by the provider): what Kubernetes authenticates.
    pub id_token: String,
    /// The provider's access token (opaque to Kubernetes).
    pub access_token: String,
}

/// A running Dex. Its process belongs to whoever started it (the control plane keeps it in its
/// process list, so it stops after the API server that uses it).
#[derive(Clone, Debug)]
pub struct IdentityProvider {
    name: String,
    issuer: String,
    ca_pem: String,
    client: StaticClient,
    other_client: StaticClient,
    password: String,
    config_path: PathBuf,
    log_path: PathBuf,
}

impl IdentityProvider {
    /// Writes the certificate, key and Dex configuration under `dir` and picks a port. Start the
    /// process with [`IdentityProvider::command_args`], then wait with
    /// [`IdentityProvider::wait_ready`].
    pub fn prepare(dir: &Path, ca: &Authority, settings: &ProviderSettings) -> Result<Self, Error> {
        let dir = dir.join(format!("idp-{}", settings.name));
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let port = free_port()?;
        let issuer = format!("https://127.0.0.1:{port}");
        let serving = ca.serving(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])?;
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        write(&cert, &serving.cert_pem)?;
        write(&key, &serving.key_pem)?;
        let provider = Self {
            name: settings.name.clone(),
            issuer,
            ca_pem: ca.cert_pem(),
            client: StaticClient {
                id: CLIENT_ID.to_string(),
                secret: random_suffix(32),
            },
            other_client: StaticClient {
                id: OTHER_CLIENT_ID.to_string(),
                secret: random_suffix(32),
            },
            password: random_suffix(20),
            config_path: dir.join("config.yaml"),
            log_path: dir.join("dex.log"),
        };
        let hash = bcrypt::hash(&provider.password, 10)
            .map_err(|e| Error::Config(format!("cannot hash the test user's password: {e}")))?;
        let config = provider.dex_config(port, &cert, &key, &hash, settings);
        write(&provider.config_path, &config)?;
        Ok(provider)
    }

    /// The arguments of `dex` to serve this provider.
    pub fn command_args(&self) -> Vec<String> {
        vec!["serve".to_string(), self.config_path.display().to_string()]
    }

    /// Where the process should write its log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The name given in [`ProviderSettings`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The issuer URL, `https://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The CA certificate (PEM) that signed the provider's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The client the API server accepts tokens for.
    pub fn client(&self) -> &StaticClient {
        &self.client
    }

    /// Another registered client, whose tokens the API server must refuse.
    pub fn other_client(&self) -> &StaticClient {
        &self.other_client
    }

    /// The static user's password (random per run).
    pub fn user_password(&self) -> &str {
        &self.password
    }

    /// The Kubernetes user name the static user gets.
    pub fn kubernetes_username(&self) -> String {
        format!("{USERNAME_PREFIX}{USER_EMAIL}")
    }

    /// Dex's configuration: in-memory storage, HTTPS only, no approval screen, the password
    /// database with two users, and the `mockCallback` connector for a user with groups.
    fn dex_config(
        &self,
        port: u16,
        cert: &Path,
        key: &Path,
        hash: &str,
        settings: &ProviderSettings,
    ) -> String {
        let mut redirect_uris = vec![REDIRECT_URI.to_string()];
        redirect_uris.extend(settings.redirect_uris.iter().cloned());
        let clients: Vec<_> = [&self.client, &self.other_client]
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id, "secret": c.secret, "name": c.id,
                    "redirectURIs": redirect_uris,
                })
            })
            .collect();
        let users = [(USER_EMAIL, "alice"), (SECOND_USER_EMAIL, "bob")].map(|(email, name)| {
            serde_json::json!({
                "email": email,
                "hash": hash,
                "username": name,
                "userID": format!("{name}-{}", random_suffix(8)),
            })
        });
        let config = serde_json::json!({
            "issuer": self.issuer,
            "storage": {"type": "memory"},
            "web": {
                "https": format!("127.0.0.1:{port}"),
                "tlsCert": cert.display().to_string(),
                "tlsKey": key.display().to_string(),
            },
            "logger": {"level": "info", "format": "text"},
            "oauth2": {"skipApprovalScreen": true, "responseTypes": ["code"]},
            "expiry": {"idTokens": settings.id_token_lifetime},
            "staticClients": clients,
            "enablePasswordDB": true,
            "staticPasswords": users,
            "connectors": [{"type": "mockCallback", "id": "mock", "name": "Test user with groups"}],
        });
        // JSON is YAML; Dex reads either.
        config.to_string()
    }

    /// Waits until the discovery document answers with this issuer.
    pub async fn wait_ready(&self) -> Result<(), String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let (status, _, body) = self.http_get(&url).await?;
        if status != 200 {
            return Err(format!("discovery answered {status}"));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("discovery is not JSON: {e}"))?;
        if doc["issuer"] != self.issuer.as_str() {
            return Err(format!("discovery names issuer {}", doc["issuer"]));
        }
        Ok(())
    }

    /// Signs in as a browser would, for `client`: the authorization request, the provider's
    /// login form (for [`Login::Password`]), the redirect with the code, and the code exchange
    /// with the client secret. Errors say which step refused and why.
    pub async fn sign_in(&self, client: &StaticClient, login: Login<'_>) -> Result<Tokens, String> {
        let connector = match login {
            Login::Password { .. } => "local",
            Login::TestUserWithGroups => "mock",
        };
        let state = random_suffix(16);
        let mut url =
            Url::parse(&format!("{}/auth/{connector}", self.issuer)).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile groups")
            .append_pair("state", &state)
            .append_pair("nonce", &random_suffix(16));
        let callback = self.authorize_with(url, login, REDIRECT_URI).await?;
        let params: std::collections::HashMap<_, _> = callback.query_pairs().into_owned().collect();
        if params.get("state") != Some(&state) {
            return Err("the callback carries another state".to_string());
        }
        let code = params
            .get("code")
            .ok_or_else(|| format!("the callback has no code: {:?}", params.get("error")))?;
        self.exchange(client, code).await
    }

    /// Signs in as a browser would, starting from an authorization URL that a client (a gateway's
    /// `/auth/login`) made: the provider's pages for `login` (the connector is chosen as a person
    /// would click it), up to the provider's redirect to `redirect_uri`, whose URL (with `code` and
    /// `state`, or `error`) is returned without being requested.
    pub async fn authorize(
        &self,
        authorization_url: &str,
        login: Login<'_>,
        redirect_uri: &str,
    ) -> Result<Url, String> {
        let mut url = Url::parse(authorization_url).map_err(|e| e.to_string())?;
        let connector = match login {
            Login::Password { .. } => "local",
            Login::TestUserWithGroups => "mock",
        };
        if url.path() == "/auth" {
            url.set_path(&format!("/auth/{connector}"));
        }
        self.authorize_with(url, login, redirect_uri).await
    }

    async fn authorize_with(
        &self,
        url: Url,
        login: Login<'_>,
        redirect_uri: &str,
    ) -> Result<Url, String> {
        let mut page = self.follow(url, redirect_uri).await?;
        if let Login::Password { email, password } = login {
            let (form_url, status) = match &page {
                Landing::Page { url, status, body } => (form_action(url, body)?, *status),
                Landing::Callback(_) => return Err("no login form was shown".to_string()),
            };
            if status != 200 {
                return Err(format!("the login form answered {status}"));
            }
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("login", email)
                .append_pair("password", password)
                .finish();
            let (status, location, body) = self.http_post(form_url.as_str(), None, form).await?;
            page = match location {
                Some(next) if (300..400).contains(&status) => {
                    self.follow(
                        form_url.join(&next).map_err(|e| e.to_string())?,
                        redirect_uri,
                    )
                    .await?
                }
                _ => {
                    return Err(format!(
                        "the login form refused the credentials ({status}): {}",
                        page_error(&body)
                    ));
                }
            };
        }
        match page {
            Landing::Callback(url) => Ok(url),
            Landing::Page { status, body, .. } => Err(format!(
                "sign-in did not come back to the client ({status}): {}",
                page_error(&body)
            )),
        }
    }

    async fn exchange(&self, client: &StaticClient, code: &str) -> Result<Tokens, String> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", REDIRECT_URI)
            .finish();
        let basic = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", client.id, client.secret))
        };
        let url = format!("{}/token", self.issuer);
        let (status, _, body) = self.http_post(&url, Some(&basic), form).await?;
        if status != 200 {
            return Err(format!(
                "the token endpoint answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("token response: {e}"))
    }

    /// GETs `url` and follows redirects on the provider, stopping at the client's redirect URI.
    async fn follow(&self, mut url: Url, redirect_uri: &str) -> Result<Landing, String> {
        for _ in 0..10 {
            if url.as_str().starts_with(redirect_uri) {
                return Ok(Landing::Callback(url));
            }
            let (status, location, body) = self.http_get(url.as_str()).await?;
            match location {
                Some(next) if (300..400).contains(&status) => {
                    url = url.join(&next).map_err(|e| e.to_string())?;
                }
                _ => return Ok(Landing::Page { url, status, body }),
            }
        }
        Err("too many redirects".to_string())
    }

    async fn http_get(&self, url: &str) -> Result<Response, String> {
        let request = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.send(request).await
    }

    async fn http_post(
        &self,
        url: &str,
        basic: Option<&str>,
        form: String,
    ) -> Result<Response, String> {
        let mut request =
            http::Request::post(url).header("content-type", "application/x-www-form-urlencoded");
        if let Some(basic) = basic {
            request = request.header("authorization", format!("Basic {basic}"));
        }
        let request = request
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        self.send(request).await
    }

    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Response, String> {
        let uri = request.uri().clone();
        // Only this provider (same scheme, host and port): never send the person's password or
        // a code anywhere else, whatever a redirect says.
        let same_origin = match (Url::parse(&uri.to_string()), Url::parse(&self.issuer)) {
            (Ok(target), Ok(issuer)) => target.origin() == issuer.origin(),
            _ => false,
        };
        if !same_origin {
            return Err(format!(
                "refusing to send a request outside the provider: {uri}"
            ));
        }
        let response = https_client(&self.ca_pem)?
            .request(request)
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, location, body))
    }
}

type Response = (u16, Option<String>, Bytes);

enum Landing {
    /// The provider's redirect to the client, with `code` and `state`.
    Callback(Url),
    /// A page of the provider (the login form, or an error page).
    Page { url: Url, status: u16, body: Bytes },
}

/// The `action` of the page's first form, resolved against the page URL.
fn form_action(page: &Url, body: &[u8]) -> Result<Url, String> {
    let html = String::from_utf8_lossy(body);
    let form = html
        .find("<form")
        .ok_or_else(|| "the provider's page has no form".to_string())?;
    let rest = &html[form..];
    let action = rest
        .find("action=\"")
        .map(|i| &rest[i + 8..])
        .and_then(|a| a.find('"').map(|end| &a[..end]))
        .ok_or_else(|| "the login form has no action".to_string())?;
    page.join(&action.replace("&amp;", "&"))
        .map_err(|e| e.to_string())
}

/// The error text of a Dex page, for messages (Dex shows it in `<div class="dex-error-box">`).
fn page_error(body: &[u8]) -> String {
    let html = String::from_utf8_lossy(body);
    match html.find("dex-error-box") {
        Some(i) => html[i..]
            .split('>')
            .nth(1)
            .and_then(|t| t.split('<').next())
            .unwrap_or("")
            .trim()
            .to_string(),
        None => html.chars().take(200).collect(),
    }
}

fn https_client(
    ca_pem: &str,
) -> Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// The kube-apiserver `AuthenticationConfiguration` (structured authentication) trusting
/// `providers`: each issuer with its CA, the audience [`CLIENT_ID`], the user name from the
/// verified `email` claim and the groups from the `groups` claim, both prefixed.
pub fn authentication_config(providers: &[IdentityProvider]) -> String {
    let jwt: Vec<_> = providers
        .iter()
        .map(|p| {
            serde_json::json!({
                "issuer": {
                    "url": p.issuer,
                    "audiences": [CLIENT_ID],
                    "audienceMatchPolicy": "MatchAny",
                    "certificateAuthority": p.ca_pem,
                },
                "claimMappings": {
                    "username": {"claim": "email", "prefix": USERNAME_PREFIX},
                    "groups": {"claim": "groups", "prefix": GROUPS_PREFIX},
                },
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": jwt,
    })
    .to_string()
}

/// Finds Dex, building it first if it is not cached yet (progress goes to stderr).
pub fn ensure_dex() -> Result<PathBuf, Error> {
    let script = repo_root().join("testenv/build-dex.sh");
    let dex = crate::binaries::run_build_script(&script)?.join("dex");
    if !dex.is_file() {
        return Err(Error::Binaries(format!("{} is missing", dex.display())));
    }
    Ok(dex)
}

fn write(path: &Path, content: &str) -> Result<(), Error> {
    std::fs::write(path, content).map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str) -> IdentityProvider {
        let client = StaticClient {
            id: CLIENT_ID.to_string(),
            secret: "s".to_string(),
        };
        IdentityProvider {
            name: "t".to_string(),
            issuer: issuer.to_string(),
            ca_pem: String::new(),
            client: client.clone(),
            other_client: client,
            password: "p".to_string(),
            config_path: PathBuf::new(),
            log_path: PathBuf::new(),
        }
    }

    #[tokio::test]
    async fn requests_go_to_the_provider_only() {
        let idp = provider("https://127.0.0.1:3000");
        // A port that merely starts with the provider's, another host, plain HTTP.
        for url in [
            "https://127.0.0.1:30001/auth",
            "https://127.0.0.2:3000/auth",
            "http://127.0.0.1:3000/auth",
        ] {
            let err = idp.http_get(url).await.expect_err(url);
            assert!(err.starts_with("refusing"), "{url}: {err}");
        }
    }

    #[test]
    fn the_form_action_is_unescaped_and_resolved_against_the_page() {
        let page = Url::parse("https://127.0.0.1:3000/auth/local?x=1").unwrap();
        let html = br#"<html><form method="post" action="/auth/local/login?back=&amp;state=abc">"#;
        assert_eq!(
            form_action(&page, html).unwrap().as_str(),
            "https://127.0.0.1:3000/auth/local/login?back=&state=abc"
        );
        assert!(form_action(&page, b"<html>no form</html>").is_err());
    }
}
