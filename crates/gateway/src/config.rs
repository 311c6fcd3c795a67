//! Command-line flags, their environment-variable equivalents, and the validated [`Config`].
//!
//! Every flag is a long flag (`--api-server=...`) with an environment variable
//! `KUBE_GATEWAY_<FLAG_IN_SCREAMING_SNAKE_CASE>`. The upstream Gen B gateway's Go-style spellings
//! (`-api-server=...`, `-api-server ...`, boolean `-flag` / `-flag=false`) are accepted too:
//! [`normalize_args`] rewrites a single-dash argument into the double-dash form **only for the
//! known flag names**, so anything else still reaches clap and fails with a clear error.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

/// Default location of the in-cluster ServiceAccount credentials.
pub const IN_CLUSTER_SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The command line. Build a [`Config`] from it with [`Config::from_cli`].
#[derive(Parser, Debug, Clone)]
#[command(
    name = "kube-gateway",
    version,
    about = "Authenticating proxy in front of the Kubernetes API: JWT-scoped access, WebSockets (VNC), revocation, audit",
    long_about = None,
    after_help = "Every flag also reads the environment variable KUBE_GATEWAY_<FLAG> (e.g. KUBE_GATEWAY_API_SERVER).\n\
                  Go-style single-dash spellings of the upstream gateway (-api-server=URL, -oauth-server-disable) are accepted."
)]
pub struct Cli {
    /// Directory of the static web app, served without a token.
    #[arg(long, env = "KUBE_GATEWAY_PUBLIC_DIR", default_value = "./web/public")]
    pub public_dir: PathBuf,

    /// URL path where the static files are mounted.
    #[arg(long, env = "KUBE_GATEWAY_BASE_PATH", default_value = "/")]
    pub base_path: String,

    /// Kubernetes API server URL. Unset: the in-cluster address (KUBERNETES_SERVICE_HOST/PORT).
    #[arg(long, env = "KUBE_GATEWAY_API_SERVER")]
    pub api_server: Option<String>,

    /// URL path prefix of the API proxy (must start and end with '/').
    #[arg(long, env = "KUBE_GATEWAY_API_PATH", default_value = "/k8s/")]
    pub api_path: String,

    /// Listen address: http://HOST:PORT or https://HOST:PORT.
    #[arg(
        long,
        env = "KUBE_GATEWAY_LISTEN",
        default_value = "https://0.0.0.0:8080"
    )]
    pub listen: String,

    /// This gateway's external URL (upstream: only for the OAuth redirect; accepted, unused).
    #[arg(
        long,
        env = "KUBE_GATEWAY_BASE_ADDRESS",
        default_value = "https://localhost:8080"
    )]
    pub base_address: String,

    /// PEM bundle of the CA(s) trusted for the API server. Unset: system roots (or the in-cluster CA).
    #[arg(long, env = "KUBE_GATEWAY_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Do not verify the API server's certificate (insecure; for development only).
    #[arg(long, env = "KUBE_GATEWAY_SKIP_VERIFY_TLS", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub skip_verify_tls: bool,

    /// TLS certificate (PEM chain) for an https listen address; reloaded when it changes.
    #[arg(long, env = "KUBE_GATEWAY_CERT_FILE", default_value = "test/cert.pem")]
    pub cert_file: PathBuf,

    /// TLS private key (PEM) for an https listen address; reloaded when it changes.
    #[arg(long, env = "KUBE_GATEWAY_KEY_FILE", default_value = "test/key.pem")]
    pub key_file: PathBuf,

    /// Upstream: disable interactive OAuth login. Accepted; interactive OAuth is not supported.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_SERVER_DISABLE", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub oauth_server_disable: bool,

    /// Upstream OAuth token endpoint. Accepted and ignored.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_SERVER_TOKEN_URL")]
    pub oauth_server_token_url: Option<String>,

    /// Upstream OAuth authorize endpoint. Accepted and ignored.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_SERVER_AUTH_URL")]
    pub oauth_server_auth_url: Option<String>,

    /// Upstream OAuth client id. Accepted and ignored.
    #[arg(
        long,
        env = "KUBE_GATEWAY_OAUTH_CLIENT_ID",
        default_value = "kube-gateway-client"
    )]
    pub oauth_client_id: String,

    /// Upstream OAuth client secret. Accepted and ignored.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_CLIENT_SECRET", hide_env_values = true)]
    pub oauth_client_secret: Option<String>,

    /// Verification key file (PEM public key or certificate; several blocks allowed); reloaded on change.
    #[arg(long, env = "KUBE_GATEWAY_JWT_TOKEN_KEY_FILE")]
    pub jwt_token_key_file: Option<PathBuf>,

    /// Upstream: the key algorithm. The algorithm is fixed by the key type; HMAC (HS*) is refused.
    #[arg(long, env = "KUBE_GATEWAY_JWT_TOKEN_KEY_ALG", default_value = "RS265")]
    pub jwt_token_key_alg: String,

    /// ServiceAccount token file used for forwarded requests; re-read when it changes.
    #[arg(long, env = "KUBE_GATEWAY_K8S_BEARER_TOKEN_FILE")]
    pub k8s_bearer_token_file: Option<PathBuf>,

    /// Pass the caller's bearer token to the API server unchecked. A string, as upstream: any value
    /// other than "false" enables pass-through.
    #[arg(
        long,
        env = "KUBE_GATEWAY_K8S_BEARER_TOKEN_PASSTHROUGH",
        default_value = "false"
    )]
    pub k8s_bearer_token_passthrough: String,

    /// Extra verification key files (comma-separated), for key rotation.
    #[arg(long, env = "KUBE_GATEWAY_JWT_KEY_FILES", value_delimiter = ',')]
    pub jwt_key_files: Vec<PathBuf>,

    /// Namespaces whose GateTokens are watched for revocation (comma-separated; `*` = all).
    /// Empty: the revocation watch is off.
    #[arg(
        long,
        env = "KUBE_GATEWAY_REVOCATION_NAMESPACES",
        value_delimiter = ','
    )]
    pub revocation_namespaces: Vec<String>,

    /// Address of the separate metrics listener (/metrics, /healthz, /readyz), e.g. 127.0.0.1:9090.
    #[arg(long, env = "KUBE_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Log format on stderr.
    #[arg(
        long,
        env = "KUBE_GATEWAY_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `kube_gateway=debug`.
    #[arg(long, env = "KUBE_GATEWAY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Allowed clock skew when checking a token's exp/nbf/iat (seconds, or 500ms, 1m; at most 5m).
    #[arg(long, env = "KUBE_GATEWAY_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,

    /// Largest request head (request line and headers) accepted; larger ones get 431.
    #[arg(long, env = "KUBE_GATEWAY_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Time a client has to send the whole request head (and the TLS handshake).
    #[arg(long, env = "KUBE_GATEWAY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time the API server has to answer with response headers. Never applies to response bodies
    /// (watches) or upgraded streams (WebSockets).
    #[arg(long, env = "KUBE_GATEWAY_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long a graceful shutdown waits for requests to drain.
    #[arg(long, env = "KUBE_GATEWAY_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// How often key, certificate and token files are checked for changes.
    #[arg(long, env = "KUBE_GATEWAY_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: Duration,

    /// How long /auth/gettoken waits for the operator to sign a new GateToken.
    #[arg(long, env = "KUBE_GATEWAY_GETTOKEN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub gettoken_timeout: Duration,

    /// Redirect target of /auth/jwt/set (the noVNC page).
    #[arg(
        long,
        env = "KUBE_GATEWAY_CLIENT_PATH",
        default_value = "/noVNC/vnc_lite.html"
    )]
    pub client_path: String,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a plain number of seconds (`1.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 10s, 500ms, 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {text:?}: use ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || !(0.0..=366.0 * 86400.0).contains(&seconds) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The long flag names clap knows (without dashes), plus `help` and `version`.
fn known_flags() -> Vec<String> {
    let mut names: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    names.push("help".into());
    names.push("version".into());
    names
}

/// Rewrites Go-style single-dash long flags (`-api-server=URL`, `-oauth-server-disable`,
/// `-listen http://...`) into clap's double-dash form, for the known flag names only. Arguments
/// after `--`, values of flags and unknown single-dash arguments are left untouched (clap then
/// reports unknown ones). `-h` and `-help` become `--help`.
pub fn normalize_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let known = known_flags();
    let mut out = Vec::new();
    let mut rest_verbatim = false;
    for (i, arg) in args.into_iter().map(Into::into).enumerate() {
        if i == 0 || rest_verbatim {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        if arg == "-h" || arg == "-help" {
            out.push("--help".into());
            continue;
        }
        if let Some(body) = arg.strip_prefix('-')
            && !body.starts_with('-')
        {
            let name = body.split_once('=').map_or(body, |(n, _)| n);
            if name.len() > 1 && known.iter().any(|k| k == name) {
                out.push(format!("-{arg}"));
                continue;
            }
        }
        out.push(arg);
    }
    out
}

/// Boolean flags (they never take a separate value).
const BOOLEAN_FLAGS: &[&str] = &["skip-verify-tls", "oauth-server-disable", "help", "version"];

/// Single-dash arguments that look like Go-style long flags (`-some-name[=value]`) but name no
/// known flag, so that they can be reported by name (clap would read them as short-flag clusters
/// and report only their first letter). Values of value-taking flags are skipped.
pub fn unknown_go_flags<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let known = known_flags();
    let mut unknown = Vec::new();
    let mut value_next = false;
    for arg in args.iter().skip(1).map(AsRef::as_ref) {
        if arg == "--" {
            break;
        }
        if value_next {
            value_next = false;
            continue;
        }
        let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        let Some(body) = body else { continue };
        let (name, has_value) = body
            .split_once('=')
            .map_or((body, false), |(n, _)| (n, true));
        if known.iter().any(|k| k == name) {
            value_next = !has_value && !BOOLEAN_FLAGS.contains(&name);
            continue;
        }
        let long_looking = name.len() > 1
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if long_looking && !arg.starts_with("--") && name != "h" {
            unknown.push(arg.to_string());
        }
    }
    unknown
}

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

/// Where audit lines go: a function called with each JSON line (without the newline).
#[derive(Clone)]
pub struct AuditSink(pub Arc<dyn Fn(&str) + Send + Sync>);

impl AuditSink {
    /// Standard output, one line per record.
    pub fn stdout() -> Self {
        Self(Arc::new(|line: &str| {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }))
    }
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditSink")
    }
}

/// A startup configuration error (the binary prints it and exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag value is invalid or flags contradict each other.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
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
    /// How long an unknown `jti` waits for the revocation index to catch up before it is refused.
    pub revocation_grace: Duration,
    /// Where audit lines go.
    pub audit: AuditSink,
    /// Notes for the startup log (ignored flags and similar), logged once by [`crate::Gateway::bind`].
    pub notes: Vec<String>,
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
        if api_path.starts_with(&base_path) && base_path != "/" && api_path == base_path {
            return Err(ConfigError::Invalid(
                "-api-path and -base-path must differ".into(),
            ));
        }
        if !cli.client_path.starts_with('/') || cli.client_path.starts_with("//") {
            return Err(ConfigError::Invalid(format!(
                "--client-path {:?} must be a local path starting with a single '/'",
                cli.client_path
            )));
        }

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
        let revocation_namespaces: Vec<String> = cli
            .revocation_namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        for ns in &revocation_namespaces {
            if ns != "*" && !is_dns_label(ns) {
                return Err(ConfigError::Invalid(format!(
                    "KUBE_GATEWAY_REVOCATION_NAMESPACES: {ns:?} is not a namespace name"
                )));
            }
        }
        if revocation_namespaces.len() > 1 && revocation_namespaces.iter().any(|n| n == "*") {
            return Err(ConfigError::Invalid(
                "KUBE_GATEWAY_REVOCATION_NAMESPACES: '*' (all namespaces) cannot be combined with named namespaces".into(),
            ));
        }
        if passthrough {
            if !revocation_namespaces.is_empty() {
                return Err(ConfigError::Invalid(
                    "contradictory settings: -k8s-bearer-token-passthrough forwards tokens unchecked, so the revocation watch (KUBE_GATEWAY_REVOCATION_NAMESPACES) cannot apply; set one or the other".into(),
                ));
            }
            if !jwt_key_files.is_empty() {
                notes.push("pass-through is on: the JWT verification keys are only published at /.well-known/jwks.json, not used to check requests".into());
            }
        } else if jwt_key_files.is_empty() {
            return Err(ConfigError::Invalid(
                "no JWT verification key: set -jwt-token-key-file (and/or KUBE_GATEWAY_JWT_KEY_FILES), or enable -k8s-bearer-token-passthrough".into(),
            ));
        }

        if !cli.oauth_server_disable
            || cli.oauth_server_token_url.is_some()
            || cli.oauth_server_auth_url.is_some()
            || cli.oauth_client_secret.is_some()
        {
            notes.push("interactive OAuth login is not supported by this gateway; the OAuth flags are accepted and ignored, and tokens are verified as JWTs (or passed through)".into());
        }

        // API server: the flag, else the in-cluster address.
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
                match (host, port) {
                    (Some(host), Some(port)) => {
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
                    _ => {
                        return Err(ConfigError::Invalid(
                            "missing API server address: set -api-server (or KUBE_GATEWAY_API_SERVER), or run inside a cluster".into(),
                        ));
                    }
                }
            }
        };
        let parsed: http::Uri = api_server
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("-api-server {api_server:?}: {e}")))?;
        match parsed.scheme_str() {
            Some("https") | Some("http") => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "-api-server {api_server:?}: expected an http(s) URL"
                )));
            }
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

        Ok(Self {
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
            jwt_leeway: cli.jwt_leeway.min(virt_gateway_auth::jwt::MAX_LEEWAY),
            max_header_bytes: cli.max_header_bytes,
            header_read_timeout: cli.header_read_timeout,
            request_timeout: cli.request_timeout,
            shutdown_timeout: cli.shutdown_timeout,
            reload_interval: cli.reload_interval,
            gettoken_timeout: cli.gettoken_timeout,
            client_path: cli.client_path,
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

/// Whether `s` is an RFC 1123 DNS label (namespace names, VM names in the noVNC link).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, CliError> {
        let mut v = vec!["kube-gateway"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(normalize_args(v)).map_err(CliError::Clap)?;
        Config::from_cli_with_env(cli, &|_| None, &|_| false).map_err(CliError::Config)
    }

    #[test]
    fn go_style_flags_are_normalised_for_known_names_only() {
        let out = normalize_args([
            "kube-gateway",
            "-api-server=https://k:6443",
            "-oauth-server-disable",
            "-listen",
            "http://0.0.0.0:8080",
            "-unknown-flag=1",
            "--public-dir=/x",
            "-x",
            "--",
            "-api-path=/y/",
        ]);
        assert_eq!(
            out,
            vec![
                "kube-gateway",
                "--api-server=https://k:6443",
                "--oauth-server-disable",
                "--listen",
                "http://0.0.0.0:8080",
                "-unknown-flag=1",
                "--public-dir=/x",
                "-x",
                "--",
                "-api-path=/y/",
            ]
        );
        assert_eq!(normalize_args(["g", "-help"]), vec!["g", "--help"]);
        assert_eq!(normalize_args(["g", "-h"]), vec!["g", "--help"]);
    }

    #[test]
    fn unknown_go_style_flags_are_named() {
        assert_eq!(
            unknown_go_flags(&[
                "g",
                "-api-server",
                "-weird-value",
                "-no-such-flag=1",
                "-skip-verify-tls",
                "-other",
                "--",
                "-x-y"
            ]),
            vec!["-no-such-flag=1", "-other"]
        );
        assert!(
            unknown_go_flags(&["g", "-listen=http://0.0.0.0:1", "-oauth-server-disable"])
                .is_empty()
        );
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
