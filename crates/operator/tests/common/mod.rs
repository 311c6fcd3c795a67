//! Helpers shared by the operator's integration tests (each test binary uses a part of them).

#![allow(dead_code)]

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use virt_gateway_api::{GateServer, GateToken, JWT_SECRET_NAME};
use virt_gateway_auth::jwt::{VerifiedToken, Verifier};
use virt_gateway_auth::keys::PublicKey;
use virt_gateway_operator::OperatorConfig;
use virt_gateway_testenv::ControlPlane;

/// How long any single wait may take before the test fails (generous: the machine is shared).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A seed sample from deploy/samples, as written.
pub fn sample(file: &str) -> String {
    std::fs::read_to_string(repo_root().join("deploy/samples").join(file)).unwrap()
}

/// The seed GateServer, moved into `ns` (tests that share a control plane run in parallel, so
/// only one test per binary may use the seed's own namespace `kube-gateway`).
pub fn seed_server(ns: &str) -> GateServer {
    let mut gs: GateServer = serde_yaml::from_str(&sample("gateserver-sample.yaml")).unwrap();
    gs.metadata.namespace = Some(ns.to_owned());
    gs
}

/// The seed GateToken, moved into `ns`.
pub fn seed_token(ns: &str) -> GateToken {
    let mut tok: GateToken = serde_yaml::from_str(&sample("gatetoken-sample.yaml")).unwrap();
    tok.metadata.namespace = Some(ns.to_owned());
    tok
}

/// Installs (server-side apply) the CRDs and waits until they are established and discoverable
/// (which the operator checks at start).
pub async fn install_crds(cp: &ControlPlane) {
    cp.apply_crds(&virt_gateway_api::crd::crds(), "virt-gateway-tests")
        .await;
}

/// An operator running in-process on the test's runtime.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<virt_gateway_operator::Result<()>>,
}

impl Operator {
    /// Starts [`virt_gateway_operator::run`] with `config`.
    pub fn start(client: Client, config: OperatorConfig) -> Self {
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(virt_gateway_operator::run(client, config, async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            handle,
        }
    }

    /// Starts an operator watching only `ns`, without leader election or endpoints.
    pub fn in_namespace(client: Client, ns: &str) -> Self {
        Self::start(client, config(ns))
    }

    /// Stops it gracefully and returns its result.
    pub async fn stop(mut self) -> virt_gateway_operator::Result<()> {
        drop(self.stop.take());
        tokio::time::timeout(TIMEOUT, &mut self.handle)
            .await
            .expect("the operator stops in time")
            .expect("the operator task did not panic")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The test configuration: one namespace, our default images, two signing threads.
pub fn config(ns: &str) -> OperatorConfig {
    let mut c = OperatorConfig::new().in_namespace(ns);
    c.signing_threads = 2;
    c.instance = format!("test-{ns}");
    c
}

/// Waits until `check` holds for the named object (and returns it), or fails with the last
/// version seen.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&K) -> bool) -> K
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let current = api.get_opt(name).await.unwrap();
        if let Some(obj) = &current
            && check(obj)
        {
            return obj.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {name}: {what}; last seen: {current:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the named object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while let Some(obj) = api.get_opt(name).await.unwrap() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {name} to go; last seen: {obj:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The phase of a GateServer or GateToken status.
pub fn server_phase(gs: &GateServer) -> &str {
    gs.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// The phase of a GateToken.
pub fn token_phase(tok: &GateToken) -> &str {
    tok.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// The condition of `type_` as `(status, reason, message)`.
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the GateServer has the phase.
pub async fn wait_server_phase(client: &Client, ns: &str, name: &str, phase: &str) -> GateServer {
    let api: Api<GateServer> = Api::namespaced(client.clone(), ns);
    wait_for(&api, name, &format!("phase {phase}"), |gs| {
        server_phase(gs) == phase
            && gs.status.as_ref().and_then(|s| s.observed_generation) == gs.metadata.generation
    })
    .await
}

/// Waits until the GateToken has the phase.
pub async fn wait_token_phase(client: &Client, ns: &str, name: &str, phase: &str) -> GateToken {
    let api: Api<GateToken> = Api::namespaced(client.clone(), ns);
    wait_for(&api, name, &format!("phase {phase}"), |t| {
        token_phase(t) == phase
    })
    .await
}

/// Creates a namespaced object.
pub async fn create<K>(client: &Client, obj: &K) -> K
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), obj.meta().namespace.as_deref().unwrap());
    api.create(&PostParams::default(), obj).await.unwrap()
}

/// The key Secret of a namespace.
pub async fn key_secret(client: &Client, ns: &str) -> Secret {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(JWT_SECRET_NAME)
        .await
        .unwrap()
}

/// The public key in a key Secret.
pub fn public_key(secret: &Secret) -> PublicKey {
    PublicKey::from_pem(&secret.data.as_ref().unwrap()["cert.pem"].0).unwrap()
}

/// Verifies a token with the public key of the namespace's key Secret, at `now`.
pub fn verify(secret: &Secret, token: &str, now: u64) -> VerifiedToken {
    Verifier::new([public_key(secret)])
        .verify(token, now)
        .unwrap()
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A GateToken from a JSON spec, in `ns`.
pub fn token(ns: &str, name: &str, spec: serde_json::Value) -> GateToken {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1",
        "kind": "GateToken",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

/// A GateServer from a JSON spec, in `ns`.
pub fn server(ns: &str, name: &str, spec: serde_json::Value) -> GateServer {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1",
        "kind": "GateServer",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

/// RFC 3339 of now + `secs`.
pub fn in_seconds(secs: i64) -> String {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

/// The operator binary running as a child process (killed when dropped; also when the test
/// process dies, through PR_SET_PDEATHSIG).
pub struct OperatorProcess {
    child: std::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// Starts `virt-gateway-operator` with `args`, the kubeconfig `kubeconfig` and extra
    /// environment.
    pub fn spawn(kubeconfig: &Path, args: &[String], env: &[(&str, &str)]) -> Self {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_virt-gateway-operator"));
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env("RUST_LOG", "info,virt_gateway_operator=debug")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("WATCH_NAMESPACE")
            .stdout(std::process::Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit (after a signal) and returns its exit status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator did not exit:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- operator log ({}) -----\n{}", self.pid(), self.logs());
        }
    }
}

/// GET `http://<addr><path>`: status code and body (0 when the connection fails).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Waits until `GET path` answers 200.
pub async fn wait_http_ok(addr: &str, path: &str) -> String {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (code, body) = http_get(addr, path).await;
        if code == 200 {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr}{path} answered {code}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of a metric sample line (`name{labels} value` or `name value`), if present.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A loopback address with a free port.
pub fn free_addr() -> String {
    format!(
        "127.0.0.1:{}",
        virt_gateway_testenv::control_plane::free_port().unwrap()
    )
}

/// Creates the pod `deployment`'s template describes with a server-side dry run, in the
/// Deployment's namespace after labelling it to enforce Pod Security `restricted`: Ok when Pod
/// Security admission (and every other admission) accepts the pod the operator wrote. Nothing is
/// created.
pub async fn dry_run_pod_under_restricted(
    client: &Client,
    deployment: &k8s_openapi::api::apps::v1::Deployment,
) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::api::{Patch, PatchParams};
    let ns = deployment.metadata.namespace.clone().unwrap();
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await?;
    let template = deployment.spec.template.clone();
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("pod-security-check".to_owned()),
            namespace: Some(ns.clone()),
            labels: template.metadata.and_then(|m| m.labels),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&params, &pod)
        .await
        .map(|_| ())
}
