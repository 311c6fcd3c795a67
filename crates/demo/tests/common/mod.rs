//! Helpers shared by the demo crate's end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub fn run(what: &str, command: &mut Command) {
    eprintln!("e2e: {what}");
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// The operator and gateway binaries the stack runs, rebuilt if the sources changed (a no-op
/// after `cargo test --workspace` built them).
pub fn build_binaries(repo: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        "cargo build the operator and the gateway",
        Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--locked",
                "-p",
                "virt-gateway-operator",
                "-p",
                "kube-gateway",
                "--bins",
            ])
            .current_dir(repo),
    );
}

pub fn build_web(repo: &Path) {
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
