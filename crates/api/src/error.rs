//! Error types of the API crate.

/// A spec that the operator cannot act on. The messages say what to fix; the `Display` text of
/// the two rule errors starts with the upstream wording, so that existing alerts keep matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// API groups and non-resource URLs are both non-empty.
    #[error(
        "auth roles can either apply to API resources or non-resource URL paths, but not both: set either {groups} or {urls}, not both"
    )]
    GroupsAndNonResourceUrls {
        /// The field (or fields) holding the API groups, e.g. `apiGroups`.
        groups: &'static str,
        /// The field holding the non-resource URLs, e.g. `nonResourceURLs`.
        urls: &'static str,
    },
    /// API groups and non-resource URLs are both empty.
    #[error(
        "auth roles can either apply to API resources or non-resource URL paths, but can't be empty: list API groups in {groups} or paths in {urls}"
    )]
    EmptyRule {
        /// The field (or fields) holding the API groups, e.g. `apiGroups`.
        groups: &'static str,
        /// The field holding the non-resource URLs, e.g. `nonResourceURLs`.
        urls: &'static str,
    },
    /// `consoleRole: observe` on a ServiceAccount token, which the gateway cannot hold to it.
    #[error("{}", crate::cel::TOKEN_OBSERVE_NEEDS_JWT_MESSAGE)]
    ObserveWithServiceAccount,
    /// `durationSec` is zero or negative.
    #[error("durationSec must be greater than 0, got {0}")]
    NonPositiveDuration(i64),
    /// `from` is not a usable RFC 3339 date-time.
    #[error("from: {0}")]
    InvalidFrom(#[from] TimeError),
    /// `from + durationSec` does not fit the supported time range (year 9999).
    #[error(
        "from + durationSec is out of range: {from} + {duration_sec} seconds is beyond the supported time range (year 9999)"
    )]
    ExpiryOutOfRange {
        /// `from` as written (or "now").
        from: String,
        /// `durationSec`.
        duration_sec: i64,
    },
    /// An entry of `allowedOrigins` is not an origin.
    #[error(
        "allowedOrigins: {0:?} is not an origin; write scheme://host[:port], for example https://portal.example.com"
    )]
    InvalidOrigin(String),
    /// A limit is out of range.
    #[error("limits.{field} must be {expected}, got {value}")]
    InvalidLimit {
        /// The field.
        field: &'static str,
        /// The allowed range.
        expected: &'static str,
        /// The value.
        value: i64,
    },
    /// `ingressTLSSecretName` without `route`.
    #[error(
        "ingressTLSSecretName needs route: the Ingress TLS section is issued for the host name in route"
    )]
    TlsWithoutRoute,
    /// `replicas` outside 1..=[`crate::gateserver::MAX_REPLICAS`].
    #[error("replicas must be between 1 and {max}, not {0}", max = crate::gateserver::MAX_REPLICAS)]
    InvalidReplicas(i32),
    /// Shared consoles on several replicas without HTTPS between them.
    #[error("{}", crate::cel::SERVER_REPLICAS_NEED_HTTPS_MESSAGE)]
    ReplicasNeedHttps,
    /// `consoles.controllers` without `consoles.shared: true`.
    #[error("{}", crate::cel::SERVER_CONTROLLERS_NEED_SHARED_MESSAGE)]
    ControllersWithoutSharedConsoles,
    /// A field of `oidc` is unusable.
    #[error("oidc.{field} {reason}")]
    InvalidOidc {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A string that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not an RFC 3339 date-time with a time zone (for example 2021-04-22T10:00:00Z): {reason}"
)]
pub struct TimeError {
    /// The rejected input.
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

/// A phase string that is not one of the known phases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} phase {value:?}")]
pub struct UnknownPhase {
    /// `GateServer` or `GateToken`.
    pub kind: &'static str,
    /// The rejected string.
    pub value: String,
}

/// Rendering a CRD manifest failed.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The CRD could not be serialised to YAML.
    #[error("cannot serialise CRD {name} to YAML: {source}")]
    Yaml {
        /// The CRD name, e.g. `gatetokens.ocgate.yaacov.com`.
        name: String,
        /// The serialiser's error.
        #[source]
        source: serde_yaml::Error,
    },
}
