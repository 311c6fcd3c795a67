//! Helpers for tests on the control plane that several crates' tests share: ServiceAccount
//! tokens, RBAC bindings, CRDs (with the delegation policy installed wherever CRDs are),
//! impersonating clients and kubeconfigs. They are methods on [`ControlPlane`] and, as test
//! helpers, panic (with the reason) when the API server refuses or a wait times out.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use tokio::sync::Mutex;

use crate::ControlPlane;

/// How long [`ControlPlane::apply_crds`] waits for each CRD to be Established and discoverable
/// (generous: test machines are shared).
pub const CRD_TIMEOUT: Duration = Duration::from_secs(120);

/// The delegation policy (ValidatingAdmissionPolicies and bindings) that ships with the CRDs,
/// relative to the repository root; [`ControlPlane::apply_crds`] installs it too.
pub const DELEGATION_POLICY_FILE: &str = "deploy/crds/virt-gateway-delegation-policy.yaml";
/// The one field manager of the delegation policy in tests: applying it again from several
/// tests is then a no-op (the operator dates the policy by its last change).
pub const POLICY_FIELD_MANAGER: &str = "virt-gateway-testenv";
/// The user [`ControlPlane::install_admission_yaml`] impersonates to see the policy enforced:
/// may create GateTokens and GateServers, and nothing else.
pub const PROBE_USER: &str = "virt-gateway-testenv:delegation-probe";
const PROBE_ROLE: &str = "virt-gateway-testenv-delegation-probe";

/// Control planes (by API server URL) whose delegation policy is installed and enforced.
static POLICY_INSTALLED: Mutex<Option<HashSet<String>>> = Mutex::const_new(None);

impl ControlPlane {
    /// Creates the ServiceAccount `ns/name` and returns a token for it from the TokenRequest API,
    /// valid for `expiration_seconds` (at least 600).
    pub async fn service_account_token(
        &self,
        ns: &str,
        name: &str,
        expiration_seconds: i64,
    ) -> String {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<ServiceAccount>::namespaced(self.client().await, ns)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap_or_else(|e| panic!("cannot create ServiceAccount {ns}/{name}: {e}"));
        self.token_request(ns, name, expiration_seconds).await
    }

    /// A token for the existing ServiceAccount `ns/name` from the TokenRequest API, valid for
    /// `expiration_seconds` (at least 600).
    pub async fn token_request(&self, ns: &str, name: &str, expiration_seconds: i64) -> String {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(expiration_seconds),
                ..Default::default()
            }),
            ..Default::default()
        };
        Api::<ServiceAccount>::namespaced(self.client().await, ns)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {ns}/{name}: {e}"))
            .status
            .and_then(|s| s.token)
            .expect("the TokenRequest API returned a token")
    }

    /// Creates the RoleBinding `ns/binding` that grants the Role `ns/role` to the ServiceAccount
    /// `ns/service_account`.
    pub async fn bind_role_to_service_account(
        &self,
        ns: &str,
        binding: &str,
        role: &str,
        service_account: &str,
    ) {
        let name = binding;
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: service_account.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(self.client().await, ns)
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("cannot create RoleBinding {ns}/{name}: {e}"));
    }

    /// Installs (server-side apply, forced, as `field_manager`) `crds`, and waits until each is
    /// Established and every version it serves lists it in discovery; then installs the
    /// delegation policy of the repository's `deploy/crds` (once per control plane) and waits
    /// until the API server enforces it, so that every test that has the CRDs has the rule.
    pub async fn apply_crds(&self, crds: &[CustomResourceDefinition], field_manager: &str) {
        self.apply_crds_only(crds, field_manager).await;
        self.install_delegation_policy().await;
    }

    /// The delegation policy of the repository ([`DELEGATION_POLICY_FILE`]), installed and
    /// enforced once per control plane. Needs the CRDs.
    pub async fn install_delegation_policy(&self) {
        let path = crate::binaries::repo_root().join(DELEGATION_POLICY_FILE);
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut installed = POLICY_INSTALLED.lock().await;
        let set = installed.get_or_insert_with(HashSet::new);
        if set.contains(self.api_server_url()) {
            return;
        }
        self.install_admission_yaml(&yaml).await;
        set.insert(self.api_server_url().to_owned());
    }

    /// Applies every ValidatingAdmissionPolicy and binding of `yaml` (server-side apply as
    /// [`POLICY_FIELD_MANAGER`]) and, when they include the GateToken and GateServer delegation
    /// policies, waits until the API server enforces them: a dry-run GateToken (GateServer)
    /// from [`PROBE_USER`], who may create them but not use what they grant, is refused by the
    /// policy. (Policies take effect through an informer, a moment after they are stored.)
    pub async fn install_admission_yaml(&self, yaml: &str) {
        let client = self.client().await;
        let params = PatchParams::apply(POLICY_FIELD_MANAGER).force();
        let mut policies = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("the admission manifest is not YAML: {e}"));
            match value["kind"].as_str() {
                Some("ValidatingAdmissionPolicy") => {
                    let p: ValidatingAdmissionPolicy = serde_json::from_value(value)
                        .unwrap_or_else(|e| panic!("not a ValidatingAdmissionPolicy: {e}"));
                    let name = p.metadata.name.clone().expect("a policy has a name");
                    Api::<ValidatingAdmissionPolicy>::all(client.clone())
                        .patch(&name, &params, &Patch::Apply(&p))
                        .await
                        .unwrap_or_else(|e| panic!("the API server refused policy {name}: {e}"));
                    policies.push(name);
                }
                Some("ValidatingAdmissionPolicyBinding") => {
                    let b: ValidatingAdmissionPolicyBinding = serde_json::from_value(value)
                        .unwrap_or_else(|e| panic!("not a ValidatingAdmissionPolicyBinding: {e}"));
                    let name = b.metadata.name.clone().expect("a binding has a name");
                    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                        .patch(&name, &params, &Patch::Apply(&b))
                        .await
                        .unwrap_or_else(|e| panic!("the API server refused binding {name}: {e}"));
                }
                _ => {}
            }
        }
        for (kind, plural, spec) in [
            (
                "GateToken",
                "gatetokens",
                serde_json::json!({"namespace": "default", "resourceNames": ["probe"]}),
            ),
            ("GateServer", "gateservers", serde_json::json!({})),
        ] {
            let policy = format!("virt-gateway-{}-delegation", kind.to_lowercase());
            if policies.contains(&policy) {
                self.wait_policy_enforced(kind, plural, &policy, spec).await;
            }
        }
    }

    async fn wait_policy_enforced(
        &self,
        kind: &str,
        plural: &str,
        policy: &str,
        spec: serde_json::Value,
    ) {
        let admin = self.client().await;
        let group = "ocgate.yaacov.com";
        let apply = PatchParams::apply(POLICY_FIELD_MANAGER).force();
        let role = ClusterRole {
            metadata: ObjectMeta {
                name: Some(PROBE_ROLE.into()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![group.into()]),
                resources: Some(vec!["gatetokens".into(), "gateservers".into()]),
                verbs: vec!["create".into()],
                ..Default::default()
            }]),
            aggregation_rule: None,
        };
        Api::<ClusterRole>::all(admin.clone())
            .patch(PROBE_ROLE, &apply, &Patch::Apply(&role))
            .await
            .unwrap_or_else(|e| panic!("cannot create ClusterRole {PROBE_ROLE}: {e}"));
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(PROBE_ROLE.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: PROBE_ROLE.into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: PROBE_USER.into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                namespace: None,
            }]),
        };
        Api::<ClusterRoleBinding>::all(admin)
            .patch(PROBE_ROLE, &apply, &Patch::Apply(&binding))
            .await
            .unwrap_or_else(|e| panic!("cannot create ClusterRoleBinding {PROBE_ROLE}: {e}"));

        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, "v1beta1", kind),
            plural,
        );
        let probe = self.client_as(PROBE_USER, &[]).await;
        let api: Api<DynamicObject> = Api::namespaced_with(probe, "default", &resource);
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": format!("{group}/v1beta1"), "kind": kind,
            "metadata": {"generateName": "delegation-probe-"},
            "spec": spec,
        }))
        .expect("a probe object");
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let deadline = tokio::time::Instant::now() + CRD_TIMEOUT;
        let mut last;
        loop {
            match api.create(&dry_run, &object).await {
                Err(kube::Error::Api(status)) if status.message.contains(policy) => return,
                Err(e) => last = e.to_string(),
                Ok(_) => last = format!("a dry-run {kind} was admitted"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "policy {policy} not enforced in {CRD_TIMEOUT:?}; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An admin client that impersonates `user` (with `groups`, plus `system:authenticated`):
    /// the API server authorizes and admits its requests as that user.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let mut config: Config = self.admin_config().await;
        config.auth_info.impersonate = Some(user.to_owned());
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        groups.push("system:authenticated".to_owned());
        config.auth_info.impersonate_groups = Some(groups);
        Client::try_from(config).expect("cannot build an impersonating client")
    }

    /// [`ControlPlane::apply_crds`] without the delegation policy (for tests of the policy
    /// itself, or of what happens without it).
    pub async fn apply_crds_only(&self, crds: &[CustomResourceDefinition], field_manager: &str) {
        let client = self.client().await;
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in crds {
            let name = crd.metadata.name.clone().expect("a CRD has a name");
            api.patch(
                &name,
                &PatchParams::apply(field_manager).force(),
                &Patch::Apply(crd),
            )
            .await
            .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
            tokio::time::timeout(
                CRD_TIMEOUT,
                await_condition(api.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established in {CRD_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("waiting for CRD {name}: {e}"));
        }
        // Discovery follows establishment within moments.
        let deadline = tokio::time::Instant::now() + CRD_TIMEOUT;
        for crd in crds {
            let plural = &crd.spec.names.plural;
            for version in crd.spec.versions.iter().filter(|v| v.served) {
                let group_version = format!("{}/{}", crd.spec.group, version.name);
                while !client
                    .list_api_group_resources(&group_version)
                    .await
                    .is_ok_and(|l| l.resources.iter().any(|r| &r.name == plural))
                {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{plural} not discoverable in {group_version} in {CRD_TIMEOUT:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// [`ControlPlane::apply_crds`] for every CRD in the `*.yaml` files of `dir` (such as the
    /// project's `deploy/crds`), applied as `virt-gateway-testenv`, then every admission policy
    /// and binding there ([`ControlPlane::install_admission_yaml`]).
    pub async fn install_crds(&self, dir: &Path) {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        let mut crds: Vec<CustomResourceDefinition> = Vec::new();
        let mut admission = String::new();
        for path in &paths {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value: serde_json::Value = serde::Deserialize::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
                match value["kind"].as_str() {
                    Some("CustomResourceDefinition") => crds.push(
                        serde_json::from_value(value)
                            .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", path.display())),
                    ),
                    Some(_) => {
                        admission.push_str("---\n");
                        admission.push_str(
                            &serde_yaml::to_string(&value).expect("a document serialises"),
                        );
                    }
                    None => {}
                }
            }
        }
        self.apply_crds(&crds, "virt-gateway-testenv").await;
        if !admission.is_empty() {
            self.install_admission_yaml(&admission).await;
        }
    }

    /// A kubeconfig (YAML text) for this control plane with one user entry `user` (a JSON object
    /// such as `{"token": "..."}`) and a context per `(name, namespace)` (no namespace when
    /// empty); the first context is current.
    pub fn kubeconfig_for(&self, user: serde_json::Value, contexts: &[(&str, &str)]) -> String {
        let contexts: Vec<serde_json::Value> = contexts
            .iter()
            .map(|(name, ns)| {
                let mut context = serde_json::json!({"cluster": "testenv", "user": "u"});
                if !ns.is_empty() {
                    context["namespace"] = (*ns).into();
                }
                serde_json::json!({"name": name, "context": context})
            })
            .collect();
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testenv", "cluster": {
                "server": self.api_server_url(),
                "certificate-authority-data": B64.encode(self.ca_pem()),
            }}],
            "users": [{"name": "u", "user": user}],
            "contexts": contexts,
            "current-context": contexts[0]["name"],
        });
        serde_yaml::to_string(&config).expect("a kubeconfig serialises")
    }
}

/// How long [`wait_allowed`] waits for RBAC to take effect.
pub const RBAC_TIMEOUT: Duration = Duration::from_secs(60);

/// The SubjectAccessReview attributes of `verb` on `resource` (`pods/exec` names its
/// subresource) of API group `group`, named `name` (`""`: any) in `namespace` (`""`: all).
pub fn resource_access(
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    namespace: &str,
) -> ResourceAttributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    ResourceAttributes {
        verb: Some(verb.into()),
        group: Some(group.into()),
        resource: Some(resource.into()),
        subresource: Some(subresource.into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ResourceAttributes::default()
    }
}

/// Waits until the API server lets `user` (in `groups`) do what `access` describes, asking
/// with SubjectAccessReviews as `admin`: RBAC is evaluated from an informer cache, so a new
/// binding takes effect a moment after it is stored. Panics after [`RBAC_TIMEOUT`].
pub async fn wait_allowed(admin: &Client, user: &str, groups: &[&str], access: ResourceAttributes) {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            resource_attributes: Some(access),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api = Api::<SubjectAccessReview>::all(admin.clone());
    let deadline = tokio::time::Instant::now() + RBAC_TIMEOUT;
    loop {
        // A failed review is retried like a denied one, until the deadline.
        let allowed = api
            .create(&PostParams::default(), &review)
            .await
            .is_ok_and(|r| r.status.is_some_and(|s| s.allowed));
        if allowed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "RBAC for {user} not in effect after {RBAC_TIMEOUT:?}: {:?}",
            review.spec.resource_attributes
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One of the security review's §1 attacks on the delegation rule: a GateToken spec that a
/// user who may only create GateTokens must not get signed, and the words of the refusal that
/// name what it would have granted.
pub struct DelegationAttack {
    /// A GateToken name for it.
    pub name: &'static str,
    /// The GateToken's `spec`.
    pub spec: serde_json::Value,
    /// What the policy's message must say the spec grants.
    pub refusal: &'static str,
}

/// The review's §1 attacks, shared by the admission suite (crates/api) and the end-to-end one
/// (crates/demo), so that both test the same list.
pub fn delegation_attacks() -> Vec<DelegationAttack> {
    use serde_json::json;
    vec![
        // ServiceAccount mode for every Secret and the kubelet's exec (nodes/proxy), cluster-wide.
        DelegationAttack {
            name: "sa-secrets",
            spec: json!({
                "generateServiceAccount": true, "namespace": "*", "verbs": ["get", "list"],
                "apiGroups": [""], "resources": ["secrets", "nodes/proxy"]
            }),
            refusal: r#"grants "get" on "secrets" (API group "", every name) in all namespaces"#,
        },
        DelegationAttack {
            name: "sa-node-proxy",
            spec: json!({
                "generateServiceAccount": true, "namespace": "*", "verbs": ["get"],
                "apiGroups": [""], "resources": ["nodes/proxy"]
            }),
            refusal: r#""get" on "nodes/proxy""#,
        },
        // JWT mode for everything.
        DelegationAttack {
            name: "jwt-star",
            spec: json!({
                "namespace": "*", "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]
            }),
            refusal: r#"grants "*" on "*" (API group "*", every name) in all namespaces"#,
        },
    ]
}
