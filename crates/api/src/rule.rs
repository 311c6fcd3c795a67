//! The effective access rule of a GateToken or GateServer: one RBAC `PolicyRule` plus a
//! namespace, with every default and alias resolved.

/// One RBAC-style rule plus the namespace it applies in, as the operator should sign it into a
/// token's claims or write it into a (Cluster)Role.
///
/// It is either a **resource rule** (`api_groups` and `resources` are `Some`,
/// `non_resource_urls` is whatever was written: absent or empty) or a **non-resource rule**
/// (`non_resource_urls` is `Some` and non-empty; `api_groups`, `resources` and
/// `resource_names` are `None`, because Kubernetes RBAC rejects a rule that mixes both kinds and
/// a token without API groups matches no resource request).
///
/// `None` and `Some(vec![])` are kept apart as written by the user: in Gen B's claims `null`
/// means "no restriction" and `[]` means "nothing". Which meaning an empty list finally gets is
/// the signer's decision (see the auth crate); this type only reports what the spec says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveRule {
    /// Target namespace of the allowed requests; `*` means all namespaces.
    pub namespace: String,
    /// Allowed verbs.
    pub verbs: Vec<String>,
    /// Allowed API groups (`""` is the core group).
    pub api_groups: Option<Vec<String>>,
    /// Allowed resources, `resource` or `resource/subresource`.
    pub resources: Option<Vec<String>>,
    /// Allowed object names (absent means any).
    pub resource_names: Option<Vec<String>>,
    /// Allowed non-resource paths; a trailing `*` is a prefix wildcard.
    pub non_resource_urls: Option<Vec<String>>,
}

impl EffectiveRule {
    /// Whether this is a non-resource rule (non-empty `non_resource_urls`).
    pub fn is_non_resource(&self) -> bool {
        non_empty(self.non_resource_urls.as_deref())
    }
}

pub(crate) fn non_empty(list: Option<&[String]>) -> bool {
    list.is_some_and(|l| !l.is_empty())
}
