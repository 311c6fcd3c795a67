//! Closed-loop HTTP runs (wrk) with CPU and memory of the watched processes, interleaved.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};

use super::OBJECT_PATH;
use super::results::HttpRun;
use crate::net::{HttpConn, Target};
use crate::procs;
use crate::wrk;
/// Processes whose CPU and memory a measurement reads: (name, pid).
pub type Watch = Vec<(String, u32)>;

/// CPU seconds used so far by each watched process.
pub fn cpu_map(pids: &[(String, u32)]) -> BTreeMap<String, f64> {
    pids.iter()
        .map(|(n, p)| (n.clone(), procs::cpu_seconds(*p)))
        .collect()
}

/// `after − before` per process.
pub fn cpu_delta(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(f64::NAN)))
        .collect()
}

/// CPU seconds per 100,000 requests.
pub fn per_100k(cpu: &BTreeMap<String, f64>, requests: u64) -> BTreeMap<String, f64> {
    cpu.iter()
        .map(|(k, v)| (k.clone(), v / requests.max(1) as f64 * 100_000.0))
        .collect()
}

/// Round `r` runs the targets in order for even rounds and reversed for odd ones (A B, B A, ...),
/// so that a drifting machine load hits each side equally.
pub fn round_order<T: Clone>(items: &[T], round: u32) -> Vec<T> {
    let mut v = items.to_vec();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

/// One GET of `path` must answer 200.
pub async fn check_ok(target: &Target, path: &str) -> Result<()> {
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

/// One closed-loop scenario: an upstream, its concurrency levels and round sizes.
pub struct Loop<'a> {
    /// `minimal` or `kube-apiserver`.
    pub upstream: &'a str,
    /// Connections of each level.
    pub concurrency: &'a [u32],
    /// Interleaved rounds per level.
    pub rounds: u32,
    /// Seconds per recorded run.
    pub secs: f64,
    /// Seconds of unrecorded warm-up per target and level.
    pub warmup: f64,
    /// wrk's Lua script.
    pub script: &'a Path,
}

/// Every level: a warm-up per target, then `rounds` interleaved rounds of one run per target.
pub async fn closed_loop(
    spec: &Loop<'_>,
    targets_for: &dyn Fn(u32) -> Vec<Target>,
    watch: &Watch,
    out: &mut Vec<HttpRun>,
) -> Result<()> {
    for &c in spec.concurrency {
        let targets = targets_for(c);
        for t in &targets {
            wrk_run(spec.script, t, c, spec.warmup).await?;
        }
        for round in 0..spec.rounds {
            for t in round_order(&targets, round) {
                out.push(one_run(spec, &t, c, round, watch).await?);
            }
        }
    }
    Ok(())
}

async fn wrk_run(script: &Path, t: &Target, c: u32, secs: f64) -> Result<wrk::WrkResult> {
    let (s, url, auth) = (
        script.to_path_buf(),
        t.url(OBJECT_PATH),
        t.authorization.clone(),
    );
    tokio::task::spawn_blocking(move || wrk::run(&s, &url, c, secs, auth.as_deref())).await?
}

/// One recorded run, with the CPU used and the memory held by each watched process.
async fn one_run(
    spec: &Loop<'_>,
    t: &Target,
    c: u32,
    round: u32,
    watch: &Watch,
) -> Result<HttpRun> {
    let loadavg = procs::loadavg();
    let before = cpu_map(watch);
    let result = wrk_run(spec.script, t, c, spec.secs).await?;
    let cpu = cpu_delta(&before, &cpu_map(watch));
    let rss_kib = watch
        .iter()
        .filter_map(|(n, p)| procs::rss_kib(*p).map(|k| (n.clone(), k)))
        .collect();
    let run = HttpRun {
        upstream: spec.upstream.into(),
        target: t.name.clone(),
        concurrency: c,
        round,
        rps: result.rps(),
        cpu_per_100k: per_100k(&cpu, result.requests),
        cpu_s: cpu,
        wrk: result,
        loadavg,
        rss_kib,
    };
    eprintln!(
        "[bench] {} c={c} round {round} {:<11} {:>8.0} req/s p50 {:>6} µs p99 {:>6} µs p99.9 {:>6} µs errors {} cpu/100k {:?}",
        spec.upstream,
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
    Ok(run)
}
