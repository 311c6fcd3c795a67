//! The `GateServer` custom resource: a kube-gateway deployment and everything around it.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel::{
    SERVER_CONTROLLERS_NEED_SHARED, SERVER_CONTROLLERS_NEED_SHARED_MESSAGE, SERVER_GROUPS_XOR_URLS,
    SERVER_GROUPS_XOR_URLS_MESSAGE, SERVER_REPLICAS_NEED_HTTPS, SERVER_REPLICAS_NEED_HTTPS_MESSAGE,
    SERVER_RULE_NOT_EMPTY, SERVER_RULE_NOT_EMPTY_MESSAGE, SERVER_TLS_NEEDS_ROUTE,
    SERVER_TLS_NEEDS_ROUTE_MESSAGE,
};
use crate::error::{SpecError, UnknownPhase};
use crate::rule::{EffectiveRule, non_empty};
use crate::schema::{condition_list, require_without_default};

/// Default `apiURL`: the in-cluster API server.
pub const DEFAULT_API_URL: &str = "https://kubernetes.default.svc";
/// Default `serviceAccountNamespace`: all namespaces (a ClusterRoleBinding).
pub const DEFAULT_SERVICE_ACCOUNT_NAMESPACE: &str = "*";
/// Default `serviceAccountVerbs`.
pub const DEFAULT_SERVICE_ACCOUNT_VERBS: &[&str] = &["get"];
/// Default `serviceAccountAPIGroups`.
pub const DEFAULT_SERVICE_ACCOUNT_API_GROUPS: &[&str] = &["subresources.kubevirt.io"];
/// Default `serviceAccountResources`.
pub const DEFAULT_SERVICE_ACCOUNT_RESOURCES: &[&str] =
    &["virtualmachineinstances", "virtualmachineinstances/vnc"];
/// Gen B's schema default of `image`: the upstream (Go) kube-gateway image. Not a default here:
/// an unset `image` means the operator-wide default gateway image (see [`GateServerSpec::image`]).
pub const GEN_B_IMAGE: &str = "quay.io/yaacov/kube-gateway";
/// Gen B's schema default of `webAppImage`: the upstream noVNC web application. Not a default
/// here: an unset `webAppImage` means the operator-wide default web-app image.
pub const GEN_B_WEB_APP_IMAGE: &str = "quay.io/yaacov/kube-gateway-web-app-novnc";
/// Default of `generateSecret` (applied in code, see [`GateServerSpec::generate_secret`]).
pub const DEFAULT_GENERATE_SECRET: bool = true;

/// Annotation on a GateServer: the gateway's base URL as its users reach it (`https://HOST[:PORT]`,
/// or `http://` for a loopback port), when that is not `https://<spec.route>`: a load balancer, a
/// port-forward, or `make demo`, which sets it to the loopback port its gateway serves on.
/// `kubectl gate token` builds its links on it; the operator does not read it. It is trusted
/// like `spec.route`: whoever may edit the GateServer decides where links point either way.
pub const GATEWAY_URL_ANNOTATION: &str = "ocgate.yaacov.com/gateway-url";

impl GateServer {
    /// The [`GATEWAY_URL_ANNOTATION`], when set and not blank.
    pub fn gateway_url_annotation(&self) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(GATEWAY_URL_ANNOTATION)
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}
fn default_service_account_namespace() -> String {
    DEFAULT_SERVICE_ACCOUNT_NAMESPACE.to_owned()
}
fn default_service_account_verbs() -> Vec<String> {
    strings(DEFAULT_SERVICE_ACCOUNT_VERBS)
}
fn default_service_account_api_groups() -> Vec<String> {
    strings(DEFAULT_SERVICE_ACCOUNT_API_GROUPS)
}
fn default_service_account_resources() -> Vec<String> {
    strings(DEFAULT_SERVICE_ACCOUNT_RESOURCES)
}

/// GateServerSpec describes a kube-gateway proxy: where it is reached (route), what its
/// ServiceAccount may proxy (the serviceAccount* rule), its images, and which helper objects
/// the operator creates (key Secret, Route or Ingress, OAuthClient).
// Several printcolumn(...) entries repeat `type_ = "string"`, which this lint mistakes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ocgate.yaacov.com",
    version = "v1beta1",
    kind = "GateServer",
    namespaced,
    status = "GateServerStatus",
    derive = "PartialEq",
    shortname = "gs",
    category = "ocgate",
    doc = "GateServer runs a kube-gateway proxy that gives holders of GateTokens access to the Kubernetes API calls their tokens allow.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Server phase: Ready or Error"
    ),
    printcolumn(
        name = "Route",
        type_ = "string",
        json_path = ".spec.route",
        description = "External host name of the gateway"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = (SERVER_GROUPS_XOR_URLS, SERVER_GROUPS_XOR_URLS_MESSAGE))]
#[x_kube(validation = (SERVER_RULE_NOT_EMPTY, SERVER_RULE_NOT_EMPTY_MESSAGE))]
#[x_kube(validation = (SERVER_TLS_NEEDS_ROUTE, SERVER_TLS_NEEDS_ROUTE_MESSAGE))]
#[x_kube(validation = (SERVER_REPLICAS_NEED_HTTPS, SERVER_REPLICAS_NEED_HTTPS_MESSAGE))]
pub struct GateServerSpec {
    /// URL of the Kubernetes API server that the gateway proxies to.
    #[serde(rename = "apiURL", default = "default_api_url")]
    #[schemars(length(max = 1024), pattern(r"^(http|https)://.*"))]
    pub api_url: String,

    /// External host name of the gateway: the host of its Route or Ingress; the gateway's base
    /// address is https:// followed by this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 226),
        pattern(r"^([a-z0-9-_])+[.]([a-z0-9-_])+[.]([a-z0-9-._])+$")
    )]
    pub route: Option<String>,

    /// Namespace where the gateway's ServiceAccount may act: '*' gives a ClusterRoleBinding,
    /// anything else a RoleBinding in that namespace.
    #[serde(default = "default_service_account_namespace")]
    pub service_account_namespace: String,

    /// Verbs of the gateway ServiceAccount's rule.
    #[serde(default = "default_service_account_verbs")]
    pub service_account_verbs: Vec<String>,

    /// API groups of the gateway ServiceAccount's rule. Set it to [] to use
    /// serviceAccountNonResourceURLs instead.
    #[serde(
        rename = "serviceAccountAPIGroups",
        default = "default_service_account_api_groups"
    )]
    pub service_account_api_groups: Vec<String>,

    /// Resources of the gateway ServiceAccount's rule.
    #[serde(default = "default_service_account_resources")]
    pub service_account_resources: Vec<String>,

    /// Resource names of the gateway ServiceAccount's rule; absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_resource_names: Option<Vec<String>>,

    /// Non-resource URLs of the gateway ServiceAccount's rule. Excludes
    /// serviceAccountAPIGroups.
    #[serde(
        rename = "serviceAccountNonResourceURLs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account_non_resource_urls: Option<Vec<String>>,

    /// Pass the request's bearer token to the API server unchanged instead of authenticating
    /// it as a GateToken and replacing it with the gateway's ServiceAccount token.
    #[serde(default)]
    pub pass_through: bool,

    /// Container image of the gateway. Absent (or empty) means the operator-wide default
    /// gateway image, which the operator's administrator sets (for example to a mirror).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,

    /// Init-container image whose /data/web/public is copied into the gateway's web root. Absent
    /// means the operator-wide default web-app image; "" means no web application (no init
    /// container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub web_app_image: Option<String>,

    /// Create the key-pair Secret kube-gateway-jwt-secret used to sign and verify tokens
    /// (default true).
    #[serde(
        rename = "generateSecret",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub raw_generate_secret: Option<bool>,

    /// Deprecated misspelling of generateSecret, accepted because the original sample used it.
    /// generateSecret wins when both are written.
    #[serde(
        rename = "gnerateSecret",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub raw_gnerate_secret: Option<bool>,

    /// Create an OpenShift OAuthClient for interactive login.
    #[serde(default)]
    pub generate_oauth_client: bool,

    /// Expose the gateway with an OpenShift Route (HTTPS) instead of an Ingress.
    #[serde(default)]
    pub generate_route: bool,

    /// virt-gateway extension: IngressClass of the Ingress; absent means the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ingress_class_name: Option<String>,

    /// virt-gateway extension: Secret of type kubernetes.io/tls holding the Ingress certificate
    /// for route. Absent means no TLS section (the ingress controller's default).
    #[serde(
        rename = "ingressTLSSecretName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 253))]
    pub ingress_tls_secret_name: Option<String>,

    /// virt-gateway extension: origins (scheme://host[:port]) besides the gateway's own whose
    /// pages may use its session cookie to open WebSockets or change things, for example a portal
    /// that embeds the console. The cookie is refused for requests from any other site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub allowed_origins: Option<Vec<String>>,

    /// virt-gateway extension: refuse tokens that name no audience (GateTokens without server,
    /// and tokens minted by the upstream operator). Tokens naming another GateServer are always
    /// refused.
    #[serde(default)]
    pub require_audience: bool,

    /// virt-gateway extension: publish the verification keys at /.well-known/jwks.json. Off by
    /// default, because the namespace's key may also be used by an upstream (Go) gateway, which
    /// accepts HMAC tokens signed with the public key.
    #[serde(rename = "publishJWKS", default)]
    pub publish_jwks: bool,

    /// virt-gateway extension: limits of the gateway (connections, WebSockets, timeouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<GateServerLimits>,

    /// virt-gateway extension: people sign in at /auth/login with this OpenID Connect provider,
    /// and the gateway then calls the API server with their own ID token (the API server must
    /// trust the issuer and accept clientID as an audience). Needs route (the redirect URI is
    /// https://<route>/auth/callback) or oidc.redirectURL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<GateServerOidc>,

    /// virt-gateway extension: VM consoles shared by several viewers through one VNC connection
    /// per VM (issue 16). Absent: every viewer gets a VNC connection of its own, and a second
    /// viewer takes the VM's one session over (KubeVirt's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = (SERVER_CONTROLLERS_NEED_SHARED, SERVER_CONTROLLERS_NEED_SHARED_MESSAGE))]
    pub consoles: Option<GateServerConsoles>,

    /// virt-gateway extension: how many gateway pods run (default 1). With consoles.shared and
    /// more than one replica, the replicas coordinate each VM's console through a Lease per VM in
    /// this namespace, so that all of a VM's viewers share one VNC connection whichever replica
    /// they reach; they forward viewers' tokens to each other, so this needs generateRoute: true
    /// (HTTPS). The operator then binds the ClusterRole virt-gateway-console-leases (installed
    /// with the operator: get, create and update on Leases) to the gateway, in this namespace only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: Option<i32>,
}

/// The most gateway replicas a GateServer may ask for (the CRD's maximum).
pub const MAX_REPLICAS: i32 = 10;

/// GateServerConsoles: how the gateway serves VM consoles.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateServerConsoles {
    /// One VNC connection per VM, shared by all its viewers: each sees the same screen, a viewer
    /// joining late gets the whole screen, GateTokens with consoleRole: observe watch only, and
    /// revoking one viewer's token closes that viewer alone (default false).
    #[serde(default)]
    pub shared: bool,

    /// What happens when several viewers may control the same console: TakeOver (only the
    /// newest controller's keys and pointer reach the VM, earlier ones watch until they take
    /// control back) or Shared (every controller's input reaches the VM). Absent: the gateway's
    /// default, TakeOver. Needs shared: true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers: Option<ConsoleControllers>,
}

/// The policy for several controllers of one shared console.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConsoleControllers {
    /// Only the newest controller's input reaches the VM; earlier controllers become watch-only.
    TakeOver,
    /// Every controller's input reaches the VM.
    Shared,
}

impl ConsoleControllers {
    /// The value of the gateway's `--console-controllers` flag.
    pub const fn flag(self) -> &'static str {
        match self {
            Self::TakeOver => "take-over",
            Self::Shared => "shared",
        }
    }
}

impl GateServerConsoles {
    /// The gateway's flags for these settings (flag name, value): `shared-consoles` when shared,
    /// `console-controllers` when a policy is written (absent: the gateway's own default).
    pub fn flags(&self) -> Vec<(&'static str, &'static str)> {
        let mut flags = Vec::new();
        if self.shared {
            flags.push(("shared-consoles", "true"));
        }
        if let Some(policy) = self.controllers {
            flags.push(("console-controllers", policy.flag()));
        }
        flags
    }

    /// Checks what the CEL rule on `consoles` checks, for objects stored before it existed.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.controllers.is_some() && !self.shared {
            return Err(SpecError::ControllersWithoutSharedConsoles);
        }
        Ok(())
    }
}

/// GateServerOidc: the OpenID Connect provider people sign in with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateServerOidc {
    /// The issuer URL (https), exactly as in the provider's ID tokens.
    #[serde(rename = "issuerURL")]
    #[schemars(length(min = 9, max = 1024), pattern(r"^https://"))]
    pub issuer_url: String,

    /// The gateway's client ID at the provider (the audience of its ID tokens).
    #[serde(rename = "clientID")]
    #[schemars(length(min = 1, max = 256))]
    pub client_id: String,

    /// A Secret in the GateServer's namespace holding the client secret (created by you).
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_name: String,

    /// The key of the client secret in that Secret; absent means `clientSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_key: Option<String>,

    /// The scopes asked for; absent means openid, email, profile, offline_access. Must include openid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub scopes: Option<Vec<String>>,

    /// The claim shown as the person's name; absent means `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub username_claim: Option<String>,

    /// The claim holding the person's groups; absent means `groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub groups_claim: Option<String>,

    /// A ConfigMap in the GateServer's namespace whose `ca.crt` is the CA bundle trusted for the
    /// provider; absent means the gateway image's system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_config_map_name: Option<String>,

    /// The redirect URI registered at the provider: where the gateway answers /auth/callback.
    /// Absent means https://<route>/auth/callback. An https URL ending in /auth/callback, or
    /// http only on a loopback IP address (a gateway reached on this machine, as in `make demo`).
    #[serde(
        rename = "redirectURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(
        length(min = 14, max = 1024),
        pattern(r"^(https://[^/?#@]+|http://(127\.[0-9.]+|\[::1\])(:[0-9]+)?)/auth/callback$")
    )]
    pub redirect_url: Option<String>,
}

/// The default key of the OIDC client secret in its Secret.
pub const OIDC_CLIENT_SECRET_KEY: &str = "clientSecret";

impl GateServerOidc {
    /// The key of the client secret in its Secret.
    pub fn secret_key(&self) -> &str {
        self.client_secret_key
            .as_deref()
            .unwrap_or(OIDC_CLIENT_SECRET_KEY)
    }

    /// Checks what the gateway would refuse to start with.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |field: &'static str, why: &str| SpecError::InvalidOidc {
            field,
            reason: why.to_owned(),
        };
        let issuer = self.issuer_url.trim();
        if !issuer.starts_with("https://") || issuer.len() <= 8 || issuer.contains(['?', '#', ' '])
        {
            return Err(bad(
                "issuerURL",
                "must be an https URL without query or fragment",
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(bad("clientID", "must not be empty"));
        }
        if !crate::names::is_dns_subdomain(&self.client_secret_name) {
            return Err(bad("clientSecretName", "must be the name of a Secret"));
        }
        if let Some(ca) = &self.ca_config_map_name
            && !crate::names::is_dns_subdomain(ca)
        {
            return Err(bad("caConfigMapName", "must be the name of a ConfigMap"));
        }
        if let Some(url) = &self.redirect_url
            && let Err(why) = check_redirect_url(url)
        {
            return Err(bad("redirectURL", why));
        }
        let key_ok = self
            .secret_key()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !key_ok {
            return Err(bad(
                "clientSecretKey",
                "must be a Secret key (letters, digits, '-', '.', '_')",
            ));
        }
        if let Some(scopes) = &self.scopes {
            if !scopes.iter().any(|s| s == "openid") {
                return Err(bad("scopes", "must include openid"));
            }
            if scopes.iter().any(|s| {
                s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_graphic() && c != ',' && c != '"' && c != '\\')
            }) {
                return Err(bad(
                    "scopes",
                    "each scope must be a non-empty word without ',', '\"' or '\\'",
                ));
            }
        }
        Ok(())
    }
}

/// Why `url` is not a redirect URI the gateway answers at: it must be `https://<host>/auth/callback`,
/// or `http://` on a loopback IP address (never a name: `localhost` may resolve elsewhere), with
/// no credentials, query or fragment. Plain HTTP elsewhere would hand the code to the network.
fn check_redirect_url(url: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "must be https://<host>/auth/callback, or http:// on a loopback IP address (127.0.0.0/8, [::1])";
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(SHAPE);
    };
    let Some((authority, "auth/callback")) = rest.split_once('/') else {
        return Err(SHAPE);
    };
    let host_chars = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
    if authority.is_empty() || !authority.chars().all(host_chars) {
        return Err(SHAPE);
    }
    if secure {
        return Ok(());
    }
    let loopback = authority
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| {
            let bare = authority.trim_start_matches('[').trim_end_matches(']');
            bare.parse::<std::net::IpAddr>()
        })
        .is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(SHAPE) }
}

/// GateServerLimits bounds what one gateway serves; every field is optional, with the gateway's
/// default when absent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateServerLimits {
    /// Concurrent connections; more are answered 503 (default 2048).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<i64>,

    /// Open WebSocket sessions in total; more are answered 429 (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_web_sockets: Option<i64>,

    /// Open WebSocket sessions of one token; more are answered 429 (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_web_sockets_per_token: Option<i64>,

    /// Seconds a WebSocket session may carry no data before it is closed (default 0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub web_socket_idle_timeout_sec: Option<i64>,

    /// Longest WebSocket session in seconds (default 0: until its token expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub web_socket_max_duration_sec: Option<i64>,

    /// Seconds a client has to send a request body (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub body_read_timeout_sec: Option<i64>,

    /// Seconds the revocation watch may be broken before requests with tokens get 503 and the
    /// gateway reports unready (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub revocation_max_staleness_sec: Option<i64>,
}

impl GateServerLimits {
    /// Each limit that is set, with its flag name: the gateway's command line.
    pub fn flags(&self) -> Vec<(&'static str, i64)> {
        [
            ("max-connections", self.max_connections),
            ("max-websockets", self.max_web_sockets),
            ("max-websockets-per-token", self.max_web_sockets_per_token),
            ("websocket-idle-timeout", self.web_socket_idle_timeout_sec),
            ("websocket-max-duration", self.web_socket_max_duration_sec),
            ("body-read-timeout", self.body_read_timeout_sec),
            (
                "revocation-max-staleness",
                self.revocation_max_staleness_sec,
            ),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.map(|v| (flag, v)))
        .collect()
    }

    /// Checks the ranges the schema declares, for objects stored before the schema had them.
    pub fn validate(&self) -> Result<(), SpecError> {
        let check = |field, value: Option<i64>, min: i64, expected| match value {
            Some(v) if v < min => Err(SpecError::InvalidLimit {
                field,
                expected,
                value: v,
            }),
            _ => Ok(()),
        };
        check("maxConnections", self.max_connections, 1, "at least 1")?;
        check("maxWebSockets", self.max_web_sockets, 1, "at least 1")?;
        check(
            "maxWebSocketsPerToken",
            self.max_web_sockets_per_token,
            1,
            "at least 1",
        )?;
        check(
            "webSocketIdleTimeoutSec",
            self.web_socket_idle_timeout_sec,
            0,
            "0 or more",
        )?;
        check(
            "webSocketMaxDurationSec",
            self.web_socket_max_duration_sec,
            0,
            "0 or more",
        )?;
        check(
            "bodyReadTimeoutSec",
            self.body_read_timeout_sec,
            1,
            "at least 1",
        )?;
        check(
            "revocationMaxStalenessSec",
            self.revocation_max_staleness_sec,
            1,
            "at least 1",
        )
    }
}

impl Default for GateServerSpec {
    /// The spec of a manifest with an empty `spec: {}`, after schema defaulting.
    fn default() -> Self {
        Self {
            api_url: default_api_url(),
            route: None,
            service_account_namespace: default_service_account_namespace(),
            service_account_verbs: default_service_account_verbs(),
            service_account_api_groups: default_service_account_api_groups(),
            service_account_resources: default_service_account_resources(),
            service_account_resource_names: None,
            service_account_non_resource_urls: None,
            pass_through: false,
            image: None,
            web_app_image: None,
            raw_generate_secret: None,
            raw_gnerate_secret: None,
            generate_oauth_client: false,
            generate_route: false,
            ingress_class_name: None,
            ingress_tls_secret_name: None,
            allowed_origins: None,
            require_audience: false,
            publish_jwks: false,
            limits: None,
            oidc: None,
            consoles: None,
            replicas: None,
        }
    }
}

impl GateServerSpec {
    /// Whether to create the key-pair Secret: `generateSecret` if written, else the deprecated
    /// `gnerateSecret` if written, else `true`.
    pub fn generate_secret(&self) -> bool {
        self.raw_generate_secret
            .or(self.raw_gnerate_secret)
            .unwrap_or(DEFAULT_GENERATE_SECRET)
    }

    /// Whether the deprecated `gnerateSecret` decides [`generate_secret`](Self::generate_secret)
    /// (written without `generateSecret`), so the operator can warn about it.
    pub fn uses_deprecated_gnerate_secret(&self) -> bool {
        self.raw_generate_secret.is_none() && self.raw_gnerate_secret.is_some()
    }

    /// How many gateway pods run: `replicas`, else 1.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }

    /// Whether several replicas share consoles, so that they must agree on which one holds each
    /// VM's VNC connection.
    fn replicas_share_consoles(&self) -> bool {
        self.replicas() > 1 && self.consoles.as_ref().is_some_and(|c| c.shared)
    }

    /// Whether the gateway's replicas coordinate shared consoles through Leases: shared consoles
    /// on more than one replica, over HTTPS only (they forward viewers' tokens to each other;
    /// [`validate`](Self::validate) refuses the same without HTTPS, and this never coordinates
    /// over plain HTTP even for an object that was not validated).
    pub fn coordinates_consoles(&self) -> bool {
        self.replicas_share_consoles() && self.generate_route
    }

    /// `route` when written and non-empty.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref().filter(|r| !r.is_empty())
    }

    /// Where the gateway answers the OIDC provider's redirect: `oidc.redirectURL`, else
    /// `https://<route>/auth/callback`; `None` without `oidc` or without either.
    pub fn signin_redirect_url(&self) -> Option<String> {
        let oidc = self.oidc.as_ref()?;
        match &oidc.redirect_url {
            Some(url) => Some(url.trim().to_owned()),
            None => self.route().map(|r| format!("https://{r}/auth/callback")),
        }
    }

    /// The gateway image written in `image`, or `None` when it is absent or empty, which means
    /// the operator-wide default gateway image.
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref().filter(|i| !i.is_empty())
    }

    /// The gateway image to run: `image` when written, else `operator_default`.
    pub fn image_or<'a>(&'a self, operator_default: &'a str) -> &'a str {
        self.image().unwrap_or(operator_default)
    }

    /// The web-app image to run as the init container, or `None` for no web application:
    /// `webAppImage` when written and non-empty; `None` when written as `""`; else
    /// `operator_default` (itself `None` when the operator is configured with no default web
    /// app).
    pub fn web_app_image_or<'a>(&'a self, operator_default: Option<&'a str>) -> Option<&'a str> {
        match self.web_app_image.as_deref() {
            Some("") => None,
            Some(image) => Some(image),
            None => operator_default.filter(|i| !i.is_empty()),
        }
    }

    /// The gateway ServiceAccount's rule (the `serviceAccount*` fields), in the namespace
    /// `serviceAccountNamespace`. Errors as upstream (§1.5 step 4) when API groups and
    /// non-resource URLs are both non-empty, or both empty.
    pub fn effective_rule(&self) -> Result<EffectiveRule, SpecError> {
        const GROUPS: &str = "serviceAccountAPIGroups";
        const URLS: &str = "serviceAccountNonResourceURLs";
        let has_groups = !self.service_account_api_groups.is_empty();
        let has_urls = non_empty(self.service_account_non_resource_urls.as_deref());
        match (has_groups, has_urls) {
            (true, true) => Err(SpecError::GroupsAndNonResourceUrls {
                groups: GROUPS,
                urls: URLS,
            }),
            (false, false) => Err(SpecError::EmptyRule {
                groups: GROUPS,
                urls: URLS,
            }),
            (true, false) => Ok(EffectiveRule {
                namespace: self.service_account_namespace.clone(),
                verbs: self.service_account_verbs.clone(),
                api_groups: Some(self.service_account_api_groups.clone()),
                resources: Some(self.service_account_resources.clone()),
                resource_names: self.service_account_resource_names.clone(),
                non_resource_urls: self.service_account_non_resource_urls.clone(),
            }),
            (false, true) => Ok(EffectiveRule {
                namespace: self.service_account_namespace.clone(),
                verbs: self.service_account_verbs.clone(),
                api_groups: None,
                resources: None,
                resource_names: None,
                non_resource_urls: self.service_account_non_resource_urls.clone(),
            }),
        }
    }

    /// Checks what the CRD's CEL rules check, for objects stored before the rules existed, and
    /// what the gateway would refuse to start with (origins, limits).
    pub fn validate(&self) -> Result<(), SpecError> {
        self.effective_rule()?;
        if self.ingress_tls_secret_name.is_some() && self.route().is_none() {
            return Err(SpecError::TlsWithoutRoute);
        }
        self.origins()?;
        if !(1..=MAX_REPLICAS).contains(&self.replicas()) {
            return Err(SpecError::InvalidReplicas(self.replicas()));
        }
        if self.replicas_share_consoles() && !self.generate_route {
            return Err(SpecError::ReplicasNeedHttps);
        }
        if let Some(limits) = &self.limits {
            limits.validate()?;
        }
        if let Some(consoles) = &self.consoles {
            consoles.validate()?;
        }
        if let Some(oidc) = &self.oidc {
            oidc.validate()?;
            if self.signin_redirect_url().is_none() {
                return Err(SpecError::InvalidOidc {
                    field: "route",
                    reason: "oidc needs route or oidc.redirectURL: the redirect URI registered at the provider is https://<route>/auth/callback unless redirectURL says otherwise".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// `allowedOrigins`, each normalised (see [`crate::names::normalize_origin`]).
    pub fn origins(&self) -> Result<Vec<String>, SpecError> {
        self.allowed_origins
            .iter()
            .flatten()
            .map(|o| {
                crate::names::normalize_origin(o).ok_or_else(|| SpecError::InvalidOrigin(o.clone()))
            })
            .collect()
    }
}

/// Phase of a GateServer. The wire form is [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateServerPhase {
    /// `""`: not yet handled by the operator.
    New,
    /// `Ready`: every object of the server is in place.
    Ready,
    /// `Error`: something is wrong; a condition says what.
    Error,
}

impl GateServerPhase {
    /// Every phase.
    pub const ALL: [Self; 3] = [Self::New, Self::Ready, Self::Error];

    /// The wire form: `""`, `Ready` or `Error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "",
            Self::Ready => "Ready",
            Self::Error => "Error",
        }
    }
}

impl fmt::Display for GateServerPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GateServerPhase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase {
                kind: "GateServer",
                value: s.to_owned(),
            })
    }
}

/// GateServerStatus is the observed state of a GateServer. `conditions` and `phase` are
/// required by the schema (as in Gen B) and therefore always serialised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = gateserver_status_required)]
pub struct GateServerStatus {
    /// Standard conditions, one per type.
    #[serde(default)]
    #[schemars(transform = condition_list)]
    pub conditions: Vec<Condition>,

    /// Server phase: "" (new), Ready or Error.
    #[serde(default)]
    pub phase: String,

    /// virt-gateway extension: the metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn gateserver_status_required(schema: &mut schemars::Schema) {
    require_without_default(schema, &["conditions", "phase"]);
}

impl GateServerStatus {
    /// The phase, parsed.
    pub fn parsed_phase(&self) -> Result<GateServerPhase, UnknownPhase> {
        self.phase.parse()
    }

    /// Sets the phase.
    pub fn set_phase(&mut self, phase: GateServerPhase) {
        phase.as_str().clone_into(&mut self.phase);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_gateway_url_annotation_is_read_trimmed_and_blank_means_unset() {
        let with = |value: Option<&str>| {
            let mut gs = GateServer::new("gs", spec(json!({})));
            if let Some(v) = value {
                gs.metadata.annotations =
                    Some([(GATEWAY_URL_ANNOTATION.to_owned(), v.to_owned())].into());
            }
            gs
        };
        assert_eq!(with(None).gateway_url_annotation(), None);
        assert_eq!(with(Some("  ")).gateway_url_annotation(), None);
        assert_eq!(
            with(Some(" http://127.0.0.1:8080 ")).gateway_url_annotation(),
            Some("http://127.0.0.1:8080")
        );
    }

    fn spec(v: serde_json::Value) -> GateServerSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn oidc_is_read_with_its_defaults_and_validated() {
        let ok = spec(json!({"route": "gw.apps.example.com", "oidc": {
            "issuerURL": "https://dex.example.com", "clientID": "virt-gateway",
            "clientSecretName": "oidc-client"}}));
        ok.validate().unwrap();
        let oidc = ok.oidc.as_ref().unwrap();
        assert_eq!(oidc.secret_key(), "clientSecret");
        assert_eq!(oidc.scopes, None);
        let bad = |patch: serde_json::Value| {
            let mut v = json!({"route": "gw.apps.example.com", "oidc": {
                "issuerURL": "https://dex.example.com", "clientID": "virt-gateway",
                "clientSecretName": "oidc-client"}});
            for (k, val) in patch.as_object().unwrap() {
                if k == "route" {
                    v.as_object_mut().unwrap().remove("route");
                } else {
                    v["oidc"][k] = val.clone();
                }
            }
            spec(v).validate().unwrap_err().to_string()
        };
        assert!(bad(json!({"issuerURL": "http://dex.example.com"})).starts_with("oidc.issuerURL"));
        assert!(bad(json!({"issuerURL": "https://dex?x=1"})).starts_with("oidc.issuerURL"));
        assert!(bad(json!({"clientID": " "})).starts_with("oidc.clientID"));
        assert!(
            bad(json!({"clientSecretName": "Not_A_Name"})).starts_with("oidc.clientSecretName")
        );
        assert!(bad(json!({"clientSecretKey": "a/b"})).starts_with("oidc.clientSecretKey"));
        assert!(bad(json!({"caConfigMapName": "a/b"})).starts_with("oidc.caConfigMapName"));
        assert!(bad(json!({"scopes": ["email"]})).contains("openid"));
        assert!(bad(json!({"scopes": ["openid", "a,b"]})).starts_with("oidc.scopes"));
        assert!(bad(json!({"route": null})).contains("needs route"));
    }

    #[test]
    fn an_explicit_redirect_url_is_https_or_plain_http_on_loopback_only() {
        let with = |route: Option<&str>, url: &str| {
            let mut v = json!({"oidc": {
                "issuerURL": "https://dex.example.com", "clientID": "virt-gateway",
                "clientSecretName": "oidc-client", "redirectURL": url}});
            if let Some(r) = route {
                v["route"] = json!(r);
            }
            let s = spec(v);
            s.validate().map(|()| s.signin_redirect_url().unwrap())
        };
        // Without route: the demo's gateway on a loopback port.
        for good in [
            "http://127.0.0.1:8123/auth/callback",
            "http://127.3.4.5/auth/callback",
            "http://[::1]:8123/auth/callback",
            "https://gw.example.com/auth/callback",
        ] {
            assert_eq!(with(None, good).as_deref(), Ok(good));
        }
        // It wins over the route's address.
        assert_eq!(
            with(
                Some("gw.apps.example.com"),
                "https://login.example.com/auth/callback"
            ),
            Ok("https://login.example.com/auth/callback".to_owned())
        );
        // Plain HTTP off loopback would hand the code to the network; names may resolve anywhere;
        // a callback elsewhere, credentials, query or fragment are refused.
        for evil in [
            "http://gw.example.com/auth/callback",
            "http://localhost:8123/auth/callback",
            "http://10.0.0.1:8123/auth/callback",
            "http://127.0.0.1.evil.example/auth/callback",
            "http://127.0.0.1@evil.example/auth/callback",
            "https://user@gw.example.com/auth/callback",
            "https://gw.example.com/auth/callback?x=1",
            "https://gw.example.com/auth/callback#x",
            "https://gw.example.com/elsewhere",
            "https:///auth/callback",
            "ftp://gw.example.com/auth/callback",
            "javascript://gw.example.com/auth/callback",
        ] {
            let err = with(None, evil).unwrap_err().to_string();
            assert!(err.starts_with("oidc.redirectURL"), "{evil}: {err}");
        }
    }

    #[test]
    fn empty_spec_is_default() {
        let d = spec(json!({}));
        assert_eq!(d, GateServerSpec::default());
        assert_eq!(d.api_url, "https://kubernetes.default.svc");
        assert_eq!(d.service_account_namespace, "*");
        assert_eq!(d.image, None);
        assert_eq!(d.image(), None);
        assert_eq!(d.image_or("ours:1"), "ours:1");
        assert_eq!(d.web_app_image, None);
        assert_eq!(d.web_app_image_or(Some("web:1")), Some("web:1"));
        assert!(d.generate_secret());
        assert!(!d.uses_deprecated_gnerate_secret());
        assert_eq!(d.route(), None);
        assert_eq!(d.validate(), Ok(()));
        assert!(!d.require_audience && !d.publish_jwks);
    }

    #[test]
    fn origins_and_limits_are_validated() {
        let s = spec(json!({"allowedOrigins": ["https://Portal.example.com:443"]}));
        assert_eq!(
            s.origins(),
            Ok(vec!["https://portal.example.com".to_owned()])
        );
        assert_eq!(s.validate(), Ok(()));
        let s = spec(json!({"allowedOrigins": ["portal.example.com"]}));
        assert_eq!(
            s.validate(),
            Err(SpecError::InvalidOrigin("portal.example.com".into()))
        );
        let s = spec(json!({"limits": {"maxWebSocketsPerToken": 0}}));
        assert!(matches!(
            s.validate(),
            Err(SpecError::InvalidLimit {
                field: "maxWebSocketsPerToken",
                ..
            })
        ));
        let s = spec(json!({"limits": {"maxConnections": 10, "webSocketIdleTimeoutSec": 0}}));
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(
            s.limits.unwrap().flags(),
            vec![("max-connections", 10), ("websocket-idle-timeout", 0)]
        );
        let s = spec(json!({"requireAudience": true, "publishJWKS": true}));
        assert!(s.require_audience && s.publish_jwks);
    }

    #[test]
    fn consoles_become_gateway_flags_and_a_policy_needs_sharing() {
        assert_eq!(spec(json!({})).consoles, None);
        let flags = |v: serde_json::Value| {
            let s = spec(json!({ "consoles": v }));
            s.validate().map(|()| s.consoles.unwrap().flags())
        };
        assert_eq!(flags(json!({})), Ok(vec![]));
        assert_eq!(
            flags(json!({"shared": true})),
            Ok(vec![("shared-consoles", "true")])
        );
        assert_eq!(
            flags(json!({"shared": true, "controllers": "TakeOver"})),
            Ok(vec![
                ("shared-consoles", "true"),
                ("console-controllers", "take-over")
            ])
        );
        assert_eq!(
            flags(json!({"shared": true, "controllers": "Shared"})),
            Ok(vec![
                ("shared-consoles", "true"),
                ("console-controllers", "shared")
            ])
        );
        let err = flags(json!({"controllers": "Shared"})).unwrap_err();
        assert_eq!(err, SpecError::ControllersWithoutSharedConsoles);
        assert!(err.to_string().starts_with("consoles.controllers needs"));
        // Values outside the enum are not read at all (the schema refuses them at admission).
        for bad in ["takeover", "take-over", "shared", ""] {
            let v = json!({"consoles": {"shared": true, "controllers": bad}});
            assert!(
                serde_json::from_value::<GateServerSpec>(v).is_err(),
                "{bad}"
            );
        }
        // Written back as read: no field appears that was not written.
        let out = serde_json::to_value(spec(json!({"consoles": {"shared": true}}))).unwrap();
        assert_eq!(out["consoles"], json!({"shared": true}));
    }

    #[test]
    fn replicas_coordinate_consoles_only_when_shared_and_several() {
        let coordinated = |v: serde_json::Value| {
            let s = spec(v);
            s.validate()
                .map(|()| (s.replicas(), s.coordinates_consoles()))
        };
        // The seed (and every upstream manifest): one replica, nothing to coordinate.
        assert_eq!(coordinated(json!({})), Ok((1, false)));
        assert_eq!(coordinated(json!({"replicas": 3})), Ok((3, false)));
        assert_eq!(
            coordinated(json!({"replicas": 1, "consoles": {"shared": true}})),
            Ok((1, false))
        );
        assert_eq!(
            coordinated(
                json!({"replicas": 2, "consoles": {"shared": true}, "generateRoute": true})
            ),
            Ok((2, true))
        );
        // Replicas forward viewers' tokens to each other: never over plain HTTP.
        assert_eq!(
            coordinated(json!({"replicas": 2, "consoles": {"shared": true}})),
            Err(SpecError::ReplicasNeedHttps)
        );
        // Nor for an object that skipped validation (fail closed).
        assert!(!spec(json!({"replicas": 2, "consoles": {"shared": true}})).coordinates_consoles());
        // Objects stored before the schema's bounds (or with validation off) are refused by
        // the operator with a condition instead.
        for bad in [0, -1, MAX_REPLICAS + 1] {
            assert_eq!(
                coordinated(json!({"replicas": bad})),
                Err(SpecError::InvalidReplicas(bad))
            );
        }
        assert_eq!(
            SpecError::InvalidReplicas(0).to_string(),
            "replicas must be between 1 and 10, not 0"
        );
        let out = serde_json::to_value(spec(json!({}))).unwrap();
        assert!(out.get("replicas").is_none(), "absent stays absent");
    }

    #[test]
    fn generate_secret_spellings() {
        assert!(!spec(json!({"generateSecret": false})).generate_secret());
        assert!(!spec(json!({"gnerateSecret": false})).generate_secret());
        assert!(spec(json!({"gnerateSecret": true})).generate_secret());
        assert!(spec(json!({"gnerateSecret": true})).uses_deprecated_gnerate_secret());
        let both = spec(json!({"generateSecret": true, "gnerateSecret": false}));
        assert!(both.generate_secret(), "generateSecret wins");
        assert!(!both.uses_deprecated_gnerate_secret());
        assert!(!spec(json!({"generateSecret": false, "gnerateSecret": true})).generate_secret());
        let out = serde_json::to_value(spec(json!({"gnerateSecret": true}))).unwrap();
        assert_eq!(out["gnerateSecret"], json!(true));
        assert!(out.get("generateSecret").is_none());
    }

    #[test]
    fn effective_rule() {
        let r = spec(json!({"serviceAccountNamespace": "vms"}))
            .effective_rule()
            .unwrap();
        assert_eq!(r.namespace, "vms");
        assert_eq!(
            r.api_groups,
            Some(vec!["subresources.kubevirt.io".to_owned()])
        );
        let r = spec(
            json!({"serviceAccountAPIGroups": [], "serviceAccountNonResourceURLs": ["/healthz"]}),
        )
        .effective_rule()
        .unwrap();
        assert!(r.is_non_resource());
        assert_eq!(r.resources, None);
        let e = spec(json!({"serviceAccountNonResourceURLs": ["/healthz"]}))
            .effective_rule()
            .unwrap_err();
        assert!(matches!(e, SpecError::GroupsAndNonResourceUrls { .. }));
        assert!(e.to_string().contains("serviceAccountAPIGroups"));
        let e = spec(json!({"serviceAccountAPIGroups": []}))
            .effective_rule()
            .unwrap_err();
        assert!(matches!(e, SpecError::EmptyRule { .. }));
    }

    #[test]
    fn tls_needs_route() {
        assert_eq!(
            spec(json!({"ingressTLSSecretName": "tls"})).validate(),
            Err(SpecError::TlsWithoutRoute)
        );
        assert_eq!(
            spec(json!({"ingressTLSSecretName": "tls", "route": "a.b.c"})).validate(),
            Ok(())
        );
    }

    #[test]
    fn images_explicit_default_and_empty() {
        let explicit = spec(json!({"image": GEN_B_IMAGE, "webAppImage": GEN_B_WEB_APP_IMAGE}));
        assert_eq!(
            explicit.image_or("ours:1"),
            GEN_B_IMAGE,
            "a written image wins"
        );
        assert_eq!(
            explicit.web_app_image_or(Some("web:1")),
            Some(GEN_B_WEB_APP_IMAGE)
        );
        let empty = spec(json!({"image": "", "webAppImage": ""}));
        assert_eq!(empty.image(), None, "an empty image means the default");
        assert_eq!(empty.image_or("ours:1"), "ours:1");
        assert_eq!(
            empty.web_app_image_or(Some("web:1")),
            None,
            "webAppImage: \"\" means no web application"
        );
        let unset = spec(json!({}));
        assert_eq!(unset.web_app_image_or(None), None);
        assert_eq!(unset.web_app_image_or(Some("")), None);
        let out = serde_json::to_value(&unset).unwrap();
        assert!(out.get("image").is_none() && out.get("webAppImage").is_none());
        let out = serde_json::to_value(&empty).unwrap();
        assert_eq!(out["webAppImage"], json!(""));
    }

    #[test]
    fn phases_and_status() {
        for p in GateServerPhase::ALL {
            assert_eq!(p.as_str().parse::<GateServerPhase>(), Ok(p));
        }
        assert!("Pending".parse::<GateServerPhase>().is_err());
        let mut st = GateServerStatus::default();
        assert_eq!(
            serde_json::to_value(&st).unwrap(),
            json!({"conditions": [], "phase": ""})
        );
        st.set_phase(GateServerPhase::Ready);
        st.observed_generation = Some(4);
        assert_eq!(
            serde_json::to_value(&st).unwrap(),
            json!({"conditions": [], "phase": "Ready", "observedGeneration": 4})
        );
        assert_eq!(st.parsed_phase(), Ok(GateServerPhase::Ready));
    }
}
