//! WebSocket throughput each way: direct, through ours and through the Go peer.

use anyhow::{Context, Result};

use super::closed_loop::{Watch, cpu_delta, cpu_map, round_order};
use super::results::{Results, WsRun};
use super::{Env, WS_PATH};
use crate::net::Target;
use crate::wsbench;

/// Interleaved rounds of one transfer of `plan.ws_bytes` per direction and target.
pub async fn throughput(
    env: &Env,
    go: Option<&Target>,
    watch: &Watch,
    results: &mut Results,
) -> Result<()> {
    let plan = &env.plan;
    eprintln!(
        "[bench] 4. WebSocket transfers of {} MiB each way",
        plan.ws_bytes >> 20
    );
    let mut watch = watch.clone();
    watch.push(("client".into(), std::process::id()));
    let mut targets = vec![env.direct.clone(), env.through.clone()];
    targets.extend(go.cloned());
    for t in &targets {
        wsbench::upload(t, WS_PATH, 8 << 20)
            .await
            .with_context(|| format!("{} upload", t.name))?;
        wsbench::download(t, WS_PATH, 8 << 20)
            .await
            .with_context(|| format!("{} download", t.name))?;
    }
    for round in 0..plan.ws_rounds {
        for direction in ["client-to-server", "server-to-client"] {
            for t in round_order(&targets, round) {
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
