//! The CRDs, the seed samples and every CEL rule against a real kube-apiserver (the test
//! environment of `crates/testenv`: etcd, kube-apiserver and kube-controller-manager on
//! loopback).
//!
//! `tests/cel_rules.rs` evaluates the rules client-side with kube's CEL validator; this file
//! proves the same things where they finally count, at admission, and also compares each
//! verdict with the client-side evaluator so that a rule the real server reads differently
//! shows up here.
//!
//! One control plane serves the whole file ([`ControlPlane::shared`]); the CRDs are installed
//! once, exactly as checked in under `deploy/crds/`, and every test works in a fresh namespace
//! (one exception, explained in [`kubectl_creates_the_sample_files_with_strict_validation`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::core::cel::Validator;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use virt_gateway_api::cel::*;
use virt_gateway_api::{
    ConditionStatus, GateServer, GateServerSpec, GateServerStatus, GateToken, GateTokenData,
    GateTokenSpec, GateTokenStatus, new_condition,
};
use virt_gateway_testenv::ControlPlane;

const TIMEOUT: Duration = Duration::from_secs(60);
const FIELD_MANAGER: &str = "virt-gateway-api-tests";
const TOKEN: &str = "GateToken";
const SERVER: &str = "GateServer";

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/api lives two levels below the workspace root")
        .to_path_buf()
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// Every CRD of `deploy/crds/*.yaml`, parsed as it is on disk (no typed round trip); the
/// delegation policy next to them is installed by [`install_crds`] too.
fn crd_files() -> Vec<(PathBuf, Value)> {
    let dir = workspace_root().join("deploy/crds");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with(virt_gateway_api::admission::FILE_NAME))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| (p.clone(), yaml_file(&p)))
        .collect()
}

/// The checked-in CRD of `kind`.
fn crd_file(kind: &str) -> Value {
    crd_files()
        .into_iter()
        .map(|(_, crd)| crd)
        .find(|crd| crd["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind} under deploy/crds"))
}

/// The `openAPIV3Schema` of the checked-in CRD of `kind`, which is what the API server got.
fn schema(kind: &str) -> Value {
    crd_file(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn sample_path(kind: &str) -> PathBuf {
    workspace_root().join(format!(
        "deploy/samples/{}-sample.yaml",
        kind.to_lowercase()
    ))
}

fn sample_text(kind: &str) -> String {
    std::fs::read_to_string(sample_path(kind)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Control plane, CRDs, namespaces
// ---------------------------------------------------------------------------------------------

static CRDS_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Creates every checked-in CRD from its file, as raw JSON (a `DynamicObject` carries every key
/// of the file, so nothing is lost or added by a typed round trip), and waits until each is
/// Established. Once per test binary; the other tests wait for it.
async fn install_crds(cp: &ControlPlane) {
    CRDS_INSTALLED
        .get_or_init(|| async {
            let client = cp.client().await;
            let crd_resource = ApiResource::erase::<CustomResourceDefinition>(&());
            let raw = Api::<DynamicObject>::all_with(client.clone(), &crd_resource);
            let typed = Api::<CustomResourceDefinition>::all(client);
            for (path, crd) in crd_files() {
                let object: DynamicObject = serde_json::from_value(crd).unwrap();
                let name = object.metadata.name.clone().unwrap();
                raw.create(&PostParams::default(), &object)
                    .await
                    .unwrap_or_else(|e| panic!("the API server refused {}: {e}", path.display()));
                tokio::time::timeout(
                    TIMEOUT,
                    await_condition(typed.clone(), &name, conditions::is_crd_established()),
                )
                .await
                .unwrap_or_else(|_| panic!("{name} not Established in {TIMEOUT:?}"))
                .unwrap();
            }
            // Installed wherever the CRDs are; these tests create as the admin, who may grant
            // anything (tests/delegation.rs tests the rule itself).
            cp.install_delegation_policy().await;
        })
        .await;
}

/// The shared control plane with the CRDs installed, an admin client and a fresh namespace.
async fn setup() -> (&'static ControlPlane, Client, String) {
    let cp = ControlPlane::shared().await;
    install_crds(cp).await;
    let ns = cp.fresh_namespace().await;
    (cp, cp.client().await, ns)
}

fn api_resource(kind: &str) -> ApiResource {
    match kind {
        TOKEN => ApiResource::erase::<GateToken>(&()),
        SERVER => ApiResource::erase::<GateServer>(&()),
        other => panic!("not one of ours: {other}"),
    }
}

/// Raw access: objects go to the server and come back as JSON, with no Rust type in between.
fn raw_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &api_resource(kind))
}

/// An object of `kind`; `spec: None` leaves the key out altogether.
fn manifest(kind: &str, name: &str, spec: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": virt_gateway_api::API_VERSION,
        "kind": kind,
        "metadata": {"name": name},
    });
    if let Some(spec) = spec {
        object["spec"] = spec;
    }
    object
}

fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

/// Creates `spec` as an object of `kind`; the API server's refusal as `Err(status)`.
async fn create(
    api: &Api<DynamicObject>,
    kind: &str,
    name: &str,
    spec: Option<Value>,
) -> Result<DynamicObject, Box<Status>> {
    api.create(&PostParams::default(), &dynamic(manifest(kind, name, spec)))
        .await
        .map_err(into_status)
}

fn into_status(err: kube::Error) -> Box<Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an answer from the API server, got {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------------------

/// Every key of every object in `sub` is in `sup` with the same value (arrays and scalars must
/// be equal). Returns the differences, each with its path.
fn missing_or_changed(sub: &Value, sup: &Value, path: &str) -> Vec<String> {
    match (sub, sup) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(k, v)| {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(other) => missing_or_changed(v, other, &p),
                    None => vec![format!("{p}: dropped (was {v})")],
                }
            })
            .collect(),
        _ if sub == sup => Vec::new(),
        _ => vec![format!("{path}: {sub} became {sup}")],
    }
}

fn rules(kind: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match kind {
        TOKEN => GATETOKEN_RULES,
        SERVER => GATESERVER_RULES,
        other => panic!("not one of ours: {other}"),
    }
}

/// The messages of our rules that occur in `text`.
fn our_messages_in(kind: &str, text: &str) -> BTreeSet<&'static str> {
    rules(kind)
        .iter()
        .map(|(_, _, message)| *message)
        .filter(|m| text.contains(m))
        .collect()
}

/// The JSON path of the schema node that carries the rule with `message`.
fn rule_path(kind: &str, message: &str) -> &'static str {
    rules(kind)
        .iter()
        .find(|(_, _, m)| *m == message)
        .map(|(path, _, _)| *path)
        .unwrap()
}

/// Asserts that the API server refused the object as invalid (422, reason `Invalid`) because of
/// exactly the rules with `messages`, each reported at the field that carries the rule.
fn assert_refused_by(kind: &str, what: &str, status: &Status, messages: &[&str]) {
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{what}: {status:?}"
    );
    let want: BTreeSet<&str> = messages.iter().copied().collect();
    assert_eq!(
        our_messages_in(kind, &status.message),
        want,
        "{what}: the API server said {:?}",
        status.message
    );
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    for message in messages {
        let path = rule_path(kind, message);
        assert!(
            causes
                .iter()
                .any(|c| c.field == path && c.message.contains(message)),
            "{what}: no cause at {path} with {message:?}; causes: {causes:?}"
        );
    }
}

/// Drops `null` object members, as the API server does for fields that are not `nullable`
/// (none of ours is) before defaulting and validation; kube's validator leaves that out.
fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// The messages of our rules that kube's client-side CEL validator reports for `spec` (and, for
/// an update, `old_spec`), with the checked-in schema.
fn client_side_messages(
    kind: &str,
    spec: &Value,
    old_spec: Option<&Value>,
) -> BTreeSet<&'static str> {
    let object = |spec: &Value| {
        let mut o = manifest(kind, "x", Some(spec.clone()));
        o["metadata"]["namespace"] = json!("client-side");
        prune_nulls(&mut o);
        o
    };
    let old = old_spec.map(object);
    match Validator::new().validate(&schema(kind), &object(spec), old.as_ref()) {
        Ok(()) => BTreeSet::new(),
        Err(errors) => {
            let text: Vec<String> = errors.into_vec().into_iter().map(|e| e.message).collect();
            our_messages_in(kind, &text.join("\n"))
        }
    }
}

/// Creates each `(spec, messages)` case as a new object: a case with messages must be refused
/// by exactly those rules, one without must be stored with every key it wrote. Every case is
/// also evaluated client-side; all disagreements are reported together.
async fn check_cases(api: &Api<DynamicObject>, kind: &str, cases: &[(Value, &[&str])]) {
    let mut problems = Vec::new();
    for (i, (spec, messages)) in cases.iter().enumerate() {
        let what = format!("{kind} case {i} {spec}");
        let result = create(api, kind, &format!("case-{i}"), Some(spec.clone())).await;
        let server = match &result {
            Ok(_) => BTreeSet::new(),
            Err(status) => our_messages_in(kind, &status.message),
        };
        match result {
            Err(status) if !messages.is_empty() => {
                assert_refused_by(kind, &what, &status, messages)
            }
            Err(status) => problems.push(format!("{what}: refused, {}", status.message)),
            Ok(_) if !messages.is_empty() => {
                problems.push(format!("{what}: accepted, expected {messages:?}"))
            }
            Ok(stored) => {
                let mut written = spec.clone();
                prune_nulls(&mut written);
                let lost = missing_or_changed(&written, &stored.data["spec"], "spec");
                if !lost.is_empty() {
                    problems.push(format!("{what}: stored with changes: {lost:?}"));
                }
                for (key, value) in spec.as_object().unwrap() {
                    if value.is_null() && stored.data["spec"].get(key).is_some() {
                        problems.push(format!("{what}: {key}: null was not dropped"));
                    }
                }
            }
        }
        let client = client_side_messages(kind, spec, None);
        if client != server {
            problems.push(format!(
                "{what}: the client-side evaluator says {client:?}, the API server {server:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// CRDs
// ---------------------------------------------------------------------------------------------

/// Numbers compare by value (the API server writes `minimum: 0.0` back as `0`).
fn normalise_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            *value = json!(n.as_f64().unwrap());
        }
        Value::Object(map) => map.values_mut().for_each(normalise_numbers),
        Value::Array(items) => items.iter_mut().for_each(normalise_numbers),
        _ => {}
    }
}

#[tokio::test]
async fn crds_install_exactly_as_checked_in_and_are_served() {
    let (_cp, client, _ns) = setup().await;
    let files = crd_files();
    let names: Vec<String> = files
        .iter()
        .map(|(_, crd)| crd["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "gateservers.ocgate.yaacov.com",
            "gatetokens.ocgate.yaacov.com"
        ]
    );
    let crd_resource = ApiResource::erase::<CustomResourceDefinition>(&());
    let raw = Api::<DynamicObject>::all_with(client.clone(), &crd_resource);
    for (path, file) in files {
        let name = file["metadata"]["name"].as_str().unwrap();
        let stored = raw.get(name).await.unwrap();
        // Every key of the file's spec reached the server unchanged: schemas, defaults, CEL rules
        // (which the server compiled and cost-checked at creation), printer columns, names.
        let (mut want, mut got) = (file["spec"].clone(), stored.data["spec"].clone());
        normalise_numbers(&mut want);
        normalise_numbers(&mut got);
        let lost = missing_or_changed(&want, &got, "spec");
        assert!(lost.is_empty(), "{}: {lost:#?}", path.display());
        let status = &stored.data["status"];
        for condition in ["NamesAccepted", "Established"] {
            let found = status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == condition)
                .unwrap_or_else(|| panic!("{name}: no {condition} condition: {status}"));
            assert_eq!(found["status"], "True", "{name}: {found}");
        }
        // The names were accepted as written; the server only adds the default listKind.
        let mut names = file["spec"]["names"].clone();
        let list_kind = format!("{}List", names["kind"].as_str().unwrap());
        names["listKind"] = json!(list_kind);
        assert_eq!(status["acceptedNames"], names, "{name}");
        assert_eq!(stored.data["spec"]["names"], names, "{name}");
    }
    // The crate's CRDs are the files (tests/crds_up_to_date.rs checks the YAML text; this checks
    // the objects the server holds against the Rust values).
    for crd in virt_gateway_api::crd::crds() {
        let name = crd.metadata.name.clone().unwrap();
        let stored = Api::<CustomResourceDefinition>::all(client.clone())
            .get(&name)
            .await
            .unwrap();
        assert_eq!(stored.spec.versions, crd.spec.versions, "{name}");
        let mut names = crd.spec.names.clone();
        names.list_kind = Some(format!("{}List", names.kind));
        assert_eq!(stored.spec.names, names, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seed samples
// ---------------------------------------------------------------------------------------------

/// The sample of `kind` parsed from its file, with only `metadata.namespace` changed to `ns`.
fn sample_in(kind: &str, ns: &str) -> Value {
    let original = yaml_file(&sample_path(kind));
    let mut sample = original.clone();
    sample["metadata"]["namespace"] = json!(ns);
    let mut rest_a = original.clone();
    let mut rest_b = sample.clone();
    rest_a["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    rest_b["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    assert_eq!(rest_a, rest_b, "only metadata.namespace is rewritten");
    sample
}

/// The stored spec of each sample: the sample's own keys, untouched, plus the schema defaults
/// of the keys it does not write, and nothing else (in particular no `generateSecret` next to
/// the misspelled `gnerateSecret`, and no `APIGroups`/`apiGroups`, which have no schema default).
fn stored_sample_spec(kind: &str) -> Value {
    match kind {
        TOKEN => json!({
            // the sample's keys
            "namespace": "default",
            "resourceNames": ["testvm"],
            // schema defaults
            "durationSec": 3600,
            "generateServiceAccount": false,
            "verbs": ["get"],
            "resources": ["virtualmachineinstances", "virtualmachineinstances/vnc"],
            "revoked": false,
        }),
        SERVER => json!({
            // the sample's keys
            "route": "kube-gateway-proxy.apps-crc.testing",
            "serviceAccountVerbs": ["get"],
            "serviceAccountAPIGroups": ["subresources.kubevirt.io"],
            "serviceAccountResources": ["virtualmachineinstances", "virtualmachineinstances/vnc"],
            "gnerateSecret": true,
            "passThrough": false,
            "image": "quay.io/yaacov/kube-gateway",
            "webAppImage": "quay.io/yaacov/kube-gateway-web-app-novnc",
            // schema defaults
            "apiURL": "https://kubernetes.default.svc",
            "serviceAccountNamespace": "*",
            "generateOauthClient": false,
            "generateRoute": false,
            // virt-gateway extensions' defaults
            "requireAudience": false,
            "publishJWKS": false,
        }),
        other => panic!("not one of ours: {other}"),
    }
}

/// Checks a sample read back from the server as raw JSON.
fn check_stored_sample(kind: &str, sample: &Value, stored: &Value) {
    let lost = missing_or_changed(&sample["spec"], &stored["spec"], "spec");
    assert!(lost.is_empty(), "{kind} sample lost keys: {lost:#?}");
    assert_eq!(
        stored["spec"],
        stored_sample_spec(kind),
        "{kind} sample: the stored spec is the sample plus the schema defaults"
    );
    match kind {
        TOKEN => {
            assert_eq!(stored["spec"]["namespace"], json!("default"));
            assert_eq!(stored["spec"]["resourceNames"], json!(["testvm"]));
        }
        _ => {
            assert_eq!(stored["spec"]["gnerateSecret"], json!(true));
            assert!(stored["spec"].get("generateSecret").is_none());
        }
    }
    assert_eq!(stored["metadata"]["name"], sample["metadata"]["name"]);
    assert!(stored.get("status").is_none(), "{kind}: no status yet");
}

/// Both samples, server-side applied with strict field validation (the API server refuses an
/// unknown or duplicate field instead of pruning it) into a fresh namespace: only
/// `metadata.namespace` is rewritten, so that the test needs no fixed namespace.
#[tokio::test]
async fn seed_samples_apply_as_written_and_nothing_is_dropped() {
    let (_cp, client, ns) = setup().await;
    let strict = PatchParams::apply(FIELD_MANAGER).validation_strict();
    for kind in [TOKEN, SERVER] {
        let sample = sample_in(kind, &ns);
        let name = sample["metadata"]["name"].as_str().unwrap().to_owned();
        let api = raw_api(&client, &ns, kind);
        let applied = api
            .patch(&name, &strict, &Patch::Apply(&sample))
            .await
            .unwrap_or_else(|e| panic!("{kind} sample refused: {e}"));
        check_stored_sample(kind, &sample, &serde_json::to_value(&applied).unwrap());
        // Read back separately: what is stored, not only what the write answered.
        let stored = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
        check_stored_sample(kind, &sample, &stored);
    }

    // The Rust types read the stored objects, and what the server defaulted is what serde
    // defaults in code.
    let token = Api::<GateToken>::namespaced(client.clone(), &ns)
        .get("gatetoken-sample")
        .await
        .unwrap();
    assert_eq!(
        token.spec,
        GateTokenSpec {
            namespace: "default".into(),
            resource_names: Some(vec!["testvm".into()]),
            ..GateTokenSpec::default()
        }
    );
    let typed_sample: GateToken = serde_yaml::from_str(&sample_text(TOKEN)).unwrap();
    assert_eq!(token.spec, typed_sample.spec);
    assert_eq!(
        token.spec.api_groups(),
        Some(vec!["subresources.kubevirt.io".into()])
    );
    let server = Api::<GateServer>::namespaced(client, &ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    let typed_sample: GateServer = serde_yaml::from_str(&sample_text(SERVER)).unwrap();
    assert_eq!(server.spec, typed_sample.spec);
    assert!(server.spec.generate_secret());
    assert!(server.spec.uses_deprecated_gnerate_secret());
}

/// Runs kubectl against the control plane with `stdin` as its standard input.
async fn kubectl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(cp.binary("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl starts");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("kubectl finished in time")
        .unwrap()
}

fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `kubectl create --validate=strict -f deploy/samples/<kind>-sample.yaml`: the files
/// themselves, byte for byte, comments and all. Strict validation makes the API server refuse
/// any field the schema does not declare (it would otherwise prune it with only a warning), so
/// success proves that nothing of the samples is dropped.
///
/// The files name the namespace `kube-gateway`, and kubectl refuses `-n` with a different
/// namespace than the file's, so this one test creates `kube-gateway` (once: the control plane
/// belongs to this test binary) instead of a fresh namespace; no other test uses it. The
/// negative control runs in a fresh namespace.
#[tokio::test]
async fn kubectl_creates_the_sample_files_with_strict_validation() {
    let (cp, client, ns) = setup().await;
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some("kube-gateway".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("cannot create namespace kube-gateway: {e}"),
    }

    for (kind, resource) in [
        (TOKEN, "gatetoken.ocgate.yaacov.com/gatetoken-sample"),
        (SERVER, "gateserver.ocgate.yaacov.com/gateserver-sample"),
    ] {
        let file = sample_path(kind);
        let file = file.to_str().unwrap();
        let out = kubectl(cp, &["create", "--validate=strict", "-f", file], None).await;
        let stdout = succeeded(&format!("kubectl create --validate=strict -f {file}"), &out);
        assert_eq!(stdout.trim(), format!("{resource} created"));
        assert!(
            out.stderr.is_empty(),
            "no warnings: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = kubectl(cp, &["get", "-f", file, "-o", "json"], None).await;
        let stored: Value = serde_json::from_str(&succeeded("kubectl get -o json", &out)).unwrap();
        check_stored_sample(kind, &yaml_file(&sample_path(kind)), &stored);
        assert_eq!(stored["metadata"]["namespace"], "kube-gateway");
    }

    // The category and short names of the README.
    let out = kubectl(
        cp,
        &["get", "ocgate", "-n", "kube-gateway", "-o", "name"],
        None,
    )
    .await;
    let mut listed: Vec<String> = succeeded("kubectl get ocgate", &out)
        .lines()
        .map(str::to_owned)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "gateserver.ocgate.yaacov.com/gateserver-sample",
            "gatetoken.ocgate.yaacov.com/gatetoken-sample"
        ]
    );
    for short in ["gt/gatetoken-sample", "gs/gateserver-sample"] {
        let out = kubectl(cp, &["get", short, "-n", "kube-gateway"], None).await;
        succeeded(&format!("kubectl get {short}"), &out);
    }

    // Negative control: the same sample with a key the schema does not know is refused under
    // strict validation; without it, the API server accepts it and silently drops the key, and
    // the read-back check above would see that.
    let misspelled = sample_text(SERVER)
        .replace(
            "  namespace: kube-gateway\n",
            &format!("  namespace: {ns}\n"),
        )
        .replace("gnerateSecret: true", "generateSecrets: true");
    assert!(misspelled.contains("generateSecrets: true") && misspelled.contains(&ns));
    let out = kubectl(
        cp,
        &["create", "--validate=strict", "-f", "-"],
        Some(&misspelled),
    )
    .await;
    assert!(!out.status.success(), "an unknown field must be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"unknown field "spec.generateSecrets""#),
        "{stderr}"
    );
    let lax: Value = serde_yaml::from_str(&misspelled).unwrap();
    let stored = raw_api(&client, &ns, SERVER)
        .create(&PostParams::default(), &dynamic(lax.clone()))
        .await
        .unwrap();
    let lost = missing_or_changed(&lax["spec"], &stored.data["spec"], "spec");
    assert_eq!(
        lost,
        ["spec.generateSecrets: dropped (was true)"],
        "without strict validation the unknown key is pruned"
    );
}

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_gatetoken_without_spec_gets_every_default() {
    let (_cp, client, ns) = setup().await;
    let api = raw_api(&client, &ns, TOKEN);
    let defaults = json!({
        "durationSec": 3600,
        "generateServiceAccount": false,
        "namespace": "*",
        "verbs": ["get"],
        "resources": ["virtualmachineinstances", "virtualmachineinstances/vnc"],
        "revoked": false,
    });
    for (name, spec) in [("no-spec", None), ("empty-spec", Some(json!({})))] {
        let created = create(&api, TOKEN, name, spec).await.unwrap();
        assert_eq!(created.data["spec"], defaults, "{name}");
        let stored = api.get(name).await.unwrap();
        assert_eq!(stored.data["spec"], defaults, "{name}");
    }
    // Serde's defaults in code are the schema's.
    assert_eq!(
        serde_json::to_value(GateTokenSpec::default()).unwrap(),
        defaults
    );
    let typed = Api::<GateToken>::namespaced(client, &ns)
        .get("no-spec")
        .await
        .unwrap();
    assert_eq!(typed.spec, GateTokenSpec::default());
    assert_eq!(
        typed.spec.api_groups(),
        Some(vec!["subresources.kubevirt.io".into()]),
        "the API group default is applied in code"
    );
}

#[tokio::test]
async fn a_gateserver_without_spec_gets_every_default() {
    let (_cp, client, ns) = setup().await;
    let api = raw_api(&client, &ns, SERVER);
    let created = create(&api, SERVER, "no-spec", None).await.unwrap();
    let stored = &created.data["spec"];
    // Gen B's schema defaults, except the images (see below).
    for (key, value) in [
        ("apiURL", json!("https://kubernetes.default.svc")),
        ("serviceAccountNamespace", json!("*")),
        ("serviceAccountVerbs", json!(["get"])),
        (
            "serviceAccountAPIGroups",
            json!(["subresources.kubevirt.io"]),
        ),
        (
            "serviceAccountResources",
            json!(["virtualmachineinstances", "virtualmachineinstances/vnc"]),
        ),
        ("passThrough", json!(false)),
        ("generateOauthClient", json!(false)),
        ("generateRoute", json!(false)),
    ] {
        assert_eq!(stored[key], value, "{key} in {stored}");
    }
    // No schema default: generateSecret (either spelling) defaults in code, and an absent image
    // means the operator-wide default image (a deliberate change from Gen B, which defaulted
    // both images in the schema).
    for absent in [
        "generateSecret",
        "gnerateSecret",
        "route",
        "image",
        "webAppImage",
    ] {
        assert!(stored.get(absent).is_none(), "{absent} in {stored}");
    }
    // All of it is what the Rust default serialises to.
    assert_eq!(
        *stored,
        serde_json::to_value(GateServerSpec::default()).unwrap()
    );
    let typed = Api::<GateServer>::namespaced(client, &ns)
        .get("no-spec")
        .await
        .unwrap();
    assert_eq!(typed.spec, GateServerSpec::default());
    assert!(
        typed.spec.generate_secret(),
        "generateSecret defaults to true in code"
    );
}

// ---------------------------------------------------------------------------------------------
// CEL rules
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn gatetoken_api_groups_and_non_resource_urls() {
    let (_cp, client, ns) = setup().await;
    let not_both: &[&str] = &[TOKEN_GROUPS_XOR_URLS_MESSAGE];
    let not_empty: &[&str] = &[TOKEN_RULE_NOT_EMPTY_MESSAGE];
    let ok: &[&str] = &[];
    check_cases(
        &raw_api(&client, &ns, TOKEN),
        TOKEN,
        &[
            // Both set, in either spelling.
            (
                json!({"apiGroups": ["kubevirt.io"], "nonResourceURLs": ["/healthz"]}),
                not_both,
            ),
            (
                json!({"APIGroups": ["kubevirt.io"], "nonResourceURLs": ["/healthz"]}),
                not_both,
            ),
            (
                json!({"apiGroups": ["a"], "APIGroups": [], "nonResourceURLs": ["/healthz"]}),
                not_both,
            ),
            (
                json!({"apiGroups": [""], "nonResourceURLs": ["/healthz"]}),
                not_both,
            ),
            // Explicitly empty groups and no URLs.
            (json!({"apiGroups": []}), not_empty),
            (json!({"APIGroups": []}), not_empty),
            (json!({"APIGroups": [], "nonResourceURLs": []}), not_empty),
            (json!({"apiGroups": [], "nonResourceURLs": []}), not_empty),
            // apiGroups wins over APIGroups, also when empty.
            (json!({"apiGroups": [], "APIGroups": ["a"]}), not_empty),
            (
                json!({"apiGroups": [], "APIGroups": ["a"], "nonResourceURLs": ["/healthz"]}),
                ok,
            ),
            // Good ones.
            (json!({"nonResourceURLs": ["/healthz", "/metrics/*"]}), ok),
            (
                json!({"APIGroups": [], "nonResourceURLs": ["/healthz"]}),
                ok,
            ),
            (
                json!({"apiGroups": [], "nonResourceURLs": ["/healthz"]}),
                ok,
            ),
            (
                json!({"APIGroups": null, "nonResourceURLs": ["/healthz"]}),
                ok,
            ),
            (json!({"nonResourceURLs": []}), ok),
            (json!({"apiGroups": [""], "resources": ["pods"]}), ok),
            (
                json!({"APIGroups": ["kubevirt.io"], "resources": ["virtualmachines"]}),
                ok,
            ),
            (
                json!({"namespace": "default", "resourceNames": ["testvm"]}),
                ok,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn gatetoken_duration_must_be_positive() {
    let (_cp, client, ns) = setup().await;
    let refused: &[&str] = &[TOKEN_DURATION_POSITIVE_MESSAGE];
    let ok: &[&str] = &[];
    check_cases(
        &raw_api(&client, &ns, TOKEN),
        TOKEN,
        &[
            (json!({"durationSec": 0}), refused),
            (json!({"durationSec": -1}), refused),
            (json!({"durationSec": -60}), refused),
            (json!({"durationSec": i64::MIN}), refused),
            (json!({"durationSec": 1}), ok),
            (json!({"durationSec": 86400}), ok),
            (json!({"durationSec": i64::MAX}), ok),
        ],
    )
    .await;
}

#[tokio::test]
async fn gatetoken_from_must_be_rfc3339() {
    let (_cp, client, ns) = setup().await;
    let refused: &[&str] = &[TOKEN_FROM_RFC3339_MESSAGE];
    let ok: &[&str] = &[];
    let bad = [
        "now",
        "tomorrow",
        "2021-04-22",
        "2021-04-22T10:00:00",
        "2021-04-22T10:00:00ZT",
        "2021-04-22 10:00:00Z",
        "2021-04-22T25:00:00Z",
        "2021-02-30T10:00:00Z",
        "2021-04-22T10:00Z",
        "2021-04-22T10:00:00,5Z",
        "2021-04-22T10:00:00+24:00",
        "2016-12-31T23:59:60Z",
        "2021-04-22T10:00:00Z\n",
        " 2021-04-22T10:00:00Z",
    ];
    let good = [
        "",
        "2021-04-22T10:00:00Z",
        "2021-04-22t10:00:00z",
        "2021-04-22T12:00:00+02:00",
        "2021-04-22T05:30:00-04:30",
        "2021-04-22T12:00:00.5+02:00",
        "2021-04-22T10:00:00.123456789Z",
        "2024-02-29T00:00:00Z",
        "2021-04-22T10:00:00-23:59",
    ];
    let mut cases: Vec<(Value, &[&str])> =
        bad.iter().map(|f| (json!({"from": f}), refused)).collect();
    cases.extend(good.iter().map(|f| (json!({"from": f}), ok)));
    cases.push((json!({"durationSec": 60}), ok)); // absent
    cases.push((json!({"from": null}), ok)); // null is absent
    check_cases(&raw_api(&client, &ns, TOKEN), TOKEN, &cases).await;

    // Two broken fields: both rules answer, each at its own field.
    let status = create(
        &raw_api(&client, &ns, TOKEN),
        TOKEN,
        "two-errors",
        Some(json!({"durationSec": 0, "from": "tomorrow"})),
    )
    .await
    .unwrap_err();
    assert_refused_by(
        TOKEN,
        "durationSec 0 and from tomorrow",
        &status,
        &[TOKEN_DURATION_POSITIVE_MESSAGE, TOKEN_FROM_RFC3339_MESSAGE],
    );
}

#[tokio::test]
async fn gatetoken_revocation_is_final() {
    let (_cp, client, ns) = setup().await;
    let api = raw_api(&client, &ns, TOKEN);
    let merge = |spec: Value| Patch::Merge(json!({"spec": spec}));
    let pp = PatchParams::default();

    // Transition rules do not run on creation.
    create(&api, TOKEN, "revoked", Some(json!({"revoked": true})))
        .await
        .expect("a token may be created revoked");
    let mut problems = Vec::new();
    // (what, merge patch of the spec, the spec after it)
    for (what, patch, new_spec) in [
        (
            "revoked: false",
            json!({"revoked": false}),
            json!({"revoked": false}),
        ),
        (
            "revoked removed (defaults to false)",
            json!({"revoked": null}),
            json!({}),
        ),
    ] {
        let status = api
            .patch("revoked", &pp, &merge(patch))
            .await
            .map_err(into_status)
            .expect_err(what);
        assert_refused_by(TOKEN, what, &status, &[TOKEN_REVOKED_IS_FINAL_MESSAGE]);
        let client_side = client_side_messages(TOKEN, &new_spec, Some(&json!({"revoked": true})));
        if client_side != BTreeSet::from([TOKEN_REVOKED_IS_FINAL_MESSAGE]) {
            problems.push(format!(
                "{what}: the client-side evaluator says {client_side:?}"
            ));
        }
    }
    assert_eq!(
        api.get("revoked").await.unwrap().data["spec"]["revoked"],
        json!(true)
    );
    // Other changes to a revoked token, with revoked kept true, are fine.
    let updated = api
        .patch(
            "revoked",
            &pp,
            &merge(json!({"durationSec": 60, "revoked": true})),
        )
        .await
        .unwrap();
    assert_eq!(updated.data["spec"]["durationSec"], json!(60));
    let updated = api
        .patch("revoked", &pp, &merge(json!({"verbs": ["get", "list"]})))
        .await
        .unwrap();
    assert_eq!(updated.data["spec"]["revoked"], json!(true));

    // false -> true is the revocation itself.
    create(&api, TOKEN, "live", None).await.unwrap();
    let revoked = api
        .patch("live", &pp, &merge(json!({"revoked": true})))
        .await
        .unwrap();
    assert_eq!(revoked.data["spec"]["revoked"], json!(true));

    // The other rules run on updates too.
    let status = api
        .patch("live", &pp, &merge(json!({"durationSec": 0})))
        .await
        .map_err(into_status)
        .unwrap_err();
    assert_refused_by(
        TOKEN,
        "durationSec 0 on update",
        &status,
        &[TOKEN_DURATION_POSITIVE_MESSAGE],
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn gateserver_rules() {
    let (_cp, client, ns) = setup().await;
    let not_both: &[&str] = &[SERVER_GROUPS_XOR_URLS_MESSAGE];
    let not_empty: &[&str] = &[SERVER_RULE_NOT_EMPTY_MESSAGE];
    let tls: &[&str] = &[SERVER_TLS_NEEDS_ROUTE_MESSAGE];
    let consoles: &[&str] = &[SERVER_CONTROLLERS_NEED_SHARED_MESSAGE];
    let https: &[&str] = &[SERVER_REPLICAS_NEED_HTTPS_MESSAGE];
    let ok: &[&str] = &[];
    check_cases(
        &raw_api(&client, &ns, SERVER),
        SERVER,
        &[
            // URLs next to the default serviceAccountAPIGroups.
            (json!({"serviceAccountNonResourceURLs": ["/healthz"]}), not_both),
            (
                json!({"serviceAccountAPIGroups": ["kubevirt.io"], "serviceAccountNonResourceURLs": ["/healthz"]}),
                not_both,
            ),
            (json!({"serviceAccountAPIGroups": []}), not_empty),
            (
                json!({"serviceAccountAPIGroups": [], "serviceAccountNonResourceURLs": []}),
                not_empty,
            ),
            (
                json!({"serviceAccountAPIGroups": [], "serviceAccountNonResourceURLs": ["/healthz"]}),
                ok,
            ),
            (json!({"serviceAccountNonResourceURLs": []}), ok),
            (json!({"serviceAccountAPIGroups": [""], "serviceAccountResources": ["pods"]}), ok),
            // TLS needs a route.
            (json!({"ingressTLSSecretName": "gw-tls"}), tls),
            (json!({"ingressTLSSecretName": "gw-tls", "ingressClassName": "nginx"}), tls),
            (
                json!({"ingressTLSSecretName": "gw-tls", "route": "gw.apps.example.com"}),
                ok,
            ),
            (json!({"ingressClassName": "nginx", "route": "gw.apps.example.com"}), ok),
            (json!({"route": "gw.apps.example.com"}), ok),
            // Two rules at once.
            (
                json!({"serviceAccountAPIGroups": [], "ingressTLSSecretName": "gw-tls"}),
                &[SERVER_RULE_NOT_EMPTY_MESSAGE, SERVER_TLS_NEEDS_ROUTE_MESSAGE],
            ),
            // Both spellings of generateSecret side by side are kept.
            (json!({"generateSecret": false, "gnerateSecret": true}), ok),
            // Issue 16: a policy for several controllers needs shared consoles.
            (json!({"consoles": {"shared": true}}), ok),
            (json!({"consoles": {"shared": true, "controllers": "TakeOver"}}), ok),
            (json!({"consoles": {"shared": true, "controllers": "Shared"}}), ok),
            (json!({"consoles": {"controllers": "Shared"}}), consoles),
            (json!({"consoles": {"shared": false, "controllers": "TakeOver"}}), consoles),
            // Replicas forward viewers' tokens to each other: over HTTPS only.
            (json!({"replicas": 2, "consoles": {"shared": true}}), https),
            (json!({"replicas": 2, "consoles": {"shared": true}, "generateRoute": true}), ok),
            (json!({"replicas": 2}), ok),
        ],
    )
    .await;
    // A policy outside the enum (the gateway flag's spelling, say) is refused by the schema,
    // with the field and the values it takes.
    let api = raw_api(&client, &ns, SERVER);
    for bad in ["take-over", "shared", "Bogus"] {
        let spec = json!({"consoles": {"shared": true, "controllers": bad}});
        let status = create(&api, SERVER, "bad-policy", Some(spec))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        for want in ["spec.consoles.controllers", "\"TakeOver\"", "\"Shared\""] {
            assert!(status.message.contains(want), "{bad}: {}", status.message);
        }
    }
    // Replicas: 1 to 10, refused with the field and the bound outside it.
    for (replicas, bound) in [
        (0, "greater than or equal to 1"),
        (11, "less than or equal to 10"),
    ] {
        let spec = json!({"replicas": replicas});
        let status = create(&api, SERVER, "bad-replicas", Some(spec))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        for want in ["spec.replicas", bound] {
            assert!(
                status.message.contains(want),
                "{replicas}: {}",
                status.message
            );
        }
    }
    create(&api, SERVER, "ten-replicas", Some(json!({"replicas": 10})))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// Writes `status` through the status subresource with a JSON merge patch.
async fn write_status(
    api: &Api<DynamicObject>,
    name: &str,
    status: &Value,
) -> Result<DynamicObject, Box<Status>> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map_err(into_status)
}

/// The `required` list of the schema node at `path` (e.g. `["status", "data"]`).
fn required(kind: &str, path: &[&str]) -> Vec<String> {
    let mut node = schema(kind);
    for key in path {
        node = node["properties"][key].clone();
    }
    serde_json::from_value(node["required"].clone()).unwrap()
}

fn without(value: &Value, path: &[&str]) -> Value {
    let mut value = value.clone();
    let (last, parents) = path.split_last().unwrap();
    let mut node = &mut value;
    for key in parents {
        node = &mut node[key];
    }
    node.as_object_mut().unwrap().remove(*last);
    value
}

/// A complete GateToken status, as the operator writes it.
fn full_token_status() -> Value {
    let now: Timestamp = "2021-04-22T10:00:00Z".parse().unwrap();
    let spec = GateTokenSpec {
        namespace: "default".into(),
        resource_names: Some(vec!["testvm".into()]),
        ..GateTokenSpec::default()
    };
    let mut data = GateTokenData::new(
        &spec.effective_rule().unwrap(),
        &spec.validity(now).unwrap(),
        "RS256",
    );
    data.jti = Some("4f9a3c1e-0000-4000-8000-000000000001".into());
    data.kid = Some("kid-1".into());
    let status = GateTokenStatus {
        conditions: vec![new_condition(
            "Ready",
            ConditionStatus::True,
            "TokenSigned",
            "the token is valid",
            Some(1),
            now,
        )],
        token: "header.payload.signature".into(),
        service_account_name: String::new(),
        data,
        phase: "Ready".into(),
        observed_generation: Some(1),
    };
    serde_json::to_value(status).unwrap()
}

#[tokio::test]
async fn gatetoken_status_required_keys_are_enforced() {
    let (_cp, client, ns) = setup().await;
    let api = raw_api(&client, &ns, TOKEN);
    create(&api, TOKEN, "t", None).await.unwrap();
    let full = full_token_status();

    let top = required(TOKEN, &["status"]);
    let data = required(TOKEN, &["status", "data"]);
    assert_eq!(
        top,
        [
            "conditions",
            "data",
            "phase",
            "service-account-name",
            "token"
        ]
    );
    assert_eq!(data, ["alg", "duration-sec", "exp", "from", "nbf", "until"]);
    let mut missing: Vec<Vec<&str>> = top.iter().map(|k| vec![k.as_str()]).collect();
    missing.extend(data.iter().map(|k| vec!["data", k.as_str()]));
    // Refused writes change nothing, so each one starts from the object without a status.
    for path in &missing {
        let field = format!("status.{}", path.join("."));
        let status = write_status(&api, "t", &without(&full, path))
            .await
            .expect_err(&field);
        assert_eq!(
            (status.code, status.reason.as_str()),
            (422, "Invalid"),
            "{field}"
        );
        assert!(
            status.message.contains(&format!("{field}: Required value")),
            "{field}: {}",
            status.message
        );
    }
    assert!(api.get("t").await.unwrap().data.get("status").is_none());

    // Every key: accepted, stored as written.
    let written = write_status(&api, "t", &full).await.unwrap();
    assert_eq!(written.data["status"], full);
    assert_eq!(api.get("t").await.unwrap().data["status"], full);
    let typed = Api::<GateToken>::namespaced(client.clone(), &ns)
        .get("t")
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(typed.status.unwrap()).unwrap(), full);

    // Removing a required key from a stored status is refused as well.
    let status = write_status(&api, "t", &json!({"token": null}))
        .await
        .expect_err("removing status.token");
    assert!(
        status.message.contains("status.token: Required value"),
        "{}",
        status.message
    );
    // The status subresource ignores spec changes.
    let patched = api
        .patch_status(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"durationSec": 5}, "status": {"phase": "Completed"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["durationSec"], json!(3600));
    assert_eq!(patched.data["status"]["phase"], json!("Completed"));

    // The Rust side always serialises the required keys: the default status is accepted as is.
    create(&api, TOKEN, "default-status", None).await.unwrap();
    let default = serde_json::to_value(GateTokenStatus::default()).unwrap();
    let written = write_status(&api, "default-status", &default)
        .await
        .unwrap();
    assert_eq!(written.data["status"], default);
    let typed = Api::<GateToken>::namespaced(client, &ns)
        .get("default-status")
        .await
        .unwrap();
    assert_eq!(typed.status, Some(GateTokenStatus::default()));
}

#[tokio::test]
async fn gateserver_status_required_keys_are_enforced() {
    let (_cp, client, ns) = setup().await;
    let api = raw_api(&client, &ns, SERVER);
    create(&api, SERVER, "s", None).await.unwrap();
    let now: Timestamp = "2021-04-22T10:00:00Z".parse().unwrap();
    let ready = new_condition("Ready", ConditionStatus::True, "Deployed", "", Some(1), now);
    let full = serde_json::to_value(GateServerStatus {
        conditions: vec![ready.clone()],
        phase: "Ready".into(),
        observed_generation: Some(1),
    })
    .unwrap();

    let top = required(SERVER, &["status"]);
    assert_eq!(top, ["conditions", "phase"]);
    for key in &top {
        let field = format!("status.{key}");
        let status = write_status(&api, "s", &without(&full, &[key]))
            .await
            .expect_err(&field);
        assert_eq!(
            (status.code, status.reason.as_str()),
            (422, "Invalid"),
            "{field}"
        );
        assert!(
            status.message.contains(&format!("{field}: Required value")),
            "{field}: {}",
            status.message
        );
    }
    // Conditions are a map keyed by type: one condition per type.
    let mut twice = full.clone();
    twice["conditions"] = json!([ready.clone(), ready]);
    let status = write_status(&api, "s", &twice)
        .await
        .expect_err("duplicate type");
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("status.conditions[1]: Duplicate value"),
        "{}",
        status.message
    );
    // And they are validated as metav1.Conditions.
    let mut bad_reason = full.clone();
    bad_reason["conditions"][0]["reason"] = json!("not a reason");
    let status = write_status(&api, "s", &bad_reason)
        .await
        .expect_err("reason pattern");
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("status.conditions[0].reason"),
        "{}",
        status.message
    );

    let written = write_status(&api, "s", &full).await.unwrap();
    assert_eq!(written.data["status"], full);

    create(&api, SERVER, "default-status", None).await.unwrap();
    let default = serde_json::to_value(GateServerStatus::default()).unwrap();
    assert_eq!(default, json!({"conditions": [], "phase": ""}));
    let written = write_status(&api, "default-status", &default)
        .await
        .unwrap();
    assert_eq!(written.data["status"], default);
    let typed = Api::<GateServer>::namespaced(client, &ns)
        .get("default-status")
        .await
        .unwrap();
    assert_eq!(typed.status, Some(GateServerStatus::default()));
}
