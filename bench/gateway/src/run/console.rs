//! Issue 16's shared-console measurement: CPU and memory of our gateway for 1 controller and
//! 10 observers of one VM whose 1280×800 screen changes continuously (the minimal upstream's
//! [`consolescreen`](crate::consolescreen)), against one direct viewer of the same screen through
//! a gateway without shared consoles (the WebSocket passed through). Each scenario runs on a
//! fresh gateway; the viewers decode every update as noVNC would and ask for the next at once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use virt_gateway_auth::jwt;

use super::Env;
use super::results::{ConsoleRun, Results};
use super::setup::claims;
use super::spawn::{Extra, Kind, Proc, spawn_gateway};
use crate::consolescreen::{self, VMI, Viewer};
use crate::net::{Target, websocket};
use crate::procs;

/// Observers next to the one controller.
pub const OBSERVERS: usize = 10;

fn vnc_path() -> String {
    format!("/apis/subresources.kubevirt.io/v1/namespaces/bench/virtualmachineinstances/{VMI}/vnc")
}

/// A token for the screen's console, as a controller or (with `observe`) an observer.
fn token(env: &Env, jti: &str, observe: bool) -> Result<String> {
    let mut c = claims(format!("5c1e0c1c-bench-console-{jti}"));
    c.resource_names = Some(vec![VMI.into()]);
    c.console_role = observe.then(|| "observe".to_owned());
    Ok(jwt::sign(&env.setup.key, &c)?)
}

/// One scenario: `observers` observers and one controller (or, with `shared` off, the one
/// viewer alone) on a fresh gateway, for `secs` after a warm-up.
async fn scenario(env: &Env, name: &str, shared: bool, observers: usize) -> Result<ConsoleRun> {
    let s = &env.setup;
    let flags: Vec<String> = if shared {
        vec!["--shared-consoles".into()]
    } else {
        Vec::new()
    };
    let extra = Extra {
        wrapper: None,
        args: &flags,
    };
    let (mut gateway, addr): (Proc, _) = spawn_gateway(
        Kind::Ours,
        &env.args.gateway,
        &env.dir,
        &format!("gateway-console-{name}"),
        &s.files,
        &env.api_server,
        &s.ca_file,
        &s.sa_file,
        None,
        &extra,
    )
    .await?;
    let target = |token: String| Target {
        name: name.to_owned(),
        addr,
        authorization: Some(format!("Bearer {token}")),
        ..env.through.clone()
    };
    let mut viewers = Vec::new();
    for i in 0..=observers {
        let observe = i > 0;
        let t = target(token(env, &format!("{name}-{i}"), observe)?);
        let ws = websocket(&t, &vnc_path()).await?;
        let viewer = Viewer::start(ws, !observe)
            .await
            .with_context(|| format!("{name}: viewer {i}"))?;
        viewers.push(viewer);
    }
    let warmup = Duration::from_secs_f64(env.plan.warmup_secs.max(1.0));
    let secs = Duration::from_secs_f64(env.plan.console_secs);
    let rss_before_kib = procs::rss_kib(gateway.pid()).unwrap_or(0);
    // Every viewer in its own task, reading as fast as updates come, for warm-up + run.
    let started = Instant::now();
    let tasks: Vec<_> = viewers
        .into_iter()
        .map(|mut v| {
            tokio::spawn(async move {
                let mut at_start = (0, 0);
                let mut marked = false;
                while started.elapsed() < warmup + secs {
                    if !marked && started.elapsed() >= warmup {
                        at_start = (v.updates, v.bytes);
                        marked = true;
                    }
                    v.next_update().await?;
                }
                let counted = (v.updates - at_start.0, v.bytes - at_start.1);
                v.close().await;
                anyhow::Ok(counted)
            })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let cpu0 = procs::cpu_seconds(gateway.pid());
    let t0 = Instant::now();
    tokio::time::sleep(secs).await;
    let cpu1 = procs::cpu_seconds(gateway.pid());
    let wall = t0.elapsed().as_secs_f64();
    let rss_kib = procs::rss_kib(gateway.pid()).unwrap_or(0);
    let hwm_kib = procs::status_kib(gateway.pid(), "VmHWM").unwrap_or(0);
    let mut updates = Vec::new();
    let mut bytes = 0;
    for task in tasks {
        let (u, b) = task.await??;
        updates.push(u as f64 / wall);
        bytes += b;
    }
    gateway.stop();
    let run = ConsoleRun {
        scenario: name.to_owned(),
        controllers: 1,
        observers,
        seconds: wall,
        gateway_cpu_percent: 100.0 * (cpu1 - cpu0) / wall,
        gateway_rss_before_kib: rss_before_kib,
        gateway_rss_kib: rss_kib,
        gateway_peak_rss_kib: hwm_kib,
        updates_per_s_min: updates.iter().copied().fold(f64::INFINITY, f64::min),
        updates_per_s_max: updates.iter().copied().fold(0.0, f64::max),
        mb_per_s_to_viewers: bytes as f64 / wall / 1e6,
    };
    eprintln!(
        "[bench] console {name}: gateway {:.1}% CPU, RSS {} KiB (peak {} KiB); updates/s per viewer {:.1}–{:.1}; {:.1} MB/s to viewers",
        run.gateway_cpu_percent,
        run.gateway_rss_kib,
        run.gateway_peak_rss_kib,
        run.updates_per_s_min,
        run.updates_per_s_max,
        run.mb_per_s_to_viewers
    );
    Ok(run)
}

/// Both scenarios, `console_rounds` times, interleaved.
pub async fn run(env: &Env, results: &mut Results) -> Result<()> {
    eprintln!(
        "[bench] 5. shared console: 1 controller + {OBSERVERS} observers vs one direct viewer ({}x{} screen, {} changes/s)",
        consolescreen::WIDTH,
        consolescreen::HEIGHT,
        consolescreen::CHANGES_PER_SEC
    );
    for _ in 0..env.plan.console_rounds {
        results
            .console
            .push(scenario(env, "direct", false, 0).await?);
        results
            .console
            .push(scenario(env, "shared", true, OBSERVERS).await?);
    }
    Ok(())
}
