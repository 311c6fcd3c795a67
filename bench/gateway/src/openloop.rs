//! An open-loop load generator at a fixed request rate (wrk2 is not in Debian): a scheduler
//! thread releases request i at start + i/rate whatever the answers do, a pool of keep-alive
//! connections sends them, and each latency is measured from the request's *intended* send time,
//! so a stall is charged to every request it delayed (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use tokio::sync::{Mutex, mpsc};

use crate::net::{HttpConn, Target};
use crate::stats::percentile_sorted;

/// Result of one fixed-rate run.
#[derive(Clone, Debug, Serialize)]
pub struct OpenLoopResult {
    /// Whether the generator ran with real-time priority.
    pub realtime: bool,
    /// Target name.
    pub target: String,
    /// Requested rate.
    pub rate: f64,
    /// Requests scheduled.
    pub scheduled: u64,
    /// 2xx answers.
    pub ok: u64,
    /// Errors and non-2xx answers.
    pub errors: u64,
    /// Achieved rate (answers / wall time).
    pub achieved_rate: f64,
    /// Latency from the intended send time, µs: p50, p90, p99, p99.9, max.
    pub p50_us: f64,
    /// p90.
    pub p90_us: f64,
    /// p99.
    pub p99_us: f64,
    /// p99.9.
    pub p999_us: f64,
    /// Max.
    pub max_us: f64,
    /// How late the scheduler released requests (generator error), p50 and p99, µs.
    pub release_lag_p50_us: f64,
    /// p99 of the release lag.
    pub release_lag_p99_us: f64,
}

/// Tries to give the calling thread real-time priority (SCHED_FIFO 10), so that on a small,
/// shared machine the generator is not the one that waits for a CPU: its own delays would be
/// charged to the server as latency. Returns whether it was granted.
pub fn realtime_priority() -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: changes only the calling thread's scheduling policy.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

/// Runs [`run_on`] on a thread of its own with a single-threaded runtime (fewer threads to
/// schedule than the harness's runtime) and, where allowed, real-time priority.
pub async fn run(
    target: &Target,
    path: &str,
    rate: f64,
    duration: Duration,
    connections: usize,
) -> Result<OpenLoopResult> {
    let (target, path) = (target.clone(), path.to_string());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = realtime_priority();
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(run_on(&target, &path, rate, duration, connections, rt))
            });
        let _ = tx.send(result);
    });
    rx.await?
}

/// Runs `rate` requests/s for `duration` against `target` GET `path` over `connections`
/// keep-alive connections, on the current runtime.
pub async fn run_on(
    target: &Target,
    path: &str,
    rate: f64,
    duration: Duration,
    connections: usize,
    realtime: bool,
) -> Result<OpenLoopResult> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(HttpConn::open(target).await?);
    }
    // Warm each connection (TLS session, server-side state) before the clock starts.
    for c in &mut conns {
        c.get(path, None).await?;
    }
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let period = Duration::from_secs_f64(1.0 / rate);
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Instant)>();
    let rx = Arc::new(Mutex::new(rx));
    let start = Instant::now() + Duration::from_millis(20);
    let scheduler = std::thread::spawn(move || {
        // Wake-ups as close to the deadline as the kernel allows.
        // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0);
        }
        if realtime {
            realtime_priority();
        }
        for i in 0..total {
            let intended = start + period.mul_f64(i as f64);
            let now = Instant::now();
            if intended > now {
                // No spinning: on 2 shared cores a spinning generator steals the CPU it measures.
                std::thread::sleep(intended - now);
            }
            if tx.send((intended, Instant::now())).is_err() {
                break;
            }
        }
    });
    let mut workers = Vec::with_capacity(connections);
    for mut conn in conns {
        let rx = rx.clone();
        let path = path.to_string();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut lag = Vec::new();
            let mut errors = 0u64;
            loop {
                let next = { rx.lock().await.recv().await };
                let Some((intended, released)) = next else {
                    break;
                };
                match conn.get(&path, None).await {
                    Ok((status, _)) if (200..300).contains(&status) => {
                        let us = intended.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        lat.push(us);
                        lag.push((released - intended).as_micros().min(u32::MAX as u128) as u32);
                    }
                    _ => errors += 1,
                }
            }
            (lat, lag, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut lag = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, g, e) = w.await?;
        lat.extend(l);
        lag.extend(g);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    let _ = scheduler.join();
    lat.sort_unstable();
    lag.sort_unstable();
    Ok(OpenLoopResult {
        realtime,
        target: target.name.clone(),
        rate,
        scheduled: total,
        ok: lat.len() as u64,
        errors,
        achieved_rate: lat.len() as f64 / wall,
        p50_us: percentile_sorted(&lat, 50.0),
        p90_us: percentile_sorted(&lat, 90.0),
        p99_us: percentile_sorted(&lat, 99.0),
        p999_us: percentile_sorted(&lat, 99.9),
        max_us: lat.last().map_or(f64::NAN, |&m| f64::from(m)),
        release_lag_p50_us: percentile_sorted(&lag, 50.0),
        release_lag_p99_us: percentile_sorted(&lag, 99.0),
    })
}
