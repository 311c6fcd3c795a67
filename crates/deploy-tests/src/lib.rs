//! Checks of everything under `deploy/`.
//!
//! [`CHECKED`] lists every manifest and every kustomize entry point (a directory rendered with
//! `kubectl kustomize`). `tests/files.rs` proves that this list, together with the files the
//! listed kustomizations reference, is exactly the set of files under `deploy/` (so a new
//! manifest cannot skip the check), and that the kustomize knobs do what `deploy/README.md`
//! says. `tests/dry_run.rs` applies each entry to a real API server with
//! `kubectl apply [--server-side] --dry-run=server --validate=strict` and fails with the API
//! server's message (and on any warning it returns, e.g. a Pod Security violation).
//!
//! Only files and `kubectl` are used here; the control plane comes from `virt-gateway-testenv`
//! in the tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How one entry of [`CHECKED`] is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// A file of `deploy/crds`: a CustomResourceDefinition, or the delegation policy installed
    /// with the CRDs: applied for real first (dry-runs of custom resources need their CRDs
    /// installed), then, for a CRD, waited for until Established.
    Crd,
    /// A manifest file: server-side dry-run as it is.
    Manifest,
    /// A kustomization directory: rendered with `kubectl kustomize`, then server-side dry-run.
    Kustomize,
    /// A Helm chart directory (generated): `helm lint --strict`, rendered with `helm template`
    /// (default values and every knob), then server-side dry-run; installed, upgraded and
    /// uninstalled for real by `tests/helm_lifecycle.rs`. Every file under it is covered.
    HelmChart,
    /// `deploy/olm` (generated): the bundle in `bundle/` passes the Operator Framework's
    /// validation (`olm-validate -strict`) and its objects a server-side dry-run against OLM's own
    /// ClusterServiceVersion CRD. Every file under it is covered.
    OlmBundle,
}

/// One checked path under `deploy/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Relative to `deploy/`.
    pub path: &'static str,
    /// How it is checked.
    pub how: How,
}

const fn entry(path: &'static str, how: How) -> Entry {
    Entry { path, how }
}

/// Everything under `deploy/` that is applied (CRDs first). A new manifest or overlay must be
/// added here: `tests/files.rs` fails until it is.
pub const CHECKED: &[Entry] = &[
    entry("crds/gateservers.ocgate.yaacov.com.yaml", How::Crd),
    entry("crds/gatetokens.ocgate.yaacov.com.yaml", How::Crd),
    entry("crds/virt-gateway-delegation-policy.yaml", How::Crd),
    entry("virt-gateway-operator.yaml", How::Manifest),
    entry("virt-gateway-operator-escalate.yaml", How::Manifest),
    entry(
        "virt-gateway-operator-serviceaccount-tokens.yaml",
        How::Manifest,
    ),
    entry("virt-gateway-server.yaml", How::Manifest),
    entry("samples/gateserver-sample.yaml", How::Manifest),
    entry("samples/gatetoken-sample.yaml", How::Manifest),
    entry("kustomize/base", How::Kustomize),
    entry("kustomize/overlays/kubernetes", How::Kustomize),
    entry("kustomize/overlays/openshift", How::Kustomize),
    entry("kustomize/examples/custom", How::Kustomize),
    entry("helm/virt-gateway-operator", How::HelmChart),
    entry("olm", How::OlmBundle),
];

/// The chart, relative to `deploy/`.
pub const CHART: &str = "helm/virt-gateway-operator";
/// The OLM bundle directory, relative to `deploy/`.
pub const BUNDLE: &str = "olm/bundle";

/// Files under `deploy/` that are documentation, not manifests (by extension).
pub const DOC_EXTENSIONS: &[&str] = &["md"];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `deploy/` in the repository.
pub fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// The stub CRDs of the Prometheus Operator kinds used by the ServiceMonitor component.
pub fn monitoring_crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/monitoring.coreos.com-crds.yaml")
}

/// Every file under `dir`, recursively, as paths relative to `dir` with `/` separators, sorted.
pub fn files_under(dir: &Path) -> Result<BTreeSet<String>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result<(), String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else {
                out.insert(relative(root, &path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> Result<String, String> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| format!("{} is not under {}", path.display(), root.display()))?;
    let parts: Vec<_> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

/// Lexically normalises `a/b/../c` to `a/c` (kustomize paths are relative and may go up).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn yaml_strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The local files a kustomization directory uses, recursively through the directories it names
/// (bases and components): its `kustomization.yaml`, `resources` files, `patches` /
/// `patchesJson6902` paths, `patchesStrategicMerge`, `configurations`, `crds`, `components`.
/// Absolute paths, normalised. Remote resources (URLs) are not local and are skipped. A field
/// that names files and is not in this list is not followed, so a file used only through it
/// shows up as unchecked (the safe direction).
pub fn kustomization_files(dir: &Path) -> Result<BTreeSet<PathBuf>, String> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    collect_kustomization(&normalise(dir), &mut out, &mut seen)?;
    Ok(out)
}

fn collect_kustomization(
    dir: &Path,
    out: &mut BTreeSet<PathBuf>,
    seen: &mut BTreeSet<PathBuf>,
) -> Result<(), String> {
    if !seen.insert(dir.to_path_buf()) {
        return Ok(());
    }
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let k: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    out.insert(file.clone());
    let mut paths: Vec<String> = Vec::new();
    for key in [
        "resources",
        "components",
        "patchesStrategicMerge",
        "configurations",
        "crds",
    ] {
        paths.extend(yaml_strings(&k[key]));
    }
    for key in ["patches", "patchesJson6902"] {
        if let Some(list) = k[key].as_sequence() {
            paths.extend(
                list.iter()
                    .filter_map(|p| p["path"].as_str().map(str::to_owned)),
            );
        }
    }
    for p in paths {
        if p.contains("://") || p.starts_with("github.com/") {
            continue;
        }
        let path = normalise(&dir.join(&p));
        if path.is_dir() {
            collect_kustomization(&path, out, seen)?;
        } else if path.is_file() {
            out.insert(path);
        } else {
            return Err(format!(
                "{} names {p}, which does not exist",
                file.display()
            ));
        }
    }
    Ok(())
}

/// The files under `deploy/` that [`CHECKED`] covers: the listed files, and for each listed
/// kustomization every local file it uses. Relative to `deploy/`.
pub fn covered_files() -> Result<BTreeSet<String>, String> {
    let deploy = deploy_dir();
    let mut out = BTreeSet::new();
    for e in CHECKED {
        let path = deploy.join(e.path);
        match e.how {
            How::Crd | How::Manifest => {
                out.insert(e.path.to_owned());
            }
            How::Kustomize => {
                for f in kustomization_files(&path)? {
                    if let Ok(rel) = relative(&normalise(&deploy), &f) {
                        out.insert(rel);
                    }
                }
            }
            How::HelmChart | How::OlmBundle => {
                for f in files_under(&path)? {
                    out.insert(format!("{}/{f}", e.path));
                }
            }
        }
    }
    Ok(out)
}

/// The tools `tools/build.sh` builds from the Go module proxy and caches: helm, olm-validate
/// and OLM's CRDs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The cache directory.
    pub dir: PathBuf,
}

impl Tools {
    /// Builds the tools on first use (progress on stderr) and returns where they are. Runs the
    /// script once per test binary.
    pub fn ensure() -> Result<Self, String> {
        static TOOLS: std::sync::OnceLock<Result<Tools, String>> = std::sync::OnceLock::new();
        TOOLS
            .get_or_init(|| {
                let script = repo_root().join("tools/build.sh");
                let out = Command::new("bash")
                    .arg(&script)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
                if !out.status.success() {
                    return Err(format!(
                        "{} failed ({}); its output above names the step that failed",
                        script.display(),
                        out.status
                    ));
                }
                let dir = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{} printed no directory", script.display()))?;
                Ok(Tools { dir })
            })
            .clone()
    }

    /// The helm binary.
    pub fn helm(&self) -> PathBuf {
        self.dir.join("helm")
    }

    /// The Operator Framework bundle validator.
    pub fn olm_validate(&self) -> PathBuf {
        self.dir.join("olm-validate")
    }

    /// OLM's ClusterServiceVersion CRD, as github.com/operator-framework/api ships it.
    pub fn csv_crd(&self) -> PathBuf {
        self.dir
            .join("olm-crds/operators.coreos.com_clusterserviceversions.yaml")
    }
}

/// Runs helm with its cache, config and data directories in `home` (never the user's own).
pub fn helm(tools: &Tools, home: &Path, args: &[&str]) -> Result<Output, String> {
    let out = Command::new(tools.helm())
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run helm: {e}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `helm template` of the chart in `deploy/` as release `virt-gateway-operator` in `namespace`,
/// with extra arguments (`--set`, `-f`, `--api-versions`, `--no-hooks`).
pub fn helm_template(
    tools: &Tools,
    home: &Path,
    namespace: &str,
    extra: &[&str],
) -> Result<String, String> {
    let chart = deploy_dir().join(CHART);
    let chart = chart.to_str().ok_or("chart path is not UTF-8")?;
    let mut args = vec![
        "template",
        "virt-gateway-operator",
        chart,
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    let out = helm(tools, home, &args)?;
    if !out.success {
        return Err(format!("helm {}: {}", args.join(" "), out.stderr));
    }
    Ok(out.stdout)
}

/// The YAML documents of `deploy/olm/bundle/manifests`, as one stream (CRDs first).
pub fn bundle_yaml() -> Result<String, String> {
    let dir = deploy_dir().join(BUNDLE).join("manifests");
    let mut files: Vec<String> = files_under(&dir)?.into_iter().collect();
    files.sort_by_key(|f| !f.ends_with(".crd.yaml"));
    let mut out = String::new();
    for f in files {
        let path = dir.join(&f);
        out.push_str("---\n");
        out.push_str(
            &std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
    }
    Ok(out)
}

/// `kubectl kustomize DIR`: the rendered YAML, or kustomize's error.
pub fn kustomize(kubectl: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", kubectl.display()))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("kubectl kustomize: {e}"))
}

/// The YAML documents of a multi-document stream (empty documents dropped).
pub fn documents(yaml: &str) -> Result<Vec<serde_yaml::Value>, String> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = serde_yaml::Value::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The YAML an entry stands for: the file, or the rendered kustomization.
pub fn entry_yaml(kubectl: &Path, e: &Entry) -> Result<String, String> {
    let path = deploy_dir().join(e.path);
    match e.how {
        How::Kustomize => kustomize(kubectl, &path),
        How::Crd | How::Manifest => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        How::HelmChart | How::OlmBundle => Err(format!(
            "{} is rendered with helm or read as a bundle, not by entry_yaml",
            e.path
        )),
    }
}

/// A `kubectl` bound to one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The kubectl binary.
    pub binary: PathBuf,
    /// The kubeconfig it uses.
    pub kubeconfig: PathBuf,
}

/// What one kubectl call printed.
#[derive(Debug)]
pub struct Output {
    /// Exit status was 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (the API server's refusals and warnings).
    pub stderr: String,
}

/// The field manager of everything these checks apply.
pub const FIELD_MANAGER: &str = "virt-gateway-deploy-tests";

impl Kubectl {
    /// Runs kubectl with `args`, feeding `stdin`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, String> {
        use std::io::Write as _;
        let mut child = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| format!("kubectl stdin: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl: {e}"))?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs kubectl and requires success.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let out = self.run(args, stdin)?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(format!("kubectl {}: {}", args.join(" "), out.stderr))
        }
    }

    /// Applies `yaml` for real (server-side).
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.ok(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                FIELD_MANAGER,
                "-f",
                "-",
            ],
            Some(yaml),
        )
    }

    /// Dry-runs `yaml` the two ways an administrator applies it: server-side apply
    /// (`kubectl apply --server-side`) and client-side apply (plain `kubectl apply -f` / `-k`),
    /// both with `--dry-run=server --validate=strict`. Ok with kubectl's report of the
    /// server-side run, or Err with every refusal and warning the API server returned.
    pub fn dry_run(&self, label: &str, yaml: &str) -> Result<String, String> {
        let report = self.dry_run_mode(label, yaml, true)?;
        self.dry_run_mode(label, yaml, false)?;
        Ok(report)
    }

    fn dry_run_mode(&self, label: &str, yaml: &str, server_side: bool) -> Result<String, String> {
        let mut args = vec!["apply"];
        if server_side {
            args.push("--server-side");
        }
        args.extend([
            "--dry-run=server",
            "--validate=strict",
            "--field-manager",
            FIELD_MANAGER,
            "-f",
            "-",
        ]);
        let out = self.run(&args, Some(yaml))?;
        let mode = if server_side {
            "kubectl apply --server-side --dry-run=server"
        } else {
            "kubectl apply --dry-run=server"
        };
        // kubectl's own note on objects that exist but were not created by client-side apply
        // (here: the namespaces and CRDs this check applied for real first) is not the API
        // server's warning and says nothing about the manifest.
        let warnings: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("Warning:"))
            .filter(|l| {
                server_side
                    || !l.contains(
                        "is missing the kubectl.kubernetes.io/last-applied-configuration annotation",
                    )
            })
            .collect();
        if !out.success {
            return Err(format!(
                "{label}: the API server refused it ({mode}):\n{}",
                out.stderr.trim_end()
            ));
        }
        if !warnings.is_empty() {
            return Err(format!(
                "{label}: the API server accepted it with warnings ({mode}):\n{}",
                warnings.join("\n")
            ));
        }
        Ok(out.stdout)
    }

    /// Makes sure the namespaces `yaml` needs exist, so that its namespaced objects can be
    /// dry-run (a dry-run of a Namespace creates nothing). Namespace objects in `yaml` are applied
    /// for real, as written (labels included: Pod Security admission then judges the dry-run of
    /// the workloads with the labels the manifest sets); namespaces only referenced by
    /// `metadata.namespace` are created empty.
    pub fn prepare_namespaces(&self, yaml: &str) -> Result<(), String> {
        let docs = documents(yaml)?;
        let mut declared = BTreeSet::new();
        let mut namespace_docs = Vec::new();
        for d in &docs {
            if d["apiVersion"] == "v1" && d["kind"] == "Namespace" {
                if let Some(name) = d["metadata"]["name"].as_str() {
                    declared.insert(name.to_owned());
                }
                namespace_docs.push(serde_yaml::to_string(d).map_err(|e| e.to_string())?);
            }
        }
        if !namespace_docs.is_empty() {
            self.apply(&namespace_docs.join("---\n"))?;
        }
        let referenced: BTreeSet<String> = docs
            .iter()
            .filter_map(|d| d["metadata"]["namespace"].as_str().map(str::to_owned))
            .filter(|ns| !declared.contains(ns))
            .collect();
        for ns in referenced {
            let exists = self.run(&["get", "namespace", &ns, "-o", "name"], None)?;
            if !exists.success {
                self.ok(&["create", "namespace", &ns], None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_resolves_parent_directories() {
        assert_eq!(
            normalise(Path::new("/a/b/c/../../d/./e")),
            PathBuf::from("/a/d/e")
        );
    }

    #[test]
    fn documents_skips_empty_ones() {
        let docs = documents("---\n---\na: 1\n---\n# only a comment\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"], 2);
    }

    #[test]
    fn kustomization_files_follows_resources_patches_and_components() {
        let dir = std::env::temp_dir().join(format!("deploy-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("overlay")).unwrap();
        std::fs::create_dir_all(dir.join("base")).unwrap();
        std::fs::create_dir_all(dir.join("comp")).unwrap();
        std::fs::write(
            dir.join("overlay/kustomization.yaml"),
            "resources: [../base, https://example.com/x.yaml]\ncomponents: [../comp]\npatches:\n- path: p.yaml\n- patch: |-\n    []\n  target: {kind: X}\n",
        )
        .unwrap();
        std::fs::write(dir.join("overlay/p.yaml"), "").unwrap();
        std::fs::write(dir.join("overlay/unused.yaml"), "").unwrap();
        std::fs::write(
            dir.join("base/kustomization.yaml"),
            "resources: [a.yaml]\nconfigurations: [c.yaml]\n",
        )
        .unwrap();
        std::fs::write(dir.join("base/a.yaml"), "").unwrap();
        std::fs::write(dir.join("base/c.yaml"), "").unwrap();
        std::fs::write(
            dir.join("comp/kustomization.yaml"),
            "kind: Component\nresources: [m.yaml]\n",
        )
        .unwrap();
        std::fs::write(dir.join("comp/m.yaml"), "").unwrap();
        let files: Vec<String> = kustomization_files(&dir.join("overlay"))
            .unwrap()
            .iter()
            .map(|p| relative(&dir, p).unwrap())
            .collect();
        assert_eq!(
            files,
            [
                "base/a.yaml",
                "base/c.yaml",
                "base/kustomization.yaml",
                "comp/kustomization.yaml",
                "comp/m.yaml",
                "overlay/kustomization.yaml",
                "overlay/p.yaml"
            ]
        );
        std::fs::write(
            dir.join("base/kustomization.yaml"),
            "resources: [gone.yaml]\n",
        )
        .unwrap();
        let err = kustomization_files(&dir.join("overlay")).unwrap_err();
        assert!(err.contains("gone.yaml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
