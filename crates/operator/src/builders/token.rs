//! What a GateToken is signed with, and the ServiceAccount objects of `generateServiceAccount`
//! tokens (Gen B §1.7, §1.7.3, §1.8, fixed).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, Subject,
};
use kube::api::ObjectMeta;
use virt_gateway_api::{EffectiveRule, GateToken, GateTokenData, TokenValidity};
use virt_gateway_auth::jwt::Claims;

use super::{BuildError, identity};
use crate::names::{
    token_access_name, token_annotations, token_labels, token_service_account_name,
};

/// The claims of a GateToken's JWT: Gen B's (`exp`, `nbf`, `namespace`, `verbs`, `apiGroups`,
/// `resources`, `resourceNames`, `nonResourceURLs`, with `null` for unset lists) plus `iat` and
/// `jti` (= the GateToken's UID, which the gateway checks for revocation).
pub fn token_claims(
    rule: &EffectiveRule,
    validity: &TokenValidity,
    jti: &str,
    issued_at: i64,
) -> Result<Claims, BuildError> {
    let seconds = |field, value: i64| {
        u64::try_from(value).map_err(|_| BuildError::NegativeTime { field, value })
    };
    let mut claims = Claims::new(seconds("exp", validity.exp)?);
    claims.nbf = Some(seconds("nbf", validity.nbf)?);
    claims.iat = Some(u64::try_from(issued_at).unwrap_or(0));
    claims.jti = Some(jti.to_owned());
    claims.namespace = rule.namespace.clone();
    claims.verbs = rule.verbs.clone();
    claims.api_groups = rule.api_groups.clone();
    claims.resources = rule.resources.clone();
    claims.resource_names = rule.resource_names.clone();
    claims.non_resource_urls = rule.non_resource_urls.clone();
    Ok(claims)
}

/// Binds `claims` to where they are valid (review §6): `iss` names the namespace whose key
/// signs them, and `aud` the GateServer `server` of that namespace when the GateToken names
/// one. Without `server` there is no `aud`, and every GateServer of the namespace that does not
/// require an audience accepts the token, as before.
pub fn bind_claims(claims: &mut Claims, namespace: &str, server: Option<&str>) {
    claims.iss = Some(virt_gateway_api::names::token_issuer(namespace));
    claims.aud = server.map(|s| vec![virt_gateway_api::names::gateserver_audience(namespace, s)]);
}

/// `status.data` of an issued token: Gen B's keys, `alg` the algorithm actually used, plus `jti`
/// and `kid` (the signing key's id; `None` for ServiceAccount tokens).
pub fn token_data(
    rule: &EffectiveRule,
    validity: &TokenValidity,
    alg: &str,
    jti: &str,
    kid: Option<&str>,
) -> GateTokenData {
    let mut data = GateTokenData::new(rule, validity, alg);
    data.jti = Some(jti.to_owned());
    data.kid = kid.map(str::to_owned);
    data
}

/// The ServiceAccount and RBAC of a `generateServiceAccount` GateToken: a ServiceAccount in the
/// token's namespace (owned by the token), a ClusterRole holding the token's rule (no rule at
/// all when a list of it is empty: `[]` means "nothing", as in a JWT), and a
/// ClusterRoleBinding (target namespace `*`) or a RoleBinding in the target namespace. Names are
/// unique across namespaces; everything is labelled with the token, so it can be removed by label
/// at expiry, revocation and deletion.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAccount {
    /// ServiceAccount `gatetoken-<name>` in the token's namespace.
    pub service_account: ServiceAccount,
    /// ClusterRole `virt-gateway-token:<ns>:<name>`.
    pub cluster_role: ClusterRole,
    /// ClusterRoleBinding of the same name when the target namespace is `*`.
    pub cluster_role_binding: Option<ClusterRoleBinding>,
    /// RoleBinding of the same name in the target namespace otherwise.
    pub role_binding: Option<RoleBinding>,
}

/// Builds [`TokenAccount`] for a token and its effective rule.
pub fn token_account(token: &GateToken, rule: &EffectiveRule) -> Result<TokenAccount, BuildError> {
    let (ns, name, owner) = identity(token, "GateToken")?;
    let sa_name = token_service_account_name(&name);
    let access = token_access_name(&ns, &name);
    let meta = |obj_name: &str, namespace: Option<&str>, owned: bool| ObjectMeta {
        name: Some(obj_name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(token_labels(&ns, &name)),
        annotations: Some(token_annotations(&ns, &name)),
        owner_references: owned.then(|| vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let subject = Subject {
        kind: "ServiceAccount".to_owned(),
        name: sa_name.clone(),
        namespace: Some(ns.clone()),
        api_group: None,
    };
    let role_ref = crate::rbac::cluster_role_ref(&access);
    // `[]` means "nothing" as in the JWT: no rule at all, never RBAC's "every name".
    let rules: Vec<PolicyRule> = rule.policy_rule().into_iter().collect();
    let (cluster_role_binding, role_binding) = if rule.namespace == "*" {
        (
            Some(ClusterRoleBinding {
                metadata: meta(&access, None, false),
                role_ref,
                subjects: Some(vec![subject]),
            }),
            None,
        )
    } else {
        let own = rule.namespace == ns;
        (
            None,
            Some(RoleBinding {
                metadata: meta(&access, Some(&rule.namespace), own),
                role_ref,
                subjects: Some(vec![subject]),
            }),
        )
    };
    Ok(TokenAccount {
        service_account: ServiceAccount {
            metadata: meta(&sa_name, Some(&ns), true),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
        cluster_role: ClusterRole {
            metadata: meta(&access, None, false),
            rules: Some(rules),
            aggregation_rule: None,
        },
        cluster_role_binding,
        role_binding,
    })
}
