//! Operator benchmark (not a test): start a private control plane, run the operator binary
//! (release build) as a process, create N GateTokens at once and measure the time until all are
//! Ready, the operator's peak memory (VmHWM from /proc/<pid>/status) and CPU time (to see how
//! many cores signing used), and the mean signing time from its own metrics.
//!
//! Built as an example of the operator crate; `bench/operator/run.sh` builds and runs it:
//!
//! ```text
//! operator-bench --operator target/release/virt-gateway-operator [--write bench/operator/RESULTS.md]
//!                [--scenario TOKENS:THREADS]...      (default: 1000:0 1000:1 10000:0; 0 = one per CPU)
//! ```

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use virt_gateway_api::{GateServer, GateToken};
use virt_gateway_testenv::{ControlPlane, Options};

struct Scenario {
    tokens: usize,
    threads: usize,
}

struct Outcome {
    tokens: usize,
    threads: String,
    create_secs: f64,
    all_ready_secs: f64,
    tokens_per_sec: f64,
    peak_rss_mib: f64,
    rss_after_mib: f64,
    cpu_secs: f64,
    cores_used: f64,
    sign_ms: f64,
}

fn arg_values(args: &[String], flag: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

fn proc_status_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; here (after the ')') at 11 and 12.
    let hz = 100.0; // USER_HZ on Linux
    (ticks(11) + ticks(12)) / hz
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics endpoint");
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn free_addr() -> String {
    format!(
        "127.0.0.1:{}",
        virt_gateway_testenv::control_plane::free_port().unwrap()
    )
}

fn spawn_operator(
    binary: &PathBuf,
    cp: &ControlPlane,
    ns: &str,
    threads: usize,
    metrics: &str,
    log: &PathBuf,
) -> Child {
    Command::new(binary)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .arg(format!("--namespace={ns}"))
        .arg(format!("--metrics-bind-address={metrics}"))
        .arg("--health-probe-bind-address=0")
        .arg(format!("--signing-threads={threads}"))
        .arg("--log-level=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start the operator binary")
}

async fn run_scenario(
    binary: &PathBuf,
    cp: &ControlPlane,
    client: &Client,
    s: &Scenario,
    logdir: &std::path::Path,
) -> Outcome {
    let ns = cp.fresh_namespace().await;
    let metrics = free_addr();
    let log = logdir.join(format!("operator-{}-{}.log", s.tokens, s.threads));
    let mut child = spawn_operator(binary, cp, &ns, s.threads, &metrics, &log);
    let pid = child.id();

    // A GateServer for the key (RSA-4096 generated once, not measured).
    let gs: GateServer = serde_json::from_value(serde_json::json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateServer",
        "metadata": {"name": "bench", "namespace": ns},
        "spec": {"route": "bench.apps.example.com"}
    }))
    .unwrap();
    let servers: Api<GateServer> = Api::namespaced(client.clone(), &ns);
    servers.create(&PostParams::default(), &gs).await.unwrap();
    loop {
        let gs = servers.get("bench").await.unwrap();
        if gs.status.is_some_and(|st| st.phase == "Ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Watch the tokens (our own cache, so counting costs the API server nothing extra).
    let tokens: Api<GateToken> = Api::namespaced(client.clone(), &ns);
    let (reader, writer) = reflector::store();
    let watch = watcher(tokens.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .try_for_each(|_| async { Ok(()) });
    let watch = tokio::spawn(watch);
    reader.wait_until_ready().await.unwrap();

    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    futures::stream::iter(0..s.tokens)
        .map(|i| {
            let tokens = tokens.clone();
            let ns = ns.clone();
            async move {
                let t: GateToken = serde_json::from_value(serde_json::json!({
                    "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
                    "metadata": {"name": format!("t{i}"), "namespace": ns},
                    "spec": {"namespace": "default", "resourceNames": [format!("vm-{i}")]}
                }))
                .unwrap();
                tokens.create(&PostParams::default(), &t).await.unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let create_secs = start.elapsed().as_secs_f64();
    loop {
        let ready = reader
            .state()
            .iter()
            .filter(|t| t.status.as_ref().is_some_and(|s| s.phase == "Ready"))
            .count();
        if ready == s.tokens {
            break;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            panic!("only {ready} of {} tokens Ready after an hour", s.tokens);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_ready_secs = start.elapsed().as_secs_f64();
    let cpu_secs = cpu_seconds(pid) - cpu_before;
    let text = scrape(&metrics).await;
    let signed = metric(&text, "virt_gateway_operator_sign_duration_seconds_count");
    let sign_sum = metric(&text, "virt_gateway_operator_sign_duration_seconds_sum");
    let peak = proc_status_kib(pid, "VmHWM:") / 1024.0;
    let rss = proc_status_kib(pid, "VmRSS:") / 1024.0;
    watch.abort();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.state().first().map(|t| t.name_any());
    Outcome {
        tokens: s.tokens,
        threads: if s.threads == 0 {
            format!(
                "{} (one per CPU)",
                std::thread::available_parallelism()
                    .map(usize::from)
                    .unwrap_or(1)
            )
        } else {
            s.threads.to_string()
        },
        create_secs,
        all_ready_secs,
        tokens_per_sec: s.tokens as f64 / all_ready_secs,
        peak_rss_mib: peak,
        rss_after_mib: rss,
        cpu_secs,
        cores_used: cpu_secs / all_ready_secs,
        sign_ms: if signed > 0.0 {
            sign_sum / signed * 1000.0
        } else {
            0.0
        },
    }
}

/// The signing pool alone, in-process: `n` RS256 signatures with an RSA-4096 key on `threads`
/// slots. Returns (wall seconds, CPU seconds of this process).
async fn pool_bench(n: usize, threads: usize) -> (f64, f64) {
    use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};
    use virt_gateway_operator::signer::Signer;
    let key = std::sync::Arc::new(KeyPair::generate(KeyAlgorithm::Rsa).unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = virt_gateway_operator::metrics::Metrics::new(&mut registry);
    let signer = Signer::new(threads);
    let cpu_before = cpu_seconds(std::process::id());
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let mut claims = virt_gateway_auth::jwt::Claims::new(4_102_444_800);
            claims.jti = Some(format!("token-{i}"));
            signer.sign(key.clone(), claims, &metrics)
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    (wall, cpu_seconds(std::process::id()) - cpu_before)
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let binary = PathBuf::from(
        arg_values(&args, "--operator")
            .pop()
            .unwrap_or_else(|| "target/release/virt-gateway-operator".into()),
    );
    assert!(
        binary.exists(),
        "{} not found: build it with cargo build --release -p virt-gateway-operator",
        binary.display()
    );
    let mut scenarios: Vec<Scenario> = arg_values(&args, "--scenario")
        .iter()
        .map(|s| {
            let (n, t) = s.split_once(':').unwrap_or((s, "0"));
            Scenario {
                tokens: n.parse().unwrap(),
                threads: t.parse().unwrap(),
            }
        })
        .collect();
    if scenarios.is_empty() {
        scenarios = vec![
            Scenario {
                tokens: 1000,
                threads: 0,
            },
            Scenario {
                tokens: 1000,
                threads: 1,
            },
            Scenario {
                tokens: 10000,
                threads: 0,
            },
        ];
    }
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("signing pool alone: 1000 RSA-4096 signatures on 1 and 2 threads");
    let mut pool = Vec::new();
    for threads in [1, 2] {
        let (wall, cpu) = pool_bench(1000, threads).await;
        eprintln!(
            "  {threads} thread(s): {wall:.2} s wall, {cpu:.2} s CPU ({:.2} cores)",
            cpu / wall
        );
        pool.push((threads, wall, cpu));
    }
    let logdir = tempfile::tempdir().unwrap();
    eprintln!("starting a private control plane");
    let cp = ControlPlane::start(Options::default())
        .await
        .expect("control plane");
    let client = cp.client().await;
    // The CRDs and the delegation policy installed with them (the operator signs only while
    // the policy is in force).
    cp.apply_crds(&virt_gateway_api::crd::crds(), "operator-bench")
        .await;

    let mut outcomes = Vec::new();
    for s in &scenarios {
        eprintln!(
            "scenario: {} tokens, signing threads {}",
            s.tokens, s.threads
        );
        let o = run_scenario(&binary, &cp, &client, s, logdir.path()).await;
        eprintln!(
            "  all Ready after {:.1} s ({:.0} tokens/s); peak RSS {:.1} MiB; {:.2} cores; {:.2} ms per signature",
            o.all_ready_secs, o.tokens_per_sec, o.peak_rss_mib, o.cores_used, o.sign_ms
        );
        outcomes.push(o);
    }

    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    let mut md = String::new();
    md.push_str("# Operator benchmark results\n\n");
    md.push_str("Generated by `bench/operator/run.sh` (bench/operator/bench.rs). A benchmark, not a test: the\n");
    md.push_str("control plane (etcd, kube-apiserver, kube-controller-manager) runs on the same machine and\n");
    md.push_str("competes with the operator for the same cores, so the figures are noisy and machine-bound.\n\n");
    md.push_str(&format!(
        "* Date: {}\n* Machine: `nproc` = {}, CPU: {cpu}\n* {}\n* Operator: release build (`{}`), RSA-4096 key (Gen B default), RS256\n* Control plane: Kubernetes v1.37.2 (crates/testenv), private to the benchmark\n* Load average (1, 5, 15 min) before: {}; after: {} (other work on the machine competes for the cores)\n\n",
        command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        command_output("nproc", &[]),
        command_output("rustc", &["-V"]),
        binary.display(),
        load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        load_after.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    ));
    md.push_str("Method: a GateServer creates the key first (not measured); then N GateTokens are created\n");
    md.push_str(
        "through the API (64 requests in flight) and the clock runs until the last one is Ready\n",
    );
    md.push_str(
        "(watched through a reflector). Peak RSS is VmHWM of the operator process; cores used is\n",
    );
    md.push_str(
        "the operator's CPU time (utime + stime) divided by the wall time of the scenario; the\n",
    );
    md.push_str(
        "signature time is the mean of the operator's `sign_duration_seconds` histogram.\n\n",
    );
    md.push_str("| GateTokens | signing threads | create (s) | all Ready (s) | tokens/s | peak RSS (MiB) | RSS after (MiB) | operator CPU (s) | cores used | sign per token (ms) |\n");
    md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in &outcomes {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |\n",
            o.tokens,
            o.threads,
            o.create_secs,
            o.all_ready_secs,
            o.tokens_per_sec,
            o.peak_rss_mib,
            o.rss_after_mib,
            o.cpu_secs,
            o.cores_used,
            o.sign_ms
        ));
    }
    md.push_str("\nThe signing pool alone (in-process, no API server): 1,000 RS256 signatures with an\nRSA-4096 key through `Signer::sign` (tokio `spawn_blocking`, at most N at a time).\n\n");
    md.push_str("| signing threads | wall (s) | CPU (s) | cores used | ms per signature (wall) |\n|---:|---:|---:|---:|---:|\n");
    for (threads, wall, cpu) in &pool {
        md.push_str(&format!(
            "| {threads} | {wall:.2} | {cpu:.2} | {:.2} | {:.2} |\n",
            cpu / wall,
            wall / 1000.0 * 1000.0
        ));
    }
    print!("{md}");
    if let Some(path) = arg_values(&args, "--write").pop() {
        let notes = std::fs::read_to_string(&path)
            .ok()
            .and_then(|old| {
                old.split_once("<!-- notes -->")
                    .map(|(_, n)| format!("<!-- notes -->{n}"))
            })
            .unwrap_or_default();
        std::fs::write(&path, format!("{md}\n{notes}")).unwrap();
        eprintln!("wrote {path}");
    }
}
