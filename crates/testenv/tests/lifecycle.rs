//! No control-plane process outlives its owner: not on drop, not on a panic, not when the
//! owning process is killed outright.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use virt_gateway_testenv::process::{self, alive};
use virt_gateway_testenv::{ControlPlane, Options};

fn wait_all_gone(pids: &[u32]) {
    process::wait_all_gone(pids, Duration::from_secs(20));
}

#[tokio::test]
async fn dropping_a_control_plane_stops_every_process_and_removes_its_directory() {
    let cp = ControlPlane::start(Options::default()).await.unwrap();
    let pids = cp.pids();
    let dir = cp.dir().to_path_buf();
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );
    assert!(pids.iter().all(|p| alive(*p)));
    drop(cp);
    wait_all_gone(&pids);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn a_panic_while_holding_a_control_plane_stops_every_process() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let cp = ControlPlane::start(Options::default()).await.unwrap();
                tx.send(cp.pids()).unwrap();
                panic!("a test failed while holding the control plane");
            })
    })
    .join();
    assert!(result.is_err());
    let pids = rx.recv().unwrap();
    wait_all_gone(&pids);
}

#[test]
fn killing_the_owner_with_sigkill_still_stops_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .args(["serve", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids_file = dir.path().join("component.pids");
    let ready = dir.path().join("ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "testenv serve did not become ready"
        );
        assert!(
            serve.try_wait().unwrap().is_none(),
            "testenv serve exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids: Vec<u32> = read_pids(&pids_file);
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    serve.kill().unwrap(); // SIGKILL: no destructor, no atexit hook runs
    serve.wait().unwrap();
    wait_all_gone(&pids);
}

#[test]
fn up_and_down_start_and_stop_a_background_control_plane_that_kubectl_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_testenv");
    let up = Command::new(exe)
        .args(["up", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let stdout = String::from_utf8_lossy(&up.stdout);
    let kubeconfig = dir.path().join("kubeconfig");
    assert!(
        stdout.contains(&kubeconfig.display().to_string()),
        "{stdout}"
    );

    let kubectl = virt_gateway_testenv::Binaries::ensure()
        .unwrap()
        .path("kubectl");
    let get = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "namespace", "default", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&get.stdout).trim(),
        "namespace/default"
    );

    let pids = read_pids(&dir.path().join("component.pids"));
    let down = Command::new(exe)
        .args(["down", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    wait_all_gone(&pids);
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}
