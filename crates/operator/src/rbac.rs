//! The operator's own RBAC: one list in code, from which `deploy/virt-gateway-operator.yaml` is
//! generated and with which the least-privilege test runs the operator.
//!
//! Every rule says why the code needs it, and `tests/least_privilege.rs` proves with
//! SubjectAccessReviews what the installed operator can *not* do. There is no read-everything
//! "escalation budget": Kubernetes lets the operator create a (Cluster)Role only with permissions
//! it holds itself (or with `escalate`), so it holds exactly the rule of the default gateway (the
//! VNC console of VMs, [`GATEWAY_RULES`]) and can make the seed GateServer Ready. Gateways with
//! other rules need the optional [`ESCALATE_RULES`]; ServiceAccount-mode tokens need the optional
//! [`SERVICE_ACCOUNT_TOKEN_RULES`] (see "Security model" in the README).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleRef};
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
    /// Resource names (empty: every name).
    pub resource_names: &'static [&'static str],
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
            resource_names: (!self.resource_names.is_empty()).then(|| strings(self.resource_names)),
            non_resource_urls: None,
        }
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const APPLY: &[&str] = &["get", "list", "watch", "create", "patch"];
const APPLY_DELETE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// The gateway rule the operator may grant without `escalate`: what the seed (and default)
/// GateServer gives its gateway's ServiceAccount, `get` on VMIs and their VNC console. Kubernetes
/// lets the operator create and bind that gateway's ClusterRole only while it holds the rule.
pub const GATEWAY_RULES: &[Rule] = &[Rule {
    api_groups: &["subresources.kubevirt.io"],
    resources: &["virtualmachineinstances", "virtualmachineinstances/vnc"],
    verbs: &["get"],
    resource_names: &[],
    why: "exactly the seed gateway's rule (the VNC console of VMs), so that the operator may create and bind its ClusterRole (RBAC escalation check); the operator itself never uses it",
}];

/// The operator's ClusterRole: [`GATEWAY_RULES`] and these.
pub const OPERATOR_RULES: &[Rule] = &[
    Rule {
        api_groups: &["ocgate.yaacov.com"],
        resources: &["gateservers", "gatetokens"],
        verbs: &["get", "list", "watch", "patch"],
        resource_names: &[],
        why: "watch the custom resources; add and remove the finalizer",
    },
    Rule {
        api_groups: &["ocgate.yaacov.com"],
        resources: &["gateservers/status", "gatetokens/status"],
        verbs: &["patch"],
        resource_names: &[],
        why: "write status (phase, conditions, the signed token)",
    },
    Rule {
        api_groups: &["ocgate.yaacov.com"],
        resources: &["gateservers/finalizers", "gatetokens/finalizers"],
        verbs: &["update"],
        resource_names: &[],
        why: "set blockOwnerDeletion on children's owner references (OwnerReferencesPermissionEnforcement)",
    },
    Rule {
        api_groups: &[""],
        resources: &["secrets"],
        verbs: READ,
        resource_names: &[virt_gateway_api::JWT_SECRET_NAME],
        why: "read the signing key Secrets, and no other Secret (a watch selects them by name)",
    },
    Rule {
        api_groups: &[""],
        resources: &["secrets"],
        verbs: &["create"],
        resource_names: &[],
        why: "create a key Secret and an OAuth client secret once (never update or delete them); RBAC cannot limit create by name, the admission policy in this manifest lets the operator create only Opaque Secrets",
    },
    Rule {
        api_groups: &[""],
        resources: &["services"],
        verbs: APPLY,
        resource_names: &[],
        why: "the gateway Service (server-side apply)",
    },
    Rule {
        api_groups: &[""],
        resources: &["serviceaccounts"],
        verbs: APPLY,
        resource_names: &[],
        why: "the gateway ServiceAccount",
    },
    Rule {
        api_groups: &["apps"],
        resources: &["deployments"],
        verbs: APPLY,
        resource_names: &[],
        why: "the gateway Deployment",
    },
    Rule {
        api_groups: &["policy"],
        resources: &["poddisruptionbudgets"],
        verbs: APPLY_DELETE,
        resource_names: &[],
        why: "the gateway's PodDisruptionBudget when it runs several replicas (a drain takes one at a time); removed when it runs one",
    },
    Rule {
        api_groups: &["networking.k8s.io"],
        resources: &["ingresses"],
        verbs: APPLY_DELETE,
        resource_names: &[],
        why: "the gateway Ingress; removed when the spec no longer asks for it",
    },
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles", "clusterrolebindings", "rolebindings"],
        verbs: APPLY_DELETE,
        resource_names: &[],
        why: "the gateway's and generateServiceAccount tokens' rules and bindings (only what the operator holds: RBAC escalation check); removed by the finalizer, at expiry and when the spec changes",
    },
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["roles"],
        verbs: APPLY,
        resource_names: &[],
        why: "the Role letting the gateway read GateTokens (revocation)",
    },
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles"],
        verbs: &["bind"],
        resource_names: &[CONSOLE_LEASES_ROLE],
        why: "bind the console-Lease ClusterRole to a gateway running several replicas with shared consoles, in its own namespace (the operator holds no Lease permission itself)",
    },
    Rule {
        api_groups: &["admissionregistration.k8s.io"],
        resources: &[
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
        ],
        verbs: &["get"],
        resource_names: &[virt_gateway_api::admission::GATETOKEN_POLICY],
        why: "check that the delegation policy is in force before signing a GateToken",
    },
    Rule {
        api_groups: &["route.openshift.io"],
        resources: &["routes"],
        verbs: APPLY_DELETE,
        resource_names: &[],
        why: "the gateway Route on OpenShift",
    },
    Rule {
        api_groups: &["route.openshift.io"],
        resources: &["routes/custom-host"],
        verbs: &["create", "update", "patch"],
        resource_names: &[],
        why: "set spec.host of the Route on OpenShift",
    },
    Rule {
        api_groups: &["oauth.openshift.io"],
        resources: &["oauthclients"],
        verbs: APPLY_DELETE,
        resource_names: &[],
        why: "the OAuthClient on OpenShift (generateOauthClient)",
    },
    Rule {
        api_groups: &["events.k8s.io"],
        resources: &["events"],
        verbs: &["create"],
        resource_names: &[],
        why: "Kubernetes Events on GateServers and GateTokens (each published once, never patched into a series)",
    },
];

/// Every rule of the operator's ClusterRole.
pub fn cluster_rules() -> Vec<Rule> {
    GATEWAY_RULES
        .iter()
        .chain(OPERATOR_RULES)
        .copied()
        .collect()
}

/// The ClusterRole installed with the operator that gateway replicas need to coordinate shared
/// consoles (a Lease per VM; they never list, watch or delete them). The operator never writes
/// it and holds none of its rules: it may only bind it, by name, in a RoleBinding in the
/// GateServer's namespace, so it cannot grant write on other Leases (leader election) anywhere.
pub const CONSOLE_LEASES_ROLE: &str = "virt-gateway-console-leases";

/// The rules of [`CONSOLE_LEASES_ROLE`].
pub const CONSOLE_LEASE_RULES: &[Rule] = &[Rule {
    api_groups: &["coordination.k8s.io"],
    resources: &["leases"],
    verbs: &["get", "create", "update"],
    resource_names: &[],
    why: "the gateway replica serving a VM's shared console holds a Lease naming it; the others read it and forward that VM's viewers there",
}];

/// The leader-election Role, in the operator's namespace.
pub const LEADER_ELECTION_RULES: &[Rule] = &[Rule {
    api_groups: &["coordination.k8s.io"],
    resources: &["leases"],
    verbs: &["get", "create", "patch"],
    resource_names: &[],
    why: "leader election on a Lease (server-side apply)",
}];

/// The optional ClusterRole for clusters where gateways or ServiceAccount tokens need other
/// rules than the VNC console (write verbs, other resources, non-resource URLs): lets the
/// operator create and bind roles beyond its own permissions.
pub const ESCALATE_RULES: &[Rule] = &[
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles", "roles"],
        verbs: &["escalate"],
        resource_names: &[],
        why: "create (Cluster)Roles with permissions the operator does not hold",
    },
    Rule {
        api_groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles"],
        verbs: &["bind"],
        resource_names: &[],
        why: "bind those ClusterRoles",
    },
];

/// The optional ClusterRole of ServiceAccount-mode tokens (`--enable-service-account-tokens`).
/// The admission policy of the default install lets the operator use it only on ServiceAccounts named
/// `gatetoken-*`, and the operator requests tokens only for ServiceAccounts it created for the
/// GateToken (it never takes over an existing one).
pub const SERVICE_ACCOUNT_TOKEN_RULES: &[Rule] = &[
    Rule {
        api_groups: &[""],
        resources: &["serviceaccounts/token"],
        verbs: &["create"],
        resource_names: &[],
        why: "TokenRequest for the ServiceAccount the operator created for a generateServiceAccount GateToken (admission: names gatetoken-* only)",
    },
    Rule {
        api_groups: &[""],
        resources: &["serviceaccounts"],
        verbs: &["delete"],
        resource_names: &[],
        why: "delete that ServiceAccount at expiry and revocation, which invalidates its token at once (admission: names gatetoken-* only)",
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

/// A binding's reference to the ClusterRole `name`.
pub fn cluster_role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        kind: "ClusterRole".to_owned(),
        name: name.to_owned(),
    }
}

/// A RoleBinding's reference to the Role `name` in its own namespace.
pub fn role_ref(name: &str) -> RoleRef {
    RoleRef {
        kind: "Role".to_owned(),
        ..cluster_role_ref(name)
    }
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
    let mut out =
        String::from("| API groups | Resources | Names | Verbs | Why |\n|---|---|---|---|---|\n");
    for r in rules {
        let names = if r.resource_names.is_empty() {
            "all".to_owned()
        } else {
            code(r.resource_names)
        };
        out.push_str(&format!(
            "| {} | {} | {names} | {} | {} |\n",
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
            ("ClusterRole", cluster_rules()),
            ("leader election", LEADER_ELECTION_RULES.to_vec()),
            ("console Leases", CONSOLE_LEASE_RULES.to_vec()),
            ("escalate", ESCALATE_RULES.to_vec()),
            (
                "ServiceAccount tokens",
                SERVICE_ACCOUNT_TOKEN_RULES.to_vec(),
            ),
        ] {
            let table = markdown_table(&rules);
            assert!(
                readme.contains(&table),
                "README.md lacks the current {title} table:\n{table}"
            );
        }
    }
}
