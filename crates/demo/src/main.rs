//! `make demo`: the whole product on this machine, and a console link that works.
//!
//! It runs until Ctrl-C (SIGINT), SIGTERM or SIGHUP, however they arrive: to it alone, or to
//! its whole process group with `make`, as a terminal sends Ctrl-C. Its processes each run in a
//! process group of their own, so they see no signal but the ones it sends, in order (gateway
//! and operator, VNC servers, kube-controller-manager, kube-apiserver, etcd last), each with a
//! grace period before SIGKILL. A second Ctrl-C kills what is left at once. Its state directory
//! (`.demo/`) is removed whatever happens; one left by a demo killed outright (SIGKILL, whose
//! processes the kernel kills: `PR_SET_PDEATHSIG`) is removed by the next.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use virt_gateway_demo::stack::{OBSERVER_TOKEN, SAMPLE_TOKEN, SAMPLES_NAMESPACE};
use virt_gateway_demo::{Stack, StackOptions};
use virt_gateway_testenv::leftovers;
use virt_gateway_testenv::shutdown::{Signals, Stopped};

const VNC_PATH: &str =
    "/k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances";

/// The whole product on this machine: control plane, Dex, operator, seed samples, KubeVirt
/// stand-in and the gateway run from the operator's Deployment; prints a console link and a
/// sign-in URL. Ctrl-C stops it.
#[derive(Parser)]
#[command(name = "virt-gateway-demo")]
struct Cli {
    /// State directory (kubeconfig, logs, the gateway pod's files, the `bin/` to put on PATH);
    /// removed when the demo stops. Default: `.demo` in the repository.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// How a run ended.
enum Outcome {
    /// Exit with this code.
    Exit(ExitCode),
    /// A second Ctrl-C killed every process: exit at once, without waiting for anything.
    Forced,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // First of all: from here on, Ctrl-C is ours to handle, even during set-up.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("[demo] cannot catch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let repo = std::env::var_os("VIRT_GATEWAY_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let repo = repo.canonicalize().unwrap_or(repo);
    let dir = cli.dir.unwrap_or_else(|| repo.join(".demo"));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    if let Err(why) = claim_state_dir(&dir) {
        eprintln!("[demo] {why}");
        return ExitCode::FAILURE;
    }

    let outcome = run(&mut signals, &repo, &dir).await;
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("[demo] cannot remove {}: {e}", dir.display());
    }
    match outcome {
        Outcome::Exit(code) => code,
        Outcome::Forced => std::process::exit(130),
    }
}

async fn run(signals: &mut Signals, repo: &Path, dir: &Path) -> Outcome {
    let mut options = StackOptions::from_repo(repo);
    options.dir = Some(dir.to_path_buf());
    options.sign_in = true;
    options.shared_consoles = true;
    let plugin = options.operator_binary.with_file_name("kubectl-gate");
    if !plugin.is_file() {
        eprintln!(
            "[demo] the kubectl plugin {} is missing: build it with `cargo build --bins` (make demo does)",
            plugin.display()
        );
        return Outcome::Exit(ExitCode::FAILURE);
    }

    let started = Instant::now();
    let step =
        move |what: &str| eprintln!("[demo {:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let stack = match signals.start_or_cancel(Stack::start(options, step)).await {
        Ok(Ok(stack)) => stack,
        Ok(Err(e)) => {
            eprintln!("\n[demo] failed: {e}");
            return Outcome::Exit(ExitCode::FAILURE);
        }
        Err((signal, stopped)) => {
            eprintln!("\n[demo] {signal} during set-up: stopped what had started");
            return stopped_outcome(stopped);
        }
    };
    let setup = started.elapsed();
    let bin = match link_tools(dir, &stack, &plugin) {
        Ok(bin) => bin,
        Err(e) => {
            eprintln!("[demo] {e}");
            let _ = tokio::task::spawn_blocking(move || stack.shutdown()).await;
            return Outcome::Exit(ExitCode::FAILURE);
        }
    };
    print_instructions(&stack, setup.as_secs_f64(), &bin, dir).await;

    let signal = signals.recv().await;
    eprintln!("\n[demo] {signal}: stopping (press Ctrl-C again to kill everything at once)");
    let stopped = signals.stop_or_force(move || stack.shutdown()).await;
    stopped_outcome(stopped)
}

fn stopped_outcome(stopped: Stopped) -> Outcome {
    match stopped {
        Stopped::Orderly => {
            eprintln!("[demo] stopped");
            Outcome::Exit(ExitCode::SUCCESS)
        }
        Stopped::Forced => {
            eprintln!("[demo] forced: every process killed");
            Outcome::Forced
        }
    }
}

/// Makes `dir` this demo's: refuses the directory of a demo that is running, removes one left
/// behind by a demo that was killed, and marks it as owned by this process.
fn claim_state_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        if let Some(pid) = leftovers::live_owner(dir) {
            return Err(format!(
                "a demo is already running in {} (pid {pid}): stop it with Ctrl-C in its terminal, or `kill {pid}`",
                dir.display()
            ));
        }
        let a_demos = dir.join(leftovers::OWNER_FILE).is_file() || dir.join("cluster").is_dir();
        let empty = dir.read_dir().is_ok_and(|mut d| d.next().is_none());
        if !a_demos && !empty {
            return Err(format!(
                "{} exists and is not a demo's state directory; choose another --dir",
                dir.display()
            ));
        }
        if a_demos {
            eprintln!(
                "[demo] removing {}, left behind by an earlier demo",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    leftovers::claim(dir).map_err(|e| e.to_string())
}

/// `<dir>/bin` with `kubectl` and the `kubectl-gate` plugin, for the PATH the demo prints.
fn link_tools(dir: &Path, stack: &Stack, plugin: &Path) -> Result<PathBuf, String> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    for (name, target) in [
        ("kubectl", stack.control_plane().binary("kubectl")),
        ("kubectl-gate", plugin.to_path_buf()),
    ] {
        let link = bin.join(name);
        std::os::unix::fs::symlink(&target, &link).map_err(|e| {
            format!(
                "cannot link {} to {}: {e}",
                link.display(),
                target.display()
            )
        })?;
    }
    Ok(bin)
}

/// The commands a person can paste next, each with what it shows. `crates/demo/tests` runs
/// them exactly as printed, and checks that the README lists the same.
fn try_next(kubeconfig: &Path, bin: &Path) -> Vec<(String, &'static str)> {
    vec![
        (
            format!(
                "export KUBECONFIG={} PATH={}:$PATH",
                kubeconfig.display(),
                bin.display()
            ),
            "kubectl and the kubectl gate plugin, on this cluster",
        ),
        (
            format!(
                "kubectl gate token testvm2 -n default --server-namespace {SAMPLES_NAMESPACE} --duration 30m"
            ),
            "prints a link to the second VM's console: open it",
        ),
        (
            format!("kubectl gate list -n {SAMPLES_NAMESPACE}"),
            "the GateTokens and their time left",
        ),
        (
            format!("kubectl gate revoke {SAMPLE_TOKEN} -n {SAMPLES_NAMESPACE}"),
            "the first console closes: its link is revoked",
        ),
    ]
}

async fn print_instructions(stack: &Stack, setup_seconds: f64, bin: &Path, dir: &Path) {
    let url = stack.gateway_url().to_string();
    let token = stack.sample_token.clone();
    // Show, not tell: one allowed and one refused request through the gateway.
    let allowed = websocket_probe(&url, &format!("{VNC_PATH}/testvm/vnc"), &token).await;
    let refused = websocket_probe(&url, &format!("{VNC_PATH}/testvm2/vnc"), &token).await;

    println!();
    println!("virt-gateway demo is running (set up in {setup_seconds:.1}s).");
    println!();
    println!("Open testvm's console (the seed GateToken `{SAMPLE_TOKEN}` allows exactly that):");
    println!();
    println!("  {}", stack.console_link(&token, "testvm"));
    println!();
    if let Some(observer) = &stack.observer_token {
        println!(
            "Consoles are shared (spec.consoles.shared): open it twice, or hand out the view-only link"
        );
        println!(
            "(GateToken `{OBSERVER_TOKEN}`, consoleRole: observe): the same screen, its keys and mouse never reach the VM:"
        );
        println!();
        println!("  {}", stack.console_link(observer, "testvm"));
        println!();
    }
    if let Some(sign_in) = &stack.sign_in {
        println!("Or sign in with Dex (the cluster's identity provider) and see \"Your VMs\":");
        println!();
        println!("  {}", sign_in.url);
        println!(
            "  user {}   password {}   (Kubernetes sees {})",
            sign_in.email, sign_in.password, sign_in.kubernetes_user
        );
        println!();
        println!(
            "  testvm opens with your own identity; \"Share\" makes a link that opens in this gateway."
        );
        println!();
    }
    println!("The gateway runs with the operator's command line:");
    println!("  {}", stack.gateway_command_line().join(" "));
    println!();
    println!("Allowed — testvm's VNC WebSocket answers with the RFB banner:");
    println!(
        "  TOKEN=$({} -n {SAMPLES_NAMESPACE} get gatetoken {SAMPLE_TOKEN} -o jsonpath='{{.status.token}}')",
        stack.kubectl_prefix()
    );
    println!("  {}", curl_line(&url, "testvm"));
    println!("  => {allowed}");
    println!("Refused — the same token for testvm2:");
    println!("  {}", curl_line(&url, "testvm2"));
    println!("  => {refused}");
    println!();
    println!(
        "logs: {} (operator), {} (gateway)",
        stack.operator_log().display(),
        stack.gateway_log().display()
    );
    println!();
    println!("Try next, in another terminal:");
    println!();
    let commands = try_next(stack.control_plane().kubeconfig(), bin);
    let width = commands.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, what) in commands {
        println!("  {command:width$}   # {what}");
    }
    println!();
    println!(
        "Press Ctrl-C to stop: every process stops and {} is removed.",
        dir.display()
    );
}

fn curl_line(url: &str, vm: &str) -> String {
    format!(
        "curl -s --max-time 2 --http1.1 -o - -w '\\n%{{http_code}}\\n' -H 'Authorization: Bearer '$TOKEN -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Protocol: plain.kubevirt.io' {url}{VNC_PATH}/{vm}/vnc"
    )
}

/// Opens the VNC WebSocket through the gateway and describes what came back: `101` and the VNC
/// server's first bytes, or the refusal's status line and message.
async fn websocket_probe(url: &str, path: &str, token: &str) -> String {
    let authority = url.trim_start_matches("http://");
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else {
        return "cannot connect to the gateway".into();
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: plain.kubevirt.io\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return "the gateway closed the connection".into();
    }
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(3).any(|w| w == b"RFB") || got.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    let status = text.lines().next().unwrap_or("no answer").to_string();
    if status.contains(" 101 ") {
        // The first WebSocket frame carries the RFB ProtocolVersion ("RFB 003.008\n").
        let banner = text
            .find("RFB ")
            .map(|i| text[i..].chars().take(11).collect::<String>())
            .unwrap_or_default();
        format!("{status}, then the VNC server says {banner:?}")
    } else {
        // The refusal is a Kubernetes Status object; show its message.
        let message = text
            .split_once("\r\n\r\n")
            // The body may be chunked: take the JSON object inside it.
            .and_then(|(_, body)| Some(&body[body.find('{')?..=body.rfind('}')?]))
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        format!("{status}: {message}")
    }
}
