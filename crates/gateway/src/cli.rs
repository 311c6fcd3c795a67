//! The command line: flags, their environment-variable equivalents, and the Go-style spellings of
//! the upstream gateway. [`crate::Config`] validates what this parses.
//!
//! Every flag is a long flag (`--api-server=...`) with an environment variable
//! `KUBE_GATEWAY_<FLAG_IN_SCREAMING_SNAKE_CASE>`. The upstream Gen B gateway's Go-style spellings
//! (`-api-server=...`, `-api-server ...`, boolean `-flag` / `-flag=false`) are accepted too:
//! [`normalize_args`] rewrites a single-dash argument into the double-dash form **only for the
//! known flag names**, so anything else still reaches clap and fails with a clear error.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, CommandFactory, Parser, ValueEnum};
use virt_gateway_console::ControllerPolicy;

/// The command line. Build a [`crate::Config`] from it with [`crate::Config::from_cli`].
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

    /// Upstream: disable the OpenShift OAuth login (/auth/login). It is on only with a client secret.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_SERVER_DISABLE", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub oauth_server_disable: bool,

    /// Upstream OAuth token endpoint. Unset: discovered at <api-server>/.well-known/oauth-authorization-server.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_SERVER_TOKEN_URL")]
    pub oauth_server_token_url: Option<String>,

    /// Upstream OAuth authorize endpoint. Unset: discovered at <api-server>/.well-known/oauth-authorization-server.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_SERVER_AUTH_URL")]
    pub oauth_server_auth_url: Option<String>,

    /// Upstream OAuth client id (the OAuthClient's name).
    #[arg(
        long,
        env = "KUBE_GATEWAY_OAUTH_CLIENT_ID",
        default_value = "kube-gateway-client"
    )]
    pub oauth_client_id: String,

    /// Upstream OAuth client secret (literal; prefer --oauth-client-secret-file).
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_CLIENT_SECRET", hide_env_values = true)]
    pub oauth_client_secret: Option<String>,

    /// File holding the OAuth client secret.
    #[arg(long, env = "KUBE_GATEWAY_OAUTH_CLIENT_SECRET_FILE")]
    pub oauth_client_secret_file: Option<PathBuf>,

    /// Scopes asked of the OAuth server (comma-separated).
    #[arg(
        long,
        env = "KUBE_GATEWAY_OAUTH_SCOPES",
        value_delimiter = ',',
        default_value = "user:full"
    )]
    pub oauth_scopes: Vec<String>,

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

    /// Concurrent connections served on the main listener; more are answered 503 and closed.
    #[arg(long, env = "KUBE_GATEWAY_MAX_CONNECTIONS", default_value_t = 2048)]
    pub max_connections: usize,

    /// Open WebSocket sessions in total; more upgrades are answered 429.
    #[arg(
        long = "max-websockets",
        env = "KUBE_GATEWAY_MAX_WEBSOCKETS",
        default_value_t = 512
    )]
    pub max_websockets: usize,

    /// Open WebSocket sessions of one token (its `jti`); more upgrades are answered 429.
    #[arg(
        long = "max-websockets-per-token",
        env = "KUBE_GATEWAY_MAX_WEBSOCKETS_PER_TOKEN",
        default_value_t = 8
    )]
    pub max_websockets_per_token: usize,

    /// Close a WebSocket session that carried no data either way for this long (0: never).
    #[arg(long = "websocket-idle-timeout", env = "KUBE_GATEWAY_WEBSOCKET_IDLE_TIMEOUT", default_value = "0", value_parser = parse_duration)]
    pub websocket_idle_timeout: Duration,

    /// Close a WebSocket session this long after it opened (0: only when its token expires).
    #[arg(long = "websocket-max-duration", env = "KUBE_GATEWAY_WEBSOCKET_MAX_DURATION", default_value = "0", value_parser = parse_duration)]
    pub websocket_max_duration: Duration,

    /// Time a client has to send a whole request body (from the end of its head); slower
    /// bodies are cut and answered 408.
    #[arg(long, env = "KUBE_GATEWAY_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Audit records per second of refused requests that carry no verified token (anybody on
    /// the network can cause them); a burst of ten times as many is allowed, the rest are
    /// counted in kube_gateway_audit_suppressed_total instead of written. 0: no limit.
    #[arg(
        long,
        env = "KUBE_GATEWAY_AUDIT_UNAUTHENTICATED_RATE",
        default_value_t = 50
    )]
    pub audit_unauthenticated_rate: u32,

    /// How long the revocation watch may be broken before every token is refused (503) and
    /// /readyz reports unready, so a revocation made meanwhile cannot go unseen.
    #[arg(long, env = "KUBE_GATEWAY_REVOCATION_MAX_STALENESS", default_value = "5s", value_parser = parse_duration)]
    pub revocation_max_staleness: Duration,

    /// This gateway's audience: tokens with an `aud` claim must name it (the operator sets
    /// ocgate.yaacov.com/namespaces/<ns>/gateservers/<name>). Unset: tokens with `aud` are refused.
    #[arg(long, env = "KUBE_GATEWAY_AUDIENCE")]
    pub audience: Option<String>,

    /// The issuer whose tokens are accepted: a token with `iss` must name it. Unset: not checked.
    #[arg(long, env = "KUBE_GATEWAY_ISSUER")]
    pub issuer: Option<String>,

    /// Refuse tokens without an `aud` claim (those of the upstream operator, or issued before
    /// audiences). Needs --audience.
    #[arg(long, env = "KUBE_GATEWAY_REQUIRE_AUDIENCE", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub require_audience: bool,

    /// Publish the verification keys at /.well-known/jwks.json. Off by default: the namespace's
    /// key may also be used by an upstream (Go) gateway, which accepts HS256 tokens signed with
    /// the public key, so publishing it lets anyone forge tokens for that gateway.
    #[arg(long, env = "KUBE_GATEWAY_PUBLISH_JWKS", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub publish_jwks: bool,

    /// Share one upstream VNC connection per VMI among all its viewers (the gateway speaks RFB
    /// on both sides) instead of passing each viewer's WebSocket through. Experimental
    /// (issue 16); pass-through credentials always use the plain pass-through.
    #[arg(long, env = "KUBE_GATEWAY_SHARED_CONSOLES", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub shared_consoles: bool,

    /// With shared consoles, what several viewers holding control tokens for one VM may do:
    /// `take-over` (only the newest controller's input reaches the VM; the earlier ones watch
    /// until they reconnect) or `shared` (every controller's input does). Observers never send
    /// input.
    #[arg(long, env = "KUBE_GATEWAY_CONSOLE_CONTROLLERS", default_value = "take-over",
          value_parser = PossibleValuesParser::new(["take-over", "shared"])
              .map(|s| s.parse::<ControllerPolicy>().unwrap_or_default()))]
    pub console_controllers: ControllerPolicy,

    /// This replica's IP address (the pod IP, from the downward API) at which the other replicas
    /// reach it, on the main listener's scheme and port. With --shared-consoles, turns on
    /// coordination: the replica serving a VM's console holds a Lease in --pod-namespace and the
    /// others forward that VM's viewers to it. Unset: every replica serves its own viewers.
    #[arg(long, env = "KUBE_GATEWAY_CONSOLE_PEER_ADDRESS")]
    pub console_peer_address: Option<String>,

    /// This replica's pod name (the Lease holder identity); needed with --console-peer-address.
    #[arg(long, env = "KUBE_GATEWAY_POD_NAME")]
    pub pod_name: Option<String>,

    /// The gateway's own namespace, where the console Leases live; needed with
    /// --console-peer-address.
    #[arg(long, env = "KUBE_GATEWAY_POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// How long a console Lease stays valid without renewal (whole seconds, at least 1): after
    /// it, another replica may take the console over. Renewed every third of it.
    #[arg(long, env = "KUBE_GATEWAY_CONSOLE_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub console_lease_duration: Duration,

    /// Origins (scheme://host[:port], comma-separated) besides the gateway's own whose pages may
    /// use the session cookie for WebSockets, unsafe methods and sign-in.
    #[arg(long, env = "KUBE_GATEWAY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Sign in with this OpenID Connect issuer (https URL; discovery at
    /// <issuer>/.well-known/openid-configuration). Unset: no OIDC sign-in.
    #[arg(long, env = "KUBE_GATEWAY_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,

    /// The gateway's client ID at the OIDC provider (the audience of its ID tokens; the API
    /// server must accept it as an audience too).
    #[arg(long, env = "KUBE_GATEWAY_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// File holding the OIDC client secret.
    #[arg(long, env = "KUBE_GATEWAY_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// Scopes asked for (comma-separated; must include openid; offline_access gets a refresh token).
    #[arg(
        long,
        env = "KUBE_GATEWAY_OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "openid,email,profile,offline_access"
    )]
    pub oidc_scopes: Vec<String>,

    /// The ID token claim shown as the person's name (match the API server's claim mapping).
    #[arg(
        long,
        env = "KUBE_GATEWAY_OIDC_USERNAME_CLAIM",
        default_value = "email"
    )]
    pub oidc_username_claim: String,

    /// The ID token claim holding the person's groups.
    #[arg(long, env = "KUBE_GATEWAY_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// This gateway's /auth/callback URL as registered at the provider. Unset: <base-address>/auth/callback.
    #[arg(long, env = "KUBE_GATEWAY_SIGNIN_REDIRECT_URL")]
    pub signin_redirect_url: Option<String>,

    /// PEM CA bundle trusted for the identity provider. Unset: the system roots.
    #[arg(long, env = "KUBE_GATEWAY_SIGNIN_CA_FILE")]
    pub signin_ca_file: Option<PathBuf>,

    /// Key file (at least 32 random bytes) sealing the sign-in cookies; every replica needs the same.
    #[arg(long, env = "KUBE_GATEWAY_SIGNIN_KEY_FILE")]
    pub signin_key_file: Option<PathBuf>,

    /// Longest a sign-in session lasts, refreshes included.
    #[arg(long, env = "KUBE_GATEWAY_SIGNIN_SESSION_MAX_AGE", default_value = "12h", value_parser = parse_duration)]
    pub signin_session_max_age: Duration,

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

/// Whether the long flag `name` takes its value as the next argument (`-listen URL`), read from
/// clap's own definition: boolean flags (`=true`/`=false` only), `help` and `version` never do.
fn takes_separate_value(name: &str) -> bool {
    Cli::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(name))
        .is_some_and(|a| a.get_action().takes_values() && !a.is_require_equals_set())
}

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
            value_next = !has_value && takes_separate_value(name);
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_value_flags_take_the_next_argument() {
        assert!(takes_separate_value("listen"));
        assert!(takes_separate_value("api-server"));
        assert!(!takes_separate_value("skip-verify-tls"));
        assert!(!takes_separate_value("oauth-server-disable"));
        assert!(!takes_separate_value("help"));
        assert!(!takes_separate_value("version"));
    }
}
