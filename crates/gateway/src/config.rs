//! The validated [`Config`], built from the command line ([`crate::cli::Cli`]) by one validation
//! function per concern: listeners, paths, keys and mode, revocation, the API server.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use virt_gateway_api::names::is_dns_label;

use crate::audit::AuditSink;
use crate::cli::{Cli, normalize_args, unknown_go_flags};
use crate::error::ConfigError;

/// Default location of the in-cluster ServiceAccount credentials.
pub const IN_CLUSTER_SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Listen scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS with the certificate and key files.
    Https,
}

/// A parsed `-listen` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// http or https.
    pub scheme: Scheme,
    /// Host (name or IP literal, without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ListenAddr {
    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (IPv6 hosts in brackets).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            ConfigError::Invalid(format!(
                "-listen {text:?}: expected http://HOST:PORT or https://HOST:PORT"
            ))
        })?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "-listen {text:?}: unknown URL scheme {other:?} (use http or https)"
                )));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = split_host_port(rest).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "-listen {text:?}: expected HOST:PORT after the scheme"
            ))
        })?;
        Ok(Self { scheme, host, port })
    }
}

/// Splits `HOST:PORT` / `[v6]:PORT`.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host.to_string(), after.strip_prefix(':')?)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        (host.to_string(), port)
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Main listener.
    pub listen: ListenAddr,
    /// Metrics listener (host, port).
    pub metrics_listen: Option<(String, u16)>,
    /// Static web root.
    pub public_dir: PathBuf,
    /// Mount point of the static files, starting and ending with `/`.
    pub base_path: String,
    /// Mount point of the API proxy, starting and ending with `/` (e.g. `/k8s/`).
    pub api_path: String,
    /// API server base URL, without a trailing slash.
    pub api_server: String,
    /// CA bundle for the API server.
    pub ca_file: Option<PathBuf>,
    /// Skip verification of the API server's certificate.
    pub skip_verify_tls: bool,
    /// Serving certificate (https).
    pub cert_file: PathBuf,
    /// Serving key (https).
    pub key_file: PathBuf,
    /// Verification key files (the Gen B one first, then the extra ones).
    pub jwt_key_files: Vec<PathBuf>,
    /// ServiceAccount token file for forwarded requests.
    pub bearer_token_file: Option<PathBuf>,
    /// Pass the caller's token through unchecked.
    pub passthrough: bool,
    /// Namespaces watched for revocation (`*` = all); empty = off.
    pub revocation_namespaces: Vec<String>,
    /// Token verification leeway.
    pub jwt_leeway: Duration,
    /// Request-head size limit.
    pub max_header_bytes: usize,
    /// Request-head (and TLS handshake) timeout.
    pub header_read_timeout: Duration,
    /// Upstream response-header timeout.
    pub request_timeout: Duration,
    /// Graceful shutdown drain time.
    pub shutdown_timeout: Duration,
    /// File reload polling interval.
    pub reload_interval: Duration,
    /// /auth/gettoken wait bound.
    pub gettoken_timeout: Duration,
    /// Redirect target of /auth/jwt/set.
    pub client_path: String,
    /// Concurrent connections on the main listener.
    pub max_connections: usize,
    /// How long the revocation watch may be broken before tokens are refused.
    pub revocation_max_staleness: Duration,
    /// Open WebSocket sessions in total.
    pub max_websockets: usize,
    /// Open WebSocket sessions of one token.
    pub max_websockets_per_token: usize,
    /// A WebSocket session without traffic for this long is closed (`None`: never).
    pub websocket_idle_timeout: Option<Duration>,
    /// A WebSocket session is closed this long after it opened (`None`: at token expiry only).
    pub websocket_max_duration: Option<Duration>,
    /// Time a request body has to arrive.
    pub body_read_timeout: Duration,
    /// Audit records per second of refusals without a verified token (`0`: unlimited).
    pub audit_unauthenticated_rate: u32,
    /// Which tokens are accepted by their `aud` and `iss`.
    pub audience: virt_gateway_auth::jwt::AudiencePolicy,
    /// Serve /.well-known/jwks.json.
    pub publish_jwks: bool,
    /// One upstream VNC connection per VMI, shared by its viewers.
    pub shared_consoles: bool,
    /// Who of several controllers of a shared console drives.
    pub console_controllers: virt_gateway_console::ControllerPolicy,

    /// Coordination of shared consoles between replicas (`None`: this replica serves alone).
    pub console_replicas: Option<ConsoleReplicas>,
    /// Origins besides the gateway's own allowed to use the session cookie (normalised).
    pub allowed_origins: Vec<String>,
    /// How long an unknown `jti` waits for the revocation index to catch up before it is refused.
    pub revocation_grace: Duration,
    /// Signing in with the identity provider, when configured.
    pub signin: Option<crate::oidc::SignInConfig>,
    /// Where audit lines go.
    pub audit: AuditSink,
    /// Notes for the startup log (ignored flags and similar), logged once by [`crate::Gateway::bind`].
    pub notes: Vec<String>,
}

/// Listeners: `-listen` and the metrics listener.
fn validate_listeners(cli: &Cli) -> Result<(ListenAddr, Option<(String, u16)>), ConfigError> {
    let listen = ListenAddr::parse(&cli.listen)?;
    let metrics_listen = match cli
        .metrics_listen
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(text) => {
            let bare = text
                .strip_prefix("http://")
                .unwrap_or(text)
                .trim_end_matches('/');
            let hp = split_host_port(bare).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "KUBE_GATEWAY_METRICS_LISTEN {text:?}: expected HOST:PORT"
                ))
            })?;
            if hp.0 == listen.host && hp.1 == listen.port && hp.1 != 0 {
                return Err(ConfigError::Invalid(
                    "the metrics listen address must differ from -listen".into(),
                ));
            }
            Some(hp)
        }
    };
    Ok((listen, metrics_listen))
}

/// URL paths: `-api-path`, `-base-path`, `--client-path`. Returns (api path, base path).
fn validate_paths(cli: &Cli) -> Result<(String, String), ConfigError> {
    let api_path = cli.api_path.clone();
    if !api_path.starts_with('/')
        || !api_path.ends_with('/')
        || api_path.len() < 3
        || api_path.contains("//")
    {
        return Err(ConfigError::Invalid(format!(
            "-api-path {api_path:?} must start and end with '/' and name a path, e.g. /k8s/"
        )));
    }
    let mut base_path = cli.base_path.clone();
    if !base_path.starts_with('/') {
        return Err(ConfigError::Invalid(format!(
            "-base-path {base_path:?} must start with '/'"
        )));
    }
    if !base_path.ends_with('/') {
        base_path.push('/');
    }
    if base_path != "/" && base_path.starts_with(&api_path) {
        return Err(ConfigError::Invalid(format!(
            "-base-path {base_path:?} lies under -api-path {api_path:?}: its files would be unreachable"
        )));
    }
    if !cli.client_path.starts_with('/') || cli.client_path.starts_with("//") {
        return Err(ConfigError::Invalid(format!(
            "--client-path {:?} must be a local path starting with a single '/'",
            cli.client_path
        )));
    }
    Ok((api_path, base_path))
}

/// Keys and mode: pass-through, the key files, the (ignored) key algorithm.
/// Returns (pass-through, key files).
fn validate_keys_and_mode(
    cli: &Cli,
    notes: &mut Vec<String>,
) -> Result<(bool, Vec<PathBuf>), ConfigError> {
    let passthrough = cli.k8s_bearer_token_passthrough != "false";
    if passthrough
        && !matches!(
            cli.k8s_bearer_token_passthrough.as_str(),
            "true" | "1" | "yes"
        )
    {
        notes.push(format!(
            "-k8s-bearer-token-passthrough={:?} enables pass-through (any value other than \"false\" does, as upstream)",
            cli.k8s_bearer_token_passthrough
        ));
    }
    let alg = cli.jwt_token_key_alg.trim();
    if alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
        return Err(ConfigError::Invalid(format!(
            "-jwt-token-key-alg={alg}: HMAC tokens are not supported (verification keys are public); use an RSA, ECDSA P-256 or Ed25519 public key"
        )));
    }
    if !alg.eq_ignore_ascii_case("RS265") && !alg.eq_ignore_ascii_case("RS256") {
        notes.push(format!(
            "-jwt-token-key-alg={alg} is ignored: the algorithm is fixed by each key's type"
        ));
    }
    let mut jwt_key_files: Vec<PathBuf> = cli.jwt_token_key_file.iter().cloned().collect();
    for f in cli
        .jwt_key_files
        .iter()
        .filter(|p| !p.as_os_str().is_empty())
    {
        if !jwt_key_files.contains(f) {
            jwt_key_files.push(f.clone());
        }
    }
    if passthrough {
        if !jwt_key_files.is_empty() {
            notes.push("pass-through is on: the JWT verification keys are only published at /.well-known/jwks.json, not used to check requests".into());
        }
    } else if jwt_key_files.is_empty() {
        return Err(ConfigError::Invalid(
            "no JWT verification key: set -jwt-token-key-file (and/or KUBE_GATEWAY_JWT_KEY_FILES), or enable -k8s-bearer-token-passthrough".into(),
        ));
    }
    Ok((passthrough, jwt_key_files))
}

/// The revocation watch's namespaces.
fn validate_revocation(cli: &Cli, passthrough: bool) -> Result<Vec<String>, ConfigError> {
    let namespaces: Vec<String> = cli
        .revocation_namespaces
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    for ns in &namespaces {
        if ns != "*" && !is_dns_label(ns) {
            return Err(ConfigError::Invalid(format!(
                "KUBE_GATEWAY_REVOCATION_NAMESPACES: {ns:?} is not a namespace name"
            )));
        }
    }
    if namespaces.len() > 1 && namespaces.iter().any(|n| n == "*") {
        return Err(ConfigError::Invalid(
            "KUBE_GATEWAY_REVOCATION_NAMESPACES: '*' (all namespaces) cannot be combined with named namespaces".into(),
        ));
    }
    if passthrough && !namespaces.is_empty() {
        return Err(ConfigError::Invalid(
            "contradictory settings: -k8s-bearer-token-passthrough forwards tokens unchecked, so the revocation watch (KUBE_GATEWAY_REVOCATION_NAMESPACES) cannot apply; set one or the other".into(),
        ));
    }
    Ok(namespaces)
}

/// The API server and the credentials for it: the flags, else the in-cluster address, CA and
/// token. Returns (URL, CA file, token file).
fn validate_api_server(
    cli: &Cli,
    passthrough: bool,
    env: &dyn Fn(&str) -> Option<String>,
    exists: &dyn Fn(&str) -> bool,
    notes: &mut Vec<String>,
) -> Result<(String, Option<PathBuf>, Option<PathBuf>), ConfigError> {
    let mut ca_file = cli.ca_file.clone();
    let mut bearer_token_file = cli.k8s_bearer_token_file.clone();
    let api_server = match cli
        .api_server
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
            let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
            let (Some(host), Some(port)) = (host, port) else {
                return Err(ConfigError::Invalid(
                    "missing API server address: set -api-server (or KUBE_GATEWAY_API_SERVER), or run inside a cluster".into(),
                ));
            };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let ca = format!("{IN_CLUSTER_SA_DIR}/ca.crt");
            if ca_file.is_none() && exists(&ca) {
                ca_file = Some(PathBuf::from(ca));
            }
            let token = format!("{IN_CLUSTER_SA_DIR}/token");
            if bearer_token_file.is_none() && !passthrough && exists(&token) {
                bearer_token_file = Some(PathBuf::from(token));
            }
            notes.push("no -api-server given: using the in-cluster API server".into());
            format!("https://{host}:{port}")
        }
    };
    let parsed: http::Uri = api_server
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("-api-server {api_server:?}: {e}")))?;
    if !matches!(parsed.scheme_str(), Some("https" | "http")) {
        return Err(ConfigError::Invalid(format!(
            "-api-server {api_server:?}: expected an http(s) URL"
        )));
    }
    if parsed.host().is_none() || parsed.query().is_some() {
        return Err(ConfigError::Invalid(format!(
            "-api-server {api_server:?}: expected https://HOST[:PORT][/PATH]"
        )));
    }
    if cli.skip_verify_tls && ca_file.is_some() {
        notes.push("-skip-verify-tls is set: the API server's certificate is not verified and -ca-file is unused".into());
    }
    if !passthrough && bearer_token_file.is_none() {
        notes.push("no -k8s-bearer-token-file: forwarded requests carry no credentials (the API server sees them as anonymous)".into());
    }
    Ok((api_server, ca_file, bearer_token_file))
}

/// `--audience`, `--issuer`, `--require-audience`.
fn validate_audience(cli: &Cli) -> Result<virt_gateway_auth::jwt::AudiencePolicy, ConfigError> {
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let audience = clean(&cli.audience);
    if cli.require_audience && audience.is_none() {
        return Err(ConfigError::Invalid(
            "--require-audience needs --audience (this gateway's audience)".into(),
        ));
    }
    Ok(virt_gateway_auth::jwt::AudiencePolicy {
        audience,
        issuer: clean(&cli.issuer),
        required: cli.require_audience,
    })
}

/// An absolute URL that is https, or http on a loopback host (development and tests).
fn secure_url(flag: &str, text: &str) -> Result<url::Url, ConfigError> {
    let url =
        url::Url::parse(text).map_err(|e| ConfigError::Invalid(format!("{flag} {text:?}: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(ConfigError::Invalid(format!(
            "{flag} {text:?}: expected an https URL (http only on loopback)"
        )));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::Invalid(format!(
            "{flag} {text:?}: no fragment or credentials allowed"
        )));
    }
    Ok(url)
}

fn clean(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn scope_list(flag: &str, scopes: &[String]) -> Result<Vec<String>, ConfigError> {
    let scopes: Vec<String> = scopes
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = scopes.iter().find(|s| {
        !s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    }) {
        return Err(ConfigError::Invalid(format!(
            "{flag}: {bad:?} is not a scope token"
        )));
    }
    Ok(scopes)
}

/// Sign-in: OIDC (`--oidc-*`) or the upstream OpenShift OAuth flags (`-oauth-*`, on unless
/// `-oauth-server-disable`, and only with a client secret), never both.
fn validate_signin(
    cli: &Cli,
    api_server: &str,
    notes: &mut Vec<String>,
) -> Result<Option<crate::oidc::SignInConfig>, ConfigError> {
    use crate::oidc::{ClientSecret, Protocol};
    let oauth_secret = match (
        clean(&cli.oauth_client_secret),
        &cli.oauth_client_secret_file,
    ) {
        (Some(v), _) => Some(ClientSecret::Value(v)),
        (None, Some(f)) => Some(ClientSecret::File(f.clone())),
        (None, None) => None,
    };
    let oidc = clean(&cli.oidc_issuer_url);
    let oauth = !cli.oauth_server_disable && oauth_secret.is_some();
    if oidc.is_none()
        && (clean(&cli.oidc_client_id).is_some() || cli.oidc_client_secret_file.is_some())
    {
        return Err(ConfigError::Invalid(
            "--oidc-client-id/--oidc-client-secret-file need --oidc-issuer-url".into(),
        ));
    }
    let (protocol, client_id, client_secret, scopes) = match (oidc, oauth) {
        (Some(_), true) => {
            return Err(ConfigError::Invalid(
                "both --oidc-issuer-url and the OpenShift OAuth flags are set: choose one (add -oauth-server-disable to sign in with OIDC)".into(),
            ));
        }
        (None, false) => {
            if !cli.oauth_server_disable {
                notes.push("OpenShift OAuth login is off: it needs -oauth-client-secret (or --oauth-client-secret-file) and --signin-key-file".into());
            }
            return Ok(None);
        }
        (Some(issuer), false) => {
            let url = secure_url("--oidc-issuer-url", &issuer)?;
            if url.query().is_some() {
                return Err(ConfigError::Invalid(
                    "--oidc-issuer-url must not have a query".into(),
                ));
            }
            let missing = |what: &str| {
                ConfigError::Invalid(format!("--oidc-issuer-url is set: {what} is required too"))
            };
            let client_id =
                clean(&cli.oidc_client_id).ok_or_else(|| missing("--oidc-client-id"))?;
            let secret = cli
                .oidc_client_secret_file
                .clone()
                .ok_or_else(|| missing("--oidc-client-secret-file"))?;
            let scopes = scope_list("--oidc-scopes", &cli.oidc_scopes)?;
            if !scopes.iter().any(|s| s == "openid") {
                return Err(ConfigError::Invalid(
                    "--oidc-scopes must include openid".into(),
                ));
            }
            // The issuer exactly as given: ID tokens must name it byte for byte.
            (
                Protocol::Oidc { issuer },
                client_id,
                ClientSecret::File(secret),
                scopes,
            )
        }
        (None, true) if cli.signin_key_file.is_none() => {
            // The upstream operator's command line has no sealing key: keep starting, without login.
            notes.push("OpenShift OAuth login is off: it needs --signin-key-file (the key sealing the session cookies)".into());
            return Ok(None);
        }
        (None, true) => {
            let endpoint = |flag: &str, v: &Option<String>| {
                clean(v)
                    .map(|u| secure_url(flag, &u).map(|_| u))
                    .transpose()
            };
            let protocol = Protocol::OAuth {
                auth_url: endpoint("-oauth-server-auth-url", &cli.oauth_server_auth_url)?,
                token_url: endpoint("-oauth-server-token-url", &cli.oauth_server_token_url)?,
                discovery_base: api_server.to_string(),
            };
            let client_id = cli.oauth_client_id.trim().to_string();
            if client_id.is_empty() {
                return Err(ConfigError::Invalid("-oauth-client-id is empty".into()));
            }
            let secret = oauth_secret.unwrap_or(ClientSecret::Value(String::new()));
            (
                protocol,
                client_id,
                secret,
                scope_list("--oauth-scopes", &cli.oauth_scopes)?,
            )
        }
    };
    let session_key_file = cli.signin_key_file.clone().ok_or_else(|| {
        ConfigError::Invalid("signing in needs --signin-key-file (the key sealing the session cookies; the same on every replica)".into())
    })?;
    let redirect = match clean(&cli.signin_redirect_url) {
        Some(r) => r,
        None => format!("{}/auth/callback", cli.base_address.trim_end_matches('/')),
    };
    let redirect_url = secure_url("--signin-redirect-url", &redirect)?;
    if redirect_url.path() != "/auth/callback" {
        return Err(ConfigError::Invalid(format!(
            "--signin-redirect-url {redirect:?} must end in /auth/callback (where the gateway answers)"
        )));
    }
    if cli.signin_session_max_age < Duration::from_secs(60) {
        return Err(ConfigError::Invalid(
            "--signin-session-max-age must be at least 1m".into(),
        ));
    }
    Ok(Some(crate::oidc::SignInConfig {
        protocol,
        client_id,
        client_secret,
        scopes,
        username_claim: cli.oidc_username_claim.trim().to_string(),
        groups_claim: cli.oidc_groups_claim.trim().to_string(),
        redirect_url: redirect_url.to_string(),
        ca_file: cli.signin_ca_file.clone(),
        session_key_file,
        session_max_age: cli.signin_session_max_age,
    }))
}

/// `--allowed-origins`, normalised.
/// Where the console Leases of the replicas live and who this replica is among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleReplicas {
    /// This replica's pod name: the Leases' holder identity.
    pub pod_name: String,
    /// The gateway's own namespace, where the Leases are.
    pub namespace: String,
    /// The IP address at which the other replicas reach this one.
    pub peer_ip: std::net::IpAddr,
    /// A Lease not renewed for this long may be taken over.
    pub lease_duration: Duration,
}

fn validate_console_replicas(
    cli: &Cli,
    scheme: Scheme,
    notes: &mut Vec<String>,
) -> Result<Option<ConsoleReplicas>, ConfigError> {
    let Some(address) = &cli.console_peer_address else {
        return Ok(None);
    };
    if !cli.shared_consoles {
        notes.push("--console-peer-address is ignored without --shared-consoles".into());
        return Ok(None);
    }
    // An IP only: a name would make a replica's address depend on DNS.
    let peer_ip: std::net::IpAddr = address.trim().parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "--console-peer-address: {address:?} is not an IP address (use the pod IP)"
        ))
    })?;
    // Replicas forward viewers' tokens to each other; only HTTPS proves the peer holds the
    // replicas' serving key. Plain HTTP stays on one machine (development and tests).
    if scheme == Scheme::Http && !peer_ip.is_loopback() {
        return Err(ConfigError::Invalid(format!(
            "--console-peer-address {peer_ip} over http: replicas forward viewers' tokens to each other, which over plain HTTP anyone who can write a Lease in the namespace could redirect; listen on https (the replicas' shared serving certificate), or use a loopback address for development"
        )));
    }
    let required = |value: &Option<String>, flag: &str| match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(ConfigError::Invalid(format!(
            "--console-peer-address needs {flag}"
        ))),
    };
    let lease_secs = cli.console_lease_duration.as_secs_f64().ceil().max(1.0);
    Ok(Some(ConsoleReplicas {
        pod_name: required(&cli.pod_name, "--pod-name")?,
        namespace: required(&cli.pod_namespace, "--pod-namespace")?,
        peer_ip,
        lease_duration: Duration::from_secs(lease_secs as u64),
    }))
}

fn validate_origins(cli: &Cli) -> Result<Vec<String>, ConfigError> {
    cli.allowed_origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .map(|o| {
            virt_gateway_api::names::normalize_origin(o).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--allowed-origins: {o:?} is not an origin; write scheme://host[:port]"
                ))
            })
        })
        .collect()
}

/// Limits and intervals.
fn validate_limits(cli: &Cli, notes: &mut Vec<String>) -> Result<Duration, ConfigError> {
    if cli.max_header_bytes < 8192 {
        return Err(ConfigError::Invalid(
            "--max-header-bytes must be at least 8192".into(),
        ));
    }
    if cli.reload_interval.is_zero() {
        return Err(ConfigError::Invalid(
            "--reload-interval must be greater than zero".into(),
        ));
    }
    let max = virt_gateway_auth::jwt::MAX_LEEWAY;
    if cli.jwt_leeway > max {
        notes.push(format!(
            "--jwt-leeway={}s is more than the {}s allowed; {}s is used",
            cli.jwt_leeway.as_secs(),
            max.as_secs(),
            max.as_secs()
        ));
    }
    Ok(cli.jwt_leeway.min(max))
}

impl Config {
    /// Validates the command line, reading the process environment for the in-cluster fallback.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        Self::from_cli_with_env(cli, &|name| std::env::var(name).ok(), &|p| {
            std::path::Path::new(p).exists()
        })
    }

    /// Validates the command line with an injected environment and file-existence check (tests).
    pub fn from_cli_with_env(
        cli: Cli,
        env: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        let mut notes = Vec::new();
        let (listen, metrics_listen) = validate_listeners(&cli)?;
        let (api_path, base_path) = validate_paths(&cli)?;
        let (passthrough, jwt_key_files) = validate_keys_and_mode(&cli, &mut notes)?;
        let revocation_namespaces = validate_revocation(&cli, passthrough)?;
        let (api_server, ca_file, bearer_token_file) =
            validate_api_server(&cli, passthrough, env, exists, &mut notes)?;
        let jwt_leeway = validate_limits(&cli, &mut notes)?;
        let allowed_origins = validate_origins(&cli)?;
        let audience = validate_audience(&cli)?;
        let signin = validate_signin(&cli, &api_server, &mut notes)?;
        let console_replicas = validate_console_replicas(&cli, listen.scheme, &mut notes)?;
        Ok(Self {
            console_replicas,
            signin,
            listen,
            metrics_listen,
            public_dir: cli.public_dir,
            base_path,
            api_path,
            api_server,
            ca_file,
            skip_verify_tls: cli.skip_verify_tls,
            cert_file: cli.cert_file,
            key_file: cli.key_file,
            jwt_key_files,
            bearer_token_file,
            passthrough,
            revocation_namespaces,
            jwt_leeway,
            max_header_bytes: cli.max_header_bytes,
            header_read_timeout: cli.header_read_timeout,
            request_timeout: cli.request_timeout,
            shutdown_timeout: cli.shutdown_timeout,
            reload_interval: cli.reload_interval,
            gettoken_timeout: cli.gettoken_timeout,
            client_path: cli.client_path,
            allowed_origins,
            publish_jwks: cli.publish_jwks,
            shared_consoles: cli.shared_consoles,
            console_controllers: cli.console_controllers,
            revocation_max_staleness: cli.revocation_max_staleness,
            max_connections: cli.max_connections.max(1),
            max_websockets: cli.max_websockets.max(1),
            max_websockets_per_token: cli.max_websockets_per_token.max(1),
            websocket_idle_timeout: (!cli.websocket_idle_timeout.is_zero())
                .then_some(cli.websocket_idle_timeout),
            websocket_max_duration: (!cli.websocket_max_duration.is_zero())
                .then_some(cli.websocket_max_duration),
            body_read_timeout: cli.body_read_timeout.max(Duration::from_millis(1)),
            audit_unauthenticated_rate: cli.audit_unauthenticated_rate,
            audience,
            revocation_grace: Duration::from_secs(2),
            audit: AuditSink::stdout(),
            notes,
        })
    }

    /// Parses argv (Go-style flags normalised first) and validates it.
    pub fn from_args<I, S>(args: I) -> Result<Self, CliError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let unknown = unknown_go_flags(&args);
        if !unknown.is_empty() {
            return Err(CliError::Config(ConfigError::Invalid(format!(
                "unknown flag(s): {} (see --help)",
                unknown.join(" ")
            ))));
        }
        let cli = Cli::try_parse_from(normalize_args(args)).map_err(CliError::Clap)?;
        Self::from_cli(cli).map_err(CliError::Config)
    }

    /// The API path prefix without its trailing slash (e.g. `/k8s`).
    pub fn api_prefix(&self) -> &str {
        self.api_path.trim_end_matches('/')
    }
}

/// A command-line error: clap's (usage, help, version) or a validation error.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Parsing failed, or help/version was requested.
    #[error("{0}")]
    Clap(clap::Error),
    /// The values do not make a valid configuration.
    #[error("{0}")]
    Config(ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_duration;

    fn parse(args: &[&str]) -> Result<Config, CliError> {
        let mut v = vec!["kube-gateway"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(normalize_args(v)).map_err(CliError::Clap)?;
        Config::from_cli_with_env(cli, &|_| None, &|_| false).map_err(CliError::Config)
    }

    #[test]
    fn gen_b_operator_command_line_is_accepted() {
        let c = parse(&[
            "-api-server=https://kubernetes.default.svc",
            "-ca-file=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            "-oauth-server-disable",
            "-base-address=https://route.example.com",
            "-listen=http://0.0.0.0:8080",
            "-jwt-token-key-file=/jwt-secret/cert.pem",
            "-k8s-bearer-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token",
            "-k8s-bearer-token-passthrough=false",
        ])
        .unwrap();
        assert_eq!(
            c.listen,
            ListenAddr {
                scheme: Scheme::Http,
                host: "0.0.0.0".into(),
                port: 8080
            }
        );
        assert_eq!(c.api_server, "https://kubernetes.default.svc");
        assert!(!c.passthrough);
        assert_eq!(c.jwt_key_files, vec![PathBuf::from("/jwt-secret/cert.pem")]);
        assert_eq!(c.api_path, "/k8s/");
        assert_eq!(c.api_prefix(), "/k8s");
    }

    /// Coordination between replicas needs shared consoles, an IP (not a name: DNS would
    /// choose where viewers go), the pod name and namespace; lease durations are whole seconds.
    #[test]
    fn console_replicas_need_shared_consoles_an_ip_and_the_pod() {
        let base = [
            "-api-server=https://kubernetes.default.svc",
            "-jwt-token-key-file=/jwt-secret/cert.pem",
            "-k8s-bearer-token-file=/token",
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let pod = ["--pod-name=gw-0", "--pod-namespace=ns"];
        let ok = with(
            &[
                &["--shared-consoles", "--console-peer-address=fd00::5"],
                &pod[..],
                &["--console-lease-duration=1500ms"],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(
            ok.console_replicas,
            Some(ConsoleReplicas {
                pod_name: "gw-0".into(),
                namespace: "ns".into(),
                peer_ip: "fd00::5".parse().unwrap(),
                lease_duration: Duration::from_secs(2),
            })
        );
        assert_eq!(with(&[]).unwrap().console_replicas, None);
        let ignored = with(&[&["--console-peer-address=10.0.0.5"], &pod[..]].concat()).unwrap();
        assert_eq!(ignored.console_replicas, None);
        assert!(
            ignored
                .notes
                .iter()
                .any(|n| n.contains("--console-peer-address"))
        );
        // Over plain HTTP only on one machine: replicas forward viewers' tokens to each other.
        let http = [
            "-listen=http://0.0.0.0:8080",
            "--shared-consoles",
            pod[0],
            pod[1],
        ];
        let err = with(&[&http[..], &["--console-peer-address=10.0.0.5"]].concat()).unwrap_err();
        assert!(err.to_string().contains("listen on https"), "{err}");
        let loopback = with(&[&http[..], &["--console-peer-address=127.0.0.2"]].concat()).unwrap();
        assert!(loopback.console_replicas.is_some());
        for bad in [
            vec![
                "--shared-consoles",
                "--console-peer-address=gw.example.com",
                pod[0],
                pod[1],
            ],
            vec![
                "--shared-consoles",
                "--console-peer-address=10.0.0.5",
                pod[0],
            ],
            vec![
                "--shared-consoles",
                "--console-peer-address=10.0.0.5",
                pod[1],
            ],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn boolean_flags_take_go_forms() {
        let base = ["-api-server=https://k", "-jwt-token-key-file=/k.pem"];
        let with = |extra: &str| {
            let mut a: Vec<&str> = base.to_vec();
            a.push(extra);
            parse(&a).unwrap()
        };
        assert!(with("-skip-verify-tls").skip_verify_tls);
        assert!(with("-skip-verify-tls=true").skip_verify_tls);
        assert!(!with("-skip-verify-tls=false").skip_verify_tls);
        assert!(with("--skip-verify-tls").skip_verify_tls);
    }

    #[test]
    fn passthrough_is_a_string_anything_but_false_enables() {
        let p = |v: &str| {
            parse(&[
                "-api-server=https://k",
                "-jwt-token-key-file=/k",
                &format!("-k8s-bearer-token-passthrough={v}"),
            ])
            .unwrap()
            .passthrough
        };
        assert!(p("true"));
        assert!(p("yes"));
        assert!(p("TRUE"));
        assert!(!p("false"));
        let c = parse(&[
            "-api-server=https://k",
            "-k8s-bearer-token-passthrough",
            "on",
        ])
        .unwrap();
        assert!(c.passthrough);
    }

    #[test]
    fn sign_in_flags_are_all_or_nothing_and_one_protocol() {
        let base = ["-api-server=https://k", "-jwt-token-key-file=/k"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let oidc = [
            "--oidc-issuer-url=https://dex.example.com",
            "--oidc-client-id=gw",
            "--oidc-client-secret-file=/s",
            "--signin-key-file=/key",
            "-base-address=https://gw.example.com",
        ];
        let config = with(&oidc).unwrap();
        let signin = config.signin.unwrap();
        assert_eq!(signin.redirect_url, "https://gw.example.com/auth/callback");
        assert!(matches!(
            signin.protocol,
            crate::oidc::Protocol::Oidc { .. }
        ));
        let error = |extra: &[&str]| match with(extra) {
            Err(CliError::Config(e)) => e.to_string(),
            other => panic!("{extra:?}: {other:?}"),
        };
        // Each required flag, an http issuer, scopes without openid, a redirect elsewhere.
        for missing in [
            "--oidc-client-id",
            "--oidc-client-secret-file",
            "--signin-key-file",
        ] {
            let args: Vec<&str> = oidc
                .iter()
                .copied()
                .filter(|a| !a.starts_with(missing))
                .collect();
            assert!(error(&args).contains(missing), "{missing}");
        }
        let replaced = |flag: &'static str| {
            let name = flag.split('=').next().unwrap_or_default();
            let mut args: Vec<&str> = oidc
                .iter()
                .copied()
                .filter(|a| !a.starts_with(name))
                .collect();
            args.push(flag);
            args
        };
        assert!(error(&replaced("--oidc-issuer-url=http://dex.example.com")).contains("https"));
        assert!(error(&replaced("--oidc-scopes=email")).contains("openid"));
        assert!(
            error(&replaced(
                "--signin-redirect-url=https://gw.example.com/elsewhere"
            ))
            .contains("/auth/callback")
        );
        assert!(error(&["--oidc-client-id=gw"]).contains("--oidc-issuer-url"));
        // OIDC and OpenShift OAuth together: choose one.
        let mut args = oidc.to_vec();
        args.push("-oauth-client-secret=s");
        assert!(error(&args).contains("choose one"));
        // OpenShift OAuth without a sealing key (the upstream command line): off, with a note.
        let config = with(&["-oauth-client-secret=s"]).unwrap();
        assert!(config.signin.is_none());
        assert!(
            config
                .notes
                .iter()
                .any(|n| n.contains("OpenShift OAuth login is off"))
        );
        let config = with(&["-oauth-client-secret=s", "--signin-key-file=/key"]).unwrap();
        let signin = config.signin.unwrap();
        assert!(matches!(
            signin.protocol,
            crate::oidc::Protocol::OAuth { auth_url: None, token_url: None, ref discovery_base }
                if discovery_base == "https://k"
        ));
        assert_eq!(signin.scopes, ["user:full"]);
        assert!(
            !format!("{:?}", signin.client_secret).contains('s'.to_string().as_str())
                || format!("{:?}", signin.client_secret) == "Value(<redacted>)"
        );
    }

    #[test]
    fn unknown_and_contradictory_flags_are_errors() {
        assert!(matches!(
            parse(&[
                "-api-server=https://k",
                "-jwt-token-key-file=/k",
                "-no-such-flag"
            ]),
            Err(CliError::Clap(_))
        ));
        assert!(matches!(
            parse(&[
                "-api-server=https://k",
                "-jwt-token-key-file=/k",
                "--no-such-flag"
            ]),
            Err(CliError::Clap(_))
        ));
        // pass-through with revocation
        let err = parse(&[
            "-api-server=https://k",
            "-k8s-bearer-token-passthrough=true",
            "--revocation-namespaces=a",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("contradictory"), "{err}");
        // HMAC
        let err = parse(&[
            "-api-server=https://k",
            "-jwt-token-key-file=/k",
            "-jwt-token-key-alg=HS256",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("HMAC"), "{err}");
        // no key and no pass-through
        let err = parse(&["-api-server=https://k"]).unwrap_err();
        assert!(err.to_string().contains("no JWT verification key"), "{err}");
        // bad scheme
        let err = parse(&[
            "-api-server=https://k",
            "-jwt-token-key-file=/k",
            "-listen=ftp://0.0.0.0:1",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("unknown URL scheme"), "{err}");
        // bad api path
        let err = parse(&[
            "-api-server=https://k",
            "-jwt-token-key-file=/k",
            "-api-path=k8s",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("-api-path"), "{err}");
        // bad namespace
        let err = parse(&[
            "-api-server=https://k",
            "-jwt-token-key-file=/k",
            "--revocation-namespaces=Bad_NS",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("not a namespace"), "{err}");
    }

    #[test]
    fn missing_api_server_uses_in_cluster_or_fails_clearly() {
        let cli = Cli::try_parse_from(normalize_args(["g", "-jwt-token-key-file=/k"])).unwrap();
        let err = Config::from_cli_with_env(cli.clone(), &|_| None, &|_| false).unwrap_err();
        assert!(
            err.to_string().contains("missing API server address"),
            "{err}"
        );
        let env = |n: &str| match n {
            "KUBERNETES_SERVICE_HOST" => Some("10.0.0.1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let c = Config::from_cli_with_env(cli, &env, &|_| true).unwrap();
        assert_eq!(c.api_server, "https://10.0.0.1:443");
        assert_eq!(
            c.ca_file,
            Some(PathBuf::from(format!("{IN_CLUSTER_SA_DIR}/ca.crt")))
        );
        assert_eq!(
            c.bearer_token_file,
            Some(PathBuf::from(format!("{IN_CLUSTER_SA_DIR}/token")))
        );
    }

    #[test]
    fn extension_lists_and_durations() {
        let c = parse(&[
            "-api-server=https://k/",
            "-jwt-token-key-file=/a.pem",
            "--jwt-key-files=/b.pem,/a.pem,/c.pem",
            "--revocation-namespaces=ns1, ns2",
            "--metrics-listen=127.0.0.1:9090",
            "--header-read-timeout=1500ms",
        ])
        .unwrap();
        assert_eq!(c.api_server, "https://k");
        assert_eq!(
            c.jwt_key_files,
            vec![
                PathBuf::from("/a.pem"),
                PathBuf::from("/b.pem"),
                PathBuf::from("/c.pem")
            ]
        );
        assert_eq!(c.revocation_namespaces, vec!["ns1", "ns2"]);
        assert_eq!(c.metrics_listen, Some(("127.0.0.1".into(), 9090)));
        assert_eq!(c.header_read_timeout, Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            ListenAddr::parse("https://[::1]:8443").unwrap(),
            ListenAddr {
                scheme: Scheme::Https,
                host: "::1".into(),
                port: 8443
            }
        );
        assert!(ListenAddr::parse("0.0.0.0:8080").is_err());
        assert!(ListenAddr::parse("http://0.0.0.0").is_err());
    }
}
