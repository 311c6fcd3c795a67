//! The orchestrator: starts the processes, runs each measurement (one module each, interleaved
//! rounds inside), and writes the raw results and the report.

mod apiserver;
mod callgrind;
mod closed_loop;
pub(crate) mod console;
mod fixed;
mod idle;
mod machine;
mod plan;
mod profile;
mod results;
mod revocation;
mod setup;
mod spawn;
mod syscalls;
mod token;
mod watched;
mod websocket;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use self::closed_loop::{Loop, Watch, check_ok, closed_loop};
pub use self::plan::Plan;
pub use self::results::{FixedRun, HttpRun, Results, Spread, WsRun};
use self::setup::Setup;
use self::spawn::{Extra, GoSpawn, Kind, Proc, spawn_gateway, spawn_upstream};
use crate::net::Target;
use crate::{procs, report};

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
    /// Only these sections (http, fixed, ws, token, idle, console, apiserver, watched,
    /// revocation, profile); default all. `watched` and `revocation` run on `apiserver`'s control
    /// plane (each can run without the closed loop of `apiserver`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// WebSocket sessions of the revocation-at-scale measurement, a fifth of them revoked
    /// (default: 5,000 full, 1,000 quick); a smaller count for development.
    #[arg(long, env = "VIRT_GATEWAY_BENCH_REVOCATION_SESSIONS")]
    pub revocation_sessions: Option<usize>,
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
    /// The upstream Go gateway (Gen B), built by bench/gateway/build-go-peer.sh; run beside ours
    /// with the same flags, upstreams, key and token. Without it the report says why.
    #[arg(long)]
    pub go_peer: Option<PathBuf>,
    /// Why there is no Go peer (what build-go-peer.sh said), for the report.
    #[arg(long, default_value = "")]
    pub go_peer_note: String,
}

/// What every measurement reads: the options, the sizes, the shared files and the targets in
/// front of the minimal upstream.
pub struct Env {
    /// Options.
    pub args: RunArgs,
    /// Sizes.
    pub plan: Plan,
    /// The run's scratch directory.
    pub dir: PathBuf,
    /// Keys, tokens and files.
    pub setup: Setup,
    /// `https://<minimal upstream>`.
    pub api_server: String,
    /// The minimal upstream, directly.
    pub direct: Target,
    /// Our gateway in front of it.
    pub through: Target,
    /// How to start the Go peer.
    pub go: GoSpawn,
}

impl Env {
    /// Whether a section runs (`--only`, `--profile-only`).
    pub fn want(&self, section: &str) -> bool {
        if self.args.profile_only {
            return section == "profile";
        }
        if section == "profile" && self.args.no_profile {
            return false;
        }
        self.args.only.is_empty() || self.args.only.iter().any(|s| s == section)
    }

    /// Where the raw results go (`<out-dir>/full` or `<out-dir>/quick`).
    pub fn out_dir(&self) -> PathBuf {
        self.args.out_dir.join(&self.plan.mode)
    }
}

/// Records a failed section and carries on.
pub(crate) fn record(results: &mut Results, section: &str, r: Result<()>) {
    if let Err(e) = r {
        eprintln!("[bench] section {section} failed: {e:#}");
        results.failures.push((section.into(), format!("{e:#}")));
    }
}

/// The gateways in front of the minimal upstream while the closed-loop, fixed-rate, WebSocket
/// and token measurements run.
struct Fronts {
    ours: Proc,
    tls: Option<(Proc, Target)>,
    go: Option<(Proc, Target)>,
}

impl Fronts {
    async fn start(env: &Env, results: &mut Results) -> Result<(Self, Target)> {
        let s = &env.setup;
        let spawn = |label: &'static str, tls: Option<Arc<rustls::ClientConfig>>| {
            spawn_gateway(
                Kind::Ours,
                &env.args.gateway,
                &env.dir,
                label,
                &s.files,
                &env.api_server,
                &s.ca_file,
                &s.sa_file,
                tls,
                &Extra::NONE,
            )
        };
        let (ours, addr) = spawn("gateway", None).await?;
        let through = Target {
            addr,
            ..env.through.clone()
        };
        let tls = if env.plan.tls_listen && env.want("http") {
            let (p, addr) = spawn("gateway-tls", Some(s.client_tls.clone())).await?;
            let t = Target {
                name: "gateway-tls".into(),
                addr,
                tls: Some(s.client_tls.clone()),
                ..through.clone()
            };
            check_ok(&t, OBJECT_PATH).await?;
            Some((p, t))
        } else {
            None
        };
        check_ok(&env.direct, OBJECT_PATH).await?;
        check_ok(&through, OBJECT_PATH).await?;
        let go = match env
            .go
            .start("go", &env.api_server, &s.ca_file, &s.sa_file)
            .await
        {
            Ok(g) => g,
            Err(e) => {
                results.go_peer.note = format!("{e:#}");
                None
            }
        };
        Ok((Self { ours, tls, go }, through))
    }

    fn watch(&self, upstream_pid: u32) -> Watch {
        let mut w = vec![
            ("gateway".to_string(), self.ours.pid()),
            ("upstream".to_string(), upstream_pid),
        ];
        w.extend(
            self.tls
                .as_ref()
                .map(|(p, _)| ("gateway-tls".into(), p.pid())),
        );
        w.extend(self.go.as_ref().map(|(p, _)| ("go".into(), p.pid())));
        w
    }
}

/// 1 + 2: the closed loop against the minimal upstream (ours at c=16 also with an HTTPS listener).
async fn http_minimal(
    env: &Env,
    fronts: &Fronts,
    watch: &Watch,
    results: &mut Results,
) -> Result<()> {
    eprintln!("[bench] 1. closed loop (wrk), minimal upstream");
    let targets_for = |c: u32| {
        let mut v = vec![env.direct.clone(), env.through.clone()];
        v.extend(fronts.go.as_ref().map(|(_, t)| t.clone()));
        if c == 16 {
            v.extend(fronts.tls.as_ref().map(|(_, t)| t.clone()));
        }
        v
    };
    let spec = Loop {
        upstream: "minimal",
        concurrency: &env.plan.concurrency,
        rounds: env.plan.http_rounds,
        secs: env.plan.http_secs,
        warmup: env.plan.warmup_secs,
        script: &env.setup.script,
    };
    closed_loop(&spec, &targets_for, watch, &mut results.http).await
}

/// perf profiles of our gateway under HTTP and WebSocket load.
async fn profiles(env: &Env, gateway_pid: u32, results: &mut Results) -> Result<()> {
    eprintln!("[bench] profiling the gateway at c=16 (perf record -e cpu-clock)");
    let out_dir = env.out_dir();
    std::fs::create_dir_all(&out_dir)?;
    let ws_bytes = env.plan.ws_bytes.min(256 << 20);
    for (name, bytes) in [("gateway", 0), ("gateway-websocket", ws_bytes)] {
        let secs = env.plan.http_secs * 2.0;
        let r = profile::profile(
            &out_dir,
            name,
            gateway_pid,
            &env.setup.script,
            &env.through,
            secs,
            bytes,
        )
        .await;
        record(results, "profile", r);
    }
    Ok(())
}

/// The measurements against the minimal upstream, each gateway started once.
async fn minimal_upstream(env: &mut Env, upstream_pid: u32, results: &mut Results) -> Result<()> {
    let (mut fronts, through) = Fronts::start(env, results).await?;
    env.through = through;
    let env = &*env;
    let watch = fronts.watch(upstream_pid);
    if env.want("http") {
        let r = http_minimal(env, &fronts, &watch, results).await;
        record(results, "http", r);
    }
    if env.want("profile") {
        profiles(env, fronts.ours.pid(), results).await?;
        let out_dir = env.out_dir();
        for (name, pid, target) in [
            ("gateway", fronts.ours.pid(), &env.through),
            ("upstream", upstream_pid, &env.direct),
        ] {
            match syscalls::count(&out_dir, name, pid, target).await {
                Ok(s) => results.syscalls.push(s),
                Err(e) => record(results, "syscalls", Err(e)),
            }
        }
    }
    if let Some((mut p, _)) = fronts.tls.take() {
        p.stop();
    }
    let watch: Watch = watch
        .into_iter()
        .filter(|(n, _)| n != "gateway-tls")
        .collect();
    if env.want("fixed") {
        let r = fixed::run(env, &watch, results).await;
        record(results, "fixed", r);
    }
    if env.want("ws") {
        let go = fronts.go.as_ref().map(|(_, t)| t);
        let r = websocket::throughput(env, go, &watch, results).await;
        record(results, "ws", r);
    }
    if env.want("token") {
        token::run(env, results).await;
    }
    fronts.ours.stop();
    if let Some((mut p, _)) = fronts.go.take() {
        p.stop();
    }
    Ok(())
}

/// Runs everything the plan asks for and writes the results.
pub async fn run(args: RunArgs) -> Result<()> {
    let mut plan = Plan::new(args.quick);
    if let Some(n) = args.revocation_sessions {
        plan.revocation_sessions = n;
    }
    let started_at = Instant::now();
    let (soft, hard) = procs::raise_nofile(200_000);
    eprintln!("[bench] {} run; open files limit {soft}/{hard}", plan.mode);
    let work = tempfile::Builder::new()
        .prefix("virt-gateway-bench-")
        .tempdir()?;
    let dir = work.path().to_path_buf();
    let mut results = Results::new(&args, plan.clone());
    let setup = Setup::new(&dir, &plan)?;
    results.token_bytes = setup.token.len();

    let (mut upstream, upstream_addr) =
        spawn_upstream(&dir, &setup.cert_file, &setup.serving_key_file)?;
    let authorization = Some(format!("Bearer {}", setup.token));
    let mut env = Env {
        direct: Target {
            name: "direct".into(),
            addr: upstream_addr,
            tls: Some(setup.client_tls.clone()),
            prefix: String::new(),
            authorization: Some("Bearer bench-serviceaccount-token".into()),
        },
        through: Target {
            name: "gateway".into(),
            addr: upstream_addr,
            tls: None,
            prefix: "/k8s".into(),
            authorization,
        },
        go: GoSpawn {
            binary: args.go_peer.clone(),
            dir: dir.clone(),
            files: setup.files.clone(),
            token: setup.token.clone(),
        },
        api_server: format!("https://{upstream_addr}"),
        args,
        plan,
        dir,
        setup,
    };
    minimal_upstream(&mut env, upstream.pid(), &mut results).await?;
    if env.want("profile") {
        match callgrind::run(&env).await {
            Ok(c) => results.callgrind = Some(c),
            Err(e) => record(&mut results, "callgrind", Err(e)),
        }
    }
    if env.want("idle") {
        let r = idle::run(&env, upstream.pid(), &mut results).await;
        record(&mut results, "idle", r);
    }
    if env.want("console") {
        let r = console::run(&env, &mut results).await;
        record(&mut results, "console", r);
    }
    upstream.stop();
    let on_control_plane = ["apiserver", "watched", "revocation"];
    if on_control_plane.iter().any(|s| env.want(s)) && !env.args.skip_apiserver {
        eprintln!("[bench] 1b. real kube-apiserver (starting the test control plane)");
        let r = apiserver::run(&env, &mut results).await;
        record(&mut results, "apiserver", r);
    }
    results.finish(started_at);
    write(&env, &results)
}

/// results.json, the CSVs and the Markdown report.
fn write(env: &Env, results: &Results) -> Result<()> {
    let out_dir = env.out_dir();
    std::fs::create_dir_all(&out_dir)?;
    report::write_raw(results, &out_dir)?;
    let report_path = env.args.report.clone().unwrap_or_else(|| {
        if env.args.quick {
            out_dir.join("RESULTS.md")
        } else {
            PathBuf::from("bench/RESULTS.md")
        }
    });
    let notes = std::fs::read_to_string(&env.args.notes).unwrap_or_default();
    std::fs::write(
        &report_path,
        report::markdown(results, &out_dir, &report_path, &notes),
    )?;
    eprintln!(
        "[bench] done in {:.0} s: {} and {}",
        results.wall_secs,
        report_path.display(),
        out_dir.display()
    );
    for (s, e) in &results.failures {
        eprintln!("[bench] section {s} failed: {e}");
    }
    Ok(())
}
