//! Helpers for tests on the control plane that several crates' tests share: ServiceAccount
//! tokens, RBAC bindings, CRDs and kubeconfigs. They are methods on [`ControlPlane`] and, as
//! test helpers, panic (with the reason) when the API server refuses or a wait times out.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};

use crate::ControlPlane;

/// How long [`ControlPlane::apply_crds`] waits for each CRD to be Established and discoverable
/// (generous: test machines are shared).
pub const CRD_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// Established and every version it serves lists it in discovery.
    pub async fn apply_crds(&self, crds: &[CustomResourceDefinition], field_manager: &str) {
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

    /// [`ControlPlane::apply_crds`] for every `*.yaml` file in `dir` (one CRD each, such as the
    /// project's `deploy/crds`), applied as `virt-gateway-testenv`.
    pub async fn install_crds(&self, dir: &Path) {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        let crds: Vec<CustomResourceDefinition> = paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                serde_yaml::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", path.display()))
            })
            .collect();
        self.apply_crds(&crds, "virt-gateway-testenv").await;
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
