//! Plays the kubelet's part for one pod: runs the gateway container of a Deployment the operator
//! wrote as a local process, with the same command line, environment and mounts.
//!
//! The test control plane has no kubelet and no container runtime, so this module does what a
//! kubelet would for the gateway pod, and nothing more:
//! - **volumes**: `secret` and `configMap` volumes are written out (honouring `items`, so a volume that projects
//!   only `cert.pem` gets only `cert.pem`), `emptyDir` volumes are empty directories, and the
//!   ServiceAccount volume the API server's admission would add is made from a TokenRequest token,
//!   the cluster CA and the namespace;
//! - **mounts**: a directory stands for the container's root filesystem; each `volumeMount` is a
//!   symlink in it, and absolute paths in the command line are resolved inside it;
//! - **init containers**: the `webAppImage` contract (`/bin/cp -r /data/web/public /app/web/`) is
//!   played with the web app built from `web/` standing for the image's `/data/web/public`;
//! - **network**: the pod's listen addresses become free loopback ports (`0.0.0.0` is never
//!   bound), and the in-cluster API address `https://kubernetes.default.svc` becomes the local
//!   API server (the cluster DNS's part).
//!
//! Anything else in the pod spec is refused with an error rather than silently ignored.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use virt_gateway_testenv::ControlPlane;
use virt_gateway_testenv::control_plane::free_port;
use virt_gateway_testenv::process::Process;

use crate::Error;

/// The in-cluster address of the API server, as the operator writes it.
pub const IN_CLUSTER_API: &str = "https://kubernetes.default.svc";
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The gateway image's working directory (Gen B: WORKDIR /app, binary ./kube-gateway).
const IMAGE_WORKDIR: &str = "/app";

/// What stands in for the container images.
pub struct Images {
    /// The gateway binary (the gateway image's `./kube-gateway`).
    pub gateway_binary: PathBuf,
    /// The web app (the web-app image's `/data/web/public`).
    pub web_public: PathBuf,
}

/// The gateway running as a local process.
pub struct LocalPod {
    process: Process,
    /// `http://127.0.0.1:<port>`: where the pod's main listener ended up.
    pub url: String,
    /// Where the metrics listener ended up, if the pod has one.
    pub metrics_addr: Option<String>,
    /// The command line that was run (paths resolved), for display.
    pub command_line: Vec<String>,
}

impl LocalPod {
    /// The gateway's log (its stdout and stderr).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last lines of the gateway's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Asks the gateway to stop (SIGTERM), without waiting: as the kubelet does when it deletes
    /// the pod.
    pub fn terminate(&mut self) {
        self.process.terminate();
    }

    /// Stops the gateway: SIGTERM, then SIGKILL after `grace` (the pod's grace period).
    pub fn stop(&mut self, grace: std::time::Duration) {
        self.process.stop(grace);
    }
}

/// Runs the first container of `deployment`'s pod template as a local process under `work`.
pub async fn run_pod(
    cp: &ControlPlane,
    deployment: &Deployment,
    images: &Images,
    work: &Path,
    port: Option<u16>,
) -> Result<LocalPod, Error> {
    let namespace = deployment
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| Error::Pod("the Deployment has no namespace".into()))?;
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .ok_or_else(|| Error::Pod("the Deployment has no pod template".into()))?;
    let container = pod
        .containers
        .first()
        .ok_or_else(|| Error::Pod("the pod template has no container".into()))?;
    let client = cp.client().await;
    let volumes_dir = work.join("volumes");
    let rootfs = work.join("rootfs");
    let _ = std::fs::remove_dir_all(work);
    create_dir(&volumes_dir)?;
    create_dir(&rootfs.join(IMAGE_WORKDIR.trim_start_matches('/')))?;

    // Volumes.
    let mut volume_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for volume in pod.volumes.iter().flatten() {
        let dir = volumes_dir.join(&volume.name);
        create_dir(&dir)?;
        if let Some(secret) = &volume.secret {
            let name = secret
                .secret_name
                .as_deref()
                .ok_or_else(|| Error::Pod(format!("volume {} names no Secret", volume.name)))?;
            let data = Api::<Secret>::namespaced(client.clone(), &namespace)
                .get(name)
                .await?
                .data
                .unwrap_or_default();
            let items = volume_items(secret.items.as_deref(), data.keys());
            for (key, path) in items {
                let value = data.get(&key).ok_or_else(|| {
                    Error::Pod(format!(
                        "Secret {name} has no key {key} (volume {})",
                        volume.name
                    ))
                })?;
                write(&dir.join(safe_relative(&path)?), &value.0)?;
            }
        } else if let Some(map) = &volume.config_map {
            let data = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                .get(&map.name)
                .await?
                .data
                .unwrap_or_default();
            let items = volume_items(map.items.as_deref(), data.keys());
            for (key, path) in items {
                let value = data.get(&key).ok_or_else(|| {
                    Error::Pod(format!(
                        "ConfigMap {} has no key {key} (volume {})",
                        map.name, volume.name
                    ))
                })?;
                write(&dir.join(safe_relative(&path)?), value.as_bytes())?;
            }
        } else if volume.empty_dir.is_none() {
            return Err(Error::Pod(format!(
                "volume {} is neither a Secret, a ConfigMap nor an emptyDir; the demo kubelet does not play it",
                volume.name
            )));
        }
        volume_dirs.insert(volume.name.clone(), dir);
    }

    // The ServiceAccount volume that admission adds to every pod unless it opts out.
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    if pod.automount_service_account_token != Some(false) {
        let sa = pod
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let dir = volumes_dir.join("kube-api-access");
        create_dir(&dir)?;
        let token = service_account_token(&client, &namespace, &sa).await?;
        write(&dir.join("token"), token.as_bytes())?;
        write(&dir.join("ca.crt"), cp.ca_pem().as_bytes())?;
        write(&dir.join("namespace"), namespace.as_bytes())?;
        mounts.push((SERVICE_ACCOUNT_DIR.into(), dir));
    }
    let mount_of = |c: &Container| -> Result<Vec<(String, PathBuf)>, Error> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                if m.sub_path.is_some() || m.sub_path_expr.is_some() {
                    return Err(Error::Pod(format!(
                        "subPath mounts are not played ({})",
                        m.name
                    )));
                }
                let dir = volume_dirs
                    .get(&m.name)
                    .ok_or_else(|| Error::Pod(format!("mount of unknown volume {}", m.name)))?;
                Ok((m.mount_path.clone(), dir.clone()))
            })
            .collect()
    };

    // Init containers: only the web-app copy contract.
    for init in pod.init_containers.iter().flatten() {
        let command: Vec<String> = init
            .command
            .iter()
            .flatten()
            .chain(init.args.iter().flatten())
            .cloned()
            .collect();
        let init_mounts = mount_of(init)?;
        match command
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["/bin/cp", "-r", "/data/web/public", dest] => {
                let dest = resolve_mounted(&init_mounts, dest).ok_or_else(|| {
                    Error::Pod(format!(
                        "init container {} copies to unmounted {dest}",
                        init.name
                    ))
                })?;
                copy_dir(&images.web_public, &dest.join("public"))?;
            }
            other => {
                return Err(Error::Pod(format!(
                    "init container {} runs {other:?}; the demo kubelet only plays the web-app copy",
                    init.name
                )));
            }
        }
    }

    // Mount the main container's volumes into the root filesystem.
    mounts.extend(mount_of(container)?);
    for (mount_path, dir) in &mounts {
        let link = rootfs.join(safe_relative(mount_path)?);
        if let Some(parent) = link.parent() {
            create_dir(parent)?;
        }
        let _ = std::fs::remove_dir_all(&link);
        std::os::unix::fs::symlink(dir, &link)
            .map_err(|e| Error::Io(format!("{}: {e}", link.display())))?;
    }

    // The command line, with the container's paths and addresses mapped to this machine.
    let mut raw: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .cloned()
        .collect();
    if raw.is_empty() {
        return Err(Error::Pod("the gateway container has no command".into()));
    }
    raw.remove(0); // ./kube-gateway: the image's binary
    // A port chosen by the caller: one registered elsewhere before the pod ran (a redirect URI).
    let port = match port {
        Some(p) => p,
        None => free_port()?,
    };
    let mut url = None;
    let mut args = Vec::new();
    for arg in raw {
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let name = flag.trim_start_matches('-');
        let mapped = match (name, value) {
            ("listen", Some(v)) => {
                let scheme = v.split_once("://").map(|(s, _)| s).unwrap_or("http");
                let local = format!("{scheme}://127.0.0.1:{port}");
                url = Some(local.clone());
                format!("{flag}={local}")
            }
            ("api-server", Some(v)) if v.trim_end_matches('/') == IN_CLUSTER_API => {
                format!("{flag}={}", cp.api_server_url())
            }
            (_, Some(v)) if v.starts_with('/') => {
                format!("{flag}={}", rootfs.join(safe_relative(&v)?).display())
            }
            (_, Some(v)) => format!("{flag}={v}"),
            (_, None) => arg,
        };
        args.push(mapped);
    }
    let url = url.ok_or_else(|| Error::Pod("the gateway command has no -listen".into()))?;

    let mut env: Vec<(String, String)> = Vec::new();
    let mut metrics_addr = None;
    for var in container.env.iter().flatten() {
        if var.value_from.is_some() {
            return Err(Error::Pod(format!(
                "env {} uses valueFrom; not played",
                var.name
            )));
        }
        let mut value = var.value.clone().unwrap_or_default();
        if value.starts_with("0.0.0.0:") || value.starts_with(':') {
            // A listen address on every interface: loopback only here, on a free port.
            let local = format!("127.0.0.1:{}", free_port()?);
            if var.name.contains("METRICS") {
                metrics_addr = Some(local.clone());
            }
            value = local;
        }
        env.push((var.name.clone(), value));
    }

    let workdir = rootfs.join(
        container
            .working_dir
            .as_deref()
            .unwrap_or(IMAGE_WORKDIR)
            .trim_start_matches('/'),
    );
    create_dir(&workdir)?;
    let process = Process::spawn_with(
        "kube-gateway",
        &images.gateway_binary,
        &args,
        &env,
        Some(&workdir),
        &work.join("kube-gateway.log"),
    )
    .map_err(|e| {
        Error::Io(format!(
            "cannot start {}: {e}",
            images.gateway_binary.display()
        ))
    })?;
    let mut command_line = vec![images.gateway_binary.display().to_string()];
    command_line.extend(args);
    Ok(LocalPod {
        process,
        url,
        metrics_addr,
        command_line,
    })
}

async fn service_account_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, Error> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| Error::Pod(format!("no token for ServiceAccount {namespace}/{name}")))
}

fn resolve_mounted(mounts: &[(String, PathBuf)], path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|(m, _)| Path::new(path).starts_with(m))
        .max_by_key(|(m, _)| m.len())
        .map(|(m, dir)| dir.join(Path::new(path).strip_prefix(m).unwrap_or(Path::new(""))))
}

/// A container path as a relative path, refusing `..` (the pod spec is input).
fn safe_relative(path: &str) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            _ => return Err(Error::Pod(format!("path {path:?} leaves its directory"))),
        }
    }
    Ok(out)
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))
}

fn write(path: &Path, data: &[u8]) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    std::fs::write(path, data).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    create_dir(to)?;
    let entries = std::fs::read_dir(from).map_err(|e| {
        Error::Io(format!(
            "{}: {e} (build the web app first: make web)",
            from.display()
        ))
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io(e.to_string()))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| Error::Io(format!("{}: {e}", target.display())))?;
        }
    }
    Ok(())
}

/// The (key, file path) pairs a Secret or ConfigMap volume projects: its `items`, or every key
/// under its own name.
fn volume_items<'a>(
    items: Option<&[KeyToPath]>,
    keys: impl Iterator<Item = &'a String>,
) -> Vec<(String, String)> {
    match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect(),
        None => keys.map(|k| (k.clone(), k.clone())).collect(),
    }
}
