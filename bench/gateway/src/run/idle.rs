//! Memory per idle WebSocket session, each count on a fresh gateway (ours and Go).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::results::{IdleRun, Results};
use super::spawn::{Extra, Kind, Proc, spawn_gateway};
use super::{Env, OBJECT_PATH, WS_PATH};
use crate::net::{HttpConn, Target};
use crate::{procs, wsbench};
/// Opens `n` idle WebSockets through a fresh gateway `g` (then stopped) and reads its memory.
async fn idle_sessions(
    mut g: Proc,
    t: &Target,
    upstream_pid: u32,
    round: u32,
    n: usize,
) -> Result<IdleRun> {
    // Warm up: requests and a few sessions, so that lazily built state exists.
    let mut c = HttpConn::open(t).await?;
    for _ in 0..100 {
        c.get(OBJECT_PATH, None).await?;
    }
    drop(c);
    let warm = wsbench::open_idle(t, WS_PATH, 32, 32).await?;
    wsbench::close_all(warm).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = procs::rss_kib(g.pid()).unwrap_or(0);
    let up0 = procs::rss_kib(upstream_pid).unwrap_or(0);
    let t0 = Instant::now();
    let sessions = wsbench::open_idle(t, WS_PATH, n, 64).await?;
    let open_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = procs::rss_kib(g.pid()).unwrap_or(0);
    let up1 = procs::rss_kib(upstream_pid).unwrap_or(0);
    let threads = procs::threads(g.pid()).unwrap_or(0);
    wsbench::close_all(sessions).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss2 = procs::rss_kib(g.pid()).unwrap_or(0);
    g.stop();
    let run = IdleRun {
        target: t.name.clone(),
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
        "[bench] idle round {round} n={n} {}: RSS {rss0} → {rss1} KiB ({:.1} KiB/session), after close {rss2} KiB; opened in {open_secs:.1} s",
        t.name, run.gateway_kib_per_session
    );
    Ok(run)
}

/// Every round and count, on a fresh gateway of ours and (when there is one) a fresh Go peer.
pub async fn run(env: &Env, upstream_pid: u32, results: &mut Results) -> Result<()> {
    eprintln!("[bench] 4b. idle WebSocket sessions");
    let s = &env.setup;
    for round in 0..env.plan.idle_rounds {
        for &n in &env.plan.idle_sessions {
            let (g, addr) = spawn_gateway(
                Kind::Ours,
                &env.args.gateway,
                &env.dir,
                "gateway-idle",
                &s.files,
                &env.api_server,
                &s.ca_file,
                &s.sa_file,
                None,
                &Extra::NONE,
            )
            .await?;
            let t = Target {
                addr,
                ..env.through.clone()
            };
            results
                .idle
                .push(idle_sessions(g, &t, upstream_pid, round, n).await?);
            let go = env
                .go
                .start("go-idle", &env.api_server, &s.ca_file, &s.sa_file)
                .await;
            let go = match go {
                Ok(Some((g, t))) => idle_sessions(g, &t, upstream_pid, round, n).await,
                Ok(None) => continue,
                Err(e) => Err(e),
            };
            match go {
                Ok(run) => results.idle.push(run),
                Err(e) => results.failures.push(("go-idle".into(), format!("{e:#}"))),
            }
        }
    }
    Ok(())
}
