//! Names, labels and annotations of the objects the operator manages.
//!
//! Namespaced children of a GateServer keep the Gen B names (`<name>` for the Service,
//! Deployment, ServiceAccount and Ingress), so Gen B objects are adopted in place. Cluster-scoped
//! objects and objects in another namespace get names that are unique across namespaces
//! (`virt-gateway:<namespace>:<name>`), and every object carries labels tying it to its owner, so
//! that the finalizer and the pruning of stale objects can find them by label even after the
//! spec changed.

use std::collections::BTreeMap;

/// The one server-side-apply field manager of the operator.
pub const FIELD_MANAGER: &str = "virt-gateway-operator";
/// The finalizer of GateServers (and of GateTokens with `generateServiceAccount`), Gen B's name.
pub const FINALIZER: &str = "ocgate.yaacov.com/finalizer";

/// `app.kubernetes.io/managed-by`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on everything the operator creates.
pub const MANAGED_BY: &str = "virt-gateway-operator";
/// Gen B's `app: <gateserver name>` label; also the gateway Deployment's selector (immutable, so
/// kept as Gen B wrote it to adopt Gen B Deployments).
pub const LABEL_APP: &str = "app";
/// `app.kubernetes.io/name`.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: which part of a GateServer or GateToken an object is.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Namespace of the GateServer an object belongs to.
pub const LABEL_SERVER_NAMESPACE: &str = "ocgate.yaacov.com/gateserver-namespace";
/// Name of the GateServer an object belongs to (shortened with a hash beyond 63 characters; the
/// full reference is in [`ANNOTATION_SERVER`]).
pub const LABEL_SERVER_NAME: &str = "ocgate.yaacov.com/gateserver-name";
/// Namespace of the GateToken an object belongs to (`generateServiceAccount`).
pub const LABEL_TOKEN_NAMESPACE: &str = "ocgate.yaacov.com/gatetoken-namespace";
/// Name of the GateToken an object belongs to (shortened like [`LABEL_SERVER_NAME`]).
pub const LABEL_TOKEN_NAME: &str = "ocgate.yaacov.com/gatetoken-name";
/// `<namespace>/<name>` of the GateServer an object belongs to.
pub const ANNOTATION_SERVER: &str = "ocgate.yaacov.com/gateserver";
/// `<namespace>/<name>` of the GateToken an object belongs to.
pub const ANNOTATION_TOKEN: &str = "ocgate.yaacov.com/gatetoken";
/// Key id (RFC 7638 thumbprint) of the public key the gateway pods verify with. On the pod
/// template, so that replacing the key Secret rolls the gateway (the Go gateway reads its key
/// once at start).
pub const ANNOTATION_KID: &str = "ocgate.yaacov.com/jwt-kid";

/// Component: the gateway itself (Deployment, Service, ServiceAccount, Ingress, Route).
pub const COMPONENT_GATEWAY: &str = "gateway";
/// Component: the gateway ServiceAccount's access rule (ClusterRole and its binding).
pub const COMPONENT_ACCESS: &str = "gateway-access";
/// Component: the Role letting the gateway read GateTokens (revocation watch).
pub const COMPONENT_TOKEN_READER: &str = "token-reader";
/// Component: the RoleBinding letting gateway replicas coordinate shared consoles (Leases).
pub const COMPONENT_CONSOLE_LEASES: &str = "console-leases";
/// Component: the OAuthClient and its secret.
pub const COMPONENT_OAUTH: &str = "oauth-client";
/// Component: the signing-key Secret.
pub const COMPONENT_SIGNING_KEY: &str = "signing-key";
/// Component: the ServiceAccount and RBAC of a `generateServiceAccount` GateToken.
pub const COMPONENT_TOKEN_ACCOUNT: &str = "token-service-account";

/// Kubernetes' limit for object names that are DNS subdomains.
pub const MAX_NAME_LEN: usize = 253;
/// Kubernetes' limit for label values.
pub const MAX_LABEL_VALUE_LEN: usize = 63;

/// A short hexadecimal SHA-256 prefix of `input`, for shortened names.
pub fn short_hash(input: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
    digest.as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `value` itself when it fits `max` bytes, else a prefix of it, `-`, and a hash of the whole,
/// `max` bytes long at most. The prefix never ends in `-` or `.`, so the result stays a valid
/// DNS subdomain or label value when `value` was one.
pub fn bounded(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let hash = short_hash(value);
    let keep = max.saturating_sub(hash.len() + 1);
    let mut end = keep.min(value.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = value[..end].trim_end_matches(['-', '.', '_', ':']);
    format!("{prefix}-{hash}")
}

/// A label value for a name (≤ 63 characters).
pub fn label_value(name: &str) -> String {
    bounded(name, MAX_LABEL_VALUE_LEN)
}

/// `base` followed by `suffix`, shortened with a hash to a valid object name length.
pub fn child_name(base: &str, suffix: &str) -> String {
    if base.len() + suffix.len() <= MAX_NAME_LEN {
        return format!("{base}{suffix}");
    }
    let room = MAX_NAME_LEN - suffix.len();
    format!("{}{suffix}", bounded(base, room))
}

/// Name of the ClusterRole, ClusterRoleBinding and (in another namespace) RoleBinding of a
/// GateServer's gateway ServiceAccount: `virt-gateway:<namespace>:<name>`, unique across
/// namespaces.
pub fn server_access_name(namespace: &str, name: &str) -> String {
    bounded(&format!("virt-gateway:{namespace}:{name}"), MAX_NAME_LEN)
}

/// Name of the Role and RoleBinding letting a GateServer's gateway read GateTokens.
pub fn token_reader_name(server: &str) -> String {
    child_name(server, "-gatetoken-reader")
}

/// Name of the RoleBinding granting a GateServer's gateway the console-Lease ClusterRole.
pub fn console_leases_name(server: &str) -> String {
    child_name(server, "-console-leases")
}

/// Name of the OAuthClient of a GateServer (cluster-scoped): `virt-gateway.<namespace>.<name>`.
/// Namespaces contain no dots, so the name is unique across namespaces.
pub fn oauth_client_name(namespace: &str, name: &str) -> String {
    bounded(&format!("virt-gateway.{namespace}.{name}"), MAX_NAME_LEN)
}

/// Name of the Secret holding a GateServer's OAuth client secret.
pub fn oauth_secret_name(server: &str) -> String {
    child_name(server, "-oauth-client")
}

/// Name of the Secret holding the key that seals a GateServer's sign-in cookies.
pub fn signin_key_secret_name(server: &str) -> String {
    child_name(server, "-signin-key")
}

/// Name of the ServiceAccount of a `generateServiceAccount` GateToken.
pub fn token_service_account_name(token: &str) -> String {
    bounded(&format!("gatetoken-{token}"), MAX_NAME_LEN)
}

/// Name of the ClusterRole and binding of a `generateServiceAccount` GateToken:
/// `virt-gateway-token:<namespace>:<name>`.
pub fn token_access_name(namespace: &str, name: &str) -> String {
    bounded(
        &format!("virt-gateway-token:{namespace}:{name}"),
        MAX_NAME_LEN,
    )
}

/// The labels that select every object of one GateServer.
pub fn server_selector_labels(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_SERVER_NAMESPACE.to_owned(), label_value(namespace)),
        (LABEL_SERVER_NAME.to_owned(), label_value(name)),
    ])
}

/// The labels of an object of a GateServer, for one component.
pub fn server_labels(namespace: &str, name: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = server_selector_labels(namespace, name);
    labels.insert(LABEL_APP.to_owned(), label_value(name));
    labels.insert(LABEL_NAME.to_owned(), "kube-gateway".to_owned());
    labels.insert(LABEL_INSTANCE.to_owned(), label_value(name));
    labels.insert(LABEL_COMPONENT.to_owned(), component.to_owned());
    labels
}

/// The annotations of an object of a GateServer.
pub fn server_annotations(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(ANNOTATION_SERVER.to_owned(), format!("{namespace}/{name}"))])
}

/// The labels that select every object of one GateToken.
pub fn token_selector_labels(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_TOKEN_NAMESPACE.to_owned(), label_value(namespace)),
        (LABEL_TOKEN_NAME.to_owned(), label_value(name)),
    ])
}

/// The labels of an object of a `generateServiceAccount` GateToken (Gen B's `app: <token>` too).
pub fn token_labels(namespace: &str, name: &str) -> BTreeMap<String, String> {
    let mut labels = token_selector_labels(namespace, name);
    labels.insert(LABEL_APP.to_owned(), label_value(name));
    labels.insert(
        LABEL_COMPONENT.to_owned(),
        COMPONENT_TOKEN_ACCOUNT.to_owned(),
    );
    labels
}

/// The annotations of an object of a GateToken.
pub fn token_annotations(namespace: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(ANNOTATION_TOKEN.to_owned(), format!("{namespace}/{name}"))])
}

/// A label selector string (`k=v,k=v`) from labels.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits a `<namespace>/<name>` annotation value.
pub fn parse_ref(value: &str) -> Option<(&str, &str)> {
    let (ns, name) = value.split_once('/')?;
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(label_value("gateserver-sample"), "gateserver-sample");
        assert_eq!(
            server_access_name("kube-gateway", "gateserver-sample"),
            "virt-gateway:kube-gateway:gateserver-sample"
        );
        assert_eq!(
            oauth_client_name("ns", "a.b"),
            "virt-gateway.ns.a.b",
            "namespaces have no dots, so the first dot after the prefix splits"
        );
        assert_eq!(token_reader_name("gs"), "gs-gatetoken-reader");
        assert_eq!(token_service_account_name("tok"), "gatetoken-tok");
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let long = "a".repeat(100);
        let other = format!("{}b", "a".repeat(99));
        let l1 = label_value(&long);
        let l2 = label_value(&other);
        assert_eq!(l1.len(), 63);
        assert_ne!(l1, l2);
        assert!(l1.chars().last().unwrap().is_ascii_alphanumeric());
        let name = child_name(&"x".repeat(253), "-gatetoken-reader");
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-gatetoken-reader"));
        let dotted = label_value(&format!("{}.{}", "a".repeat(51), "b".repeat(40)));
        assert!(!dotted.contains(".-"), "{dotted}");
    }

    #[test]
    fn selectors_and_refs() {
        let labels = server_selector_labels("ns", "gs");
        assert_eq!(
            selector(&labels),
            "app.kubernetes.io/managed-by=virt-gateway-operator,ocgate.yaacov.com/gateserver-name=gs,ocgate.yaacov.com/gateserver-namespace=ns"
        );
        assert_eq!(parse_ref("ns/gs"), Some(("ns", "gs")));
        assert_eq!(parse_ref("ns/"), None);
        assert_eq!(parse_ref("nothing"), None);
    }
}
