//! Starting and driving the whole stack.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kubevirt_standin::{Standin, StandinOptions};
use virt_gateway_api::gateserver::GATEWAY_URL_ANNOTATION;
use virt_gateway_api::{ConsoleRole, GateServer, GateToken, GateTokenSpec};
use virt_gateway_testenv::control_plane::free_port;
use virt_gateway_testenv::process::Process;
use virt_gateway_testenv::{ControlPlane, Options, ProviderSettings};

use crate::Error;
use crate::kubelet::{Images, LocalPod, run_pod};

/// The namespace of the seed samples (`deploy/samples/`).
pub const SAMPLES_NAMESPACE: &str = "kube-gateway";
/// The seed GateServer's name.
pub const SAMPLE_SERVER: &str = "gateserver-sample";
/// The seed GateToken's name.
pub const SAMPLE_TOKEN: &str = "gatetoken-sample";
/// The view-only GateToken for testvm (`consoleRole: observe`), with
/// [`StackOptions::shared_consoles`].
pub const OBSERVER_TOKEN: &str = "gatetoken-sample-viewer";
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the gateway and the operator may take to exit after SIGTERM (both at once) before
/// SIGKILL. The whole stop takes at most about this plus the control plane's three
/// [`virt_gateway_testenv::control_plane::STOP_GRACE`]s and the VNC servers'.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where things are.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The repository root (CRDs, samples, web app).
    pub repo: PathBuf,
    /// State directory: kubeconfig, logs, the gateway pod's files. `None`: a temporary one.
    pub dir: Option<PathBuf>,
    /// The `virt-gateway-operator` binary.
    pub operator_binary: PathBuf,
    /// The `kube-gateway` binary (stands in for the gateway image).
    pub gateway_binary: PathBuf,
    /// The built web app (stands in for the web-app image's `/data/web/public`).
    pub web_public: PathBuf,
    /// OpenID Connect providers (Dex) the control plane starts and trusts; none by default.
    pub identity_providers: Vec<ProviderSettings>,
    /// Sign-in on the seed GateServer's gateway (`make demo`): starts Dex as [`DEMO_PROVIDER`]
    /// too, gives the GateServer `oidc` with the gateway's loopback callback as `redirectURL`,
    /// and lets Dex's user open testvm and share it. Off by default.
    pub sign_in: bool,
    /// Shared consoles on the seed GateServer (`spec.consoles.shared: true`, set after the seed
    /// samples are applied as written) and a view-only GateToken for testvm,
    /// [`OBSERVER_TOKEN`]. Off by default.
    pub shared_consoles: bool,
}

impl StackOptions {
    /// The binaries from `<target>/debug` (the `CARGO_TARGET_DIR` or the repository's `target`).
    pub fn from_repo(repo: &Path) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target"))
            .join("debug");
        Self {
            repo: repo.to_path_buf(),
            dir: None,
            operator_binary: target.join("virt-gateway-operator"),
            gateway_binary: target.join("kube-gateway"),
            web_public: repo.join("web/dist"),
            identity_providers: Vec::new(),
            sign_in: false,
            shared_consoles: false,
        }
    }
}

/// The name of the demo's Dex (see [`StackOptions::sign_in`]).
pub const DEMO_PROVIDER: &str = "dex";
/// The Secret holding the gateway's client secret at Dex (samples' namespace).
pub const OIDC_CLIENT_SECRET: &str = "demo-oidc-client";
/// The ConfigMap holding the CA that signed Dex's certificate (samples' namespace).
pub const OIDC_CA_CONFIG_MAP: &str = "demo-oidc-ca";

/// How to sign in on the demo's gateway.
#[derive(Clone, Debug)]
pub struct SignInDetails {
    /// `<gateway>/auth/login?then=%2Fvms.html`: Dex's form, then the "Your VMs" page.
    pub url: String,
    /// The e-mail to type at Dex.
    pub email: String,
    /// The password to type at Dex (random per run).
    pub password: String,
    /// Who Kubernetes sees (`oidc:<email>`).
    pub kubernetes_user: String,
}

/// Everything running. Dropping it stops every process; [`Stack::shutdown`] does so in order.
pub struct Stack {
    // Field order: the gateway and operator stop before the control plane.
    gateway: LocalPod,
    standin: Option<Standin>,
    operator: Process,
    cp: ControlPlane,
    /// The seed GateToken's JWT.
    pub sample_token: String,
    /// The view-only GateToken's JWT, with [`StackOptions::shared_consoles`].
    pub observer_token: Option<String>,
    /// How to sign in, with [`StackOptions::sign_in`].
    pub sign_in: Option<SignInDetails>,
    _temp: Option<tempfile::TempDir>,
}

impl Stack {
    /// Starts everything, reporting each step through `progress`.
    pub async fn start(options: StackOptions, progress: impl Fn(&str)) -> Result<Self, Error> {
        for (what, path) in [
            ("operator binary", &options.operator_binary),
            ("gateway binary", &options.gateway_binary),
        ] {
            if !path.is_file() {
                return Err(Error::Step(format!(
                    "{what} {} is missing: build it with `cargo build --bins`",
                    path.display()
                )));
            }
        }
        let (temp, dir) = match &options.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().map_err(|e| Error::Io(e.to_string()))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };

        // With sign-in, the gateway's port is chosen first: Dex registers its callback at start.
        let gateway_port = if options.sign_in {
            Some(free_port()?)
        } else {
            None
        };
        let callback = gateway_port.map(|p| format!("http://127.0.0.1:{p}/auth/callback"));
        let mut identity_providers = options.identity_providers.clone();
        if let Some(callback) = &callback {
            identity_providers.push(ProviderSettings {
                redirect_uris: vec![callback.clone()],
                ..ProviderSettings::new(DEMO_PROVIDER)
            });
        }
        progress(if callback.is_some() {
            "starting the control plane (etcd, kube-apiserver, kube-controller-manager) and Dex, which it trusts"
        } else {
            "starting the control plane (etcd, kube-apiserver, kube-controller-manager)"
        });
        let cp = ControlPlane::start(Options {
            dir: Some(dir.join("cluster")),
            identity_providers,
            ..Options::default()
        })
        .await?;
        let client = cp.client().await;

        progress("installing the CRDs and the delegation policy from deploy/crds");
        install_crds(&client, &options.repo.join("deploy/crds")).await?;

        progress("starting virt-gateway-operator");
        let operator = start_operator(&cp, &options.operator_binary, &dir).await?;

        progress("applying the seed samples from deploy/samples (kubectl apply)");
        Api::<Namespace>::all(client.clone())
            .patch(
                SAMPLES_NAMESPACE,
                &PatchParams::apply("virt-gateway-demo"),
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": SAMPLES_NAMESPACE}
                })),
            )
            .await?;
        kubectl(
            &cp,
            &[
                "apply",
                "-f",
                &options.repo.join("deploy/samples").display().to_string(),
            ],
        )?;

        let sign_in = match &callback {
            Some(callback) => {
                progress(
                    "signing in with Dex on the seed GateServer (spec.oidc, redirectURL on loopback) and letting Dex's user open testvm",
                );
                Some(enable_sign_in(&cp, &client, callback).await?)
            }
            None => None,
        };

        if options.shared_consoles {
            progress(
                "sharing consoles on the seed GateServer (spec.consoles.shared) and adding a view-only GateToken for testvm",
            );
            let shared = serde_json::json!({"spec": {"consoles": {"shared": true}}});
            Api::<GateServer>::namespaced(client.clone(), SAMPLES_NAMESPACE)
                .patch(
                    SAMPLE_SERVER,
                    &PatchParams::default(),
                    &Patch::Merge(&shared),
                )
                .await?;
            let observer = console_token(OBSERVER_TOKEN, "testvm", 3600, ConsoleRole::Observe);
            Api::<GateToken>::namespaced(client.clone(), SAMPLES_NAMESPACE)
                .create(&PostParams::default(), &observer)
                .await?;
        }

        progress("starting the KubeVirt stand-in (VMIs testvm and testvm2 with real VNC servers)");
        let standin = Standin::start(
            &cp,
            StandinOptions {
                log_dir: Some(dir.join("standin")),
                ..StandinOptions::default()
            },
        )
        .await?;

        progress("waiting for the GateServer and GateToken to be Ready");
        wait_server_ready(&client, SAMPLE_SERVER, &operator).await?;
        let sample_token = wait_token_ready(&client, SAMPLES_NAMESPACE, SAMPLE_TOKEN).await?;
        if sign_in.is_some() {
            wait_deployment_has(
                &client,
                &operator,
                "--signin-redirect-url=",
                "sign-in flags",
            )
            .await?;
        }
        let observer_token = if options.shared_consoles {
            let shared = "KUBE_GATEWAY_SHARED_CONSOLES";
            wait_deployment_has(&client, &operator, shared, "shared consoles").await?;
            Some(wait_token_ready(&client, SAMPLES_NAMESPACE, OBSERVER_TOKEN).await?)
        } else {
            None
        };

        progress(
            "running the gateway with the command line and mounts of the operator's Deployment",
        );
        let deployment = Api::<Deployment>::namespaced(client.clone(), SAMPLES_NAMESPACE)
            .get(SAMPLE_SERVER)
            .await?;
        let gateway = run_pod(
            &cp,
            &deployment,
            &Images {
                gateway_binary: options.gateway_binary.clone(),
                web_public: options.web_public.clone(),
            },
            &dir.join("gateway-pod"),
            gateway_port,
        )
        .await?;
        wait_http_ok(&format!("{}/readyz", gateway.url), || gateway.log_tail(30)).await?;

        progress(&format!(
            "publishing the gateway's address on GateServer {SAMPLE_SERVER} ({GATEWAY_URL_ANNOTATION})"
        ));
        advertise_gateway_url(&client, SAMPLE_SERVER, &gateway.url).await?;

        let sign_in = sign_in.map(|details| SignInDetails {
            url: format!("{}/auth/login?then=%2Fvms.html", gateway.url),
            ..details
        });
        Ok(Self {
            gateway,
            standin: Some(standin),
            operator,
            cp,
            sample_token,
            observer_token,
            sign_in,
            _temp: temp,
        })
    }

    /// The control plane.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.cp
    }

    /// The gateway's URL, `http://127.0.0.1:<port>`.
    pub fn gateway_url(&self) -> &str {
        &self.gateway.url
    }

    /// The gateway's metrics listener (`127.0.0.1:<port>`), when its Deployment has one.
    pub fn gateway_metrics_addr(&self) -> Option<&str> {
        self.gateway.metrics_addr.as_deref()
    }

    /// The gateway's command line as run (for display).
    pub fn gateway_command_line(&self) -> &[String] {
        &self.gateway.command_line
    }

    /// The gateway's log file.
    pub fn gateway_log(&self) -> &Path {
        self.gateway.log_path()
    }

    /// The operator's log file.
    pub fn operator_log(&self) -> &Path {
        self.operator.log_path()
    }

    /// The console link for a token and a VM in `default`: the login page, which signs in
    /// (`POST /auth/token`) when the person clicks, then opens the console page.
    pub fn console_link(&self, token: &str, vm: &str) -> String {
        console_link(&self.gateway.url, token, "default", vm)
    }

    /// Creates a GateToken for `vm`'s VNC console (in the samples' namespace) lasting
    /// `duration_sec`, waits until the operator signed it, and returns the JWT.
    pub async fn create_vnc_token(
        &self,
        name: &str,
        vm: &str,
        duration_sec: i64,
    ) -> Result<String, Error> {
        self.create_console_token(name, vm, duration_sec, ConsoleRole::Control)
            .await
    }

    /// Like [`Stack::create_vnc_token`], with the holder's console role.
    pub async fn create_console_token(
        &self,
        name: &str,
        vm: &str,
        duration_sec: i64,
        role: ConsoleRole,
    ) -> Result<String, Error> {
        let client = self.cp.client().await;
        let token = console_token(name, vm, duration_sec, role);
        Api::<GateToken>::namespaced(client.clone(), SAMPLES_NAMESPACE)
            .create(&PostParams::default(), &token)
            .await?;
        wait_token_ready(&client, SAMPLES_NAMESPACE, name).await
    }

    /// The KubeVirt stand-in (its VMs, the keys they received).
    pub fn standin(&self) -> &Standin {
        self.standin
            .as_ref()
            .expect("the stand-in runs until shutdown")
    }

    /// A `kubectl` command line against this control plane (for printing and scripts).
    pub fn kubectl_prefix(&self) -> String {
        format!(
            "{} --kubeconfig {}",
            self.cp.binary("kubectl").display(),
            self.cp.kubeconfig().display()
        )
    }

    /// Stops everything in order (see [`Stack::shutdown`]) on a blocking thread.
    pub async fn stop(self) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown()).await;
    }

    /// Stops everything, clients before the servers they talk to, each step bounded: the
    /// gateway and the operator together (SIGTERM, SIGKILL after [`STOP_GRACE`]), the VNC
    /// servers, then kube-controller-manager, kube-apiserver and etcd. It makes no API call:
    /// the cluster goes away with its etcd, so unregistering the stand-in's API would only be one
    /// more thing that can hang. Blocks (up to a few seconds when every process behaves).
    pub fn shutdown(mut self) {
        self.gateway.terminate();
        self.operator.terminate();
        self.gateway.stop(STOP_GRACE);
        self.operator.stop(STOP_GRACE);
        drop(self.standin.take());
        self.cp.stop();
    }
}

/// A GateToken (in the samples' namespace) for `vm`'s VNC console in `default`. `Control` is
/// written as absent, as the seed sample does.
fn console_token(name: &str, vm: &str, duration_sec: i64, role: ConsoleRole) -> GateToken {
    GateToken {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(SAMPLES_NAMESPACE.into()),
            ..Default::default()
        },
        spec: GateTokenSpec {
            namespace: "default".into(),
            duration_sec,
            resource_names: Some(vec![vm.into()]),
            console_role: (role == ConsoleRole::Observe).then_some(role),
            ..GateTokenSpec::default()
        },
        status: None,
    }
}

/// Writes the gateway's reachable URL into the GateServer's [`GATEWAY_URL_ANNOTATION`], where
/// `kubectl gate token` finds it: in the demo, the loopback port the gateway really serves on
/// (on a cluster, the route's `https://` address is what users reach).
pub async fn advertise_gateway_url(
    client: &kube::Client,
    server: &str,
    url: &str,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {GATEWAY_URL_ANNOTATION: url}}
    });
    Api::<GateServer>::namespaced(client.clone(), SAMPLES_NAMESPACE)
        .patch(server, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Makes the seed GateServer sign people in with the demo's Dex: the client secret and Dex's CA
/// as a Secret and a ConfigMap, `spec.oidc` with the loopback `callback` as `redirectURL`, and
/// RBAC for Dex's user: list the VMIs in `default`, open testvm's console (not testvm2's), and
/// manage GateTokens in the samples' namespace (so "Share" works, under the delegation policy).
async fn enable_sign_in(
    cp: &ControlPlane,
    client: &kube::Client,
    callback: &str,
) -> Result<SignInDetails, Error> {
    let dex = cp
        .identity_provider(DEMO_PROVIDER)
        .ok_or_else(|| Error::Step("Dex did not start".into()))?;
    let user = dex.kubernetes_username();
    let apply = PatchParams::apply("virt-gateway-demo").force();
    let ns = SAMPLES_NAMESPACE;
    let objects = [
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": OIDC_CLIENT_SECRET, "namespace": ns},
            "stringData": {"clientSecret": dex.client().secret}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": OIDC_CA_CONFIG_MAP, "namespace": ns},
            "data": {"ca.crt": dex.ca_pem()}}),
        role(
            "default",
            "demo-vm-viewer",
            serde_json::json!([
            {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachineinstances"], "verbs": ["get", "list"]},
            {"apiGroups": ["subresources.kubevirt.io"], "resources": ["virtualmachineinstances/vnc"],
             "resourceNames": ["testvm"], "verbs": ["get"]}]),
        ),
        role(
            ns,
            "demo-share-links",
            serde_json::json!([
            {"apiGroups": ["ocgate.yaacov.com"], "resources": ["gatetokens"],
             "verbs": ["create", "get", "list", "delete"]}]),
        ),
        role_binding("default", "demo-vm-viewer", &user),
        role_binding(ns, "demo-share-links", &user),
    ];
    for object in objects {
        let dynamic = serde_json::from_value::<kube::api::DynamicObject>(object.clone())
            .map_err(|e| Error::Step(format!("{object}: {e}")))?;
        let (api_version, kind) = (
            object["apiVersion"].as_str().unwrap_or_default(),
            object["kind"].as_str().unwrap_or_default(),
        );
        let gvk = kube::api::GroupVersionKind::try_from(&kube::api::TypeMeta {
            api_version: api_version.into(),
            kind: kind.into(),
        })
        .map_err(|e| Error::Step(format!("{kind}: {e}")))?;
        let resource = kube::api::ApiResource::from_gvk(&gvk);
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or(ns);
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
            .patch(name, &apply, &Patch::Apply(&dynamic))
            .await?;
    }
    let oidc = serde_json::json!({"spec": {"oidc": {
        "issuerURL": dex.issuer(),
        "clientID": virt_gateway_testenv::identity_provider::CLIENT_ID,
        "clientSecretName": OIDC_CLIENT_SECRET,
        "caConfigMapName": OIDC_CA_CONFIG_MAP,
        "redirectURL": callback,
    }}});
    Api::<GateServer>::namespaced(client.clone(), ns)
        .patch(SAMPLE_SERVER, &PatchParams::default(), &Patch::Merge(&oidc))
        .await?;
    Ok(SignInDetails {
        url: String::new(),
        email: virt_gateway_testenv::identity_provider::USER_EMAIL.to_owned(),
        password: dex.user_password().to_owned(),
        kubernetes_user: user,
    })
}

fn role(namespace: &str, name: &str, rules: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": namespace}, "rules": rules})
}

fn role_binding(namespace: &str, role: &str, user: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": role, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
}

/// Waits until the operator wrote `needle` (a flag or variable: `what`) into the gateway's
/// Deployment (the GateServer was Ready before the patch was reconciled, perhaps).
async fn wait_deployment_has(
    client: &kube::Client,
    operator: &Process,
    needle: &str,
    what: &str,
) -> Result<(), Error> {
    let api = Api::<Deployment>::namespaced(client.clone(), SAMPLES_NAMESPACE);
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(d) = api.get_opt(SAMPLE_SERVER).await? {
            let args = serde_json::to_string(&d.spec.template.spec).unwrap_or_default();
            if args.contains(needle) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Step(format!(
                "the operator did not give the gateway its {what} in time; log:\n{}",
                operator.log_tail(30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `<gateway>/login.html#token=<jwt>&then=<console page for the VM>`: the link contract of
/// `crates/gateway/README.md` (the token in the fragment never reaches a server or its logs).
pub fn console_link(gateway: &str, token: &str, namespace: &str, vm: &str) -> String {
    let then = format!(
        "/noVNC/vnc_lite.html?path=k8s/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{vm}/vnc"
    );
    let fragment: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("then", &then)
        .finish();
    format!("{gateway}/login.html#{fragment}")
}

/// Installs everything in `dir` (`deploy/crds`): the CRDs, waiting until each is Established,
/// and the delegation policy that ships with them (ValidatingAdmissionPolicies and bindings).
async fn install_crds(client: &kube::Client, dir: &Path) -> Result<(), Error> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone());
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone());
    let apply = PatchParams::apply("virt-gateway-demo").force();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let invalid = |e: &dyn std::fmt::Display| Error::Step(format!("{}: {e}", path.display()));
        // Parsed up front: the YAML parser may not be held across an await (the stack's
        // future is sent between threads).
        let docs = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde::Deserialize::deserialize(doc).map_err(|e| invalid(&e)))
            .collect::<Result<Vec<serde_json::Value>, Error>>()?;
        for value in docs {
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match value["kind"].as_str() {
                Some("CustomResourceDefinition") => {
                    let crd: CustomResourceDefinition =
                        serde_json::from_value(value).map_err(|e| invalid(&e))?;
                    crds.patch(&name, &apply, &Patch::Apply(&crd)).await?;
                    tokio::time::timeout(
                        STEP_TIMEOUT,
                        await_condition(crds.clone(), &name, conditions::is_crd_established()),
                    )
                    .await
                    .map_err(|_| Error::Step(format!("CRD {name} was not Established in time")))?
                    .map_err(|e| Error::Step(format!("waiting for CRD {name}: {e}")))?;
                }
                Some("ValidatingAdmissionPolicy") => {
                    let policy: ValidatingAdmissionPolicy =
                        serde_json::from_value(value).map_err(|e| invalid(&e))?;
                    policies
                        .patch(&name, &apply, &Patch::Apply(&policy))
                        .await?;
                }
                Some("ValidatingAdmissionPolicyBinding") => {
                    let binding: ValidatingAdmissionPolicyBinding =
                        serde_json::from_value(value).map_err(|e| invalid(&e))?;
                    bindings
                        .patch(&name, &apply, &Patch::Apply(&binding))
                        .await?;
                }
                other => {
                    return Err(Error::Step(format!(
                        "{}: unexpected kind {other:?}",
                        path.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

async fn start_operator(cp: &ControlPlane, binary: &Path, dir: &Path) -> Result<Process, Error> {
    let health = free_port()?;
    let metrics = free_port()?;
    let args = vec![
        format!("--kubeconfig={}", cp.kubeconfig().display()),
        format!("--health-probe-bind-address=127.0.0.1:{health}"),
        format!("--metrics-bind-address=127.0.0.1:{metrics}"),
    ];
    let process = Process::spawn(
        "virt-gateway-operator",
        binary,
        &args,
        &dir.join("operator.log"),
    )
    .map_err(|e| Error::Io(format!("cannot start {}: {e}", binary.display())))?;
    let log = process.log_path().to_path_buf();
    wait_http_ok(&format!("http://127.0.0.1:{health}/readyz"), || {
        virt_gateway_testenv::process::tail(&log, 30)
    })
    .await?;
    Ok(process)
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<(), Error> {
    let output = Command::new(cp.binary("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(args)
        .output()
        .map_err(|e| Error::Io(format!("kubectl: {e}")))?;
    if !output.status.success() {
        return Err(Error::Step(format!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

async fn wait_server_ready(
    client: &kube::Client,
    name: &str,
    operator: &Process,
) -> Result<(), Error> {
    let api = Api::<GateServer>::namespaced(client.clone(), SAMPLES_NAMESPACE);
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let server = api.get(name).await?;
        let status = server.status.unwrap_or_default();
        if status.phase == "Ready" {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Step(format!(
                "GateServer {name} is not Ready (phase {:?}, conditions {:?}); operator log:\n{}",
                status.phase,
                status.conditions,
                operator.log_tail(30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the operator signed a GateToken and it is Ready; returns its JWT.
pub async fn wait_token_ready(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, Error> {
    let api = Api::<GateToken>::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let token = api.get(name).await?;
        let status = token.status.unwrap_or_default();
        if status.phase == "Ready" && !status.token.is_empty() {
            return Ok(status.token);
        }
        if status.phase == "Error" || Instant::now() > deadline {
            return Err(Error::Step(format!(
                "GateToken {namespace}/{name} is not Ready (phase {:?}): {:?}",
                status.phase, status.conditions
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for `url` to answer 200, with `log` telling why not on timeout.
async fn wait_http_ok(url: &str, log: impl Fn() -> String) -> Result<(), Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Error::Step(format!("{url}: {e}")))?;
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .ok_or_else(|| Error::Step(format!("{url} has no host")))?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Ok(status) = http_get_status(&authority, uri.path()).await
            && status == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Step(format!(
                "{url} did not answer 200 in time; log:\n{}",
                log()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A minimal HTTP/1.1 GET on loopback, returning the status code.
async fn http_get_status(authority: &str, path: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}
