//! `testenv`: run the test control plane for people (`make testenv-up` / `make testenv-down`).
//!
//! - `testenv up [--dir .testenv]` starts it in the background and prints the kubeconfig path;
//! - `testenv down [--dir .testenv]` stops it;
//! - `testenv serve [--dir .testenv]` runs it in the foreground until SIGINT or SIGTERM.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use virt_gateway_testenv::{ControlPlane, Options, process};

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

const PID_FILE: &str = "testenv.pid";
const READY_FILE: &str = "ready";

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Up { dir } => up(&dir),
        Cmd::Down { dir } => down(&dir),
        Cmd::Serve { dir } => serve(&dir),
    }
}

fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
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
    while Instant::now() < deadline {
        if dir.join(READY_FILE).exists() {
            print_usage_hint(dir);
            return ExitCode::SUCCESS;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "the control plane exited ({status}); last lines of {}:\n{}",
                log_path.display(),
                process::tail(&log_path, 40)
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "timed out waiting for the control plane; see {}",
        log_path.display()
    );
    ExitCode::FAILURE
}

fn down(dir: &Path) -> ExitCode {
    let Some(pid) = running_pid(dir) else {
        println!("no control plane running for {}", dir.display());
        return ExitCode::SUCCESS;
    };
    // SAFETY: sending SIGTERM to the pid recorded by `serve`.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // SAFETY: signal 0 only checks existence.
        if unsafe { libc::kill(pid, 0) } != 0 {
            println!("control plane stopped");
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("control plane (pid {pid}) did not stop within 30s");
    ExitCode::FAILURE
}

fn serve(dir: &Path) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // A fresh cluster each time: old etcd data would hold objects signed by an old CA.
        let _ = std::fs::remove_dir_all(dir.join("etcd"));
        let _ = std::fs::remove_file(dir.join(READY_FILE));
        let options = Options {
            dir: Some(dir.to_path_buf()),
            ..Options::default()
        };
        let mut cp = match ControlPlane::start(options).await {
            Ok(cp) => cp,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
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
        let written = std::fs::write(dir.join(PID_FILE), std::process::id().to_string())
            .and_then(|_| std::fs::write(dir.join("component.pids"), pids.join("\n")))
            .and_then(|_| std::fs::write(dir.join(READY_FILE), cp.api_server_url()));
        if let Err(e) = written {
            eprintln!("cannot write state files in {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        eprintln!("control plane ready at {}", cp.api_server_url());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("stopping");
        cp.stop();
        for f in [READY_FILE, PID_FILE, "component.pids"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        ExitCode::SUCCESS
    })
}
