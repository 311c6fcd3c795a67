//! `deploy/olm/`: the OLM bundle (registry+v1) for OpenShift's OperatorHub, generated from the
//! objects of `deploy/virt-gateway-operator.yaml` ([`super::operator_objects`]): the CRDs go into
//! `manifests/` as they are, the operator's ClusterRole and Role become the
//! ClusterServiceVersion's `clusterPermissions` and `permissions` (OLM creates the ServiceAccount
//! and the bindings), the Deployment becomes its install strategy, the metrics Service a bundle
//! manifest. An object of a kind OLM cannot install fails the generation, so a new kind in the
//! install set is a decision, not a silent omission. `make test` validates the bundle with the
//! Operator Framework's own validation (tools/olm-validate) and dry-runs the CSV against OLM's CRD.

use base64::Engine as _;
use serde_json::{Value as Json, json};
use serde_yaml::Value;

use super::{
    METRICS_SERVICE_NAME, ManifestError, OPERATOR_NAME, operator_image, operator_objects,
    server_yaml,
};
use crate::builders::GatewayDefaults;

/// Everything under `deploy/olm` is generated.
pub const OLM_DIR: &str = "olm";
/// The bundle directory (manifests/ and metadata/).
pub const BUNDLE_DIR: &str = "olm/bundle";
/// The admission policies of the install set, which OLM cannot carry in a bundle.
pub const ADMISSION_POLICIES: &str = "olm/admission-policies.yaml";
const ADMISSION_POLICIES_HEADER: &str = "The admission policies of virt-gateway (the GateToken delegation rule and the guards of the operator's own ServiceAccount). OLM cannot install admission policies from a bundle: apply this file once, cluster-wide, with `oc apply --server-side -f deploy/olm/admission-policies.yaml`. Until the delegation policy is there the operator signs no GateToken (its condition says why).";
/// The OLM package name.
pub const PACKAGE: &str = "virt-gateway-operator";
/// The bundle's channel (OLM's naming convention: candidate, fast, stable).
pub const CHANNEL: &str = "stable";
/// The oldest Kubernetes the operator supports (CEL rules in the CRDs; ValidatingAdmissionPolicy).
pub const MIN_KUBE_VERSION: &str = "1.30.0";
/// The oldest OpenShift (Kubernetes 1.30), for the Red Hat catalog annotation.
pub const MIN_OPENSHIFT: &str = "v4.17";

/// Kinds OLM (operator-registry's supported bundle objects) creates from a bundle's manifests/.
const OLM_KINDS: &[&str] = &[
    "ClusterRole",
    "Secret",
    "ConfigMap",
    "Service",
    "ServiceMonitor",
    "PrometheusRule",
    "PodDisruptionBudget",
    "PriorityClass",
    "VerticalPodAutoscaler",
    "ConsoleYAMLSample",
    "ConsoleQuickStart",
    "ConsoleCLIDownload",
    "ConsoleLink",
];

fn csv_name() -> String {
    format!("{PACKAGE}.v{}", env!("CARGO_PKG_VERSION"))
}

fn to_json(v: &Value) -> Result<Json, ManifestError> {
    Ok(serde_json::to_value(v)?)
}

fn unsupported(what: String) -> ManifestError {
    ManifestError::Unsupported(format!(
        "OLM bundle generator: {what}; extend crates/operator/src/manifests/olm.rs"
    ))
}

/// The objects sorted into what the CSV says and what goes into manifests/.
#[derive(Default)]
struct Install {
    crds: Vec<Value>,
    cluster_rules: Option<Json>,
    rules: Option<Json>,
    deployment: Option<Json>,
    manifests: Vec<Value>,
    /// Admission policies: OLM cannot install them from a bundle, so they are written beside it
    /// (`admission-policies.yaml`) for the administrator to apply once.
    beside: Vec<Value>,
}

fn classify() -> Result<Install, ManifestError> {
    // OLM picks the namespace; objects are written without one.
    let mut install = Install::default();
    for mut obj in operator_objects("__olm__")? {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_mapping_mut) {
            meta.shift_remove("namespace");
        }
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let operator_subject = |o: &Value| {
            o["subjects"].as_sequence().is_some_and(|s| {
                s.len() == 1 && s[0]["kind"] == "ServiceAccount" && s[0]["name"] == OPERATOR_NAME
            })
        };
        match kind.as_str() {
            "CustomResourceDefinition" => install.crds.push(obj),
            // OLM creates the ServiceAccount named in the permissions, and the bindings.
            "ServiceAccount" if name == OPERATOR_NAME => {}
            "ClusterRole" if name == OPERATOR_NAME => {
                install.cluster_rules = Some(to_json(&obj["rules"])?);
            }
            "Role" => {
                if install.rules.is_some() {
                    return Err(unsupported(format!("a second Role ({name})")));
                }
                install.rules = Some(to_json(&obj["rules"])?);
            }
            "ClusterRoleBinding" | "RoleBinding" if operator_subject(&obj) => {}
            "Deployment" if name == OPERATOR_NAME => install.deployment = Some(to_json(&obj)?),
            k if OLM_KINDS.contains(&k) => install.manifests.push(obj),
            "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => {
                install.beside.push(obj)
            }
            _ => {
                return Err(unsupported(format!(
                    "OLM cannot install {kind} {name} from a bundle (it installs CRDs, the CSV's RBAC and Deployment, and {})",
                    OLM_KINDS.join(", ")
                )));
            }
        }
    }
    Ok(install)
}

/// The operator Deployment as OLM runs it: the SCC picks the user (no fixed runAsUser/runAsGroup,
/// as in the kustomize openshift overlay), and the watched namespace follows the OperatorGroup
/// (`olm.targetNamespaces`: one namespace, or "" for all).
fn olm_deployment(deployment: &Json) -> Result<Json, ManifestError> {
    let mut spec = deployment["spec"].clone();
    let containers = spec["template"]["spec"]["containers"]
        .as_array_mut()
        .ok_or_else(|| unsupported("the Deployment has no containers".to_owned()))?;
    for c in containers {
        if let Some(sc) = c["securityContext"].as_object_mut() {
            sc.remove("runAsUser");
            sc.remove("runAsGroup");
        }
        let env = c["env"]
            .as_array_mut()
            .ok_or_else(|| unsupported("the operator container has no env".to_owned()))?;
        env.push(json!({
            "name": "WATCH_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['olm.targetNamespaces']"}}
        }));
    }
    Ok(json!({
        "name": OPERATOR_NAME,
        "label": deployment["metadata"]["labels"],
        "spec": spec,
    }))
}

const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect x="4" y="8" width="56" height="38" rx="4" fill="#1f4e79"/><rect x="9" y="13" width="46" height="28" rx="2" fill="#e8f1fa"/><rect x="26" y="46" width="12" height="6" fill="#1f4e79"/><rect x="18" y="52" width="28" height="4" rx="2" fill="#1f4e79"/><circle cx="27" cy="27" r="6" fill="none" stroke="#1f4e79" stroke-width="3"/><path d="M33 27h14v5h-4v-3h-3v3h-3v-5" fill="#1f4e79"/></svg>"##;

fn descriptor(path: &str, name: &str, description: &str, x: &[&str]) -> Json {
    json!({"path": path, "displayName": name, "description": description, "x-descriptors": x})
}

/// The CRDs the CSV owns, with the kinds each creates. Every `resources` entry needs a `name`
/// (OLM's CSV schema requires it); the names follow each GateServer's or GateToken's, so it is
/// empty, as operator-sdk writes it.
fn owned_crds() -> Json {
    let text = "urn:alm:descriptor:com.tectonic.ui:text";
    let boolean = "urn:alm:descriptor:com.tectonic.ui:booleanSwitch";
    let conditions = descriptor(
        "conditions",
        "Conditions",
        "Ready, Degraded and what went wrong, in words",
        &["urn:alm:descriptor:io.kubernetes.conditions"],
    );
    let phase = descriptor(
        "phase",
        "Phase",
        "Gen B's phase string",
        &["urn:alm:descriptor:io.kubernetes.phase"],
    );
    json!([
        {
            "name": "gateservers.ocgate.yaacov.com",
            "version": "v1beta1",
            "kind": "GateServer",
            "displayName": "Gate Server",
            "description": "A kube-gateway deployment: the gateway, its ServiceAccount holding exactly one RBAC rule, the signing key Secret, a Service and an Ingress or Route.",
            "resources": [
                {"kind": "Deployment", "name": "", "version": "v1"},
                {"kind": "Service", "name": "", "version": "v1"},
                {"kind": "ServiceAccount", "name": "", "version": "v1"},
                {"kind": "Secret", "name": "", "version": "v1"},
                {"kind": "ClusterRole", "name": "", "version": "v1"},
                {"kind": "ClusterRoleBinding", "name": "", "version": "v1"},
                {"kind": "RoleBinding", "name": "", "version": "v1"},
                {"kind": "Ingress", "name": "", "version": "v1"},
                {"kind": "Route", "name": "", "version": "v1"},
            ],
            "specDescriptors": [
                descriptor("route", "Route host", "The gateway's external host name", &[text]),
                descriptor("serviceAccountVerbs", "Verbs", "What the gateway may do (e.g. get)", &[]),
                descriptor("serviceAccountAPIGroups", "API groups", "e.g. subresources.kubevirt.io", &[]),
                descriptor("serviceAccountResources", "Resources", "e.g. virtualmachineinstances/vnc", &[]),
                descriptor("generateSecret", "Generate the signing key", "Create the key Secret once when it is missing", &[boolean]),
                descriptor("generateRoute", "Route", "Expose the gateway through an OpenShift Route (HTTPS)", &[boolean]),
            ],
            "statusDescriptors": [phase.clone(), conditions.clone()],
        },
        {
            "name": "gatetokens.ocgate.yaacov.com",
            "version": "v1beta1",
            "kind": "GateToken",
            "displayName": "Gate Token",
            "description": "A signed, time-limited access token (JWT) for one RBAC-like rule, e.g. the VNC console of one VM, for a person without a Kubernetes account.",
            "resources": [
                {"kind": "ServiceAccount", "name": "", "version": "v1"},
                {"kind": "ClusterRole", "name": "", "version": "v1"},
                {"kind": "ClusterRoleBinding", "name": "", "version": "v1"},
                {"kind": "RoleBinding", "name": "", "version": "v1"},
            ],
            "specDescriptors": [
                descriptor("namespace", "Namespace", "The namespace of the resource the token opens", &[text]),
                descriptor("resourceNames", "Resource names", "e.g. the VM's name", &[]),
                descriptor("from", "Valid from", "RFC 3339; default: now", &[text]),
                descriptor("durationSec", "Duration (s)", "How long the token is valid", &["urn:alm:descriptor:com.tectonic.ui:number"]),
                descriptor("revoked", "Revoked", "Take the link back", &[boolean]),
            ],
            "statusDescriptors": [
                phase,
                conditions,
                descriptor("token", "Token", "The signed JWT: whoever holds it opens the link", &["urn:alm:descriptor:com.tectonic.ui:password"]),
            ],
        },
    ])
}

/// `alm-examples`: the example GateServer of deploy/virt-gateway-server.yaml and the seed
/// GateToken.
fn examples() -> Result<String, ManifestError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&server_yaml()) {
        use serde::Deserialize as _;
        let v = Value::deserialize(doc)?;
        if v["kind"] == "GateServer" {
            out.push(to_json(&v)?);
        }
    }
    out.push(json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1",
        "kind": "GateToken",
        "metadata": {"name": "gatetoken-sample", "namespace": "kube-gateway"},
        "spec": {"namespace": "default", "resourceNames": ["testvm"]},
    }));
    Ok(serde_json::to_string_pretty(&out)?)
}

fn csv(install: &Install) -> Result<Json, ManifestError> {
    let (Some(cluster_rules), Some(rules), Some(deployment)) =
        (&install.cluster_rules, &install.rules, &install.deployment)
    else {
        return Err(unsupported(
            "the install set lacks the operator's ClusterRole, Role or Deployment".to_owned(),
        ));
    };
    let defaults = GatewayDefaults::default();
    let mut related = vec![
        json!({"name": "virt-gateway-operator", "image": operator_image()}),
        json!({"name": "kube-gateway", "image": defaults.gateway_image}),
    ];
    if let Some(web) = &defaults.web_app_image {
        related.push(json!({"name": "kube-gateway-web-app", "image": web}));
    }
    let mode = |t: &str, supported: bool| json!({"type": t, "supported": supported});
    Ok(json!({
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {
            "name": csv_name(),
            "annotations": {
                "alm-examples": examples()?,
                "capabilities": "Basic Install",
                "categories": "Security",
                "containerImage": operator_image(),
                "description": "Hand one KubeVirt VM console (or any one Kubernetes resource) to a person without a Kubernetes account, for a limited time, with one link.",
                "operators.openshift.io/infrastructure-features": "[\"disconnected\"]",
                "features.operators.openshift.io/disconnected": "true",
                "features.operators.openshift.io/fips-compliant": "false",
                "features.operators.openshift.io/proxy-aware": "false",
                "features.operators.openshift.io/tls-profiles": "false",
                "features.operators.openshift.io/token-auth-aws": "false",
                "features.operators.openshift.io/token-auth-azure": "false",
                "features.operators.openshift.io/token-auth-gcp": "false",
                "features.operators.openshift.io/cnf": "false",
                "features.operators.openshift.io/cni": "false",
                "features.operators.openshift.io/csi": "false",
            },
            "labels": {
                "operatorframework.io/arch.amd64": "supported",
                "operatorframework.io/os.linux": "supported",
            },
        },
        "spec": {
            "displayName": "virt-gateway",
            "description": CSV_DESCRIPTION,
            "version": env!("CARGO_PKG_VERSION"),
            "minKubeVersion": MIN_KUBE_VERSION,
            "maturity": "alpha",
            "provider": {"name": "virt-gateway"},
            "keywords": ["kubevirt", "vnc", "console", "gateway", "jwt", "access"],
            "icon": [{
                "base64data": base64::engine::general_purpose::STANDARD.encode(ICON_SVG),
                "mediatype": "image/svg+xml",
            }],
            // The operator watches one namespace or all of them (--namespace), never a list.
            "installModes": [
                mode("OwnNamespace", true),
                mode("SingleNamespace", true),
                mode("MultiNamespace", false),
                mode("AllNamespaces", true),
            ],
            "customresourcedefinitions": {"owned": owned_crds()},
            "install": {
                "strategy": "deployment",
                "spec": {
                    "clusterPermissions": [{"serviceAccountName": OPERATOR_NAME, "rules": cluster_rules}],
                    "permissions": [{"serviceAccountName": OPERATOR_NAME, "rules": rules}],
                    "deployments": [olm_deployment(deployment)?],
                },
            },
            "relatedImages": related,
        },
    }))
}

const CSV_DESCRIPTION: &str = "virt-gateway hands one Kubernetes resource, typically a KubeVirt VM's VNC console, to a person \
who has no Kubernetes account, for a limited time, with one link, and takes it back on demand.

* **GateServer** deploys kube-gateway: an authenticating proxy whose ServiceAccount holds exactly one \
RBAC rule (e.g. `get` on `virtualmachineinstances/vnc`), with its signing key, Service and Route.
* **GateToken** is a signed, time-limited JWT for one rule (one VM's console); the gateway verifies it, \
authorizes each request against its rule as Kubernetes RBAC would, and forwards it, WebSockets included.

On OpenShift the gateway pods run under the default `restricted-v2` SCC as they are.";

fn yaml_file(header: &str, value: &impl serde::Serialize) -> Result<String, ManifestError> {
    Ok(format!(
        "# {header}\n# Generated by virt-gateway-operator (crates/operator/src/manifests/olm.rs); do not edit.\n# Regenerate with: {}\n{}",
        super::REGENERATE_COMMAND,
        serde_yaml::to_string(value)?
    ))
}

fn annotations() -> Json {
    json!({"annotations": {
        "operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
        "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
        "operators.operatorframework.io.bundle.metadata.v1": "metadata/",
        "operators.operatorframework.io.bundle.package.v1": PACKAGE,
        "operators.operatorframework.io.bundle.channels.v1": CHANNEL,
        "operators.operatorframework.io.bundle.channel.default.v1": CHANNEL,
        "com.redhat.openshift.versions": MIN_OPENSHIFT,
    }})
}

fn dockerfile() -> String {
    let labels = annotations()["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("LABEL {k}={}\n", v.as_str().unwrap_or_default()))
                .collect::<String>()
        })
        .unwrap_or_default();
    format!(
        "# The bundle image: `buildah bud -f deploy/olm/bundle.Dockerfile -t <registry>/virt-gateway-operator-bundle:v{} deploy/olm`.\n# Generated by virt-gateway-operator (crates/operator/src/manifests/olm.rs); do not edit.\nFROM scratch\n{labels}COPY bundle/manifests /manifests/\nCOPY bundle/metadata /metadata/\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The files of `deploy/olm/`, as `(path under deploy/, contents)`.
pub fn bundle_files() -> Result<Vec<(String, String)>, ManifestError> {
    let install = classify()?;
    let manifest = |f: &str| format!("{BUNDLE_DIR}/manifests/{f}");
    let mut out = vec![
        (
            manifest(&format!("{PACKAGE}.clusterserviceversion.yaml")),
            yaml_file("The ClusterServiceVersion.", &csv(&install)?)?,
        ),
        (
            format!("{BUNDLE_DIR}/metadata/annotations.yaml"),
            yaml_file("The bundle's metadata.", &annotations())?,
        ),
        (format!("{OLM_DIR}/bundle.Dockerfile"), dockerfile()),
    ];
    if !install.beside.is_empty() {
        let mut text = format!(
            "# {ADMISSION_POLICIES_HEADER}\n# Generated by virt-gateway-operator (crates/operator/src/manifests/olm.rs); do not edit.\n# Regenerate with: {}\n",
            super::REGENERATE_COMMAND
        );
        for obj in &install.beside {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(obj)?);
        }
        out.push((ADMISSION_POLICIES.to_owned(), text));
    }
    for crd in &install.crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        out.push((
            manifest(&format!("{name}.crd.yaml")),
            yaml_file("A CustomResourceDefinition the CSV owns.", crd)?,
        ));
    }
    for obj in &install.manifests {
        let kind = obj["kind"].as_str().unwrap_or_default().to_lowercase();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let what = if name == METRICS_SERVICE_NAME {
            "The operator's metrics Service."
        } else {
            "An object of the install set."
        };
        out.push((
            manifest(&format!("{name}.{kind}.yaml")),
            yaml_file(what, obj)?,
        ));
    }
    Ok(out)
}
