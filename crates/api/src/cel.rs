//! The CEL validation rules (`x-kubernetes-validations`) of the CRDs, with their messages.
//!
//! The API server evaluates these at admission, after applying schema defaults, so a user learns
//! at `kubectl apply` time what the upstream operator only reported later through an `Error`
//! phase. The same checks exist in code ([`GateTokenSpec::validate`](crate::GateTokenSpec::validate)
//! and [`GateServerSpec::validate`](crate::GateServerSpec::validate)) for objects stored before
//! the rules existed.
//!
//! Every rule uses only functions available in the CRD validation environment of
//! Kubernetes 1.31 and later (`format.datetime()` comes from the Kubernetes format library,
//! introduced in 1.31). Null values count as absent, and `has()` guards every optional field.
//! A field with a schema default is present when the rules run on an object, but not when the
//! API server checks the CRD's own `spec: {}` default, so every rule treats an absent field as
//! its default.
//!
//! Why `from` is checked with CEL instead of `format: date-time`: the API server does enforce
//! `format: date-time`, but it also types such a field as a CEL `timestamp`, which would make a
//! friendly rule impossible, and it rejects the empty string that Gen B's operator treated as
//! "now". So `from` is a plain string with the rule [`TOKEN_FROM_RFC3339`].

/// GateToken, on `spec`: API groups (either spelling; `apiGroups` wins) and non-resource URLs
/// exclude each other.
pub const TOKEN_GROUPS_XOR_URLS: &str = "!((has(self.apiGroups) ? self.apiGroups.size() > 0 : (has(self.APIGroups) && self.APIGroups.size() > 0)) && has(self.nonResourceURLs) && self.nonResourceURLs.size() > 0)";

/// Message of [`TOKEN_GROUPS_XOR_URLS`].
pub const TOKEN_GROUPS_XOR_URLS_MESSAGE: &str = "auth roles can either apply to API resources or non-resource URL paths, but not both: set either apiGroups (or APIGroups) or nonResourceURLs, not both";

/// GateToken, on `spec`: an explicitly empty API group list needs non-resource URLs. (When
/// neither `apiGroups` nor `APIGroups` is written, the default `["subresources.kubevirt.io"]`
/// applies unless `nonResourceURLs` is set, so the rule can only be empty when written so.)
pub const TOKEN_RULE_NOT_EMPTY: &str = "!(has(self.apiGroups) ? self.apiGroups.size() == 0 : (has(self.APIGroups) && self.APIGroups.size() == 0)) || (has(self.nonResourceURLs) && self.nonResourceURLs.size() > 0)";

/// Message of [`TOKEN_RULE_NOT_EMPTY`].
pub const TOKEN_RULE_NOT_EMPTY_MESSAGE: &str = "auth roles can either apply to API resources or non-resource URL paths, but can't be empty: list API groups in apiGroups (for example subresources.kubevirt.io), or paths in nonResourceURLs";

/// GateToken, on `spec`: a watch-only token must be a JWT: a `generateServiceAccount` token is a
/// real Kubernetes credential that the gateway passes through, input and all.
pub const TOKEN_OBSERVE_NEEDS_JWT: &str = "!has(self.consoleRole) || self.consoleRole != 'observe' || !has(self.generateServiceAccount) || !self.generateServiceAccount";

/// Message of [`TOKEN_OBSERVE_NEEDS_JWT`].
pub const TOKEN_OBSERVE_NEEDS_JWT_MESSAGE: &str = "consoleRole: observe needs a JWT token: a generateServiceAccount token is a Kubernetes credential the gateway passes through with its input; remove generateServiceAccount or consoleRole";

/// GateToken, on `spec.durationSec`: a token must live at least one second.
pub const TOKEN_DURATION_POSITIVE: &str = "self > 0";

/// Message of [`TOKEN_DURATION_POSITIVE`].
pub const TOKEN_DURATION_POSITIVE_MESSAGE: &str = "durationSec must be greater than 0: it is the token lifetime in seconds, counted from 'from' (default 3600)";

/// GateToken, on `spec.from`: empty (meaning "now") or an RFC 3339 date-time with a time zone.
///
/// The regular expression pins down the RFC 3339 grammar (the API server's own date-time check,
/// which `format.datetime()` uses, also lets through a trailing `T`, any character as the
/// decimal point and offsets beyond ±23:59) and ranges every time field, including the leap
/// second 60 that the API server rejects; `format.datetime()` then rejects impossible dates
/// such as February 30. Together they accept exactly what
/// [`parse_rfc3339`](crate::parse_rfc3339) accepts.
pub const TOKEN_FROM_RFC3339: &str = "self == '' || (self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$') && !format.datetime().validate(self).hasValue())";

/// Message of [`TOKEN_FROM_RFC3339`].
pub const TOKEN_FROM_RFC3339_MESSAGE: &str = "from must be an RFC 3339 date-time with a time zone, for example 2021-04-22T10:00:00Z or 2021-04-22T12:00:00.5+02:00; omit it to start the token now";

/// GateToken, on `spec.revoked`: revocation is final (a transition rule, checked on updates).
pub const TOKEN_REVOKED_IS_FINAL: &str = "self || !oldSelf";

/// Message of [`TOKEN_REVOKED_IS_FINAL`].
pub const TOKEN_REVOKED_IS_FINAL_MESSAGE: &str = "revoked cannot be set back to false: a revoked token stays revoked; create a new GateToken instead";

/// GateServer, on `spec.consoles`: a policy for several controllers only means something when
/// consoles are shared (without sharing, a second viewer takes the one VNC session over anyway).
pub const SERVER_CONTROLLERS_NEED_SHARED: &str =
    "!has(self.controllers) || (has(self.shared) && self.shared)";

/// Message of [`SERVER_CONTROLLERS_NEED_SHARED`].
pub const SERVER_CONTROLLERS_NEED_SHARED_MESSAGE: &str = "consoles.controllers needs consoles.shared: true: the policy for several controllers applies to shared consoles only; set shared: true or remove controllers";

/// GateServer, on `spec`: the proxy's API groups and non-resource URLs exclude each other.
/// An absent `serviceAccountAPIGroups` counts as its default `[subresources.kubevirt.io]`: the
/// API server checks the CRD's `spec` default `{}` against the rules before nested defaults
/// apply, while objects are checked after.
pub const SERVER_GROUPS_XOR_URLS: &str = "!((!has(self.serviceAccountAPIGroups) || self.serviceAccountAPIGroups.size() > 0) && has(self.serviceAccountNonResourceURLs) && self.serviceAccountNonResourceURLs.size() > 0)";

/// Message of [`SERVER_GROUPS_XOR_URLS`].
pub const SERVER_GROUPS_XOR_URLS_MESSAGE: &str = "auth roles can either apply to API resources or non-resource URL paths, but not both: serviceAccountAPIGroups defaults to [subresources.kubevirt.io], so set serviceAccountAPIGroups: [] to use serviceAccountNonResourceURLs";

/// GateServer, on `spec`: the proxy's rule needs API groups or non-resource URLs (an absent
/// `serviceAccountAPIGroups` counts as its non-empty default).
pub const SERVER_RULE_NOT_EMPTY: &str = "!has(self.serviceAccountAPIGroups) || self.serviceAccountAPIGroups.size() > 0 || (has(self.serviceAccountNonResourceURLs) && self.serviceAccountNonResourceURLs.size() > 0)";

/// Message of [`SERVER_RULE_NOT_EMPTY`].
pub const SERVER_RULE_NOT_EMPTY_MESSAGE: &str = "auth roles can either apply to API resources or non-resource URL paths, but can't be empty: list API groups in serviceAccountAPIGroups (for example subresources.kubevirt.io), or paths in serviceAccountNonResourceURLs";

/// GateServer, on `spec`: the Ingress TLS section covers the host in `route`, so a TLS Secret
/// needs a route.
pub const SERVER_TLS_NEEDS_ROUTE: &str =
    "!has(self.ingressTLSSecretName) || (has(self.route) && self.route != '')";

/// Message of [`SERVER_TLS_NEEDS_ROUTE`].
pub const SERVER_TLS_NEEDS_ROUTE_MESSAGE: &str = "ingressTLSSecretName needs route: the Ingress TLS section is issued for the host name in route";

/// GateServer, on `spec`: replicas sharing consoles forward viewers (with their tokens) to the
/// replica a Lease names. Only over HTTPS (`generateRoute`) must that replica prove it holds the
/// replicas' serving key; over plain HTTP whoever can write a Lease in the namespace could name an
/// address of theirs and collect the tokens.
pub const SERVER_REPLICAS_NEED_HTTPS: &str = "!has(self.replicas) || self.replicas <= 1 || !has(self.consoles) || !has(self.consoles.shared) || !self.consoles.shared || (has(self.generateRoute) && self.generateRoute)";

/// Message of [`SERVER_REPLICAS_NEED_HTTPS`].
pub const SERVER_REPLICAS_NEED_HTTPS_MESSAGE: &str = "consoles.shared with more than one replica needs generateRoute: true: the replicas forward viewers and their tokens to each other, over HTTPS with their shared serving certificate; use one replica, or shared: false, without it";

/// Every rule of the GateToken CRD as `(JSON path of the schema node, rule, message)`.
pub const GATETOKEN_RULES: &[(&str, &str, &str)] = &[
    ("spec", TOKEN_GROUPS_XOR_URLS, TOKEN_GROUPS_XOR_URLS_MESSAGE),
    ("spec", TOKEN_RULE_NOT_EMPTY, TOKEN_RULE_NOT_EMPTY_MESSAGE),
    (
        "spec",
        TOKEN_OBSERVE_NEEDS_JWT,
        TOKEN_OBSERVE_NEEDS_JWT_MESSAGE,
    ),
    (
        "spec.durationSec",
        TOKEN_DURATION_POSITIVE,
        TOKEN_DURATION_POSITIVE_MESSAGE,
    ),
    ("spec.from", TOKEN_FROM_RFC3339, TOKEN_FROM_RFC3339_MESSAGE),
    (
        "spec.revoked",
        TOKEN_REVOKED_IS_FINAL,
        TOKEN_REVOKED_IS_FINAL_MESSAGE,
    ),
];

/// Every rule of the GateServer CRD as `(JSON path of the schema node, rule, message)`.
pub const GATESERVER_RULES: &[(&str, &str, &str)] = &[
    (
        "spec",
        SERVER_GROUPS_XOR_URLS,
        SERVER_GROUPS_XOR_URLS_MESSAGE,
    ),
    ("spec", SERVER_RULE_NOT_EMPTY, SERVER_RULE_NOT_EMPTY_MESSAGE),
    (
        "spec",
        SERVER_TLS_NEEDS_ROUTE,
        SERVER_TLS_NEEDS_ROUTE_MESSAGE,
    ),
    (
        "spec.consoles",
        SERVER_CONTROLLERS_NEED_SHARED,
        SERVER_CONTROLLERS_NEED_SHARED_MESSAGE,
    ),
    (
        "spec",
        SERVER_REPLICAS_NEED_HTTPS,
        SERVER_REPLICAS_NEED_HTTPS_MESSAGE,
    ),
];
