//! Shared helpers for the gateway's integration tests: the real control plane, a stand-in for
//! KubeVirt's `subresources.kubevirt.io` aggregated API that records what reached it, a
//! ServiceAccount for the gateway, in-process gateways with captured audit output, and token
//! minting with a registry of every token so the suite can assert that none was ever logged.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Message;
use virt_gateway_auth::jwt::{self, Claims};
use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};
use virt_gateway_testenv::aggregated::{AggregatedApiSpec, Handler, remote_user};
use virt_gateway_testenv::{AggregatedApi, ControlPlane, helpers, websocket};

pub const TIMEOUT: Duration = Duration::from_secs(60);
pub const KUBEVIRT_GROUP: &str = "subresources.kubevirt.io";
pub const VNC_PROTOCOL: &str = "plain.kubevirt.io";
pub const GREETING: &[u8] = b"RFB 003.008\n";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Captured logs and the token registry.

/// Every audit line of every gateway in this test binary.
pub static AUDIT: LazyLock<Mutex<Vec<String>>> = LazyLock::new(|| Mutex::new(Vec::new()));
/// Everything the gateways logged through tracing.
pub static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| Arc::new(Mutex::new(Vec::new())));
/// Every token minted or used by the tests.
pub static TOKENS: LazyLock<Mutex<Vec<String>>> = LazyLock::new(|| Mutex::new(Vec::new()));

#[derive(Clone)]
struct LogWriter;
impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,hyper=info,hyper_util=info,rustls=info,tower=info,h2=info",
            ))
            .with_writer(|| LogWriter)
            .json()
            .try_init();
    });
}

/// Registers a secret that must never appear in any log.
pub fn secret(token: &str) -> String {
    TOKENS.lock().unwrap().push(token.to_string());
    token.to_string()
}

/// Asserts that no registered token (nor its signature) appears in the audit log or the logs.
pub fn assert_no_token_logged() {
    let audit = AUDIT.lock().unwrap().join("\n");
    let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).to_string();
    for token in TOKENS.lock().unwrap().iter() {
        let signature = token.rsplit('.').next().unwrap_or(token);
        for (what, text) in [("audit log", &audit), ("log", &logs)] {
            assert!(
                !text.contains(token.as_str()),
                "a token appears in the {what}"
            );
            if signature.len() >= 16 {
                assert!(
                    !text.contains(signature),
                    "a token signature appears in the {what}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A process-wide runtime for things shared by every test (each #[tokio::test] has its own
// runtime, which stops when the test ends).

pub fn shared_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// The KubeVirt stand-in.

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HashMap<String, Vec<String>>,
    pub user: Option<String>,
}

pub static RECORDED: LazyLock<Mutex<Vec<Recorded>>> = LazyLock::new(|| Mutex::new(Vec::new()));
static ACTIVE_VNC: LazyLock<Mutex<HashMap<String, usize>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// What the `floodvm` VMs received (by `ns/name`): every binary message, and whether their
/// connection has ended.
pub static FLOOD_RECEIVED: LazyLock<Mutex<HashMap<String, Vec<Vec<u8>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
pub static FLOOD_ENDED: LazyLock<Mutex<Vec<String>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Requests the stand-in received whose path contains `needle`.
pub fn recorded(needle: &str) -> Vec<Recorded> {
    RECORDED
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.contains(needle))
        .cloned()
        .collect()
}

fn json_response(status: StatusCode, value: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .unwrap()
}

struct ActiveGuard(String);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Some(n) = ACTIVE_VNC.lock().unwrap().get_mut(&self.0) {
            *n = n.saturating_sub(1);
        }
    }
}

/// The handler: GET of a VMI echoes the request; `vnc` is a WebSocket (subprotocol
/// `plain.kubevirt.io` required) that greets with an RFB banner and answers every binary message
/// reversed; a second VNC session with `?preserveSession=true` gets 503, as KubeVirt.
fn kubevirt_handler() -> Handler {
    Arc::new(|mut req| {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let mut headers: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in req.headers() {
                headers
                    .entry(k.as_str().to_string())
                    .or_default()
                    .push(v.to_str().unwrap_or("<binary>").to_string());
            }
            let record = Recorded {
                method: req.method().to_string(),
                path: path.clone(),
                query: req.uri().query().map(str::to_string),
                headers: headers.clone(),
                user: remote_user(&req),
            };
            RECORDED.lock().unwrap().push(record.clone());
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match segments.as_slice() {
                [
                    "apis",
                    KUBEVIRT_GROUP,
                    "v1",
                    "namespaces",
                    ns,
                    "virtualmachineinstances",
                    name,
                ] => json_response(
                    StatusCode::OK,
                    json!({"kind": "VirtualMachineInstance", "namespace": ns, "name": name, "method": record.method,
                           "query": record.query, "headers": headers, "user": record.user}),
                ),
                [
                    "apis",
                    KUBEVIRT_GROUP,
                    "v1",
                    "namespaces",
                    ns,
                    "virtualmachineinstances",
                    name,
                    "vnc",
                ] => {
                    let key = format!("{ns}/{name}");
                    let preserve = req
                        .uri()
                        .query()
                        .is_some_and(|q| q.contains("preserveSession=true"));
                    if preserve && ACTIVE_VNC.lock().unwrap().get(&key).copied().unwrap_or(0) > 0 {
                        return json_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                                   "message": "Active VNC connection. Request denied."}),
                        );
                    }
                    match websocket::accept(&mut req, VNC_PROTOCOL) {
                        Err(refusal) => refusal,
                        Ok((response, pending)) => {
                            *ACTIVE_VNC.lock().unwrap().entry(key.clone()).or_default() += 1;
                            if *name == "floodvm" {
                                tokio::spawn(flood_vm(key, pending));
                                return response;
                            }
                            tokio::spawn(async move {
                                let _guard = ActiveGuard(key);
                                let Ok(mut ws) = pending.socket().await else {
                                    return;
                                };
                                let _ = ws.send(Message::binary(GREETING.to_vec())).await;
                                while let Some(Ok(msg)) = ws.next().await {
                                    match msg {
                                        Message::Binary(data) => {
                                            let reversed: Vec<u8> =
                                                data.iter().rev().copied().collect();
                                            if ws.send(Message::binary(reversed)).await.is_err() {
                                                break;
                                            }
                                        }
                                        Message::Close(_) => break,
                                        _ => {}
                                    }
                                }
                            });
                            response
                        }
                    }
                }
                _ => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "code": 404}),
                ),
            }
        })
    })
}

/// The `floodvm`: streams 32 KiB screen updates as fast as it can be read and records every
/// message it receives, and when its connection ends (for the kill tests).
async fn flood_vm(key: String, pending: websocket::PendingSocket) {
    let _guard = ActiveGuard(key.clone());
    let Ok(ws) = pending.socket().await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let screen = tokio::spawn(async move {
        let _ = sink.send(Message::binary(GREETING.to_vec())).await;
        while sink
            .send(Message::binary(vec![7u8; 32 * 1024]))
            .await
            .is_ok()
        {}
    });
    while let Some(Ok(msg)) = stream.next().await {
        if let Message::Binary(data) = msg {
            FLOOD_RECEIVED
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .push(data.to_vec());
        }
    }
    screen.abort();
    FLOOD_ENDED.lock().unwrap().push(key);
}

/// The stand-in, started once per test binary on the shared runtime.
pub async fn kubevirt() -> &'static AggregatedApi {
    static API: OnceCell<AggregatedApi> = OnceCell::const_new();
    API.get_or_init(|| async {
        let cp = ControlPlane::shared().await;
        let handle = shared_runtime().spawn(async move {
            let ns = cp.fresh_namespace().await;
            let resource = |name: &str| APIResource {
                name: name.into(),
                namespaced: true,
                kind: "VirtualMachineInstance".into(),
                singular_name: String::new(),
                verbs: vec!["get".into()],
                ..Default::default()
            };
            AggregatedApi::start(
                cp,
                AggregatedApiSpec {
                    group: KUBEVIRT_GROUP.into(),
                    version: "v1".into(),
                    resources: vec![
                        resource("virtualmachineinstances"),
                        resource("virtualmachineinstances/vnc"),
                        resource("virtualmachineinstances/console"),
                    ],
                    namespace: ns,
                    handler: kubevirt_handler(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cp.logs(20)))
        });
        handle.await.unwrap()
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects.

/// The seed GateServer's ServiceAccount rule (serviceAccountVerbs/APIGroups/Resources).
pub fn seed_rule() -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![KUBEVIRT_GROUP.into()]),
        resources: Some(vec![
            "virtualmachineinstances".into(),
            "virtualmachineinstances/vnc".into(),
        ]),
        verbs: vec!["get".into()],
        ..Default::default()
    }
}

/// A ServiceAccount `name` in `ns` bound (cluster-wide, as the seed GateServer with
/// `serviceAccountNamespace: *`) to `cluster_rules`, and in `ns` to `ns_rules`; returns a token
/// from the TokenRequest API.
pub async fn service_account(
    cp: &ControlPlane,
    ns: &str,
    name: &str,
    cluster_rules: Vec<PolicyRule>,
    ns_rules: Vec<PolicyRule>,
) -> String {
    let client = cp.client().await;
    let token = cp.service_account_token(ns, name, 3600).await;
    if !cluster_rules.is_empty() {
        let role_name = format!("{ns}-{name}");
        Api::<ClusterRole>::all(client.clone())
            .create(
                &PostParams::default(),
                &ClusterRole {
                    metadata: ObjectMeta {
                        name: Some(role_name.clone()),
                        ..Default::default()
                    },
                    rules: Some(cluster_rules),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(
                &PostParams::default(),
                &ClusterRoleBinding {
                    metadata: ObjectMeta {
                        name: Some(role_name.clone()),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "ClusterRole".into(),
                        name: role_name,
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: name.into(),
                        namespace: Some(ns.into()),
                        ..Default::default()
                    }]),
                },
            )
            .await
            .unwrap();
    }
    if !ns_rules.is_empty() {
        Api::<Role>::namespaced(client.clone(), ns)
            .create(
                &PostParams::default(),
                &Role {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    rules: Some(ns_rules),
                },
            )
            .await
            .unwrap();
        cp.bind_role_to_service_account(ns, name, name, name).await;
    }
    secret(&token)
}

/// Waits until RBAC (evaluated from an informer cache) lets `user` do `verb` on `resource`.
pub async fn wait_allowed(
    cp: &ControlPlane,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
) {
    let mut access = helpers::resource_access(verb, group, resource, "", namespace);
    access.subresource = Some(subresource.into());
    helpers::wait_allowed(
        &cp.client().await,
        user,
        &["system:serviceaccounts", "system:authenticated"],
        access,
    )
    .await;
}

/// Installs the GateServer and GateToken CRDs from deploy/crds (once per binary).
pub async fn install_crds(cp: &ControlPlane) {
    static DONE: OnceCell<()> = OnceCell::const_new();
    DONE.get_or_init(|| async {
        cp.install_crds(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds"))
            .await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens.

pub fn key(alg: KeyAlgorithm) -> KeyPair {
    KeyPair::generate(alg).unwrap()
}

pub fn write_public_key(dir: &Path, name: &str, key: &KeyPair) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, key.public_key().to_pem()).unwrap();
    path
}

/// The seed sample's claims (GateToken `spec: {namespace, resourceNames: [testvm]}` with the
/// defaults: verbs [get], apiGroups [subresources.kubevirt.io], resources [vmis, vmis/vnc]).
pub fn seed_claims(namespace: &str, exp: u64) -> Claims {
    let mut c = Claims::new(exp);
    c.namespace = namespace.into();
    c.api_groups = Some(vec![KUBEVIRT_GROUP.into()]);
    c.resources = Some(vec![
        "virtualmachineinstances".into(),
        "virtualmachineinstances/vnc".into(),
    ]);
    c.resource_names = Some(vec!["testvm".into()]);
    c.nbf = Some(now() - 10);
    c.iat = Some(now() - 10);
    c
}

pub fn mint(key: &KeyPair, claims: &Claims) -> String {
    secret(&jwt::sign(key, claims).unwrap())
}

// ---------------------------------------------------------------------------------------------
// The per-test environment and gateways.

pub struct Env {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub sa_token_file: PathBuf,
    pub key: KeyPair,
    pub key_file: PathBuf,
}

impl Env {
    /// A fresh namespace, a gateway ServiceAccount with the seed rule (plus `cluster_rules` and
    /// `ns_rules`), and an ES256 signing key.
    pub async fn new(cluster_rules: Vec<PolicyRule>, ns_rules: Vec<PolicyRule>) -> Self {
        init_logging();
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cp = ControlPlane::shared().await;
        kubevirt().await;
        let ns = cp.fresh_namespace().await;
        Self::in_namespace(cp, ns, cluster_rules, ns_rules).await
    }

    /// [`Env::new`] in an existing namespace of `cp`, for suites that bring their own KubeVirt
    /// (the stand-in with a real Xvnc).
    pub async fn in_namespace(
        cp: &'static ControlPlane,
        ns: String,
        cluster_rules: Vec<PolicyRule>,
        ns_rules: Vec<PolicyRule>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, cp.ca_pem()).unwrap();
        let mut rules = vec![seed_rule()];
        rules.extend(cluster_rules);
        let sa = service_account(cp, &ns, "kube-gateway", rules, ns_rules).await;
        let user = format!("system:serviceaccount:{ns}:kube-gateway");
        wait_allowed(
            cp,
            &user,
            "get",
            KUBEVIRT_GROUP,
            "virtualmachineinstances",
            "vnc",
            &ns,
        )
        .await;
        let sa_token_file = dir.path().join("sa-token");
        std::fs::write(&sa_token_file, format!("{sa}\n")).unwrap();
        let key = key(KeyAlgorithm::EcdsaP256);
        let key_file = write_public_key(dir.path(), "cert.pem", &key);
        Self {
            cp,
            ns,
            dir,
            ca_file,
            sa_token_file,
            key,
            key_file,
        }
    }

    /// Gen B flags for a gateway of this environment, on 127.0.0.1:0 over HTTP.
    pub fn args(&self) -> Vec<String> {
        vec![
            "kube-gateway".into(),
            format!("-api-server={}", self.cp.api_server_url()),
            format!("-ca-file={}", self.ca_file.display()),
            "-oauth-server-disable".into(),
            "-listen=http://127.0.0.1:0".into(),
            format!("-jwt-token-key-file={}", self.key_file.display()),
            format!("-k8s-bearer-token-file={}", self.sa_token_file.display()),
            "-k8s-bearer-token-passthrough=false".into(),
            format!("-public-dir={}", self.dir.path().join("public").display()),
            "--metrics-listen=127.0.0.1:0".into(),
            "--jwt-leeway=0s".into(),
            "--reload-interval=100ms".into(),
        ]
    }

    pub async fn gateway(&self) -> TestGateway {
        TestGateway::start(self.args()).await
    }

    pub async fn gateway_with(&self, extra: &[&str]) -> TestGateway {
        let mut args = self.args();
        args.extend(extra.iter().map(|s| s.to_string()));
        TestGateway::start(args).await
    }

    /// A token for the seed sample targeting this environment's namespace.
    pub fn seed_token(&self) -> String {
        mint(&self.key, &seed_claims(&self.ns, now() + 3600))
    }

    /// The VNC path of `vm` in `ns`, under the gateway's /k8s prefix.
    pub fn vnc_path(ns: &str, vm: &str) -> String {
        format!("/k8s/apis/{KUBEVIRT_GROUP}/v1/namespaces/{ns}/virtualmachineinstances/{vm}/vnc")
    }

    pub fn vmi_path(ns: &str, vm: &str) -> String {
        format!("/k8s/apis/{KUBEVIRT_GROUP}/v1/namespaces/{ns}/virtualmachineinstances/{vm}")
    }
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub url: String,
    pub audit: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    pub async fn start(args: Vec<String>) -> Self {
        let mut config =
            kube_gateway::Config::from_args(args).unwrap_or_else(|e| panic!("config: {e}"));
        let audit = Arc::new(Mutex::new(Vec::new()));
        let mine = audit.clone();
        config.audit = kube_gateway::AuditSink(Arc::new(move |line: &str| {
            mine.lock().unwrap().push(line.to_string());
            AUDIT.lock().unwrap().push(line.to_string());
        }));
        let gateway = kube_gateway::Gateway::bind(config)
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = gateway.local_addr();
        let metrics_addr = gateway.metrics_addr();
        let url = gateway.url();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            metrics_addr,
            url,
            audit,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the gateway and waits for `serve` to return.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("serve returned in time")
                .unwrap();
        }
    }

    pub fn audit_lines(&self) -> Vec<Value> {
        self.audit
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    /// Waits until an audit record matches.
    pub async fn wait_audit(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(v) = self.audit_lines().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no matching audit record; have {:?}",
                self.audit_lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr.expect("metrics listener");
        let (status, _, body) = send(
            Request::get(format!("http://{addr}/metrics"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// The detailed /readyz of the metrics listener (the public one says only the status).
    pub async fn readyz(&self) -> (StatusCode, Value) {
        let addr = self.metrics_addr.expect("metrics listener");
        let (status, _, body) = send(
            Request::get(format!("http://{addr}/readyz"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// GET `path` with an optional bearer token.
    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let mut req = Request::get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        send(req.body(Full::new(Bytes::new())).unwrap()).await
    }

    /// `GET /auth/session` with the token in the session cookie and/or a bearer header.
    pub async fn session(
        &self,
        cookie: Option<&str>,
        bearer: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        let mut req = Request::get(format!("{}/auth/session", self.url));
        if let Some(t) = cookie {
            req = req.header("cookie", format!("theme=dark; ocgate-session-token={t}"));
        }
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        send(req.body(Full::new(Bytes::new())).unwrap()).await
    }
}

/// Asserts that a `/auth/session` answer is a 401 `Status` like the API path's (with
/// `WWW-Authenticate: Bearer`) and returns its message.
pub fn session_refusal(answer: &(StatusCode, http::HeaderMap, Bytes)) -> String {
    let (status, headers, body) = answer;
    assert_eq!(
        *status,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(body)
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (message, reason) = status_of(body);
    assert_eq!(reason, "Unauthorized");
    message
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends a request over a fresh plain-HTTP client and collects the response.
pub async fn send(req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .expect("answer in time")
        .expect("request sent");
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(TIMEOUT, body.collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes();
    (parts.status, parts.headers, body)
}

/// The `message` and `reason` of a Status body, asserting its shape.
pub fn status_of(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    (
        v["message"].as_str().unwrap_or_default().to_string(),
        v["reason"].as_str().unwrap_or_default().to_string(),
    )
}

/// Retries `f` until it returns `Some`, for at most [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens a WebSocket through the gateway.
pub async fn ws_connect(
    gw: &TestGateway,
    path: &str,
    protocols: &str,
    extra_headers: &[(&str, String)],
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        Response<Option<Vec<u8>>>,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}{path}", gw.addr)
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    for (k, v) in extra_headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("handshake in time")
}

/// The subprotocol list a browser (noVNC) would send with the token.
pub fn vnc_protocols(token: &str) -> String {
    format!(
        "{VNC_PROTOCOL}, {}",
        kube_gateway::token::bearer_protocol(token)
    )
}

/// An environment in a fresh namespace whose KubeVirt is the stand-in (real Xvnc) serving `vms`;
/// the gateway's ServiceAccount also gets `rules` there.
pub async fn standin_env(
    vms: Vec<(String, kubevirt_standin::Rgb)>,
    rules: Vec<PolicyRule>,
) -> (Env, kubevirt_standin::Standin) {
    init_logging();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let options = kubevirt_standin::StandinOptions {
        namespace: ns.clone(),
        vms,
        ..Default::default()
    };
    let standin = kubevirt_standin::Standin::start(cp, options).await.unwrap();
    let env = Env::in_namespace(cp, ns, vec![], rules).await;
    (env, standin)
}
