//! Every manifest under `deploy/` against a real kube-apiserver (virt-gateway-testenv): the CRDs
//! applied for real, then every manifest file and every rendered kustomize entry point in
//! `CHECKED` through `kubectl apply --server-side --dry-run=server --validate=strict` and the
//! plain (client-side) `kubectl apply --dry-run=server --validate=strict`. Any refusal, and any
//! warning (unknown field, Pod Security violation, deprecated API), fails the test with the API
//! server's message.
//!
//! The Prometheus Operator kinds (ServiceMonitor, PodMonitor) are checked against stand-in CRDs
//! (`fixtures/monitoring.coreos.com-crds.yaml`). Nothing in the OpenShift overlay needs an
//! OpenShift API (tests/files.rs asserts that), so it is dry-run in full.
//!
//! The Helm chart is rendered with `helm template` (default values, every knob, OpenShift) into a
//! namespace that enforces and warns on Pod Security `restricted`, hooks included; the OLM
//! bundle's objects are dry-run against OLM's own ClusterServiceVersion CRD as
//! github.com/operator-framework/api ships it (tools/build.sh).

use std::sync::Mutex;

use std::path::Path;

use virt_gateway_deploy_tests::{
    CHECKED, How, Kubectl, Tools, bundle_yaml, deploy_dir, documents, entry_yaml, helm_template,
    monitoring_crds,
};
use virt_gateway_testenv::ControlPlane;

async fn kubectl() -> Kubectl {
    let cp = ControlPlane::shared().await;
    Kubectl {
        binary: cp.binary("kubectl"),
        kubeconfig: cp.kubeconfig().to_path_buf(),
    }
}

/// Applies the CRDs (and the delegation policy) under deploy/crds and the monitoring stand-ins
/// for real, once per binary, and waits until the API server serves the CRDs.
fn install_crds(k: &Kubectl) {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let mut files: Vec<_> = CHECKED
        .iter()
        .filter(|e| e.how == How::Crd)
        .map(|e| deploy_dir().join(e.path))
        .collect();
    files.push(monitoring_crds());
    for f in &files {
        let path = f.to_str().unwrap();
        k.ok(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                virt_gateway_deploy_tests::FIELD_MANAGER,
                "-f",
                path,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let is_crd =
            std::fs::read_to_string(f).is_ok_and(|t| t.contains("kind: CustomResourceDefinition"));
        if !is_crd {
            continue;
        }
        k.ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                path,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    *done = true;
}

fn check(k: &Kubectl, label: &str, yaml: &str) -> Result<String, String> {
    k.prepare_namespaces(yaml)
        .map_err(|e| format!("{label}: preparing its namespaces: {e}"))?;
    k.dry_run(label, yaml)
}

#[tokio::test]
async fn every_manifest_under_deploy_passes_a_server_side_dry_run() {
    let k = kubectl().await;
    install_crds(&k);
    let mut failures = Vec::new();
    let mut report = Vec::new();
    // Files before kustomizations, in CHECKED order (the operator manifest before the server
    // example and the samples, as an administrator applies them).
    for e in CHECKED
        .iter()
        .filter(|e| matches!(e.how, How::Manifest | How::Kustomize))
    {
        let label = format!("deploy/{}", e.path);
        let yaml = match entry_yaml(&k.binary, e) {
            Ok(y) => y,
            Err(err) => {
                failures.push(format!("{label}: {err}"));
                continue;
            }
        };
        match check(&k, &label, &yaml) {
            Ok(out) => report.push(format!("{label}: {} objects accepted", out.lines().count())),
            Err(err) => failures.push(err),
        }
    }
    // The CRD files are also dry-run as files (they were applied for real above).
    for e in CHECKED.iter().filter(|e| e.how == How::Crd) {
        let label = format!("deploy/{}", e.path);
        match entry_yaml(&k.binary, e).and_then(|y| check(&k, &label, &y)) {
            Ok(_) => report.push(format!("{label}: accepted")),
            Err(err) => failures.push(err),
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "\n\n{}\n", failures.join("\n\n"));

    // A dry run is dry: the operator Deployment was never created.
    let out = k
        .run(
            &[
                "get",
                "deployment",
                "virt-gateway-operator",
                "-n",
                "virt-gateway-operator-system",
            ],
            None,
        )
        .unwrap();
    assert!(
        !out.success && out.stderr.contains("NotFound"),
        "{}",
        out.stderr
    );
}

/// The check fails with the API server's own message when an object is refused.
#[tokio::test]
async fn a_refused_object_fails_with_the_api_servers_message() {
    let k = kubectl().await;
    install_crds(&k);
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let bad = format!(
        "apiVersion: ocgate.yaacov.com/v1beta1\nkind: GateServer\nmetadata:\n  name: bad\n  namespace: {ns}\nspec:\n  route: gw.example.com\n  serviceAccountVerbs: get\n"
    );
    let err = check(&k, "bad GateServer", &bad).unwrap_err();
    assert!(err.contains("bad GateServer"), "{err}");
    assert!(
        err.contains(".spec.serviceAccountVerbs: expected list"),
        "{err}"
    );
    let unknown = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  namespace: {ns}\ndatta:\n  a: b\n"
    );
    let err = check(&k, "misspelt field", &unknown).unwrap_err();
    assert!(
        err.contains(".datta: field not declared in schema"),
        "{err}"
    );
    // Nothing was created.
    assert!(
        !k.run(&["get", "gateserver", "bad", "-n", &ns], None)
            .unwrap()
            .success
    );
}

/// Warnings count as failures: a workload that would violate the namespace's Pod Security level
/// is accepted by the API server with a warning only, and the check turns that into an error.
#[tokio::test]
async fn a_pod_security_warning_fails_the_check() {
    let k = kubectl().await;
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    k.ok(
        &[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
        ],
        None,
    )
    .unwrap();
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: lax\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels: {{app: lax}}\n  template:\n    metadata:\n      labels: {{app: lax}}\n    spec:\n      containers:\n      - name: c\n        image: example.com/lax:1\n"
    );
    let err = check(&k, "lax Deployment", &deployment).unwrap_err();
    assert!(
        err.contains("would violate PodSecurity") && err.contains("restricted"),
        "{err}"
    );
}

/// The stand-in monitoring CRDs refuse what the real ones refuse for the fields we use, so the
/// ServiceMonitor component's dry-run means something.
#[tokio::test]
async fn the_monitoring_stand_ins_check_the_fields_we_use() {
    let k = kubectl().await;
    install_crds(&k);
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let sm = |endpoint: &str| {
        format!(
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: sm\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels: {{a: b}}\n  endpoints:\n  - {endpoint}\n"
        )
    };
    check(&k, "good", &sm("{port: metrics, interval: 30s}")).unwrap();
    let err = check(
        &k,
        "bad interval",
        &sm("{port: metrics, interval: 30 seconds}"),
    )
    .unwrap_err();
    assert!(err.contains("interval"), "{err}");
    let err = check(&k, "misplaced field", &sm("{portName: metrics}")).unwrap_err();
    assert!(err.contains("portName"), "{err}");
}

/// A fresh namespace that enforces, and warns on, Pod Security `restricted`.
async fn restricted_namespace(k: &Kubectl) -> String {
    let ns = ControlPlane::shared().await.fresh_namespace().await;
    for mode in ["enforce", "warn"] {
        k.ok(
            &[
                "label",
                "namespace",
                &ns,
                &format!("pod-security.kubernetes.io/{mode}=restricted"),
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    ns
}

fn applies_to_file(k: &Kubectl, path: &Path) {
    let path = path.to_str().unwrap();
    k.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            virt_gateway_deploy_tests::FIELD_MANAGER,
            "-f",
            path,
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Polled rather than `kubectl wait`: right after the apply the CRD may have no status
    // conditions yet, and both `kubectl wait --for=condition` and a jsonpath filter then fail at
    // once ("accessor error: <nil>").
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let conditions = k
            .ok(
                &["get", "-f", path, "-o", "jsonpath={.status.conditions}"],
                None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        // Empty or `null` until the API server has written the status.
        let conditions: Vec<serde_yaml::Value> = serde_yaml::from_str::<Option<_>>(&conditions)
            .unwrap_or_else(|e| panic!("{conditions}: {e}"))
            .unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path}: not Established after 60 s (conditions {conditions:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[tokio::test]
async fn the_helm_chart_renders_objects_the_api_server_accepts() {
    let k = kubectl().await;
    install_crds(&k);
    let tools = Tools::ensure().unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap();
    let knobs = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/helm-every-knob.yaml");
    let ns = restricted_namespace(&k).await;
    let mut failures = Vec::new();
    for (label, extra) in [
        ("default values", vec![]),
        ("every knob", vec!["-f", knobs.to_str().unwrap()]),
        (
            "OpenShift (auto-detected)",
            vec![
                "--api-versions",
                "security.openshift.io/v1/SecurityContextConstraints",
            ],
        ),
    ] {
        let label = format!("helm template ({label})");
        let yaml =
            helm_template(&tools, home.path(), &ns, &extra).unwrap_or_else(|e| panic!("{e}"));
        // The watched namespace of the knobs must exist for nothing; the release namespace does.
        let docs = documents(&yaml).unwrap();
        assert!(
            docs.iter().any(|d| d["kind"] == "Job"),
            "{label}: the hook is rendered and checked too"
        );
        if let Err(e) = check(&k, &label, &yaml) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "\n\n{}\n", failures.join("\n\n"));
}

#[tokio::test]
async fn the_olm_bundle_passes_a_dry_run_against_olms_own_csv_crd() {
    let k = kubectl().await;
    install_crds(&k);
    let tools = Tools::ensure().unwrap_or_else(|e| panic!("{e}"));
    applies_to_file(&k, &tools.csv_crd());
    let ns = restricted_namespace(&k).await;
    // OLM creates the bundle's namespaced objects in the install namespace.
    let mut docs = documents(&bundle_yaml().unwrap()).unwrap();
    for d in &mut docs {
        if d["kind"] != "CustomResourceDefinition" {
            d["metadata"]
                .as_mapping_mut()
                .unwrap()
                .insert("namespace".into(), ns.clone().into());
        }
    }
    assert!(docs.iter().any(|d| d["kind"] == "ClusterServiceVersion"));
    let yaml = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    check(&k, "deploy/olm/bundle", &yaml).unwrap_or_else(|e| panic!("{e}"));
    // The admission policies the administrator applies beside the bundle.
    let policies = deploy_dir().join(virt_gateway_operator::manifests::olm::ADMISSION_POLICIES);
    let policies = std::fs::read_to_string(policies).unwrap();
    check(&k, "deploy/olm/admission-policies.yaml", &policies).unwrap_or_else(|e| panic!("{e}"));
    // The schema is really OLM's: a misplaced field in the CSV is refused.
    let bad = yaml.replacen("installModes:", "installModez:", 1);
    let err = check(&k, "misspelt CSV field", &bad).unwrap_err();
    assert!(err.contains("installModez"), "{err}");
}
