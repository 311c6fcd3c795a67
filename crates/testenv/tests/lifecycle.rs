//! No control-plane process outlives its owner: not on drop, not on a panic, not when the
//! owning process is killed outright.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use virt_gateway_testenv::process::{
    self, alive, new_session, processes_in_session, signal_process_group,
};
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

/// The bound for "Ctrl-C gives the prompt back".
const EXIT_BOUND: Duration = Duration::from_secs(30);

/// What is left in session `sid` once the processes already dying have gone. `up` returns as soon
/// as `serve` is reaped, and its components die with it through `PR_SET_PDEATHSIG`, which the
/// kernel delivers a moment later: a process still listed right after is dying, not left behind.
fn session_once_settled(sid: u32) -> Vec<(u32, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_in_session(sid);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit, failing the test after [`EXIT_BOUND`].
#[track_caller]
fn exits_within_bound(child: &mut std::process::Child) -> std::process::ExitStatus {
    let since = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            eprintln!("exited ({status}) {:?} after the signal", since.elapsed());
            return status;
        }
        assert!(
            since.elapsed() < EXIT_BOUND,
            "still running {EXIT_BOUND:?} after the signal; its session: {:?}",
            processes_in_session(child.id())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_to_the_process_group_of_serve_stops_every_component() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_testenv"));
    command
        .args(["serve", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // A terminal's foreground job: a process group (here a session) of its own.
    let mut serve = new_session(&mut command).spawn().unwrap();
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
    let pids = read_pids(&dir.path().join("component.pids"));
    assert_eq!(
        processes_in_session(serve.id()).len(),
        4,
        "serve and its three components"
    );

    // Ctrl-C: SIGINT to the whole group. Only serve is in it; it stops the components itself.
    assert!(signal_process_group(serve.id(), libc::SIGINT));
    let status = exits_within_bound(&mut serve);
    assert!(status.success(), "an orderly stop: {status}");
    assert_eq!(processes_in_session(serve.id()), []);
    wait_all_gone(&pids);
    assert!(!ready.exists(), "the state files say nothing runs");
}

#[test]
fn ctrl_c_while_up_waits_stops_the_control_plane_it_was_starting() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_testenv"));
    command
        .args(["up", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut up = new_session(&mut command).spawn().unwrap();
    let mut stderr = std::io::BufReader::new(up.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(
        line.starts_with("starting the control plane in the background"),
        "{line}"
    );

    // `serve` runs in a process group of its own: the terminal's Ctrl-C reaches only `up`,
    // which must not leave it starting in the background.
    assert!(signal_process_group(up.id(), libc::SIGINT));
    let status = exits_within_bound(&mut up);
    assert_eq!(status.code(), Some(130), "interrupted");
    assert_eq!(
        session_once_settled(up.id()),
        [],
        "nothing of the control plane is left running"
    );
    assert!(!dir.path().join("ready").exists());
}

/// Set in the copy of this test binary that [`ctrl_c_to_a_test_binary_holding_a_control_plane`]
/// runs: the file where it reports its control plane's directory and pids.
const HOLDER_ENV: &str = "VIRT_GATEWAY_TESTENV_HOLDER_REPORT";
const HOLDER_TEST: &str = "ctrl_c_to_a_test_binary_holding_a_control_plane";

/// The test harness case: `cargo test` interrupted by Ctrl-C. The test binary does not catch
/// SIGINT, so it dies at once without running its destructors or exit hook; its components
/// (in process groups of their own, so the SIGINT does not reach them) die with it
/// (`PR_SET_PDEATHSIG`), and the directory it leaves is removed by the next control plane.
#[test]
fn ctrl_c_to_a_test_binary_holding_a_control_plane() {
    if let Some(report) = std::env::var_os(HOLDER_ENV) {
        return hold_a_control_plane(Path::new(&report));
    }
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", HOLDER_TEST, "--test-threads=1"])
        .env(HOLDER_ENV, &report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The test binary as a terminal's foreground job.
    let mut holder = new_session(&mut command).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !report.exists() {
        assert!(
            Instant::now() < deadline,
            "the holder did not start a control plane"
        );
        assert!(
            holder.try_wait().unwrap().is_none(),
            "the holder exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&report).unwrap();
    let mut lines = text.lines();
    let dir = std::path::PathBuf::from(lines.next().unwrap());
    let pids: Vec<u32> = lines.map(|l| l.parse().unwrap()).collect();
    assert_eq!(pids.len(), 3);

    assert!(signal_process_group(holder.id(), libc::SIGINT));
    let status = exits_within_bound(&mut holder);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGINT),
        "the test binary dies of the SIGINT: {status}"
    );
    wait_all_gone(&pids);
    assert_eq!(processes_in_session(holder.id()), []);
    assert!(
        virt_gateway_testenv::leftovers::abandoned(&dir),
        "{} is left behind, and known to be abandoned",
        dir.display()
    );
    // What every ControlPlane::start does first.
    virt_gateway_testenv::leftovers::remove_abandoned_temp_dirs(
        virt_gateway_testenv::control_plane::TEMP_PREFIX,
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// The copy run by [`ctrl_c_to_a_test_binary_holding_a_control_plane`]: starts a control plane
/// in a temporary directory, reports it, and waits to be interrupted.
fn hold_a_control_plane(report: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cp = runtime
        .block_on(ControlPlane::start(Options::default()))
        .unwrap();
    let mut text = format!("{}\n", cp.dir().display());
    for pid in cp.pids() {
        text.push_str(&format!("{pid}\n"));
    }
    // Written whole, then renamed: the parent never reads half a report.
    let partial = report.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, report).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Tests of clients that must fail closed need the API server to go away and come back while
/// etcd and the controller manager stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_of_an_owned_control_plane_stops_and_restarts_with_its_objects() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::Api;
    let mut cp = ControlPlane::start(Options::default()).await.unwrap();
    let ns = cp.fresh_namespace().await;
    let pids = cp.pids();
    let client = cp.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.get(&ns).await.unwrap();

    cp.stop_api_server();
    let after_stop = cp.pids();
    assert!(!alive(pids[1]), "kube-apiserver stopped");
    assert!(
        alive(pids[0]) && alive(pids[2]),
        "etcd and the controller manager run on"
    );
    assert_eq!(after_stop.len(), 3);
    assert!(
        namespaces.get(&ns).await.is_err(),
        "nothing answers while the API server is stopped"
    );

    cp.restart_api_server().await.unwrap();
    let restarted = cp.pids();
    assert_ne!(restarted[1], pids[1], "a new kube-apiserver process");
    assert!(alive(restarted[1]));
    // Same URL and certificates: a client made before the stop works again, and the objects
    // are still there.
    assert_eq!(namespaces.get(&ns).await.unwrap().metadata.name, Some(ns));
    assert!(
        cp.dir().join("kube-apiserver.log.1").exists(),
        "the first log is kept"
    );
    let all = cp.pids();
    drop(cp);
    wait_all_gone(&all);
    assert!(!alive(pids[1]));
}
