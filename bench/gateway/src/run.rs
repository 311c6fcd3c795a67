//! The orchestrator: processes, scenarios (interleaved rounds), raw results and the report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use virt_gateway_auth::jwt::{self, Claims};
use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};
use virt_gateway_testenv::certs::Authority;

use crate::net::{HttpConn, Target, tls_client};
use crate::openloop::{self, OpenLoopResult};
use crate::procs;
use crate::report;
use crate::tokencache::{self, EndToEnd, MicroRound};
use crate::wrk::{self, WrkResult};
use crate::wsbench;

/// The object every HTTP benchmark GETs (a ConfigMap on the real API server).
pub const OBJECT_PATH: &str = "/api/v1/namespaces/bench/configmaps/bench";
/// The WebSocket path (a VNC console path: what the gateway streams in production).
pub const WS_PATH: &str =
    "/apis/subresources.kubevirt.io/v1/namespaces/bench/virtualmachineinstances/testvm/vnc";

/// `gateway-bench run` options.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// The short smoke version (a few minutes).
    #[arg(long)]
    pub quick: bool,
    /// The gateway binary (release build).
    #[arg(long, default_value = "target/release/kube-gateway")]
    pub gateway: PathBuf,
    /// Directory for the raw results (a `full` or `quick` subdirectory is used).
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// The Markdown report (default: bench/RESULTS.md for the full run, <out-dir>/quick/RESULTS.md
    /// for the quick one).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Skip the real kube-apiserver scenario (no control plane).
    #[arg(long)]
    pub skip_apiserver: bool,
    /// Only these sections (http, fixed, ws, token, idle, apiserver, profile); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Criterion's output directory (the auth benches of `make bench`).
    #[arg(long, default_value = "target/criterion")]
    pub criterion_dir: PathBuf,
    /// Skip the profiles (perf record -e cpu-clock at concurrency 16, written to
    /// <out-dir>/<mode>/profile-gateway.txt; callgrind, see below).
    #[arg(long)]
    pub no_profile: bool,
    /// Only the profiles: perf (see --no-profile) and callgrind, which counts the gateway's
    /// instructions per proxied request (deterministic, whatever the machine's load) and writes
    /// the inclusive profile to <out-dir>/<mode>/callgrind-gateway.txt.
    #[arg(long)]
    pub profile_only: bool,
    /// Hand-written analysis appended to the report.
    #[arg(long, default_value = "bench/gateway/NOTES.md")]
    pub notes: PathBuf,
}

/// Sizes of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `quick` or `full`.
    pub mode: String,
    /// Interleaved rounds of the closed-loop HTTP runs against the minimal upstream.
    pub http_rounds: u32,
    /// Seconds per wrk run.
    pub http_secs: f64,
    /// Seconds of unrecorded warm-up per target and concurrency.
    pub warmup_secs: f64,
    /// Concurrency levels.
    pub concurrency: Vec<u32>,
    /// Fixed rate, requests/s.
    pub fixed_rate: f64,
    /// Seconds per fixed-rate run.
    pub fixed_secs: f64,
    /// Connections of the fixed-rate generator.
    pub fixed_connections: usize,
    /// Rounds of fixed-rate runs.
    pub fixed_rounds: u32,
    /// Bytes per WebSocket transfer and direction.
    pub ws_bytes: u64,
    /// Rounds of WebSocket transfers.
    pub ws_rounds: u32,
    /// Idle session counts.
    pub idle_sessions: Vec<usize>,
    /// Rounds per idle session count (each with a fresh gateway process).
    pub idle_rounds: u32,
    /// Rounds against the real kube-apiserver.
    pub api_rounds: u32,
    /// Seconds per wrk run against the real kube-apiserver.
    pub api_secs: f64,
    /// Fresh tokens for the cache-miss measurements.
    pub fresh_tokens: usize,
    /// Rounds of the in-process token-cache measurement.
    pub micro_rounds: u32,
    /// Also measure a gateway with an HTTPS listener (at concurrency 16).
    pub tls_listen: bool,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                mode: "quick".into(),
                http_rounds: 2,
                http_secs: 2.0,
                warmup_secs: 1.0,
                concurrency: vec![1, 16, 128],
                fixed_rate: 2000.0,
                fixed_secs: 3.0,
                fixed_connections: 32,
                fixed_rounds: 2,
                ws_bytes: 64 << 20,
                ws_rounds: 2,
                idle_sessions: vec![1000, 5000],
                idle_rounds: 1,
                api_rounds: 1,
                api_secs: 2.0,
                fresh_tokens: 40,
                micro_rounds: 2,
                tls_listen: false,
            }
        } else {
            Self {
                mode: "full".into(),
                http_rounds: 5,
                http_secs: 5.0,
                warmup_secs: 1.0,
                concurrency: vec![1, 16, 128],
                fixed_rate: 2000.0,
                fixed_secs: 10.0,
                fixed_connections: 32,
                fixed_rounds: 5,
                ws_bytes: 1 << 30,
                ws_rounds: 3,
                idle_sessions: vec![1000, 5000],
                idle_rounds: 3,
                api_rounds: 3,
                api_secs: 5.0,
                fresh_tokens: 300,
                micro_rounds: 5,
                tls_listen: true,
            }
        }
    }
}

/// One closed-loop run.
#[derive(Clone, Debug, Serialize)]
pub struct HttpRun {
    /// `minimal` or `kube-apiserver`.
    pub upstream: String,
    /// `direct`, `gateway` or `gateway-tls`.
    pub target: String,
    /// Connections.
    pub concurrency: u32,
    /// Round (runs of one round are back to back).
    pub round: u32,
    /// Requests/s.
    pub rps: f64,
    /// wrk's figures.
    pub wrk: WrkResult,
    /// CPU seconds each watched process used during the run.
    pub cpu_s: BTreeMap<String, f64>,
    /// CPU seconds per 100,000 requests of each watched process.
    pub cpu_per_100k: BTreeMap<String, f64>,
    /// Load average before the run.
    pub loadavg: String,
}

/// One fixed-rate run.
#[derive(Clone, Debug, Serialize)]
pub struct FixedRun {
    /// Round.
    pub round: u32,
    /// The generator's figures.
    #[serde(flatten)]
    pub result: OpenLoopResult,
    /// CPU seconds per 100,000 requests of each watched process.
    pub cpu_per_100k: BTreeMap<String, f64>,
}

/// One WebSocket transfer.
#[derive(Clone, Debug, Serialize)]
pub struct WsRun {
    /// Round.
    pub round: u32,
    /// `direct` or `gateway`.
    pub target: String,
    /// `client-to-server` or `server-to-client`.
    pub direction: String,
    /// Payload bytes.
    pub bytes: u64,
    /// Seconds.
    pub seconds: f64,
    /// 10^6 bytes per second.
    pub mb_per_s: f64,
    /// CPU seconds of each watched process.
    pub cpu_s: BTreeMap<String, f64>,
}

/// Idle sessions held through one fresh gateway.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRun {
    /// Round.
    pub round: u32,
    /// Sessions.
    pub sessions: usize,
    /// Gateway RSS before opening them, KiB.
    pub gateway_rss_before_kib: u64,
    /// Gateway RSS with all open (2 s after the last), KiB.
    pub gateway_rss_open_kib: u64,
    /// Gateway RSS 2 s after closing them all, KiB.
    pub gateway_rss_closed_kib: u64,
    /// (open − before) / sessions, KiB.
    pub gateway_kib_per_session: f64,
    /// Gateway threads with all open.
    pub gateway_threads: u64,
    /// Upstream (a plain Rust TLS WebSocket server) RSS delta per session, KiB, for comparison.
    pub upstream_kib_per_session: f64,
    /// Seconds to open them all.
    pub open_secs: f64,
}

/// One try to install the Go gateway.
#[derive(Clone, Debug, Serialize)]
pub struct GoTry {
    /// The command.
    pub command: String,
    /// Exit code.
    pub exit: Option<i32>,
    /// What it printed.
    pub output: String,
}

/// A criterion figure of the auth core.
#[derive(Clone, Debug, Serialize)]
pub struct CriterionFigure {
    /// `group/function`.
    pub id: String,
    /// Median, ns.
    pub median_ns: f64,
    /// Lower and upper bound of the median's confidence interval, ns.
    pub ci_ns: (f64, f64),
}

/// The machine.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    /// Entries in display order.
    pub facts: Vec<(String, String)>,
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// Sizes.
    pub plan: Plan,
    /// Start, UTC.
    pub started: String,
    /// End, UTC.
    pub finished: String,
    /// Wall time, s.
    pub wall_secs: f64,
    /// The machine.
    pub machine: Machine,
    /// What the load average was at the start and the end, and the busiest processes at start.
    pub load: Vec<(String, String)>,
    /// The Go gateway install attempts.
    pub go_peer: Vec<GoTry>,
    /// Closed-loop HTTP runs.
    pub http: Vec<HttpRun>,
    /// Fixed-rate runs.
    pub fixed: Vec<FixedRun>,
    /// WebSocket transfers.
    pub ws: Vec<WsRun>,
    /// Idle sessions.
    pub idle: Vec<IdleRun>,
    /// In-process token verification.
    pub token_micro: Vec<MicroRound>,
    /// End-to-end first vs repeated request.
    pub token_e2e: Vec<EndToEnd>,
    /// Criterion figures of the auth core, when `make bench` ran them.
    pub criterion: Vec<CriterionFigure>,
    /// When criterion last wrote them (UTC).
    pub criterion_date: Option<String>,
    /// Sections that failed, with the error.
    pub failures: Vec<(String, String)>,
    /// Token size, bytes.
    pub token_bytes: usize,
    /// callgrind: instructions of the gateway per proxied request (cached token, minimal upstream).
    pub callgrind: Option<Callgrind>,
}

/// The gateway's instruction count per request, from callgrind.
#[derive(Clone, Debug, Serialize)]
pub struct Callgrind {
    /// Requests measured (after a warm-up that is not counted).
    pub requests: u64,
    /// Instructions executed by the gateway while serving them.
    pub instructions: u64,
    /// Instructions per request.
    pub per_request: f64,
    /// The same token on every request (cache hit) or a fresh token each time.
    pub fresh_tokens: bool,
}

// ------------------------------------------------------------------------------------------
// Processes.

struct Proc {
    name: String,
    child: Child,
    _stdout: Option<ChildStdout>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[bench] {} did not stop on SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn_upstream(dir: &Path, cert: &Path, key: &Path) -> Result<(Proc, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(dir.join("upstream.log"))?;
    let mut child = Command::new(exe)
        .arg("upstream")
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let stdout = child.stdout.take().context("upstream stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("upstream said {line:?}"))?;
    Ok((
        Proc {
            name: "upstream".into(),
            child,
            _stdout: Some(reader.into_inner()),
        },
        SocketAddr::from(([127, 0, 0, 1], port)),
    ))
}

struct GatewayFiles {
    key_file: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    public_dir: PathBuf,
}

/// Starts our gateway in front of `api_server`; waits until /readyz answers 200.
#[allow(clippy::too_many_arguments)]
async fn spawn_gateway(
    bin: &Path,
    dir: &Path,
    label: &str,
    files: &GatewayFiles,
    api_server: &str,
    ca_file: &Path,
    sa_file: &Path,
    tls_listen: Option<Arc<rustls::ClientConfig>>,
    wrapper: Option<&[String]>,
) -> Result<(Proc, SocketAddr)> {
    let port = free_port()?;
    let scheme = if tls_listen.is_some() {
        "https"
    } else {
        "http"
    };
    let mut args = vec![
        format!("-api-server={api_server}"),
        format!("-ca-file={}", ca_file.display()),
        format!("-listen={scheme}://127.0.0.1:{port}"),
        format!("-jwt-token-key-file={}", files.key_file.display()),
        format!("-k8s-bearer-token-file={}", sa_file.display()),
        "-k8s-bearer-token-passthrough=false".into(),
        "-oauth-server-disable".into(),
        format!("-public-dir={}", files.public_dir.display()),
    ];
    if tls_listen.is_some() {
        args.push(format!("-cert-file={}", files.serving_cert.display()));
        args.push(format!("-key-file={}", files.serving_key.display()));
    }
    let log = std::fs::File::create(dir.join(format!("{label}.log")))?;
    let mut command = match wrapper {
        None => Command::new(bin),
        Some(w) => {
            let mut c = Command::new(&w[0]);
            c.args(&w[1..]).arg(bin);
            c
        }
    };
    let child = command
        .args(&args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        // The audit log: one JSON line per request, written as in production (to stdout).
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut proc = Proc {
        name: label.into(),
        child,
        _stdout: None,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = Target {
        name: label.into(),
        addr,
        tls: tls_listen,
        prefix: String::new(),
        authorization: None,
    };
    let ready_within = if wrapper.is_some() { 180 } else { 30 };
    let deadline = Instant::now() + Duration::from_secs(ready_within);
    loop {
        if let Ok(mut c) = HttpConn::open(&probe).await
            && let Ok((200, _)) = c.get("/readyz", None).await
        {
            break;
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            let log = std::fs::read_to_string(dir.join(format!("{label}.log"))).unwrap_or_default();
            bail!("the gateway exited ({status}): {log}");
        }
        if Instant::now() > deadline {
            proc.stop();
            bail!("the gateway did not become ready within {ready_within} s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((proc, addr))
}

// ------------------------------------------------------------------------------------------
// Helpers.

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn cmd_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

fn machine() -> Machine {
    let mut facts = Vec::new();
    facts.push(("nproc".into(), cmd_output("nproc", &[])));
    let lscpu = cmd_output("lscpu", &[]);
    for key in [
        "Architecture",
        "Model name",
        "CPU(s)",
        "Thread(s) per core",
        "Core(s) per socket",
        "Socket(s)",
        "Hypervisor vendor",
        "Virtualization type",
        "L2 cache",
        "L3 cache",
    ] {
        if let Some(v) = lscpu
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
        {
            facts.push((format!("lscpu {key}"), v));
        }
    }
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.to_string())
        })
        .unwrap_or_default();
    facts.push(("memory".into(), mem.replace("MemTotal:", "").trim().into()));
    facts.push(("kernel".into(), cmd_output("uname", &["-srm"])));
    facts.push(("rustc".into(), cmd_output("rustc", &["-V"])));
    facts.push(("go".into(), cmd_output("go", &["version"])));
    facts.push((
        "wrk".into(),
        cmd_output("wrk", &["-v"])
            .lines()
            .next()
            .unwrap_or("")
            .into(),
    ));
    facts.push((
        "perf counters".into(),
        if cmd_output("perf", &["stat", "-e", "instructions", "true"]).contains("not supported") {
            "not supported (KVM guest without a PMU): profiles use perf's cpu-clock sampling".into()
        } else {
            "available".into()
        },
    ));
    facts.push((
        "git".into(),
        format!(
            "{} ({} paths modified or untracked)",
            cmd_output("git", &["rev-parse", "--short", "HEAD"]),
            cmd_output("git", &["status", "--porcelain"])
                .lines()
                .count()
        ),
    ));
    Machine { facts }
}

fn busiest_processes() -> String {
    cmd_output("ps", &["-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"])
        .lines()
        .take(5)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tries to install the upstream Go gateway from the Go module proxy, as issue 8 asks; records
/// every error. Nothing of it is kept.
fn go_peer(dir: &Path) -> Vec<GoTry> {
    let gobin = dir.join("gobin");
    let attempts: &[&[&str]] = &[
        &[
            "install",
            "github.com/yaacov/kube-gateway/cmd/kube-gateway@latest",
        ],
        &[
            "install",
            "github.com/yaacov/kube-gateway/cmd/kube-gateway@v0.1.0",
        ],
        &["install", "github.com/yaacov/oc-gate/cmd/oc-gate@latest"],
        &["list", "-m", "-versions", "github.com/yaacov/kube-gateway"],
        &["list", "-m", "-versions", "github.com/yaacov/oc-gate"],
    ];
    let mut tries = Vec::new();
    for args in attempts {
        let out = Command::new("timeout")
            .arg("120")
            .arg("go")
            .args(*args)
            .env("GOBIN", &gobin)
            .env("GOFLAGS", "-mod=mod")
            .current_dir(dir)
            .output();
        let (exit, output) = match out {
            Ok(o) => (
                o.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
                .trim()
                .to_string(),
            ),
            Err(e) => (None, e.to_string()),
        };
        tries.push(GoTry {
            command: format!("GOFLAGS=-mod=mod go {}", args.join(" ")),
            exit,
            output,
        });
    }
    tries
}

fn criterion_figures(dir: &Path) -> Vec<CriterionFigure> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let bench = std::fs::read_to_string(p.join("benchmark.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
                let est = std::fs::read_to_string(p.join("estimates.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
                if let (Some(b), Some(e)) = (bench, est) {
                    let id = b["full_id"].as_str().unwrap_or("").to_string();
                    let m = &e["median"];
                    if let Some(median) = m["point_estimate"].as_f64() {
                        out.push(CriterionFigure {
                            id,
                            median_ns: median,
                            ci_ns: (
                                m["confidence_interval"]["lower_bound"]
                                    .as_f64()
                                    .unwrap_or(f64::NAN),
                                m["confidence_interval"]["upper_bound"]
                                    .as_f64()
                                    .unwrap_or(f64::NAN),
                            ),
                        });
                    }
                }
            } else if p.file_name().is_some_and(|n| n != "report" && n != "base") {
                stack.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The newest modification time of criterion's estimates, UTC.
fn criterion_date(dir: &Path) -> Option<String> {
    let mut newest: Option<std::time::SystemTime> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "estimates.json")
                && let Ok(t) = e.metadata().and_then(|m| m.modified())
            {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
    }
    let t = jiff::Timestamp::try_from(newest?).ok()?;
    Some(
        t.round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    )
}

fn cpu_map(pids: &[(String, u32)]) -> BTreeMap<String, f64> {
    pids.iter()
        .map(|(n, p)| (n.clone(), procs::cpu_seconds(*p)))
        .collect()
}

fn cpu_delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(f64::NAN)))
        .collect()
}

fn per_100k(cpu: &BTreeMap<String, f64>, requests: u64) -> BTreeMap<String, f64> {
    cpu.iter()
        .map(|(k, v)| (k.clone(), v / requests.max(1) as f64 * 100_000.0))
        .collect()
}

/// Round `r` runs the targets in order for even rounds and reversed for odd ones (A B, B A, ...),
/// so that a drifting machine load hits each side equally.
fn round_order<T: Clone>(items: &[T], round: u32) -> Vec<T> {
    let mut v = items.to_vec();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

async fn check_ok(target: &Target, path: &str) -> Result<()> {
    let mut c = HttpConn::open(target).await?;
    let (status, len) = c.get(path, None).await?;
    if status != 200 {
        bail!("{}: GET {path} answered {status}", target.name);
    }
    eprintln!(
        "[bench] {} {} → 200, {len} bytes",
        target.name,
        target.url(path)
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    upstream: &str,
    targets_for: &dyn Fn(u32) -> Vec<Target>,
    concurrency: &[u32],
    rounds: u32,
    secs: f64,
    warmup: f64,
    watch: &[(String, u32)],
    script: &Path,
    out: &mut Vec<HttpRun>,
) -> Result<()> {
    for &c in concurrency {
        let targets = targets_for(c);
        for t in &targets {
            let (s, url, auth) = (
                script.to_path_buf(),
                t.url(OBJECT_PATH),
                t.authorization.clone(),
            );
            tokio::task::spawn_blocking(move || wrk::run(&s, &url, c, warmup, auth.as_deref()))
                .await??;
        }
        for round in 0..rounds {
            for t in round_order(&targets, round) {
                let loadavg = procs::loadavg();
                let before = cpu_map(watch);
                let (s, url, auth) = (
                    script.to_path_buf(),
                    t.url(OBJECT_PATH),
                    t.authorization.clone(),
                );
                let result = tokio::task::spawn_blocking(move || {
                    wrk::run(&s, &url, c, secs, auth.as_deref())
                })
                .await??;
                let cpu = cpu_delta(&before, &cpu_map(watch));
                let run = HttpRun {
                    upstream: upstream.into(),
                    target: t.name.clone(),
                    concurrency: c,
                    round,
                    rps: result.rps(),
                    cpu_per_100k: per_100k(&cpu, result.requests),
                    cpu_s: cpu,
                    wrk: result,
                    loadavg,
                };
                eprintln!(
                    "[bench] {upstream} c={c} round {round} {:<11} {:>8.0} req/s p50 {:>6} µs p99 {:>6} µs p99.9 {:>6} µs errors {} cpu/100k {:?}",
                    run.target,
                    run.rps,
                    run.wrk.p50_us,
                    run.wrk.p99_us,
                    run.wrk.p999_us,
                    run.wrk.errors(),
                    run.cpu_per_100k
                        .iter()
                        .map(|(k, v)| format!("{k}={v:.2}s"))
                        .collect::<Vec<_>>()
                );
                out.push(run);
            }
        }
    }
    Ok(())
}

fn want(args: &RunArgs, section: &str) -> bool {
    if args.profile_only {
        return section == "profile";
    }
    args.only.is_empty() || args.only.iter().any(|s| s == section)
}

// ------------------------------------------------------------------------------------------
// The run.

/// Runs everything the plan asks for and writes the results.
pub async fn run(args: RunArgs) -> Result<()> {
    let plan = Plan::new(args.quick);
    let started_at = Instant::now();
    let started = now_rfc3339();
    let (soft, hard) = procs::raise_nofile(200_000);
    eprintln!("[bench] {} run; open files limit {soft}/{hard}", plan.mode);
    let work = tempfile::Builder::new()
        .prefix("virt-gateway-bench-")
        .tempdir()?;
    let dir = work.path().to_path_buf();
    let mut load = vec![
        ("load average at start".into(), procs::loadavg()),
        (
            "busiest processes at start (%CPU)".into(),
            busiest_processes(),
        ),
    ];
    let machine = machine();
    eprintln!("[bench] trying the Go peer (go install from the module proxy)");
    let go_peer = go_peer(&dir);
    let go_installed = go_peer
        .iter()
        .any(|t| t.command.contains(" install ") && t.exit == Some(0));
    if go_installed {
        eprintln!(
            "[bench] a Go gateway installed, but this harness has no Go scenario wired: it is reported, not run"
        );
    }

    // Keys, tokens, certificates.
    eprintln!("[bench] generating the RSA-4096 signing key and tokens");
    let key = KeyPair::generate(KeyAlgorithm::Rsa)?;
    let key_file = dir.join("jwt-public.pem");
    std::fs::write(&key_file, key.public_key().to_pem())?;
    let now = kube_gateway::util::now_unix();
    let claims = |jti: String| {
        let mut c = Claims::new(now + 6 * 3600);
        c.nbf = Some(now - 60);
        c.iat = Some(now - 60);
        c.jti = Some(jti);
        c.namespace = "bench".into();
        c.api_groups = Some(vec!["".into(), "subresources.kubevirt.io".into()]);
        c.resources = Some(vec![
            "configmaps".into(),
            "virtualmachineinstances".into(),
            "virtualmachineinstances/vnc".into(),
        ]);
        c.resource_names = Some(vec!["bench".into(), "testvm".into()]);
        c
    };
    let token = jwt::sign(
        &key,
        &claims("5c1e0c1c-bench-0000-0000-000000000000".into()),
    )?;
    let fresh: Vec<String> = (0..plan.fresh_tokens)
        .map(|i| jwt::sign(&key, &claims(format!("5c1e0c1c-bench-fresh-{i:012}"))))
        .collect::<Result<_, _>>()?;
    let fresh_micro: Vec<String> = (0..plan.fresh_tokens)
        .map(|i| jwt::sign(&key, &claims(format!("5c1e0c1c-bench-micro-{i:012}"))))
        .collect::<Result<_, _>>()?;
    let ca = Authority::new("virt-gateway-bench-ca")?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem())?;
    let serving = ca.serving(&["localhost"], &["127.0.0.1".parse()?])?;
    let (cert_file, serving_key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, &serving.cert_pem)?;
    std::fs::write(&serving_key_file, &serving.key_pem)?;
    let sa_file = dir.join("sa-token");
    std::fs::write(&sa_file, "bench-serviceaccount-token\n")?;
    let public_dir = dir.join("public");
    std::fs::create_dir_all(&public_dir)?;
    let files = GatewayFiles {
        key_file: key_file.clone(),
        serving_cert: cert_file.clone(),
        serving_key: serving_key_file.clone(),
        public_dir,
    };
    let client_tls = tls_client(&ca.cert_pem())?;
    let script = wrk::write_script(&dir)?;

    let mut results = Results {
        plan: plan.clone(),
        started,
        finished: String::new(),
        wall_secs: 0.0,
        machine,
        load: Vec::new(),
        go_peer,
        http: Vec::new(),
        fixed: Vec::new(),
        ws: Vec::new(),
        idle: Vec::new(),
        token_micro: Vec::new(),
        token_e2e: Vec::new(),
        criterion: criterion_figures(&args.criterion_dir),
        criterion_date: criterion_date(&args.criterion_dir),
        failures: Vec::new(),
        token_bytes: token.len(),
        callgrind: None,
    };

    // The minimal upstream and a gateway in front of it.
    let (mut upstream, upstream_addr) = spawn_upstream(&dir, &cert_file, &serving_key_file)?;
    let api_server = format!("https://{upstream_addr}");
    let (mut gw, gw_addr) = spawn_gateway(
        &args.gateway,
        &dir,
        "gateway",
        &files,
        &api_server,
        &ca_file,
        &sa_file,
        None,
        None,
    )
    .await?;
    let mut gw_tls = if plan.tls_listen && want(&args, "http") {
        Some(
            spawn_gateway(
                &args.gateway,
                &dir,
                "gateway-tls",
                &files,
                &api_server,
                &ca_file,
                &sa_file,
                Some(client_tls.clone()),
                None,
            )
            .await?,
        )
    } else {
        None
    };
    let direct = Target {
        name: "direct".into(),
        addr: upstream_addr,
        tls: Some(client_tls.clone()),
        prefix: String::new(),
        authorization: Some("Bearer bench-serviceaccount-token".into()),
    };
    let through = Target {
        name: "gateway".into(),
        addr: gw_addr,
        tls: None,
        prefix: "/k8s".into(),
        authorization: Some(format!("Bearer {token}")),
    };
    let through_tls = gw_tls.as_ref().map(|(_, addr)| Target {
        name: "gateway-tls".into(),
        addr: *addr,
        tls: Some(client_tls.clone()),
        prefix: "/k8s".into(),
        authorization: Some(format!("Bearer {token}")),
    });
    check_ok(&direct, OBJECT_PATH).await?;
    check_ok(&through, OBJECT_PATH).await?;
    if let Some(t) = &through_tls {
        check_ok(t, OBJECT_PATH).await?;
    }

    let mut watch = vec![
        ("gateway".to_string(), gw.pid()),
        ("upstream".to_string(), upstream.pid()),
    ];
    if let Some((p, _)) = &gw_tls {
        watch.push(("gateway-tls".into(), p.pid()));
    }

    // 1 + 2. Closed loop against the minimal upstream.
    if want(&args, "http") {
        eprintln!("[bench] 1. closed loop (wrk), minimal upstream");
        let targets_for = |c: u32| {
            let mut v = vec![direct.clone(), through.clone()];
            if c == 16
                && let Some(t) = &through_tls
            {
                v.push(t.clone());
            }
            v
        };
        if let Err(e) = closed_loop(
            "minimal",
            &targets_for,
            &plan.concurrency,
            plan.http_rounds,
            plan.http_secs,
            plan.warmup_secs,
            &watch,
            &script,
            &mut results.http,
        )
        .await
        {
            results.failures.push(("http".into(), format!("{e:#}")));
        }
    }
    if !args.no_profile && want(&args, "profile") {
        eprintln!("[bench] profiling the gateway at c=16 (perf record -e cpu-clock)");
        let out_dir = args.out_dir.join(&plan.mode);
        std::fs::create_dir_all(&out_dir)?;
        let ws_bytes = plan.ws_bytes.min(256 << 20);
        for (name, bytes) in [("gateway", 0), ("gateway-websocket", ws_bytes)] {
            let secs = plan.http_secs * 2.0;
            if let Err(e) = profile(&out_dir, name, gw.pid(), &script, &through, secs, bytes).await
            {
                results.failures.push(("profile".into(), format!("{e:#}")));
            }
        }
    }
    if let Some((mut p, _)) = gw_tls.take() {
        p.stop();
    }
    watch.retain(|(n, _)| n != "gateway-tls");

    // 3. Fixed rate.
    if want(&args, "fixed") {
        eprintln!(
            "[bench] 3. fixed rate {} req/s (open loop), minimal upstream",
            plan.fixed_rate
        );
        let r: Result<()> = async {
            for t in [&direct, &through] {
                openloop::run(t, OBJECT_PATH, plan.fixed_rate, Duration::from_secs(1), 8).await?;
            }
            for round in 0..plan.fixed_rounds {
                for t in round_order(&[direct.clone(), through.clone()], round) {
                    let before = cpu_map(&watch);
                    let result = openloop::run(
                        &t,
                        OBJECT_PATH,
                        plan.fixed_rate,
                        Duration::from_secs_f64(plan.fixed_secs),
                        plan.fixed_connections,
                    )
                    .await?;
                    let cpu = cpu_delta(&before, &cpu_map(&watch));
                    eprintln!(
                        "[bench] fixed round {round} {:<8} p50 {:>6.0} µs p99 {:>6.0} µs p99.9 {:>6.0} µs ok {} errors {} (release lag p99 {:.0} µs)",
                        t.name,
                        result.p50_us,
                        result.p99_us,
                        result.p999_us,
                        result.ok,
                        result.errors,
                        result.release_lag_p99_us
                    );
                    results.fixed.push(FixedRun {
                        round,
                        cpu_per_100k: per_100k(&cpu, result.ok),
                        result,
                    });
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            results.failures.push(("fixed".into(), format!("{e:#}")));
        }
    }

    // 4a. WebSocket throughput.
    if want(&args, "ws") {
        eprintln!(
            "[bench] 4. WebSocket transfers of {} MiB each way",
            plan.ws_bytes >> 20
        );
        let mut watch = watch.clone();
        watch.push(("client".into(), std::process::id()));
        let r: Result<()> = async {
            // Warm-up.
            for t in [&direct, &through] {
                wsbench::upload(t, WS_PATH, 8 << 20).await?;
                wsbench::download(t, WS_PATH, 8 << 20).await?;
            }
            for round in 0..plan.ws_rounds {
                for direction in ["client-to-server", "server-to-client"] {
                    for t in round_order(&[direct.clone(), through.clone()], round) {
                        let before = cpu_map(&watch);
                        let secs = if direction == "client-to-server" {
                            wsbench::upload(&t, WS_PATH, plan.ws_bytes).await?
                        } else {
                            wsbench::download(&t, WS_PATH, plan.ws_bytes).await?
                        };
                        let cpu = cpu_delta(&before, &cpu_map(&watch));
                        let mbps = plan.ws_bytes as f64 / secs / 1e6;
                        eprintln!(
                            "[bench] ws round {round} {direction} {:<8} {mbps:>8.1} MB/s",
                            t.name
                        );
                        results.ws.push(WsRun {
                            round,
                            target: t.name.clone(),
                            direction: direction.into(),
                            bytes: plan.ws_bytes,
                            seconds: secs,
                            mb_per_s: mbps,
                            cpu_s: cpu,
                        });
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            results.failures.push(("ws".into(), format!("{e:#}")));
        }
    }

    // 5. Token cache.
    if want(&args, "token") {
        eprintln!("[bench] 5. token cache");
        let keys = vec![key.public_key().clone()];
        for round in 0..plan.micro_rounds {
            let half = fresh_micro.len() / plan.micro_rounds.max(1) as usize;
            let slice = &fresh_micro[(round as usize * half).min(fresh_micro.len())
                ..((round as usize + 1) * half).min(fresh_micro.len())];
            match tokencache::micro_round(&key_file, &keys, &token, slice, 200_000, 500) {
                Ok(m) => {
                    eprintln!(
                        "[bench] token round {round}: hit {:.0} ns, no cache {:.0} ns, miss {:.0} ns",
                        m.hit_ns, m.nocache_ns, m.miss_ns
                    );
                    results.token_micro.push(m);
                }
                Err(e) => results.failures.push(("token".into(), format!("{e:#}"))),
            }
        }
        match tokencache::end_to_end(&through, OBJECT_PATH, &fresh).await {
            Ok(e) => {
                eprintln!(
                    "[bench] token end to end: first {:.0} µs, repeated {:.0} µs",
                    e.first_p50_us, e.repeat_p50_us
                );
                results.token_e2e.push(e);
            }
            Err(e) => results
                .failures
                .push(("token-e2e".into(), format!("{e:#}"))),
        }
    }
    gw.stop();

    if !args.no_profile && want(&args, "profile") {
        eprintln!("[bench] callgrind: instructions per proxied request");
        let out_dir = args.out_dir.join(&plan.mode);
        std::fs::create_dir_all(&out_dir)?;
        let out_file = dir.join("callgrind.gateway.out");
        let keep = std::env::var_os("BENCH_KEEP_CALLGRIND").is_some();
        let wrapper: Vec<String> = vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--instr-atstart=no".into(),
            format!("--callgrind-out-file={}", out_file.display()),
        ];
        let r: Result<Callgrind> = async {
            let (mut g, addr) = spawn_gateway(
                &args.gateway,
                &dir,
                "gateway-callgrind",
                &files,
                &api_server,
                &ca_file,
                &sa_file,
                None,
                Some(&wrapper),
            )
            .await?;
            let t = Target {
                addr,
                ..through.clone()
            };
            let mut c = HttpConn::open(&t).await?;
            for _ in 0..200 {
                c.get(OBJECT_PATH, None).await?;
            }
            let on = Command::new("callgrind_control")
                .args(["-i", "on", &g.pid().to_string()])
                .output()?;
            anyhow::ensure!(on.status.success(), "callgrind_control -i on failed");
            let n = 2000u64;
            for _ in 0..n {
                c.get(OBJECT_PATH, None).await?;
            }
            let off = Command::new("callgrind_control")
                .args(["-i", "off", &g.pid().to_string()])
                .output()?;
            anyhow::ensure!(off.status.success(), "callgrind_control -i off failed");
            drop(c);
            g.stop();
            let annotate = Command::new("callgrind_annotate")
                .args(["--inclusive=yes", "--threshold=99"])
                .arg(&out_file)
                .output()?;
            let text = String::from_utf8_lossy(&annotate.stdout).to_string();
            let exclusive = Command::new("callgrind_annotate")
                .args(["--inclusive=no", "--threshold=95"])
                .arg(&out_file)
                .output()?;
            let exclusive = String::from_utf8_lossy(&exclusive.stdout).to_string();
            let total: u64 = text
                .lines()
                .find(|l| l.contains("PROGRAM TOTALS"))
                .and_then(|l| l.split_whitespace().next())
                .map(|v| v.replace(',', ""))
                .and_then(|v| v.parse().ok())
                .context("no PROGRAM TOTALS in callgrind_annotate's output")?;
            let cut = |t: &str, n: usize| -> String {
                t.lines()
                    .skip_while(|l| !l.contains("PROGRAM TOTALS"))
                    .take(n)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let head = format!(
                "## inclusive (a function and everything it calls)\n{}\n\n## exclusive (self)\n{}",
                cut(&text, 200),
                cut(&exclusive, 80)
            );
            std::fs::write(
                out_dir.join("callgrind-gateway.txt"),
                format!(
                    "# valgrind --tool=callgrind on kube-gateway: {n} sequential GETs through it \
                     (one connection, the same token), counted after 200 uncounted ones\n\n{head}\n"
                ),
            )?;
            if keep {
                std::fs::copy(&out_file, out_dir.join("callgrind.gateway.out"))?;
            }
            Ok(Callgrind {
                requests: n,
                instructions: total,
                per_request: total as f64 / n as f64,
                fresh_tokens: false,
            })
        }
        .await;
        match r {
            Ok(c) => {
                eprintln!(
                    "[bench] callgrind: {:.0} instructions per request",
                    c.per_request
                );
                results.callgrind = Some(c);
            }
            Err(e) => results
                .failures
                .push(("callgrind".into(), format!("{e:#}"))),
        }
    }

    // 4b. Idle sessions, each count on a fresh gateway.
    if want(&args, "idle") {
        eprintln!("[bench] 4b. idle WebSocket sessions");
        let r: Result<()> = async {
            for round in 0..plan.idle_rounds {
                for &n in &plan.idle_sessions {
                    let (mut g, addr) = spawn_gateway(
                        &args.gateway,
                        &dir,
                        "gateway-idle",
                        &files,
                        &api_server,
                        &ca_file,
                        &sa_file,
                        None,
                        None,
                    )
                    .await?;
                    let t = Target {
                        addr,
                        ..through.clone()
                    };
                    // Warm up: requests and a few sessions, so that lazily built state exists.
                    let mut c = HttpConn::open(&t).await?;
                    for _ in 0..100 {
                        c.get(OBJECT_PATH, None).await?;
                    }
                    drop(c);
                    let warm = wsbench::open_idle(&t, WS_PATH, 32, 32).await?;
                    wsbench::close_all(warm).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let rss0 = procs::rss_kib(g.pid()).unwrap_or(0);
                    let up0 = procs::rss_kib(upstream.pid()).unwrap_or(0);
                    let t0 = Instant::now();
                    let sessions = wsbench::open_idle(&t, WS_PATH, n, 64).await?;
                    let open_secs = t0.elapsed().as_secs_f64();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let rss1 = procs::rss_kib(g.pid()).unwrap_or(0);
                    let up1 = procs::rss_kib(upstream.pid()).unwrap_or(0);
                    let threads = procs::threads(g.pid()).unwrap_or(0);
                    wsbench::close_all(sessions).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let rss2 = procs::rss_kib(g.pid()).unwrap_or(0);
                    g.stop();
                    let run = IdleRun {
                        round,
                        sessions: n,
                        gateway_rss_before_kib: rss0,
                        gateway_rss_open_kib: rss1,
                        gateway_rss_closed_kib: rss2,
                        gateway_kib_per_session: (rss1 as f64 - rss0 as f64) / n as f64,
                        gateway_threads: threads,
                        upstream_kib_per_session: (up1 as f64 - up0 as f64) / n as f64,
                        open_secs,
                    };
                    eprintln!(
                        "[bench] idle round {round} n={n}: gateway RSS {rss0} → {rss1} KiB ({:.1} KiB/session), after close {rss2} KiB; opened in {open_secs:.1} s",
                        run.gateway_kib_per_session
                    );
                    results.idle.push(run);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            results.failures.push(("idle".into(), format!("{e:#}")));
        }
    }
    upstream.stop();

    // 1b. The real kube-apiserver.
    if want(&args, "apiserver") && !args.skip_apiserver {
        eprintln!("[bench] 1b. real kube-apiserver (starting the test control plane)");
        if let Err(e) = apiserver(&args, &plan, &dir, &files, &token, &script, &mut results).await {
            eprintln!("[bench] kube-apiserver scenario failed: {e:#}");
            results
                .failures
                .push(("apiserver".into(), format!("{e:#}")));
        }
    }

    load.push(("load average at end".into(), procs::loadavg()));
    results.load = load;
    results.finished = now_rfc3339();
    results.wall_secs = started_at.elapsed().as_secs_f64();
    let out_dir = args.out_dir.join(&plan.mode);
    std::fs::create_dir_all(&out_dir)?;
    report::write_raw(&results, &out_dir)?;
    let report_path = args.report.clone().unwrap_or_else(|| {
        if args.quick {
            out_dir.join("RESULTS.md")
        } else {
            PathBuf::from("bench/RESULTS.md")
        }
    });
    let notes = std::fs::read_to_string(&args.notes).unwrap_or_default();
    std::fs::write(
        &report_path,
        report::markdown(&results, &out_dir, &report_path, &notes),
    )?;
    eprintln!(
        "[bench] done in {:.0} s: {} and {}",
        results.wall_secs,
        report_path.display(),
        out_dir.display()
    );
    if !results.failures.is_empty() {
        for (s, e) in &results.failures {
            eprintln!("[bench] section {s} failed: {e}");
        }
    }
    Ok(())
}

/// perf's cpu-clock sampling of the gateway under wrk at concurrency 16 (hardware counters are
/// not available in this VM).
/// With `websocket_bytes` > 0 the load is a WebSocket transfer each way instead of wrk.
async fn profile(
    out_dir: &Path,
    name: &str,
    pid: u32,
    script: &Path,
    target: &Target,
    secs: f64,
    websocket_bytes: u64,
) -> Result<()> {
    let data = out_dir.join(format!("perf-{name}.data"));
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "1999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf (apt-get install linux-perf)")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, url, auth) = (
        script.to_path_buf(),
        target.url(OBJECT_PATH),
        target.authorization.clone(),
    );
    let header = if websocket_bytes > 0 {
        let up = wsbench::upload(target, WS_PATH, websocket_bytes).await?;
        let down = wsbench::download(target, WS_PATH, websocket_bytes).await?;
        format!(
            "# perf record -e cpu-clock -F 1999 -g -p <gateway> during a WebSocket transfer of {} MiB each way ({:.0} MB/s up, {:.0} MB/s down)\n",
            websocket_bytes >> 20,
            websocket_bytes as f64 / up / 1e6,
            websocket_bytes as f64 / down / 1e6
        )
    } else {
        let result =
            tokio::task::spawn_blocking(move || wrk::run(&s, &url, 16, secs, auth.as_deref()))
                .await??;
        format!(
            "# perf record -e cpu-clock -F 1999 -g -p <gateway> during wrk -c16 ({} requests, {:.0} req/s)\n",
            result.requests,
            result.rps()
        )
    };
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(perf.id() as i32, libc::SIGINT);
    }
    perf.wait()?;
    let flat = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
            "--percent-limit",
            "0.3",
            "--sort",
            "dso,symbol",
            "-i",
        ])
        .arg(&data)
        .output()?;
    let by_dso = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
            "--sort",
            "dso",
            "-i",
        ])
        .arg(&data)
        .output()?;
    let squeeze = |raw: &[u8]| -> String {
        String::from_utf8_lossy(raw)
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("# ."))
            .map(|l| {
                let mut out = String::new();
                for w in l.split("  ").filter(|w| !w.trim().is_empty()) {
                    if !out.is_empty() {
                        out.push_str("  ");
                    }
                    out.push_str(w.trim());
                }
                out
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut text = header;
    text.push_str("\n## by shared object\n");
    text.push_str(&squeeze(&by_dso.stdout));
    text.push_str("\n\n## by symbol\n");
    text.push_str(&squeeze(&flat.stdout));
    text.push('\n');
    std::fs::write(out_dir.join(format!("profile-{name}.txt")), text)?;
    let _ = std::fs::remove_file(&data);
    Ok(())
}

async fn apiserver(
    args: &RunArgs,
    plan: &Plan,
    dir: &Path,
    files: &GatewayFiles,
    token: &str,
    script: &Path,
    results: &mut Results,
) -> Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::Api;
    use kube::api::PostParams;
    use virt_gateway_testenv::{ControlPlane, Options};

    let cp_dir = dir.join("control-plane");
    let mut cp = ControlPlane::start(Options {
        dir: Some(cp_dir),
        ..Options::default()
    })
    .await?;
    let client = cp.client().await;
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let pp = PostParams::default();
    Api::<Namespace>::all(client.clone())
        .create(
            &pp,
            &Namespace {
                metadata: meta("bench"),
                ..Default::default()
            },
        )
        .await?;
    // About 1 KiB of JSON, like the minimal upstream's body.
    let payload: String = std::iter::repeat_n('x', 600).collect();
    Api::<ConfigMap>::namespaced(client.clone(), "bench")
        .create(
            &pp,
            &ConfigMap {
                metadata: meta("bench"),
                data: Some([("payload".to_string(), payload)].into()),
                ..Default::default()
            },
        )
        .await?;
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), "bench");
    sas.create(
        &pp,
        &ServiceAccount {
            metadata: meta("gateway"),
            ..Default::default()
        },
    )
    .await?;
    Api::<Role>::namespaced(client.clone(), "bench")
        .create(
            &pp,
            &Role {
                metadata: meta("gateway"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["".into()]),
                    resources: Some(vec!["configmaps".into()]),
                    resource_names: Some(vec!["bench".into()]),
                    verbs: vec!["get".into()],
                    ..Default::default()
                }]),
            },
        )
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), "bench")
        .create(
            &pp,
            &RoleBinding {
                metadata: meta("gateway"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "gateway".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "gateway".into(),
                    namespace: Some("bench".into()),
                    ..Default::default()
                }]),
            },
        )
        .await?;
    let issued = sas
        .create_token_request("gateway", &pp, &{
            use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
            TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3 * 3600),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .await?;
    let sa_token = issued
        .status
        .and_then(|s| s.token)
        .context("no token from the TokenRequest API")?;
    let sa_file = dir.join("apiserver-sa-token");
    std::fs::write(&sa_file, format!("{sa_token}\n"))?;
    let ca_file = dir.join("apiserver-ca.pem");
    std::fs::write(&ca_file, cp.ca_pem())?;
    let api_url = cp.api_server_url().to_string();
    let api_addr: SocketAddr = api_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .context("API server address")?;
    let direct = Target {
        name: "direct".into(),
        addr: api_addr,
        tls: Some(tls_client(cp.ca_pem())?),
        prefix: String::new(),
        authorization: Some(format!("Bearer {sa_token}")),
    };
    // RBAC is evaluated from an informer cache: wait until the binding is seen.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if check_ok(&direct, OBJECT_PATH).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the ServiceAccount cannot GET the ConfigMap after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut gw, gw_addr) = spawn_gateway(
        &args.gateway,
        dir,
        "gateway-apiserver",
        files,
        &api_url,
        &ca_file,
        &sa_file,
        None,
        None,
    )
    .await?;
    let through = Target {
        name: "gateway".into(),
        addr: gw_addr,
        tls: None,
        prefix: "/k8s".into(),
        authorization: Some(format!("Bearer {token}")),
    };
    check_ok(&through, OBJECT_PATH).await?;
    let mut watch = vec![("gateway".to_string(), gw.pid())];
    for pid in cp.pids() {
        let name = procs::comm(pid);
        if name == "kube-apiserver" || name == "etcd" {
            watch.push((name, pid));
        }
    }
    let targets = vec![direct.clone(), through.clone()];
    let r = closed_loop(
        "kube-apiserver",
        &|_| targets.clone(),
        &plan.concurrency,
        plan.api_rounds,
        plan.api_secs,
        plan.warmup_secs.max(1.0),
        &watch,
        script,
        &mut results.http,
    )
    .await;
    gw.stop();
    cp.stop();
    r
}
