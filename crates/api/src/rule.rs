//! The effective access rule of a GateToken or GateServer: one RBAC `PolicyRule` plus a
//! namespace, with every default and alias resolved.

use k8s_openapi::api::rbac::v1::PolicyRule;

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
/// means "no restriction" and `[]` means "nothing". `[]` means "nothing" **everywhere**: in a
/// JWT (the auth crate), and in the RBAC written for ServiceAccount-mode tokens and for the
/// gateway's ServiceAccount ([`policy_rule`](Self::policy_rule)), where RBAC itself would read
/// an empty `resourceNames` as "every name".
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

    /// The RBAC rule that grants exactly this rule, or `None` when it grants nothing: an empty
    /// `verbs`, `resources` or `resourceNames` list (`[]` means "nothing", where RBAC would read
    /// an empty `resourceNames` as every name), or no resource and no non-resource part. A
    /// resource rule without `resources` also grants nothing here (RBAC refuses such a rule;
    /// specs always carry the default).
    pub fn policy_rule(&self) -> Option<PolicyRule> {
        if self.verbs.is_empty() {
            return None;
        }
        if self.is_non_resource() {
            return Some(PolicyRule {
                verbs: self.verbs.clone(),
                non_resource_urls: self.non_resource_urls.clone(),
                ..PolicyRule::default()
            });
        }
        let groups = self.api_groups.clone().filter(|g| !g.is_empty())?;
        let resources = self.resources.clone().filter(|r| !r.is_empty())?;
        if self.resource_names.as_ref().is_some_and(Vec::is_empty) {
            return None;
        }
        Some(PolicyRule {
            verbs: self.verbs.clone(),
            api_groups: Some(groups),
            resources: Some(resources),
            resource_names: self.resource_names.clone(),
            non_resource_urls: None,
        })
    }
}

pub(crate) fn non_empty(list: Option<&[String]>) -> bool {
    list.is_some_and(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(l: &[&str]) -> Option<Vec<String>> {
        Some(l.iter().map(|s| (*s).to_owned()).collect())
    }

    fn seed() -> EffectiveRule {
        EffectiveRule {
            namespace: "default".into(),
            verbs: vec!["get".into()],
            api_groups: strings(&["subresources.kubevirt.io"]),
            resources: strings(&["virtualmachineinstances", "virtualmachineinstances/vnc"]),
            resource_names: strings(&["testvm"]),
            non_resource_urls: None,
        }
    }

    #[test]
    fn the_seed_rule_is_written_as_is() {
        let p = seed().policy_rule().unwrap();
        assert_eq!(p.resource_names, strings(&["testvm"]));
        assert_eq!(
            p.resources,
            strings(&["virtualmachineinstances", "virtualmachineinstances/vnc"])
        );
        let mut any_name = seed();
        any_name.resource_names = None;
        assert_eq!(any_name.policy_rule().unwrap().resource_names, None);
    }

    #[test]
    fn empty_lists_grant_nothing() {
        for edit in [
            (|r: &mut EffectiveRule| r.resource_names = Some(vec![])) as fn(&mut EffectiveRule),
            |r| r.resources = Some(vec![]),
            |r| r.resources = None,
            |r| r.verbs = vec![],
            |r| r.api_groups = Some(vec![]),
        ] {
            let mut rule = seed();
            edit(&mut rule);
            assert_eq!(rule.policy_rule(), None, "{rule:?}");
        }
        let urls = EffectiveRule {
            namespace: "*".into(),
            verbs: vec!["get".into()],
            non_resource_urls: strings(&["/healthz"]),
            ..EffectiveRule::default()
        };
        assert_eq!(
            urls.policy_rule().unwrap().non_resource_urls,
            strings(&["/healthz"])
        );
    }
}
