//! Helpers for the integration tests: the built `kubectl-gate` binary run against the real test
//! control plane, the operator in-process, CRDs, GateServers and kubeconfigs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use virt_gateway_api::{GateServer, GateToken, JWT_SECRET_NAME, JWT_SECRET_PUBLIC_KEY};
use virt_gateway_auth::jwt::{VerifiedToken, Verifier};
use virt_gateway_auth::keys::PublicKey;
use virt_gateway_operator::OperatorConfig;
use virt_gateway_testenv::ControlPlane;

/// How long any wait in a test may take (generous: the machine is shared).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The built plugin.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-gate"))
}

/// What a run printed.
#[derive(Debug)]
pub struct Out {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "kubectl-gate failed: {self:#?}");
        &self.stdout
    }

    /// Asserts failure with `code` and returns stderr.
    #[track_caller]
    pub fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        assert!(
            self.stderr.lines().any(|l| l.starts_with("error: ")),
            "an error line starts with 'error: ': {self:#?}"
        );
        &self.stderr
    }
}

/// Runs `program args` with the environment `env` (and no inherited KUBECONFIG or HOME, so only
/// what the test passes is used).
pub async fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .expect("the command finishes in time")
        .expect("the command runs");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs `kubectl-gate args --kubeconfig <admin kubeconfig>`.
pub async fn gate(cp: &ControlPlane, args: &[&str]) -> Out {
    let kubeconfig = cp.kubeconfig().to_str().unwrap().to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--kubeconfig", &kubeconfig]);
    run(&binary(), &all, &[]).await
}

/// The shared control plane with the CRDs installed, an admin client and a fresh namespace.
pub async fn setup() -> (&'static ControlPlane, Client, String) {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await;
    // Waits until they are established and discoverable.
    cp.apply_crds(&virt_gateway_api::crd::crds(), "kubectl-gate-tests")
        .await;
    let ns = cp.fresh_namespace().await;
    (cp, client, ns)
}

/// The operator running in-process on the test's runtime, watching one namespace.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<virt_gateway_operator::Result<()>>,
}

impl Operator {
    /// Starts [`virt_gateway_operator::run`] for `ns`.
    pub fn start(client: Client, ns: &str) -> Self {
        let mut config = OperatorConfig::new().in_namespace(ns);
        config.signing_threads = 1;
        config.instance = format!("kubectl-gate-test-{ns}");
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(virt_gateway_operator::run(client, config, async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            handle,
        }
    }

    /// Stops it gracefully.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        let _ = tokio::time::timeout(TIMEOUT, &mut self.handle).await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A GateServer from a JSON spec.
pub fn server(ns: &str, name: &str, spec: serde_json::Value) -> GateServer {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1",
        "kind": "GateServer",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

/// Creates a GateServer.
pub async fn create_server(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    Api::<GateServer>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &server(ns, name, spec))
        .await
        .unwrap();
}

/// Waits until `check` holds for the named object and returns it.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let current = api.get_opt(name).await.unwrap();
        if let Some(obj) = &current
            && check(obj)
        {
            return obj.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {name}: {what}; last seen: {current:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the GateServer is Ready (its key Secret exists then).
pub async fn wait_server_ready(client: &Client, ns: &str, name: &str) -> GateServer {
    let api: Api<GateServer> = Api::namespaced(client.clone(), ns);
    wait_for(&api, name, "phase Ready", |gs| {
        gs.status.as_ref().is_some_and(|s| s.phase == "Ready")
    })
    .await
}

/// A GateServer `name` with `spec` in `ns`, made Ready by the operator.
pub async fn ready_server(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    create_server(client, ns, name, spec).await;
    wait_server_ready(client, ns, name).await;
}

/// The GateToken.
pub async fn get_token(client: &Client, ns: &str, name: &str) -> Option<GateToken> {
    Api::<GateToken>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

/// All GateTokens of a namespace.
pub async fn tokens(client: &Client, ns: &str) -> Vec<GateToken> {
    Api::<GateToken>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
}

/// The phase of a GateToken.
pub fn phase(tok: &GateToken) -> &str {
    tok.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// Verifies `token` with the public key in the namespace's key Secret, at `now`.
pub async fn verify(client: &Client, ns: &str, token: &str, now: u64) -> VerifiedToken {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(JWT_SECRET_NAME)
        .await
        .unwrap();
    let pem = &secret.data.as_ref().unwrap()[JWT_SECRET_PUBLIC_KEY].0;
    Verifier::new([PublicKey::from_pem(pem).unwrap()])
        .verify(token, now)
        .unwrap_or_else(|e| panic!("the token does not verify with {ns}'s public key: {e}"))
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Decodes a percent-encoded query value.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Splits a console link of the default form `<base>/login.html#token=…&then=…` into
/// (base, token, then) and checks its shape: nothing before the `#` names the token.
#[track_caller]
pub fn parse_link(link: &str) -> (String, String, String) {
    let (base, fragment) = link
        .split_once("/login.html#")
        .expect("a /login.html#token=… link");
    assert!(!base.contains(['?', '#']), "{link}");
    split_params(base, fragment)
}

/// The same for the upstream form `<base>/auth/token?token=…&then=…` (`--query-link`).
#[track_caller]
pub fn parse_query_link(link: &str) -> (String, String, String) {
    let (base, query) = link
        .split_once("/auth/token?")
        .expect("an /auth/token link");
    split_params(base, query)
}

#[track_caller]
fn split_params(base: &str, params: &str) -> (String, String, String) {
    let (token, then) = params
        .strip_prefix("token=")
        .and_then(|q| q.split_once("&then="))
        .expect("token= then &then=");
    assert!(
        !then.contains(['/', '?', '&', '=', '#']),
        "then is encoded: {then}"
    );
    (base.to_owned(), token.to_owned(), percent_decode(then))
}

/// The admin user entry of the control plane's kubeconfig (client certificate).
pub fn admin_user(cp: &ControlPlane) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let creds = cp.admin_credentials();
    serde_json::json!({
        "client-certificate-data": b64.encode(&creds.cert_pem),
        "client-key-data": b64.encode(&creds.key_pem),
    })
}

/// Writes `text` to a new file in `dir`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
