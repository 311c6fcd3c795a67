//! The operator's own RBAC: one list in code, from which `deploy/virt-gateway-operator.yaml` is
//! generated and with which the least-privilege test runs the operator.
//!
//! Every rule says why the code needs it. The `*/*` read rule is the escalation budget: Kubernetes
//! lets the operator create a ClusterRole only with permissions it holds itself (or with
//! `escalate`), so holding get/list/watch on everything lets it create read-only gateway and
//! token roles (the seed: `get` on `virtualmachineinstances/vnc`). Write verbs need the optional
//! [`ESCALATE_RULES`] (see the README for the trade-off).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::ObjectMeta;

/// One RBAC rule of the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API groups.
    pub api_groups: &'static [&'static str],
    /// Resources.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Why the operator needs it (goes into the README).
    pub why: &'static str,
}

impl Rule {
    /// The RBAC PolicyRule.
    pub fn policy_rule(&self) -> PolicyRule {
        let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(strings(self.api_groups)),
            resources: Some(strings(self.resources)),
            verbs: strings(self.verbs),
            resource_names: None,
            non_resource_urls: None,
        }
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const APPLY: &[&str] = &["get", "list", "watch", "create", "patch"];
const APPLY_DELETE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// The operator's ClusterRole.
pub const CLUSTER_RULES: &[Rule] = &[
    Rule {
        api_groups: &["*"],
        resources: &["*"],
        verbs: READ,
        why: "read-only access to everything, so that the operator may grant read-only rules to gateways and ServiceAccount tokens (RBAC escalation check)",
    },
    Rule {
        api_groups: &["ocgate.yaacov.com"],
        resources: &["gateservers", "gatetokens"],
        verbs: &["get", "list", "watch", "patch"],
        why: "watch the custom resources; add and remove the finalizer",
    },
    Rule {
        api_groups: &["ocgate.yaacov.com"],
        resources: &["gateservers/status", "gatetokens/status"],
        verbs: &["patch"],
        why: "write status (phase, conditions, the signed token)",
    },
    Rule {
        api_groups: &["ocgate.yaacov.com"],
        resources: &["gateservers/finalizers", "gatetokens/finalizers"],
        verbs: &["update"],
        why: "set blockOwnerDeletion on children's owner references (OwnerReferencesPermissionEnforcement)",
    },
    Rule {
        api_groups: &[""],
        resources: &["secrets"],
        verbs: &["get", "list", "watch", "create"],
        why: "read signing keys; create a key Secret and an OAuth client secret once (never update or delete them)",
    },
    Rule {
        api_groups: &[""],
        resources: &["services"],
        verbs: APPLY,
        why: "the gateway Service (server-side apply)",
    },
    Rule {
        api_groups: &[""],
        resources: &["serviceaccounts"],
        verbs: APPLY_DELETE,
        why: "the gateway ServiceAccount; ServiceAccounts of generateServiceAccount tokens, deleted at expiry and revocation",
    },
    Rule {
        api_groups: &[""],
        resources: &["serviceaccounts/token"],
        verbs: &["create"],
        why: "TokenRequest for generateServiceAccount tokens",
    },
    Rule {
        api_groups: &["apps"],
        resources: &["deployments"],
        verbs: APPLY,
        why: "the gateway Deployment",
    },
    Rule {
        api_groups: &["networking.k8s.io"],
        resources: &["ingresses"],
        verbs: APPLY_DELETE,
        why: "the gateway Ingress; removed when the spec no longer asks for it",
    },
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles", "clusterrolebindings", "rolebindings"],
        verbs: APPLY_DELETE,
        why: "the gateway's and generateServiceAccount tokens' rules and bindings; removed by the finalizer, at expiry and when the spec changes",
    },
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["roles"],
        verbs: APPLY,
        why: "the Role letting the gateway read GateTokens (revocation)",
    },
    Rule {
        api_groups: &["route.openshift.io"],
        resources: &["routes"],
        verbs: APPLY_DELETE,
        why: "the gateway Route on OpenShift",
    },
    Rule {
        api_groups: &["route.openshift.io"],
        resources: &["routes/custom-host"],
        verbs: &["create", "update", "patch"],
        why: "set spec.host of the Route on OpenShift",
    },
    Rule {
        api_groups: &["oauth.openshift.io"],
        resources: &["oauthclients"],
        verbs: APPLY_DELETE,
        why: "the OAuthClient on OpenShift (generateOauthClient)",
    },
    Rule {
        api_groups: &["events.k8s.io"],
        resources: &["events"],
        verbs: &["create"],
        why: "Kubernetes Events on GateServers and GateTokens (each published once, never patched into a series)",
    },
];

/// The leader-election Role, in the operator's namespace.
pub const LEADER_ELECTION_RULES: &[Rule] = &[Rule {
    api_groups: &["coordination.k8s.io"],
    resources: &["leases"],
    verbs: &["get", "create", "patch"],
    why: "leader election on a Lease (server-side apply)",
}];

/// The optional ClusterRole for clusters where gateways or ServiceAccount tokens need write
/// verbs (or non-resource URLs): lets the operator create roles beyond its own permissions.
pub const ESCALATE_RULES: &[Rule] = &[
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles", "roles"],
        verbs: &["escalate"],
        why: "create (Cluster)Roles with permissions the operator does not hold",
    },
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles"],
        verbs: &["bind"],
        why: "bind those ClusterRoles",
    },
];

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "virt-gateway-operator".to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "virt-gateway".to_owned(),
        ),
    ])
}

/// A ClusterRole holding `rules`.
pub fn cluster_role(name: &str, rules: &[Rule]) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        rules: Some(rules.iter().map(Rule::policy_rule).collect()),
        aggregation_rule: None,
    }
}

/// A Role holding `rules` in `namespace`.
pub fn role(name: &str, namespace: &str, rules: &[Rule]) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        rules: Some(rules.iter().map(Rule::policy_rule).collect()),
    }
}

/// The rules as a Markdown table (for the README).
pub fn markdown_table(rules: &[Rule]) -> String {
    let code = |items: &[&str]| {
        items
            .iter()
            .map(|i| {
                if i.is_empty() {
                    "`\"\"`".to_owned()
                } else {
                    format!("`{i}`")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("| API groups | Resources | Verbs | Why |\n|---|---|---|---|\n");
    for r in rules {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            code(r.api_groups),
            code(r.resources),
            code(r.verbs),
            r.why
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README shows the operator's RBAC; it must be the list in code.
    #[test]
    fn readme_shows_the_rules_in_code() {
        let readme = include_str!("../README.md");
        for (title, rules) in [
            ("ClusterRole", CLUSTER_RULES),
            ("leader election", LEADER_ELECTION_RULES),
            ("escalate", ESCALATE_RULES),
        ] {
            let table = markdown_table(rules);
            assert!(
                readme.contains(&table),
                "README.md lacks the current {title} table:\n{table}"
            );
        }
    }
}
