//! What a run measured: the raw records, serialised into results.json and read by the report.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::plan::Plan;
use super::{RunArgs, machine};
use crate::openloop::OpenLoopResult;
use crate::procs;
use crate::tokencache::{EndToEnd, MicroRound};
use crate::wrk::WrkResult;
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
    /// Resident memory of each watched process after the run, KiB.
    pub rss_kib: BTreeMap<String, u64>,
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

/// One shared-console scenario (issue 16) on a fresh gateway.
#[derive(Clone, Debug, Serialize)]
pub struct ConsoleRun {
    /// `direct` (one viewer, WebSocket passed through) or `shared` (`--shared-consoles`).
    pub scenario: String,
    /// Controllers (1).
    pub controllers: usize,
    /// Observers next to the controller.
    pub observers: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Gateway CPU, percent of one core.
    pub gateway_cpu_percent: f64,
    /// Gateway RSS before the viewers read, KiB.
    pub gateway_rss_before_kib: u64,
    /// Gateway RSS at the end, KiB.
    pub gateway_rss_kib: u64,
    /// Gateway peak RSS (VmHWM), KiB.
    pub gateway_peak_rss_kib: u64,
    /// Fewest complete updates per second a viewer got.
    pub updates_per_s_min: f64,
    /// Most complete updates per second a viewer got.
    pub updates_per_s_max: f64,
    /// 10^6 bytes per second sent to all viewers together.
    pub mb_per_s_to_viewers: f64,
}

/// Idle sessions held through one fresh gateway.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRun {
    /// `gateway` (ours) or `go`.
    pub target: String,
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

/// Our gateway's memory with a number of watched GateTokens.
#[derive(Clone, Debug, Serialize)]
pub struct WatchedRun {
    /// GateTokens in the watched namespace.
    pub tokens: usize,
    /// RSS of a gateway whose watch synced the empty namespace, KiB.
    pub rss_empty_kib: u64,
    /// RSS of a gateway whose watch synced the `tokens`, KiB.
    pub rss_kib: u64,
    /// (rss − empty) / tokens, bytes.
    pub bytes_per_token: f64,
    /// Seconds to create the GateTokens.
    pub create_secs: f64,
    /// Seconds from start to ready (listed) with the tokens.
    pub sync_secs: f64,
}

/// Per-session delays of a revocation run, ms.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    /// Sessions measured.
    pub n: usize,
    /// Smallest.
    pub min: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Revocation at scale: sessions open through our gateway, a fifth of their GateTokens revoked at
/// once.
#[derive(Clone, Debug, Serialize)]
pub struct RevocationRun {
    /// WebSocket sessions open, one GateToken (and token) each.
    pub sessions: usize,
    /// GateTokens revoked (`spec.revoked: true`, as `kubectl gate revoke`).
    pub revoked: usize,
    /// Revoking patches in flight at once.
    pub in_flight: usize,
    /// Seconds to open the sessions.
    pub open_secs: f64,
    /// Gateway RSS with them open, KiB.
    pub gateway_rss_open_kib: u64,
    /// Seconds from the first patch sent to the last answered.
    pub revoke_secs: f64,
    /// Seconds from the first patch sent to the last revoked session closed.
    pub last_close_secs: f64,
    /// Per revoked session: its close at the client minus the API server's answer to its patch.
    pub close_after_ack_ms: Spread,
    /// The same, minus when the patch was sent (an upper bound).
    pub close_after_send_ms: Spread,
    /// Revoked sessions still open after 30 s.
    pub not_closed: usize,
    /// `kube_gateway_revocation_wakeups_total` after − before (one per revoked session expected).
    pub wakeups: u64,
    /// Sessions whose GateTokens were not revoked.
    pub others: usize,
    /// Of those, how many echoed a message afterwards.
    pub others_working: usize,
    /// Of those, how many did not (closed, or no echo within 10 s).
    pub others_failed: usize,
}

/// The upstream Go gateway run beside ours.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GoPeer {
    /// The binary (cached by build-go-peer.sh), when there is one.
    pub binary: Option<String>,
    /// Why there is none, or what failed while running it.
    pub note: String,
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
    /// The Go gateway.
    pub go_peer: GoPeer,
    /// Closed-loop HTTP runs.
    pub http: Vec<HttpRun>,
    /// Fixed-rate runs.
    pub fixed: Vec<FixedRun>,
    /// WebSocket transfers.
    pub ws: Vec<WsRun>,
    /// Idle sessions.
    pub idle: Vec<IdleRun>,
    /// Shared consoles against one direct viewer.
    pub console: Vec<ConsoleRun>,
    /// Gateway memory with watched GateTokens.
    pub watched: Vec<WatchedRun>,
    /// Revocation at scale.
    pub revocation: Vec<RevocationRun>,
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
    /// strace: system calls per request of the gateway (proxying) and the upstream (direct).
    pub syscalls: Vec<Syscalls>,
}

/// A process's system calls per request, from `strace -c`.
#[derive(Clone, Debug, Serialize)]
pub struct Syscalls {
    /// `gateway` (proxying) or `upstream` (serving directly).
    pub process: String,
    /// Requests counted (after a warm-up that is not).
    pub requests: u64,
    /// All system calls per request.
    pub per_request: f64,
    /// Per system call, most frequent first.
    pub by_call: Vec<(String, f64)>,
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

impl Results {
    /// Empty results with the facts known at the start: the machine, its load, the Go peer and
    /// the criterion figures `make bench` wrote just before.
    pub fn new(args: &RunArgs, plan: Plan) -> Self {
        Self {
            plan,
            started: machine::now_rfc3339(),
            finished: String::new(),
            wall_secs: 0.0,
            machine: machine::machine(),
            load: vec![
                ("load average at start".into(), procs::loadavg()),
                (
                    "busiest processes at start (%CPU)".into(),
                    machine::busiest_processes(),
                ),
            ],
            go_peer: GoPeer {
                binary: args.go_peer.as_ref().map(|p| p.display().to_string()),
                note: args.go_peer_note.clone(),
            },
            http: Vec::new(),
            fixed: Vec::new(),
            ws: Vec::new(),
            idle: Vec::new(),
            console: Vec::new(),
            watched: Vec::new(),
            revocation: Vec::new(),
            token_micro: Vec::new(),
            token_e2e: Vec::new(),
            criterion: machine::criterion_figures(&args.criterion_dir),
            criterion_date: machine::criterion_date(&args.criterion_dir),
            failures: Vec::new(),
            token_bytes: 0,
            callgrind: None,
            syscalls: Vec::new(),
        }
    }

    /// The end: load average and times.
    pub fn finish(&mut self, started_at: Instant) {
        self.load
            .push(("load average at end".into(), procs::loadavg()));
        self.finished = machine::now_rfc3339();
        self.wall_secs = started_at.elapsed().as_secs_f64();
    }
}
