//! Locating (and, on first use, building) the control-plane binaries.
//!
//! `testenv/build-binaries.sh` is the single source of truth for versions and the cache
//! directory: it builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go
//! module proxy once, then reuses them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;

/// Paths of the control-plane binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The cache directory holding all of them.
    pub dir: PathBuf,
}

impl Binaries {
    /// Finds the binaries, building them first if they are not cached yet (progress goes to
    /// stderr). Never falls back to anything but the real binaries.
    pub fn ensure() -> Result<Self, Error> {
        let dir = run_build_script(&build_script())?;
        let binaries = Self { dir };
        for name in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kubectl",
        ] {
            let path = binaries.path(name);
            if !path.is_file() {
                return Err(Error::Binaries(format!("{} is missing", path.display())));
            }
        }
        Ok(binaries)
    }

    /// The path of one binary, e.g. `kube-apiserver`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The repository root (this crate lives in `crates/testenv`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a build-and-cache script of `testenv/` (progress on stderr) and returns the cache
/// directory it prints last on stdout.
pub(crate) fn run_build_script(script: &Path) -> Result<PathBuf, Error> {
    let output = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Binaries(format!("cannot run {}: {e}", script.display())))?;
    if !output.status.success() {
        return Err(Error::Binaries(format!(
            "{} failed ({}); its output above names the step that failed",
            script.display(),
            output.status
        )));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| Error::Binaries(format!("{} printed no directory", script.display())))
}

fn build_script() -> PathBuf {
    repo_root().join("testenv/build-binaries.sh")
}
