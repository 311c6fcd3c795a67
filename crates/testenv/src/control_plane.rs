//! Starting and stopping etcd, kube-apiserver and kube-controller-manager on loopback.

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::Error;
use crate::binaries::Binaries;
use crate::certs::{Authority, CertAndKey, signing_key_pair};
use crate::identity_provider::{self, IdentityProvider, Login, ProviderSettings};
use crate::process::{Process, remove_at_exit};

/// The Service IP range. It must be inside 127.0.0.0/8: the aggregator dials a Service's
/// ClusterIP, and our machines may only send traffic to loopback addresses.
pub const DEFAULT_SERVICE_CIDR: &str = "127.100.0.0/24";

/// The controllers kube-controller-manager runs: enough for garbage collection, namespace
/// deletion, ServiceAccounts and their tokens, Deployments (status, ReplicaSets), Jobs (their
/// pods and completion: a test that plays the kubelet for a Job's pod sees the Job complete, as
/// Helm's hooks wait for) and the `kube-root-ca.crt` ConfigMap. There is no scheduler and no
/// kubelet, so Pods never run.
pub const CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,deployment-controller,replicaset-controller,job-controller,root-ca-certificate-publisher-controller";

const READY_TIMEOUT: Duration = Duration::from_secs(90);

const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// How long each component may take to exit after SIGTERM before it gets SIGKILL. Three
/// components stop one after another, so a control plane stops within about three times this.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Temporary control-plane directories are named `<TEMP_PREFIX><random>`.
pub const TEMP_PREFIX: &str = "virt-gateway-testenv-";

/// How to start a control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Directory for certificates, etcd data, logs and the kubeconfig. `None`: a temporary
    /// directory removed when the control plane stops.
    pub dir: Option<PathBuf>,
    /// The Service IP range (see [`DEFAULT_SERVICE_CIDR`]).
    pub service_cidr: String,
    /// OpenID Connect providers (Dex) to start before the API server, which then trusts them
    /// through its structured authentication configuration (`--authentication-config`). Empty
    /// (the default): no provider, and the API server starts as before.
    pub identity_providers: Vec<ProviderSettings>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dir: None,
            service_cidr: DEFAULT_SERVICE_CIDR.to_string(),
            identity_providers: Vec::new(),
        }
    }
}

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    // Field order matters: processes stop before the directory holding their data goes away.
    processes: Vec<Process>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    api_server_url: String,
    ca_pem: String,
    front_proxy: CertAndKey,
    front_proxy_ca_pem: String,
    admin: CertAndKey,
    ca: Authority,
    kubeconfig: PathBuf,
    binaries: Binaries,
    identity_providers: Vec<IdentityProvider>,
    options: Options,
    /// kube-apiserver's arguments, to restart it as it was.
    api_server_args: Vec<String>,
}

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

impl ControlPlane {
    /// The control plane shared by all tests of this test binary, started on first use and
    /// stopped when the process exits. Panics, with each component's log tail, if it cannot start.
    pub async fn shared() -> &'static ControlPlane {
        Self::shared_with(Options::default()).await
    }

    /// Like [`ControlPlane::shared`], started with `options` (for example with an identity
    /// provider). Every test of one binary must ask for the same options: there is one shared
    /// control plane per binary, and asking for another one panics rather than hand out a
    /// control plane configured differently from what the test expects.
    pub async fn shared_with(options: Options) -> &'static ControlPlane {
        let cp = SHARED
            .get_or_init(|| async {
                match ControlPlane::start(options.clone()).await {
                    Ok(cp) => {
                        if let Some(temp) = &cp._temp {
                            remove_at_exit(temp.path());
                        }
                        cp
                    }
                    Err(e) => panic!("cannot start the test control plane: {e}"),
                }
            })
            .await;
        assert_eq!(
            cp.options, options,
            "this test binary's shared control plane was started with other options"
        );
        cp
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager, and waits until the API server
    /// is ready and the controller manager is healthy.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let binaries = tokio::task::spawn_blocking(Binaries::ensure)
            .await
            .map_err(|e| Error::Binaries(e.to_string()))??;

        let (temp, dir) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
                (None, dir.clone())
            }
            None => {
                crate::leftovers::remove_abandoned_temp_dirs(TEMP_PREFIX);
                let temp = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempdir()
                    .map_err(|e| Error::Io(format!("cannot create a temporary directory: {e}")))?;
                crate::leftovers::claim(temp.path())?;
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let service_ip = first_service_ip(&options.service_cidr)?;

        // Credentials.
        let ca = Authority::new("virt-gateway-testenv-ca")?;
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let serving = ca.serving(
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            &[localhost, IpAddr::V4(service_ip)],
        )?;
        let admin = ca.client("testenv-admin", &["system:masters"])?;
        let front_proxy_ca = Authority::new("virt-gateway-testenv-front-proxy-ca")?;
        let front_proxy = front_proxy_ca.client("front-proxy-client", &[])?;
        let (sa_key, sa_pub) = signing_key_pair()?;
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(|e| io_err(&pki, e))?;
        let ca_pem = ca.cert_pem();
        let front_proxy_ca_pem = front_proxy_ca.cert_pem();
        for (name, content) in [
            ("ca.crt", ca_pem.as_str()),
            ("apiserver.crt", serving.cert_pem.as_str()),
            ("apiserver.key", serving.key_pem.as_str()),
            ("front-proxy-ca.crt", front_proxy_ca_pem.as_str()),
            ("front-proxy-client.crt", front_proxy.cert_pem.as_str()),
            ("front-proxy-client.key", front_proxy.key_pem.as_str()),
            ("sa.key", sa_key.as_str()),
            ("sa.pub", sa_pub.as_str()),
        ] {
            write(&pki.join(name), content)?;
        }

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let kcm_port = free_port()?;
        let api_server_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(&api_server_url, &ca_pem, &admin),
        )?;
        let p = |name: &str| pki.join(name).display().to_string();

        let mut cp = ControlPlane {
            processes: Vec::new(),
            dir: dir.clone(),
            _temp: temp,
            api_server_url: api_server_url.clone(),
            ca_pem,
            front_proxy: front_proxy.clone(),
            front_proxy_ca_pem,
            admin: admin.clone(),
            ca,
            kubeconfig: kubeconfig.clone(),
            binaries: binaries.clone(),
            identity_providers: Vec::new(),
            options: options.clone(),
            api_server_args: Vec::new(),
        };

        let etcd_data = dir.join("etcd");
        let etcd_args = vec![
            "--name=testenv".to_string(),
            format!("--data-dir={}", etcd_data.display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-cluster=testenv=http://127.0.0.1:{etcd_peer_port}"),
            // Test data is disposable: skip fsync, as envtest does.
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ];
        cp.spawn("etcd", &etcd_args)?;
        cp.wait_for_tcp("etcd", etcd_port).await?;

        let api_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-cluster-ip-range={}", options.service_cidr),
            // The endpoint reconciler would publish 127.0.0.1 in the `kubernetes` Endpoints,
            // which Endpoints validation refuses; nothing here needs that object.
            "--endpoint-reconciler-type=none".to_string(),
            "--authorization-mode=RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            // Front-proxy (requestheader) credentials make the aggregation layer work.
            format!("--requestheader-client-ca-file={}", p("front-proxy-ca.crt")),
            "--requestheader-allowed-names=front-proxy-client".to_string(),
            "--requestheader-username-headers=X-Remote-User".to_string(),
            "--requestheader-group-headers=X-Remote-Group".to_string(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_string(),
            format!("--proxy-client-cert-file={}", p("front-proxy-client.crt")),
            format!("--proxy-client-key-file={}", p("front-proxy-client.key")),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ];
        let mut api_args = api_args;
        if !options.identity_providers.is_empty() {
            cp.start_identity_providers(&options.identity_providers)
                .await?;
            let path = pki.join("authentication-config.yaml");
            write(
                &path,
                &identity_provider::authentication_config(&cp.identity_providers),
            )?;
            api_args.push(format!("--authentication-config={}", path.display()));
        }
        cp.spawn("kube-apiserver", &api_args)?;
        cp.api_server_args = api_args;
        cp.wait_for_api_server().await?;

        let kcm_args = cp.controller_manager_args(kcm_port);
        cp.start_controller_manager(&kcm_args, kcm_port).await?;
        cp.wait_for_token_authentication().await?;
        Ok(cp)
    }

    /// The identity providers started with [`Options::identity_providers`], in that order.
    pub fn identity_providers(&self) -> &[IdentityProvider] {
        &self.identity_providers
    }

    /// The identity provider of that name, if it was asked for.
    pub fn identity_provider(&self, name: &str) -> Option<&IdentityProvider> {
        self.identity_providers.iter().find(|p| p.name() == name)
    }

    /// Starts Dex for each provider, on loopback with a serving certificate from the cluster CA,
    /// before the API server: it fetches their discovery documents when it starts.
    async fn start_identity_providers(&mut self, all: &[ProviderSettings]) -> Result<(), Error> {
        let dex = tokio::task::spawn_blocking(identity_provider::ensure_dex)
            .await
            .map_err(|e| Error::Binaries(e.to_string()))??;
        for settings in all {
            let provider = IdentityProvider::prepare(&self.dir, &self.ca, settings)?;
            let name = format!("dex-{}", settings.name);
            let process =
                Process::spawn(&name, &dex, &provider.command_args(), provider.log_path())
                    .map_err(|e| Error::Start(format!("cannot start {name}: {e}")))?;
            self.processes.push(process);
            let deadline = Instant::now() + READY_TIMEOUT;
            while let Err(last) = provider.wait_ready().await {
                if let Some(why) = self.any_exited() {
                    return Err(self.failure(why));
                }
                if Instant::now() > deadline {
                    return Err(self.failure(format!("{name} was not ready: {last}")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            self.identity_providers.push(provider);
        }
        Ok(())
    }

    /// The API server's JWT authenticators fetch the providers' keys in the background: wait
    /// until each has, so that a test's first token is judged on its merits. A TokenReview says
    /// "not initialized" until then.
    async fn wait_for_token_authentication(&mut self) -> Result<(), Error> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let client = Client::try_from(self.admin_config().await)
            .map_err(|e| Error::Start(format!("cannot build the admin client: {e}")))?;
        for provider in self.identity_providers.clone() {
            let login = Login::Password {
                email: identity_provider::USER_EMAIL,
                password: provider.user_password(),
            };
            let tokens = provider
                .sign_in(provider.client(), login)
                .await
                .map_err(|e| Error::Start(format!("sign-in at {}: {e}", provider.name())))?;
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: tokens.id_token,
                    ..Default::default()
                },
                ..Default::default()
            };
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                let status = Api::<TokenReview>::all(client.clone())
                    .create(&PostParams::default(), &review)
                    .await?
                    .status
                    .unwrap_or_default();
                let error = status.error.unwrap_or_default();
                if status.authenticated == Some(true) || !error.contains("not initialized") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(self.failure(format!(
                        "the API server did not load {}'s keys: {error}",
                        provider.issuer()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server URL, `https://127.0.0.1:<port>`.
    pub fn api_server_url(&self) -> &str {
        &self.api_server_url
    }

    /// The cluster CA certificate (PEM) that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The cluster CA, to issue more certificates (for example for test servers).
    pub fn ca(&self) -> &Authority {
        &self.ca
    }

    /// The admin client certificate (user `testenv-admin`, group `system:masters`).
    pub fn admin_credentials(&self) -> &CertAndKey {
        &self.admin
    }

    /// A rustls client configuration that trusts the cluster CA and presents the admin client
    /// certificate, for raw connections to the API server (WebSocket tests).
    pub fn admin_tls_config(&self) -> rustls::ClientConfig {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(ca.expect("CA PEM")).expect("CA certificate");
        }
        let certs = CertificateDer::pem_slice_iter(self.admin.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("admin certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(self.admin.key_pem.as_bytes()).expect("admin key");
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client certificate")
    }

    /// The front-proxy client certificate the API server presents to aggregated API servers.
    pub fn front_proxy_client(&self) -> &CertAndKey {
        &self.front_proxy
    }

    /// The CA that aggregated API servers use to verify the front-proxy client certificate.
    pub fn front_proxy_ca_pem(&self) -> &str {
        &self.front_proxy_ca_pem
    }

    /// The working directory (logs, certificates, etcd data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a control-plane binary, e.g. `kubectl`.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.binaries.path(name)
    }

    /// An admin client. A new one each call: a client must not outlive the Tokio runtime it was
    /// created on, and each test has its own runtime.
    pub async fn client(&self) -> Client {
        let config = self.admin_config().await;
        Client::try_from(config).expect("cannot build a client for the test control plane")
    }

    /// The admin client configuration.
    pub async fn admin_config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("cannot read kubeconfig");
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("cannot load kubeconfig")
    }

    /// A client that authenticates with a bearer token only (for example a ServiceAccount token
    /// from the TokenRequest API).
    pub async fn client_with_token(&self, token: &str) -> Client {
        let mut config = Config::new(
            self.api_server_url
                .parse()
                .expect("API server URL is a valid URI"),
        );
        config.root_cert = Some(vec![pem_to_der(&self.ca_pem)]);
        config.auth_info.token = Some(token.to_string().into());
        Client::try_from(config).expect("cannot build a token client")
    }

    /// Creates a namespace with a fresh random name and returns the name.
    pub async fn fresh_namespace(&self) -> String {
        let client = self.client().await;
        let name = format!("t-{}", random_suffix(10));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        "virt-gateway.test/ephemeral".to_string(),
                        "true".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .expect("cannot create a test namespace");
        name
    }

    /// Each component's log tail, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        self.processes
            .iter()
            .map(|p| {
                format!(
                    "----- {} ({}) -----\n{}",
                    p.name(),
                    p.log_path().display(),
                    p.log_tail(lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Process ids of the components (for tests that check nothing is left behind).
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(Process::pid).collect()
    }

    /// Stops every process now (also done on drop), clients before servers:
    /// kube-controller-manager, then kube-apiserver, then etcd, so that none of them is left
    /// retrying against one already gone. Each gets [`STOP_GRACE`] before SIGKILL.
    pub fn stop(&mut self) {
        for p in self.processes.iter_mut().rev() {
            p.stop(STOP_GRACE);
        }
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and leaves etcd and
    /// the controller manager running: for tests of what clients do while the API server is
    /// gone. [`ControlPlane::restart_api_server`] brings it back. Only on a control plane the
    /// test owns: the shared one serves other tests at the same time.
    pub fn stop_api_server(&mut self) {
        if let Some(p) = self.api_server() {
            p.stop(STOP_GRACE);
        }
    }

    fn controller_manager_args(&self, port: u16) -> Vec<String> {
        let kubeconfig = self.kubeconfig.display();
        let pki = |name: &str| self.dir.join("pki").join(name).display().to_string();
        vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", self.dir.join("kcm-certs").display()),
            format!("--controllers={CONTROLLERS}"),
            format!("--service-account-private-key-file={}", pki("sa.key")),
            format!("--root-ca-file={}", pki("ca.crt")),
            format!("--service-cluster-ip-range={}", self.options.service_cidr),
            "--leader-elect=false".to_string(),
            "--use-service-account-credentials=false".to_string(),
            "--profiling=false".to_string(),
            "--v=1".to_string(),
        ]
    }

    /// Starts kube-controller-manager and waits until it is healthy, starting it again when it
    /// exits on its own while etcd and kube-apiserver run. It exits by design when its one
    /// attempt to read the authentication ConfigMap fails, and that attempt has a 10 s TLS
    /// handshake timeout: a just-ready API server on a busy machine (several control planes
    /// starting at once on two cores) can miss it. A kubelet would start it again; so do we,
    /// until [`READY_TIMEOUT`].
    async fn start_controller_manager(&mut self, args: &[String], port: u16) -> Result<(), Error> {
        let index = self.processes.len();
        self.spawn(CONTROLLER_MANAGER, args)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let error = match self.wait_for_controller_manager(port).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let Some(status) = self.only_exited(index) else {
                return Err(error);
            };
            if Instant::now() > deadline {
                return Err(error);
            }
            eprintln!(
                "[testenv] {CONTROLLER_MANAGER} exited while starting ({status}: {}); starting it again",
                self.processes[index].log_tail(1).trim()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.respawn(index, args)?;
        }
    }

    /// The exit status of the process at `index` if it exited and every other one still runs.
    fn only_exited(&mut self, index: usize) -> Option<String> {
        let status = self.processes[index].exited()?;
        let others_run = self
            .processes
            .iter_mut()
            .enumerate()
            .all(|(i, p)| i == index || p.exited().is_none());
        others_run.then_some(status)
    }

    /// Stops the process at `index` if it still runs, keeps its log as `<name>.log.N`, and
    /// starts it again with `args`.
    fn respawn(&mut self, index: usize, args: &[String]) -> Result<(), Error> {
        let name = self.processes[index].name().to_string();
        self.processes[index].stop(STOP_GRACE);
        let log = self.dir.join(format!("{name}.log"));
        let kept = (1..)
            .map(|n| self.dir.join(format!("{name}.log.{n}")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| self.dir.join(format!("{name}.log.old")));
        std::fs::rename(&log, &kept).map_err(|e| io_err(&log, e))?;
        let process = Process::spawn(&name, &self.binaries.path(&name), args, &log)
            .map_err(|e| Error::Start(format!("cannot restart {name}: {e}")))?;
        self.processes[index] = process;
        Ok(())
    }

    /// Starts kube-apiserver again with the arguments, port and certificates it had (the
    /// earlier log is kept as `kube-apiserver.log.N`), and waits until it is ready. Objects
    /// survive: etcd kept them.
    pub async fn restart_api_server(&mut self) -> Result<(), Error> {
        let name = "kube-apiserver";
        let index = self
            .processes
            .iter()
            .position(|p| p.name() == name)
            .ok_or_else(|| Error::Start(format!("{name} was never started")))?;
        let args = self.api_server_args.clone();
        self.respawn(index, &args)?;
        self.wait_for_api_server().await
    }

    fn api_server(&mut self) -> Option<&mut Process> {
        self.processes
            .iter_mut()
            .find(|p| p.name() == "kube-apiserver")
    }

    fn spawn(&mut self, name: &str, args: &[String]) -> Result<(), Error> {
        let log = self.dir.join(format!("{name}.log"));
        let process = Process::spawn(name, &self.binaries.path(name), args, &log)
            .map_err(|e| Error::Start(format!("cannot start {name}: {e}")))?;
        self.processes.push(process);
        Ok(())
    }

    fn failure(&mut self, what: String) -> Error {
        let exited: Vec<String> = self
            .processes
            .iter_mut()
            .filter_map(|p| p.exited().map(|s| format!("{} exited: {s}", p.name())))
            .collect();
        Error::Start(format!(
            "{what}{}\n{}",
            if exited.is_empty() {
                String::new()
            } else {
                format!(" ({})", exited.join("; "))
            },
            self.logs(30)
        ))
    }

    fn any_exited(&mut self) -> Option<String> {
        self.processes.iter_mut().find_map(|p| {
            p.exited()
                .map(|s| format!("{} exited early: {s}", p.name()))
        })
    }

    async fn wait_for_tcp(&mut self, name: &str, port: u16) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if let Some(why) = self.any_exited() {
                return Err(self.failure(why));
            }
            if Instant::now() > deadline {
                return Err(self.failure(format!("{name} did not listen on port {port}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for_api_server(&mut self) -> Result<(), Error> {
        let client = Client::try_from(self.admin_config().await)
            .map_err(|e| Error::Start(format!("cannot build the admin client: {e}")))?;
        self.poll_ready(&client, "/readyz", "kube-apiserver").await
    }

    async fn wait_for_controller_manager(&mut self, port: u16) -> Result<(), Error> {
        // kube-controller-manager serves /healthz with a self-signed certificate from its
        // --cert-dir; the check only needs to know it answers "ok".
        let mut config = Config::new(
            format!("https://127.0.0.1:{port}")
                .parse()
                .expect("valid URI"),
        );
        config.accept_invalid_certs = true;
        let client = Client::try_from(config)
            .map_err(|e| Error::Start(format!("cannot build a health client: {e}")))?;
        self.poll_ready(&client, "/healthz", CONTROLLER_MANAGER)
            .await
    }

    async fn poll_ready(&mut self, client: &Client, path: &str, name: &str) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let request = http::Request::get(path)
                .body(Vec::new())
                .expect("valid request");
            let last = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            if let Some(why) = self.any_exited() {
                return Err(self.failure(why));
            }
            if Instant::now() > deadline {
                return Err(self.failure(format!(
                    "{name} was not ready after {}s (last answer from {path}: {last})",
                    READY_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, admin: &CertAndKey) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: testenv-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv-admin
    namespace: default
current-context: testenv
",
        ca = B64.encode(ca_pem),
        cert = B64.encode(&admin.cert_pem),
        key = B64.encode(&admin.key_pem),
    )
}

/// The first usable address of an IPv4 CIDR (the `kubernetes` Service's ClusterIP).
fn first_service_ip(cidr: &str) -> Result<Ipv4Addr, Error> {
    let (base, _) = cidr
        .split_once('/')
        .ok_or_else(|| Error::Config(format!("service CIDR {cidr:?} is not a CIDR")))?;
    let base: Ipv4Addr = base
        .parse()
        .map_err(|_| Error::Config(format!("service CIDR {cidr:?} is not IPv4")))?;
    if !base.is_loopback() {
        return Err(Error::Config(format!(
            "service CIDR {cidr} must be inside 127.0.0.0/8: only loopback traffic is allowed"
        )));
    }
    Ok(Ipv4Addr::from(u32::from(base) + 1))
}

/// A free TCP port on 127.0.0.1 (bound and released; the tiny race is acceptable in tests).
pub fn free_port() -> Result<u16, Error> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Io(format!("cannot find a free port: {e}")))
}

/// Random lowercase alphanumerics, for names.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// The DER bytes of the first PEM block.
pub(crate) fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    B64.decode(body).unwrap_or_default()
}

fn write(path: &Path, content: &str) -> Result<(), Error> {
    std::fs::write(path, content).map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure CI saw: kube-apiserver was ready, then too slow to finish a TLS handshake
    /// within kube-controller-manager's 10 s, and the controller manager exited. Here the API
    /// server is frozen (SIGSTOP) for longer than that, so the first controller manager must
    /// give up; the control plane's start must outlast it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_controller_manager_that_gives_up_on_a_slow_api_server_is_started_again() {
        let mut cp = ControlPlane::start(Options::default()).await.unwrap();
        // The controller manager the start launched goes; this test starts its own.
        drop(cp.processes.pop());
        let api_server = cp.api_server().expect("started").pid() as libc::pid_t;
        // SAFETY: kill(2) on a child we own.
        assert_eq!(unsafe { libc::kill(api_server, libc::SIGSTOP) }, 0);
        let thaw = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(15));
            // SAFETY: as above.
            unsafe { libc::kill(api_server, libc::SIGCONT) };
        });
        let port = free_port().unwrap();
        let args = cp.controller_manager_args(port);
        let started = cp.start_controller_manager(&args, port).await;
        thaw.join().unwrap();
        started.unwrap();
        assert!(
            cp.dir().join("kube-controller-manager.log.1").exists(),
            "the controller manager was started more than once"
        );
    }
}
