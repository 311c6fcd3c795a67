//! What is under `deploy/` and what the kustomize tree renders, without an API server:
//! every file is checked by something, the kustomize base is the generated operator manifest,
//! and each overlay and knob does what `deploy/README.md` says.

use std::path::PathBuf;

use serde_yaml::Value;
use virt_gateway_deploy_tests::{
    CHECKED, DOC_EXTENSIONS, How, covered_files, deploy_dir, documents, files_under, kustomize,
};
use virt_gateway_operator::{GatewayDefaults, manifests};
use virt_gateway_testenv::Binaries;

fn kubectl() -> PathBuf {
    Binaries::ensure()
        .expect("control-plane binaries (kubectl)")
        .path("kubectl")
}

fn render(dir: &str) -> Vec<Value> {
    let yaml = kustomize(&kubectl(), &deploy_dir().join(dir)).unwrap();
    documents(&yaml).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendering"))
}

/// Integral floats as integers: kustomize writes the generator's `minimum: 0.0` as `0`.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Sequence(s) => Value::Sequence(s.iter().map(canonical).collect()),
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

fn operator_container(docs: &[Value]) -> &Value {
    let d = find(docs, "Deployment", "virt-gateway-operator");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "operator");
    c
}

fn env(container: &Value, name: &str) -> Value {
    container["env"]
        .as_sequence()
        .and_then(|l| l.iter().find(|e| e["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn every_file_under_deploy_is_checked() {
    let deploy = deploy_dir();
    let every = files_under(&deploy).unwrap();
    let all: Vec<String> = every
        .iter()
        .filter(|f| {
            !DOC_EXTENSIONS
                .iter()
                .any(|ext| f.ends_with(&format!(".{ext}")))
        })
        .cloned()
        .collect();
    let covered = covered_files().unwrap();
    let unchecked: Vec<_> = all.iter().filter(|f| !covered.contains(*f)).collect();
    assert!(
        unchecked.is_empty(),
        "files under deploy/ that no check applies: {unchecked:?}\n\
         Add each to CHECKED in crates/deploy-tests/src/lib.rs (a manifest to dry-run, or a \
         kustomization directory to render and dry-run), or reference it from a kustomization \
         that is listed there."
    );
    // A generated chart or bundle is covered whole, its README included.
    let missing: Vec<_> = covered.iter().filter(|f| !every.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "CHECKED names files that do not exist: {missing:?}"
    );
    for e in CHECKED {
        let path = deploy.join(e.path);
        match e.how {
            How::Kustomize => assert!(
                path.join("kustomization.yaml").is_file(),
                "{} has no kustomization.yaml",
                path.display()
            ),
            How::Crd | How::Manifest => assert!(path.is_file(), "{} is missing", path.display()),
            How::HelmChart => assert!(
                path.join("Chart.yaml").is_file(),
                "{} has no Chart.yaml",
                path.display()
            ),
            How::OlmBundle => assert!(
                path.join("bundle/metadata/annotations.yaml").is_file(),
                "{} has no bundle/metadata/annotations.yaml",
                path.display()
            ),
        }
    }
    // Every CRD file under deploy/crds is applied as a CRD (first), not merely dry-run.
    for f in all.iter().filter(|f| f.starts_with("crds/")) {
        assert!(
            CHECKED.iter().any(|e| e.path == f && e.how == How::Crd),
            "{f} must be listed as How::Crd"
        );
    }
}

#[test]
fn the_kustomize_base_is_the_generated_operator_manifest() {
    let path = deploy_dir().join("kustomize/base/virt-gateway-operator.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == manifests::operator_yaml().unwrap(),
        "{} differs from the generator; regenerate with:\n  \
         cargo run -q -p virt-gateway-operator -- manifests --write deploy",
        path.display()
    );
}

#[test]
fn the_base_is_the_operator_manifest_plus_the_default_images() {
    let plain = documents(&manifests::operator_yaml().unwrap()).unwrap();
    let base = render("kustomize/base");
    assert_eq!(base.len(), plain.len(), "same objects");
    for p in &plain {
        let b = find(
            &base,
            p["kind"].as_str().unwrap(),
            p["metadata"]["name"].as_str().unwrap(),
        );
        if p["kind"] != "Deployment" {
            assert!(
                canonical(b) == canonical(p),
                "{} {} is changed by the base",
                p["kind"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            );
        }
    }
    // The env values equal the operator's built-in defaults, so the base changes nothing until
    // an overlay rewrites them.
    let defaults = GatewayDefaults::default();
    let c = operator_container(&base);
    assert_eq!(
        env(c, "VIRT_GATEWAY_DEFAULT_GATEWAY_IMAGE")["value"],
        defaults.gateway_image.as_str(),
        "deploy/kustomize/base/default-images.yaml must name the operator's default gateway image"
    );
    assert_eq!(
        env(c, "VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE")["value"],
        defaults.web_app_image.unwrap().as_str(),
        "deploy/kustomize/base/default-images.yaml must name the operator's default web-app image"
    );
    assert_eq!(c["image"], manifests::operator_image().as_str());
}

#[test]
fn the_kubernetes_overlay_enforces_the_restricted_pod_security_standard() {
    let docs = render("kustomize/overlays/kubernetes");
    let ns = find(&docs, "Namespace", "virt-gateway-operator-system");
    let labels = &ns["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");
    // Nothing needing the Prometheus Operator CRDs on a plain cluster.
    assert!(
        docs.iter()
            .all(|d| d["apiVersion"] != "monitoring.coreos.com/v1")
    );
    let c = operator_container(&docs);
    assert_eq!(c["securityContext"]["runAsUser"], 65532);
}

#[test]
fn the_openshift_overlay_lets_the_scc_pick_the_uid_and_adds_monitoring() {
    let docs = render("kustomize/overlays/openshift");
    let c = operator_container(&docs);
    let sc = &c["securityContext"];
    assert!(
        sc["runAsUser"].is_null() && sc["runAsGroup"].is_null(),
        "{sc:?}"
    );
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let sm = find(&docs, "ServiceMonitor", "virt-gateway-operator");
    assert_eq!(sm["metadata"]["namespace"], "virt-gateway-operator-system");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    // The ServiceMonitor selects the metrics Service, whose port is named as it says.
    let svc = find(&docs, "Service", "virt-gateway-operator-metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k.as_str().unwrap()], v);
    }
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    let pm = find(&docs, "PodMonitor", "virt-gateway-gateways");
    assert_eq!(pm["spec"]["namespaceSelector"]["any"], true);
    // No OpenShift-only kinds: everything in it can be dry-run on the test control plane.
    for d in &docs {
        let api = d["apiVersion"].as_str().unwrap();
        assert!(!api.contains("openshift.io"), "{api}");
    }
}

#[test]
fn every_knob_of_the_example_takes_effect() {
    let docs = render("kustomize/examples/custom");
    let yaml = serde_yaml::to_string(&docs).unwrap();
    // Registry mirror: no reference to the default registry is left, and all three images
    // (the operator's own and the two defaults it hands to gateways) point at the mirror.
    assert!(
        !yaml.contains("quay.io/virt-gateway"),
        "an image escaped the mirror"
    );
    let c = operator_container(&docs);
    let version = env!("CARGO_PKG_VERSION");
    let mirror = "registry.example.com/mirror/virt-gateway";
    assert_eq!(
        c["image"],
        format!("{mirror}/virt-gateway-operator:{version}").as_str()
    );
    assert_eq!(
        env(c, "VIRT_GATEWAY_DEFAULT_GATEWAY_IMAGE")["value"],
        format!("{mirror}/kube-gateway:{version}").as_str()
    );
    assert_eq!(
        env(c, "VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE")["value"],
        format!("{mirror}/kube-gateway-web-app:{version}").as_str()
    );
    // Namespace: every namespaced object moved, the Namespace was renamed (keeping the Pod
    // Security labels of the kubernetes overlay), and the RBAC subjects followed.
    let ns = find(&docs, "Namespace", "kube-gateway");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for d in &docs {
        let kind = d["kind"].as_str().unwrap();
        let cluster_scoped = matches!(
            kind,
            "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
        );
        if !cluster_scoped {
            assert_eq!(d["metadata"]["namespace"], "kube-gateway", "{kind}");
        }
        if let Some(subjects) = d["subjects"].as_sequence() {
            for s in subjects {
                assert_eq!(s["namespace"], "kube-gateway", "{kind} subject");
            }
        }
    }
    // Namespace scope: WATCH_NAMESPACE is the pod's own namespace.
    assert_eq!(
        env(c, "WATCH_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    // Resources and replicas.
    assert_eq!(c["resources"]["requests"]["cpu"], "200m");
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    let d = find(&docs, "Deployment", "virt-gateway-operator");
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|a| a == "--leader-elect"),
        "two replicas need leader election"
    );
    // Monitoring.
    let sm = find(&docs, "ServiceMonitor", "virt-gateway-operator");
    assert_eq!(sm["metadata"]["namespace"], "kube-gateway");
}
