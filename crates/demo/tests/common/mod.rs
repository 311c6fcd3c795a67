//! What the demo's tests share: the repository, and building what the stack runs.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Runs `command`, failing the test if it fails.
pub fn run(what: &str, command: &mut Command) {
    eprintln!("demo tests: {what}");
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// The binaries the demo runs or puts on its PATH (operator, gateway, kubectl plugin) and the
/// web app, rebuilt if their sources changed (a no-op after `make test` built them); once per
/// test binary.
pub fn build_prerequisites() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = repo();
        build_binaries(&repo);
        build_web(&repo);
    });
}

fn build_binaries(repo: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        "cargo build the operator, the gateway and the kubectl plugin",
        Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "virt-gateway-operator",
                "-p",
                "kube-gateway",
                "-p",
                "kubectl-gate",
                "--bins",
            ])
            .current_dir(repo),
    );
}

fn build_web(repo: &Path) {
    let web = repo.join("web");
    if !web.join("node_modules/@novnc/novnc").is_dir() {
        run(
            "npm ci (web)",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&web),
        );
    }
    run(
        "npm run build (web)",
        Command::new("npm").args(["run", "build"]).current_dir(&web),
    );
}

/// An RBAC rule on one API group (`names` empty: every name).
#[allow(dead_code)] // not every test binary grants roles
pub fn rule(
    group: &str,
    resources: &[&str],
    verbs: &[&str],
    names: &[&str],
) -> k8s_openapi::api::rbac::v1::PolicyRule {
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    k8s_openapi::api::rbac::v1::PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        non_resource_urls: None,
    }
}
