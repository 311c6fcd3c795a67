//! `testenv`: run the test control plane for people (`make testenv-up` / `make testenv-down`).
//!
//! - `testenv up [--dir .testenv]` starts it in the background and prints the kubeconfig path;
//! - `testenv down [--dir .testenv]` stops it;
//! - `testenv serve [--dir .testenv]` runs it in the foreground until SIGINT, SIGTERM or SIGHUP,
//!   then stops it in order (a second SIGINT kills it at once).
//!
//! `up` runs `serve` in a process group of its own, so that it outlives `up` and the terminal's
//! Ctrl-C; Ctrl-C while `up` waits for it stops it. `down` asks `serve` to stop, and kills it if
//! it does not within 30 s (its components die with it).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use virt_gateway_testenv::shutdown::{Signals, Stopped};
use virt_gateway_testenv::{ControlPlane, Options, leftovers, process};

#[derive(Parser)]
#[command(
    about = "A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start in the background; print where the kubeconfig is.
    Up {
        /// State directory (kubeconfig, certificates, logs, etcd data).
        #[arg(long, default_value = ".testenv")]
        dir: PathBuf,
    },
    /// Stop a control plane started with `up`.
    Down {
        #[arg(long, default_value = ".testenv")]
        dir: PathBuf,
    },
    /// Run in the foreground until interrupted.
    Serve {
        #[arg(long, default_value = ".testenv")]
        dir: PathBuf,
    },
}

const READY_FILE: &str = "ready";
const COMPONENT_PIDS_FILE: &str = "component.pids";
/// How long `down` (and an interrupted `up`) waits for `serve` to stop in order before SIGKILL.
/// `serve`'s own stop is bounded by three times
/// [`virt_gateway_testenv::control_plane::STOP_GRACE`].
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Up { dir } => up(&dir),
        Cmd::Down { dir } => down(&dir),
        Cmd::Serve { dir } => serve(&dir),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("cannot start a runtime: {e}");
        ExitCode::FAILURE
    })
}

/// The `serve` process that runs the control plane of `dir`, if it is running.
fn running_pid(dir: &Path) -> Option<u32> {
    leftovers::live_owner(dir)
}

fn print_usage_hint(dir: &Path) {
    let kubeconfig = dir.join("kubeconfig");
    println!("control plane ready; kubeconfig: {}", kubeconfig.display());
    println!("  export KUBECONFIG={}", absolute(&kubeconfig).display());
    println!(
        "  export PATH={}:$PATH   # kubectl",
        absolute(&dir.join("bin")).display()
    );
    println!("  stop it with: make testenv-down");
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn up(dir: &Path) -> ExitCode {
    if let Some(pid) = running_pid(dir)
        && dir.join(READY_FILE).exists()
    {
        println!("already running (pid {pid})");
        print_usage_hint(dir);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let _ = std::fs::remove_file(dir.join(READY_FILE));
    let log_path = dir.join("testenv.log");
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot create {}: {e}", log_path.display());
            return ExitCode::FAILURE;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find this program: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async {
        // Caught before `serve` exists: Ctrl-C while it starts stops it rather than leaving it
        // to come up in the background unasked.
        let mut signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot catch signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "starting the control plane in the background (log: {})",
            log_path.display()
        );
        let mut child = match Command::new(exe)
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            // Its own process group: it outlives this command, and the terminal's Ctrl-C.
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot start the control plane: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The first run may build the binaries: allow for that.
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            if dir.join(READY_FILE).exists() {
                print_usage_hint(dir);
                return ExitCode::SUCCESS;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // A Ctrl-C that lands while `serve` is being spawned reaches it too: between fork
                // and its setpgid it is still in our process group. That is an interruption.
                if std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGINT) {
                    eprintln!("SIGINT: the control plane was interrupted while starting");
                    clear_state_files(dir);
                    return ExitCode::from(130);
                }
                eprintln!(
                    "the control plane exited ({status}); last lines of {}:\n{}",
                    log_path.display(),
                    process::tail(&log_path, 40)
                );
                return ExitCode::FAILURE;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "timed out waiting for the control plane; stopping it; see {}",
                    log_path.display()
                );
                stop_child(&mut child);
                return ExitCode::FAILURE;
            }
            tokio::select! {
                signal = signals.recv() => {
                    eprintln!("{signal}: stopping the control plane that was starting");
                    let stopped = tokio::task::spawn_blocking(move || stop_child(&mut child)).await;
                    clear_state_files(dir);
                    return if stopped.is_ok() { ExitCode::from(130) } else { ExitCode::FAILURE };
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
}

/// Stops our `serve` child: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`] (its control plane
/// dies with it, through `PR_SET_PDEATHSIG`).
fn stop_child(child: &mut std::process::Child) {
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) on a pid we started or that `serve` recorded with its start time.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

fn down(dir: &Path) -> ExitCode {
    let Some(pid) = running_pid(dir) else {
        println!("no control plane running for {}", dir.display());
        clear_state_files(dir);
        return ExitCode::SUCCESS;
    };
    let components = read_pids(&dir.join(COMPONENT_PIDS_FILE));
    signal(pid, libc::SIGTERM);
    if wait_gone(&[pid], STOP_TIMEOUT) {
        println!("control plane stopped");
        return ExitCode::SUCCESS;
    }
    // `serve` is stuck: SIGKILL it, and the kernel kills its components (PR_SET_PDEATHSIG).
    eprintln!(
        "control plane (pid {pid}) did not stop within {}s; killing it",
        STOP_TIMEOUT.as_secs()
    );
    signal(pid, libc::SIGKILL);
    let mut all = components;
    all.push(pid);
    if !wait_gone(&all, Duration::from_secs(10)) {
        eprintln!("processes still running: {all:?}");
        return ExitCode::FAILURE;
    }
    clear_state_files(dir);
    println!("control plane killed");
    ExitCode::SUCCESS
}

fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|p| process::alive(*p)) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Removes the files that say a control plane runs in `dir` (its data and certificates stay).
fn clear_state_files(dir: &Path) {
    for f in [READY_FILE, leftovers::OWNER_FILE, COMPONENT_PIDS_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn serve(dir: &Path) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let mut signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot catch signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        // A fresh cluster each time: old etcd data would hold objects signed by an old CA.
        let _ = std::fs::remove_dir_all(dir.join("etcd"));
        clear_state_files(dir);
        if let Err(e) = leftovers::claim(dir) {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        let options = Options {
            dir: Some(dir.to_path_buf()),
            ..Options::default()
        };
        let cp = match signals.start_or_cancel(ControlPlane::start(options)).await {
            Ok(Ok(cp)) => cp,
            Ok(Err(e)) => {
                eprintln!("{e}");
                clear_state_files(dir);
                return ExitCode::FAILURE;
            }
            Err((signal, stopped)) => {
                eprintln!("{signal} while starting: stopped ({stopped:?})");
                clear_state_files(dir);
                return ExitCode::from(130);
            }
        };
        // kubectl next to the kubeconfig, so `export PATH=.testenv/bin:$PATH` is all a person needs.
        let bin = dir.join("bin");
        let _ = std::fs::create_dir_all(&bin);
        let _ = std::fs::remove_file(bin.join("kubectl"));
        if let Err(e) = std::os::unix::fs::symlink(cp.binary("kubectl"), bin.join("kubectl")) {
            eprintln!("cannot link kubectl into {}: {e}", bin.display());
        }
        let pids: Vec<String> = cp.pids().iter().map(u32::to_string).collect();
        let written = std::fs::write(dir.join(COMPONENT_PIDS_FILE), pids.join("\n"))
            .and_then(|_| std::fs::write(dir.join(READY_FILE), cp.api_server_url()));
        if let Err(e) = written {
            eprintln!("cannot write state files in {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        eprintln!("control plane ready at {}", cp.api_server_url());
        let signal = signals.recv().await;
        eprintln!(
            "{signal}: stopping kube-controller-manager, kube-apiserver, etcd (SIGINT again to force)"
        );
        let stopped = signals.stop_or_force(move || drop(cp)).await;
        clear_state_files(dir);
        match stopped {
            Stopped::Orderly => {
                eprintln!("stopped");
                ExitCode::SUCCESS
            }
            Stopped::Forced => {
                eprintln!("forced: every process killed");
                ExitCode::from(130)
            }
        }
    })
}
