//! The Helm chart for real, on the test control plane: `helm install`, the seed samples Ready with
//! exactly the RBAC the chart installed, `helm upgrade` to other values keeping the key Secret and
//! every issued token, `helm uninstall` leaving no cluster-scoped object of ours behind.
//!
//! There is no kubelet, so this test plays it: for the operator Deployment's pod (and later the
//! uninstall hook Job's pod) it runs the operator binary, the image's entry point, with the
//! container's arguments and environment as the chart wrote them, under a TokenRequest token of
//! the pod's ServiceAccount (so with exactly the chart's RBAC), with the probe and metrics
//! addresses moved to loopback ports. For the hook it then reports the pod's exit in its status,
//! as the kubelet would; kube-controller-manager's Job controller completes the Job and Helm,
//! which waits for it, goes on. Everything else is real: Helm, the API server, the controllers.
//!
//! One test in this binary: its operator watches the seeds' namespace and must not share a
//! control plane with other operators.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use virt_gateway_api::{GateServer, GateToken, JWT_SECRET_NAME};
use virt_gateway_auth::jwt::Verifier;
use virt_gateway_auth::keys::PublicKey;
use virt_gateway_deploy_tests::{CHART, Kubectl, Tools, deploy_dir, helm};
use virt_gateway_testenv::ControlPlane;

const RELEASE: &str = "vgo";
const RELEASE_NS: &str = "vgo-system";
const SEEDS_NS: &str = "kube-gateway";
const TIMEOUT: Duration = Duration::from_secs(180);

/// The operator binary of this workspace, built (or found up to date) by cargo: the test runs
/// what the image would.
fn operator_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--quiet",
            "-p",
            "virt-gateway-operator",
            "--bin",
            "virt-gateway-operator",
        ])
        .current_dir(virt_gateway_deploy_tests::repo_root())
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cargo build of virt-gateway-operator failed"
    );
    // This test binary is target/<profile>/deps/<name>; the operator is target/<profile>/.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("virt-gateway-operator");
    assert!(bin.is_file(), "{} is missing", bin.display());
    bin
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A container run by this test in the kubelet's place (killed when dropped, and when the test
/// process dies).
struct Container {
    child: Child,
    log: PathBuf,
    health: Option<String>,
    _dir: tempfile::TempDir,
}

impl Container {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit; its success.
    async fn wait(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", self.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, as the kubelet stops a pod; waits for the exit.
    async fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.wait().await;
    }

    async fn wait_ready(&self) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.health.clone().unwrap();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let mut response = String::new();
            if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
                let _ = s
                    .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .await;
                let _ = s.read_to_string(&mut response).await;
            }
            if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator did not become ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Runs the first container of `pod` (as the chart wrote it) in the kubelet's place: the
/// operator binary with the container's args and env under the pod's ServiceAccount.
async fn run_pod(cp: &ControlPlane, ns: &str, pod_name: &str, pod: &PodSpec) -> Container {
    use std::os::unix::process::CommandExt as _;
    let account = pod.service_account_name.clone().unwrap();
    let token = cp.token_request(ns, &account, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        cp.kubeconfig_for(json!({"token": token}), &[("pod", "")]),
    )
    .unwrap();
    let c = &pod.containers[0];
    let mut health = None;
    let args: Vec<String> = c
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-bind-address=") {
                format!("--metrics-bind-address={}", free_addr())
            } else if a.starts_with("--health-probe-bind-address=") {
                let addr = free_addr();
                health = Some(addr.clone());
                format!("--health-probe-bind-address={addr}")
            } else {
                a
            }
        })
        .collect();
    let log = dir.path().join("container.log");
    let mut cmd = Command::new(operator_binary());
    // The container's arguments exactly as written; the credentials come the way a pod's
    // in-cluster config would, from outside the command line (KUBECONFIG, which the client reads
    // when no --kubeconfig is given).
    cmd.args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => pod_name.to_owned(),
                Some("metadata.namespace") => ns.to_owned(),
                other => panic!("the test does not emulate env from {other:?}"),
            },
            (None, None) => String::new(),
        };
        cmd.env(&e.name, value);
    }
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Container {
        child: cmd.spawn().unwrap(),
        log,
        health,
        _dir: dir,
    }
}

async fn operator_pod(cp: &ControlPlane, client: &Client) -> (Container, Deployment) {
    let d = Api::<Deployment>::namespaced(client.clone(), RELEASE_NS)
        .get("virt-gateway-operator")
        .await
        .unwrap();
    let pod = d.spec.template.spec.clone().unwrap();
    let c = run_pod(cp, RELEASE_NS, "virt-gateway-operator-0", &pod).await;
    c.wait_ready().await;
    (c, d)
}

/// Polls `check` until it returns Some, or fails with `what`.
async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_server_ready(client: &Client, name: &str) -> GateServer {
    let api: Api<GateServer> = Api::namespaced(client.clone(), SEEDS_NS);
    wait_until(&format!("GateServer {name} Ready"), || async {
        api.get_opt(name)
            .await
            .unwrap()
            .filter(|s| s.status.as_ref().is_some_and(|st| st.phase == "Ready"))
    })
    .await
}

async fn wait_token_ready(client: &Client, name: &str) -> GateToken {
    let api: Api<GateToken> = Api::namespaced(client.clone(), SEEDS_NS);
    wait_until(&format!("GateToken {name} Ready"), || async {
        api.get_opt(name)
            .await
            .unwrap()
            .filter(|t| t.status.as_ref().is_some_and(|st| st.phase == "Ready"))
    })
    .await
}

fn verifies(secret: &Secret, token: &str) {
    let key = PublicKey::from_pem(&secret.data.as_ref().unwrap()["cert.pem"].0).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Verifier::new([key])
        .verify(token, now)
        .unwrap_or_else(|e| panic!("the token no longer verifies: {e}"));
}

fn helm_ok(tools: &Tools, home: &Path, cp: &ControlPlane, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--kubeconfig", cp.kubeconfig().to_str().unwrap()]);
    let out = helm(tools, home, &all).unwrap();
    assert!(
        out.success,
        "helm {}:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Cluster-scoped objects of ours: CRDs of our group, the admission policies and their bindings,
/// and ClusterRoles/Bindings that are part of virt-gateway (the operator's, the hook's) or made
/// by the operator (gateways', tokens').
async fn cluster_scoped_leftovers(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for crd in Api::<CustomResourceDefinition>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        if crd.spec.group == virt_gateway_api::GROUP {
            out.push(format!("CustomResourceDefinition {}", crd.name_any()));
        }
    }
    let ours = |labels: &BTreeMap<String, String>, name: &str| {
        labels.get("app.kubernetes.io/part-of").map(String::as_str) == Some("virt-gateway")
            || labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("virt-gateway-operator")
            || name.starts_with("virt-gateway")
    };
    for r in Api::<ClusterRole>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        if ours(r.labels(), &r.name_any()) {
            out.push(format!("ClusterRole {}", r.name_any()));
        }
    }
    for p in Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        if ours(p.labels(), &p.name_any()) {
            out.push(format!("ValidatingAdmissionPolicy {}", p.name_any()));
        }
    }
    for b in Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        if ours(b.labels(), &b.name_any()) {
            out.push(format!("ValidatingAdmissionPolicyBinding {}", b.name_any()));
        }
    }
    for b in Api::<ClusterRoleBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        if ours(b.labels(), &b.name_any()) {
            out.push(format!("ClusterRoleBinding {}", b.name_any()));
        }
    }
    out
}

#[tokio::test]
async fn install_upgrade_and_uninstall_with_helm() {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await;
    let tools = Tools::ensure().unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let kubectl = Kubectl {
        binary: cp.binary("kubectl"),
        kubeconfig: cp.kubeconfig().to_path_buf(),
    };
    let chart = deploy_dir().join(CHART);
    let chart = chart.to_str().unwrap();
    let deploy = |f: &str| deploy_dir().join(f).to_str().unwrap().to_owned();

    // The release namespace, as an administrator would make it: Pod Security restricted.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [RELEASE_NS, SEEDS_NS] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns, "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted"
                }}}))
                .unwrap(),
            )
            .await
            .unwrap();
    }

    // Install with the default values; every object is there (no --wait: pods never run here).
    helm_ok(
        &tools,
        home,
        cp,
        &["install", RELEASE, chart, "-n", RELEASE_NS],
    );
    let (operator, _) = operator_pod(cp, &client).await;

    // The seeds, as written, and the example server: Ready under the chart's RBAC alone.
    kubectl
        .ok(&["apply", "-f", &deploy("virt-gateway-server.yaml")], None)
        .unwrap();
    for sample in ["gateserver-sample.yaml", "gatetoken-sample.yaml"] {
        kubectl
            .ok(
                &["create", "-f", &deploy(&format!("samples/{sample}"))],
                None,
            )
            .unwrap();
    }
    wait_server_ready(&client, "gateserver-sample").await;
    wait_server_ready(&client, "kube-gateway-server").await;
    let token = wait_token_ready(&client, "gatetoken-sample").await;
    let issued = token.status.unwrap().token;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), SEEDS_NS);
    let key = secrets.get(JWT_SECRET_NAME).await.unwrap();
    verifies(&key, &issued);

    // Upgrade to other values: text logs, two replicas, an image mirror, other resources, the
    // escalate role, the operator scoped to the seeds' namespace.
    let mirror = "registry.example.com/mirror/virt-gateway";
    helm_ok(
        &tools,
        home,
        cp,
        &[
            "upgrade",
            RELEASE,
            chart,
            "-n",
            RELEASE_NS,
            "--set",
            "logFormat=text",
            "--set",
            "replicas=2",
            "--set",
            &format!("image.registry={mirror}"),
            "--set",
            "resources.requests.cpu=150m",
            "--set",
            "rbac.escalate=true",
            "--set",
            "serviceAccountTokens.enabled=true",
            "--set",
            &format!("watchNamespace={SEEDS_NS}"),
        ],
    );
    // The rollout: the old pod stops, a pod of the new template starts.
    operator.stop().await;
    let (operator, deployment) = operator_pod(cp, &client).await;
    assert_eq!(deployment.spec.replicas, Some(2));
    // The mirror reaches the gateways that take the default image (not the seed, which names one).
    let version = env!("CARGO_PKG_VERSION");
    let gateways: Api<Deployment> = Api::namespaced(client.clone(), SEEDS_NS);
    wait_until("the example gateway runs the mirrored image", || async {
        let d = gateways.get("kube-gateway-server").await.unwrap();
        let image = d.spec.template.spec?.containers[0].image.clone()?;
        (image == format!("{mirror}/kube-gateway:{version}")).then_some(())
    })
    .await;
    let seed_gateway = gateways.get("gateserver-sample").await.unwrap();
    assert_eq!(
        seed_gateway.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("quay.io/yaacov/kube-gateway")
    );

    // The key Secret is the same object, byte for byte; the issued token still verifies, and a
    // token issued now is signed with the same key.
    let key_after = secrets.get(JWT_SECRET_NAME).await.unwrap();
    assert_eq!(key_after.uid(), key.uid());
    assert_eq!(key_after.resource_version(), key.resource_version());
    assert_eq!(key_after.data, key.data);
    let token = wait_token_ready(&client, "gatetoken-sample").await;
    assert_eq!(
        token.status.unwrap().token,
        issued,
        "the issued token is unchanged"
    );
    verifies(&key_after, &issued);
    let tokens: Api<GateToken> = Api::namespaced(client.clone(), SEEDS_NS);
    tokens
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
                "metadata": {"name": "after-upgrade"},
                "spec": {"namespace": "default", "resourceNames": ["testvm2"]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let fresh = wait_token_ready(&client, "after-upgrade").await;
    verifies(&key_after, &fresh.status.unwrap().token);
    let mid = cluster_scoped_leftovers(&client).await;
    assert!(
        mid.iter()
            .any(|o| o.starts_with("ClusterRole virt-gateway:kube-gateway:")),
        "the gateways' ClusterRoles exist before the uninstall: {mid:?}"
    );
    for policy in [
        "ValidatingAdmissionPolicy virt-gateway-operator-guard",
        "ValidatingAdmissionPolicyBinding virt-gateway-operator-guard",
        "ClusterRoleBinding virt-gateway-operator-serviceaccount-tokens",
    ] {
        assert!(
            mid.iter().any(|o| o == policy),
            "{policy} is installed: {mid:?}"
        );
    }

    // Uninstall. Helm runs the pre-delete hook first and waits for its Job; this test runs the
    // Job's pod as the kubelet would and reports its exit.
    let mut uninstall = {
        let mut cmd = Command::new(tools.helm());
        cmd.args(["uninstall", RELEASE, "-n", RELEASE_NS, "--timeout", "3m"])
            .arg("--kubeconfig")
            .arg(cp.kubeconfig())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NS);
    let hook_pod = wait_until("the uninstall hook's pod", || async {
        pods.list(&ListParams::default().labels(&format!(
            "batch.kubernetes.io/job-name={}",
            virt_gateway_operator::manifests::helm::UNINSTALL_NAME
        )))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
    })
    .await;
    let spec = hook_pod.spec.clone().unwrap();
    let mut hook = run_pod(cp, RELEASE_NS, &hook_pod.name_any(), &spec).await;
    let succeeded = hook.wait().await;
    let hook_log = hook.logs();
    assert!(
        succeeded,
        "prepare-uninstall failed:\n{hook_log}\n\noperator:\n{}",
        operator.logs()
    );
    assert!(
        hook_log.contains("every GateServer and GateToken is gone"),
        "{hook_log}"
    );
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string();
    pods.patch_status(
        &hook_pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": spec.containers[0].name, "ready": false, "restartCount": 0,
                "image": spec.containers[0].image, "imageID": "",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                    "startedAt": now, "finishedAt": now}}
            }]
        }})),
    )
    .await
    .unwrap();
    let done = wait_until("helm uninstall", || {
        let status = uninstall.try_wait().unwrap();
        async move { status }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(uninstall.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(done.success(), "helm uninstall failed:\n{stderr}");
    operator.stop().await;

    // Nothing cluster-scoped of ours is left: no CRD, no ClusterRole or binding of the operator,
    // its hook, or a gateway or token.
    let left = wait_until("cluster-scoped objects to go", || async {
        let left = cluster_scoped_leftovers(&client).await;
        left.is_empty().then_some(left)
    })
    .await;
    assert!(left.is_empty());
    let releases = helm_ok(&tools, home, cp, &["list", "-n", RELEASE_NS, "-q"]);
    assert!(releases.trim().is_empty(), "{releases}");
    assert!(
        Api::<Deployment>::namespaced(client.clone(), RELEASE_NS)
            .get_opt("virt-gateway-operator")
            .await
            .unwrap()
            .is_none()
    );
    // The signing key stays: no owner, never deleted by the operator or the chart.
    assert_eq!(secrets.get(JWT_SECRET_NAME).await.unwrap().uid(), key.uid());
}
