//! The Helm chart (`deploy/helm/virt-gateway-operator`) and the OLM bundle (`deploy/olm`) without
//! an API server: `helm lint --strict`; `helm template` with the default values equals the plain
//! manifest `deploy/virt-gateway-operator.yaml` object for object (Helm's own labels aside); every
//! value takes effect; the values schema refuses what it should; the bundle passes the Operator
//! Framework's validation, and a broken one does not; the bundle carries the same RBAC and
//! Deployment as the manifest. helm and olm-validate come from tools/build.sh (built once, cached).
//! Installing, upgrading and uninstalling the chart for real is tests/helm_lifecycle.rs; the
//! server-side dry-runs are in tests/dry_run.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use virt_gateway_deploy_tests::{
    BUNDLE, CHART, Tools, deploy_dir, documents, files_under, helm, helm_template,
};
use virt_gateway_operator::manifests::{self, helm::HELM_LABELS};
use virt_gateway_operator::{GatewayDefaults, rbac};

const NS: &str = "virt-gateway-operator-system";

fn tools() -> Tools {
    Tools::ensure().unwrap_or_else(|e| panic!("{e}"))
}

fn every_knob() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/helm-every-knob.yaml")
}

fn render(extra: &[&str]) -> Vec<Value> {
    let home = tempfile::tempdir().unwrap();
    let yaml = helm_template(&tools(), home.path(), NS, extra).unwrap_or_else(|e| panic!("{e}"));
    documents(&yaml).unwrap()
}

fn render_err(extra: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    helm_template(&tools(), home.path(), NS, extra).unwrap_err()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendering"))
}

fn has(docs: &[Value], kind: &str) -> bool {
    docs.iter().any(|d| d["kind"] == kind)
}

fn container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "virt-gateway-operator")["spec"]["template"]["spec"]["containers"][0]
}

fn env(c: &Value, name: &str) -> Value {
    c["env"]
        .as_sequence()
        .and_then(|l| l.iter().find(|e| e["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn args(c: &Value) -> Vec<String> {
    serde_yaml::from_value(c["args"].clone()).unwrap()
}

/// Removes the labels Helm adds (and `labels: {}` left behind), so that the rest can be compared
/// with the generator's objects.
fn without_helm_labels(mut v: Value) -> Value {
    let mut empty = false;
    if let Some(labels) = v["metadata"]["labels"].as_mapping_mut() {
        for l in HELM_LABELS {
            labels.remove(*l);
        }
        empty = labels.is_empty();
    }
    if empty && let Some(meta) = v["metadata"].as_mapping_mut() {
        meta.remove("labels");
    }
    v
}

/// Integral floats as integers (the generator writes `minimum: 0.0`, helm `0`).
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

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_with_every_knob() {
    let home = tempfile::tempdir().unwrap();
    let chart = deploy_dir().join(CHART);
    let knobs = every_knob();
    for extra in [vec![], vec!["-f", knobs.to_str().unwrap()]] {
        let mut a = vec!["lint", "--strict", chart.to_str().unwrap()];
        a.extend(extra.iter().copied());
        let out = helm(&tools(), home.path(), &a).unwrap();
        assert!(
            out.success,
            "helm {}:\n{}{}",
            a.join(" "),
            out.stdout,
            out.stderr
        );
        assert!(out.stdout.contains("0 chart(s) failed"), "{}", out.stdout);
    }
}

/// The chart with its default values is the plain manifest: the same objects (the Namespace
/// aside: Helm installs into the release namespace), equal field for field once Helm's own labels
/// are set aside. Hooks aside too (`--no-hooks`): the uninstall hook is the chart's own.
#[test]
fn helm_template_with_the_defaults_equals_the_generated_manifest() {
    let rendered = render(&["--no-hooks"]);
    let generated = manifests::operator_objects(NS).unwrap();
    let key = |d: &Value| {
        format!(
            "{} {}",
            d["kind"].as_str().unwrap_or_default(),
            d["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    let mut rendered_keys: Vec<_> = rendered.iter().map(key).collect();
    let mut generated_keys: Vec<_> = generated.iter().map(key).collect();
    rendered_keys.sort();
    generated_keys.sort();
    assert_eq!(rendered_keys, generated_keys, "the same objects");
    for g in &generated {
        let r = find(
            &rendered,
            g["kind"].as_str().unwrap(),
            g["metadata"]["name"].as_str().unwrap(),
        );
        // Helm's labels are really there, on every object.
        for l in HELM_LABELS {
            assert!(
                !r["metadata"]["labels"][*l].is_null(),
                "{} lacks {l}",
                key(g)
            );
        }
        assert_eq!(
            canonical(&without_helm_labels(r.clone())),
            canonical(g),
            "{} differs between the chart and deploy/virt-gateway-operator.yaml",
            key(g)
        );
    }
}

#[test]
fn every_value_takes_effect() {
    let knobs = every_knob();
    let docs = render(&["-f", knobs.to_str().unwrap()]);
    let yaml = serde_yaml::to_string(&docs).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let mirror = "registry.example.com/mirror/virt-gateway";
    assert!(
        !yaml.contains("quay.io/virt-gateway"),
        "an image escaped the mirror"
    );
    let c = container(&docs);
    assert_eq!(
        c["image"],
        format!("{mirror}/virt-gateway-operator:{version}").as_str()
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        env(c, "VIRT_GATEWAY_DEFAULT_GATEWAY_IMAGE")["value"],
        format!("{mirror}/kube-gateway:{version}").as_str()
    );
    assert_eq!(
        env(c, "VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE")["value"],
        format!("{mirror}/kube-gateway-web-app:{version}").as_str()
    );
    assert_eq!(env(c, "WATCH_NAMESPACE")["value"], "tenant-a");
    assert_eq!(c["resources"]["requests"]["cpu"], "200m");
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    let a = args(c);
    assert!(a.contains(&"--leader-elect".to_owned()), "{a:?}");
    assert!(a.contains(&"--log-format=text".to_owned()), "{a:?}");
    assert!(a.contains(&"--log-level=debug".to_owned()), "{a:?}");
    // openshift: true: the SCC picks the user.
    let sc = &c["securityContext"];
    assert!(
        sc["runAsUser"].is_null() && sc["runAsGroup"].is_null(),
        "{sc:?}"
    );
    assert_eq!(sc["runAsNonRoot"], true);
    let d = find(&docs, "Deployment", "virt-gateway-operator");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(pod["spec"]["imagePullSecrets"][0]["name"], "mirror-pull");
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "infra");
    assert!(pod["spec"]["affinity"]["nodeAffinity"].is_mapping());
    assert_eq!(pod["spec"]["priorityClassName"], "virt-gateway-critical");
    // The optional escalate role, bound to the operator in the release namespace.
    let binding = find(&docs, "ClusterRoleBinding", manifests::ESCALATE_NAME);
    assert_eq!(binding["subjects"][0]["namespace"], NS);
    // ServiceAccount-mode tokens: the operator's flag and the RBAC it needs, from the same code
    // as deploy/virt-gateway-operator-serviceaccount-tokens.yaml.
    assert_eq!(
        env(c, "VIRT_GATEWAY_ENABLE_SERVICE_ACCOUNT_TOKENS")["value"],
        "true"
    );
    let binding = find(
        &docs,
        "ClusterRoleBinding",
        manifests::SERVICE_ACCOUNT_TOKENS_NAME,
    );
    assert_eq!(binding["subjects"][0]["namespace"], NS);
    let role = find(&docs, "ClusterRole", manifests::SERVICE_ACCOUNT_TOKENS_NAME);
    let generated = &manifests::service_account_tokens_objects(NS).unwrap()[0];
    assert_eq!(
        canonical(&without_helm_labels(role.clone())),
        canonical(generated)
    );
    let sm = find(&docs, "ServiceMonitor", "virt-gateway-operator");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let pm = find(&docs, "PodMonitor", manifests::GATEWAYS_POD_MONITOR_NAME);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["interval"], "1m");
    // crds.keep.
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        assert_eq!(
            d["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    // The uninstall hook follows the scope, the images and the security context.
    let job = find(&docs, "Job", manifests::helm::UNINSTALL_NAME);
    let hc = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(hc["image"], c["image"]);
    assert_eq!(env(hc, "WATCH_NAMESPACE")["value"], "tenant-a");
    assert!(hc["securityContext"]["runAsUser"].is_null());
    assert_eq!(job["metadata"]["annotations"]["helm.sh/hook"], "pre-delete");
}

#[test]
fn the_defaults_leave_out_every_optional_object_and_flag() {
    let docs = render(&[]);
    let c = container(&docs);
    for name in [
        "WATCH_NAMESPACE",
        "VIRT_GATEWAY_DEFAULT_GATEWAY_IMAGE",
        "VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE",
        "VIRT_GATEWAY_ENABLE_SERVICE_ACCOUNT_TOKENS",
    ] {
        assert!(env(c, name).is_null(), "{name} is set by default");
    }
    assert!(!has(&docs, "ServiceMonitor") && !has(&docs, "PodMonitor"));
    for optional in [
        manifests::ESCALATE_NAME,
        manifests::SERVICE_ACCOUNT_TOKENS_NAME,
    ] {
        assert!(
            !docs.iter().any(|d| d["kind"] != "ValidatingAdmissionPolicy"
                && d["kind"] != "ValidatingAdmissionPolicyBinding"
                && d["metadata"]["name"] == optional),
            "{optional} is installed by default"
        );
    }
    // The admission policies are not optional: the delegation rule, both guards and the
    // creator annotation's policy.
    for policy in [
        manifests::GUARD_NAME,
        manifests::SERVICE_ACCOUNT_TOKENS_NAME,
        manifests::CREATOR_NAME,
    ] {
        find(&docs, "ValidatingAdmissionPolicy", policy);
        find(&docs, "ValidatingAdmissionPolicyBinding", policy);
    }
    for p in virt_gateway_api::admission::policies() {
        find(
            &docs,
            "ValidatingAdmissionPolicy",
            p.metadata.name.as_deref().unwrap(),
        );
    }
    // The hook is there (helm template shows hooks), with the operator's security context.
    let job = find(&docs, "Job", manifests::helm::UNINSTALL_NAME);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "prepare-uninstall"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"],
        65532
    );
}

#[test]
fn single_values_change_only_what_they_name() {
    // A mirror for the gateway image alone.
    let docs = render(&["--set", "image.gateway=mirror.example.com/gw@sha256:0123"]);
    let c = container(&docs);
    assert_eq!(
        env(c, "VIRT_GATEWAY_DEFAULT_GATEWAY_IMAGE")["value"],
        "mirror.example.com/gw@sha256:0123"
    );
    assert!(env(c, "VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE").is_null());
    assert_eq!(c["image"], manifests::operator_image().as_str());
    // No web app by default: the operator's "" means none.
    let docs = render(&["--set", "image.webAppEnabled=false"]);
    assert_eq!(
        env(container(&docs), "VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE")["value"],
        ""
    );
    // Leader election off (one replica).
    let docs = render(&["--set", "leaderElection.enabled=false"]);
    assert!(!args(container(&docs)).contains(&"--leader-elect".to_owned()));
    // openshift: auto detects the SCC API.
    let docs = render(&[
        "--api-versions",
        "security.openshift.io/v1/SecurityContextConstraints",
    ]);
    assert!(container(&docs)["securityContext"]["runAsUser"].is_null());
    // A log filter is free text: it reaches the operator as one argument, never as YAML (a
    // " #" would start a comment and cut it, a newline would add an argument).
    let filter = "warn #x: y";
    let docs = render(&["--set-string", &format!("logLevel={filter}")]);
    assert!(
        args(container(&docs)).contains(&format!("--log-level={filter}")),
        "{:?}",
        args(container(&docs))
    );
    let docs = render(&["--set-json", r#"logLevel="info\n- --leader-elect=false""#]);
    let a = args(container(&docs));
    assert!(
        a.contains(&"--log-level=info\n- --leader-elect=false".to_owned()),
        "{a:?}"
    );
    assert!(!a.contains(&"--leader-elect=false".to_owned()), "{a:?}");
    // No cleanup hook.
    let docs = render(&["--set", "cleanupOnUninstall=false"]);
    assert!(!has(&docs, "Job"));
    // The defaults are the operator's own.
    let defaults = GatewayDefaults::default();
    assert!(defaults.gateway_image.starts_with("quay.io/virt-gateway/"));
}

#[test]
fn the_chart_refuses_values_that_cannot_work() {
    let err = render_err(&[
        "--set",
        "replicas=2",
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(
        err.contains("replicas above 1 need leaderElection.enabled"),
        "{err}"
    );
    // The schema: a misspelt key, a wrong type, an unknown log format.
    let err = render_err(&["--set", "watchNamespaces=a"]);
    assert!(err.contains("watchNamespaces"), "{err}");
    let err = render_err(&["--set", "replicas=two"]);
    assert!(err.contains("replicas"), "{err}");
    let err = render_err(&["--set", "logFormat=xml"]);
    assert!(err.contains("logFormat"), "{err}");
}

/// Everything the generator writes into the chart and the bundle is checked in as written, and
/// nothing else is there (a file left from an older generator would still be installed).
#[test]
fn the_generated_directories_hold_exactly_what_the_generator_writes() {
    let generated = manifests::files().unwrap();
    for dir in manifests::GENERATED_DIRS {
        let on_disk: Vec<String> = files_under(&deploy_dir().join(dir))
            .unwrap()
            .into_iter()
            .map(|f| format!("{dir}/{f}"))
            .collect();
        let mut expected: Vec<String> = generated
            .iter()
            .filter(|(p, _)| p.starts_with(&format!("{dir}/")))
            .map(|(p, _)| p.clone())
            .collect();
        expected.sort();
        assert_eq!(
            on_disk,
            expected,
            "deploy/{dir} differs from the generator; regenerate with: {}",
            manifests::REGENERATE_COMMAND
        );
    }
    for (path, contents) in generated {
        let checked_in = std::fs::read_to_string(deploy_dir().join(&path)).unwrap_or_default();
        assert!(
            checked_in == contents,
            "deploy/{path} differs from the generator; regenerate with: {}",
            manifests::REGENERATE_COMMAND
        );
    }
}

fn olm_validate(dir: &Path) -> (bool, String) {
    let out = Command::new(tools().olm_validate())
        .arg("-strict")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_olm_bundle_passes_the_operator_frameworks_validation() {
    let (ok, out) = olm_validate(&deploy_dir().join(BUNDLE));
    assert!(ok, "{out}");
    assert!(out.contains("0 error(s), 0 warning(s)"), "{out}");
}

/// A temporary copy of the bundle. Not under a dot-directory: the bundle loader skips those.
fn bundle_copy() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("olm-bundle-")
        .tempdir()
        .unwrap();
    copy_dir(&deploy_dir().join(BUNDLE), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files_under(from).unwrap() {
        let target = to.join(&f);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), target).unwrap();
    }
}

/// The validator is not a formality: a bundle that breaks its rules fails it, naming the rule.
#[test]
fn a_broken_bundle_fails_the_validation() {
    let csv_file = format!(
        "manifests/{}.clusterserviceversion.yaml",
        manifests::olm::PACKAGE
    );
    for (what, edit, expect) in [
        (
            "an owned CRD the bundle lacks",
            ("kind: GateToken", "kind: GateTicket"),
            "GateTicket",
        ),
        (
            "an icon of a media type OperatorHub cannot show",
            ("mediatype: image/svg+xml", "mediatype: image/bmp"),
            "mediatype",
        ),
        (
            "a category OperatorHub does not know",
            ("categories: Security", "categories: Nonsense"),
            "standard categories",
        ),
        (
            "an invalid minKubeVersion",
            ("minKubeVersion: 1.30.0", "minKubeVersion: one-thirty"),
            "MinKubeVersion",
        ),
    ] {
        let dir = bundle_copy();
        let path = dir.path().join(&csv_file);
        let csv = std::fs::read_to_string(&path).unwrap();
        assert!(csv.contains(edit.0), "{what}: the CSV has no {:?}", edit.0);
        std::fs::write(&path, csv.replacen(edit.0, edit.1, 1)).unwrap();
        let (ok, out) = olm_validate(dir.path());
        assert!(!ok, "{what}: the validator accepted it:\n{out}");
        assert!(out.contains(expect), "{what}:\n{out}");
    }
    // The bundle format itself.
    let dir = bundle_copy();
    let annotations = dir.path().join("metadata/annotations.yaml");
    let text = std::fs::read_to_string(&annotations).unwrap();
    std::fs::write(&annotations, text.replace("registry+v1", "helm+v3")).unwrap();
    let (ok, out) = olm_validate(dir.path());
    assert!(!ok && out.contains("mediatype"), "{out}");
}

fn csv() -> Value {
    let path = deploy_dir().join(BUNDLE).join(format!(
        "manifests/{}.clusterserviceversion.yaml",
        manifests::olm::PACKAGE
    ));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The bundle is the install set: the CSV's permissions are the operator's RBAC in code, its
/// Deployment is the manifest's (less the fixed user, which the SCC assigns on OpenShift, plus
/// the watched namespace from the OperatorGroup), and the CRDs are the generated ones.
#[test]
fn the_olm_bundle_carries_the_same_rbac_deployment_and_crds() {
    let csv = csv();
    let strategy = &csv["spec"]["install"]["spec"];
    let rules = |list: &[rbac::Rule]| {
        serde_yaml::to_value(list.iter().map(rbac::Rule::policy_rule).collect::<Vec<_>>()).unwrap()
    };
    assert_eq!(
        strategy["clusterPermissions"][0]["rules"],
        rules(&rbac::cluster_rules())
    );
    assert_eq!(
        strategy["permissions"][0]["rules"],
        rules(rbac::LEADER_ELECTION_RULES)
    );
    assert_eq!(
        strategy["clusterPermissions"][0]["serviceAccountName"],
        "virt-gateway-operator"
    );
    let deployment = &strategy["deployments"][0];
    let generated = serde_yaml::to_value(manifests::operator_deployment(NS)).unwrap();
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let g = &generated["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], g["image"]);
    assert_eq!(c["args"], g["args"]);
    assert_eq!(c["resources"], g["resources"]);
    assert!(c["securityContext"]["runAsUser"].is_null());
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        env(c, "WATCH_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['olm.targetNamespaces']"
    );
    let modes: Vec<(String, bool)> =
        serde_yaml::from_value::<Vec<Value>>(csv["spec"]["installModes"].clone())
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["type"].as_str().unwrap().to_owned(),
                    m["supported"] == true,
                )
            })
            .collect();
    assert!(modes.contains(&("AllNamespaces".to_owned(), true)));
    assert!(modes.contains(&("MultiNamespace".to_owned(), false)));
    assert_eq!(
        csv["spec"]["minKubeVersion"],
        manifests::olm::MIN_KUBE_VERSION
    );
    // The owned CRDs are the generated ones, as files of the bundle.
    let crds = virt_gateway_api::crd::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap();
        let file = deploy_dir()
            .join(BUNDLE)
            .join(format!("manifests/{name}.crd.yaml"));
        let on_disk: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(
            canonical(&on_disk),
            canonical(&serde_yaml::to_value(crd).unwrap())
        );
        assert!(
            serde_yaml::to_string(&csv["spec"]["customresourcedefinitions"]["owned"])
                .unwrap()
                .contains(&name)
        );
    }
    // The admission policies OLM cannot carry are beside the bundle, every one of them.
    let beside = documents(
        &std::fs::read_to_string(deploy_dir().join(manifests::olm::ADMISSION_POLICIES)).unwrap(),
    )
    .unwrap();
    let policies: Vec<Value> = manifests::operator_objects(NS)
        .unwrap()
        .into_iter()
        .filter(|o| {
            o["kind"] == "ValidatingAdmissionPolicy"
                || o["kind"] == "ValidatingAdmissionPolicyBinding"
        })
        .collect();
    assert_eq!(
        policies.len(),
        10,
        "delegation (2), guards (2) and the creator annotation's (1), each with its binding"
    );
    assert_eq!(beside, policies);
    // The examples are valid GateServers and GateTokens.
    let examples: Vec<serde_json::Value> = serde_json::from_str(
        csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(examples.len(), 2);
    serde_json::from_value::<virt_gateway_api::GateServer>(examples[0].clone()).unwrap();
    serde_json::from_value::<virt_gateway_api::GateToken>(examples[1].clone()).unwrap();
    // The bundle image's Dockerfile copies the two directories and carries the same labels.
    let dockerfile = std::fs::read_to_string(deploy_dir().join("olm/bundle.Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY bundle/manifests /manifests/"));
    assert!(dockerfile.contains("COPY bundle/metadata /metadata/"));
    assert!(dockerfile.contains("operators.operatorframework.io.bundle.mediatype.v1=registry+v1"));
}
