//! Our gateway's memory with N watched GateTokens: its revocation index keeps a few fields per
//! token (the jti as key; revoked/completed, exp, which watch and list), never the object. Measured on the real API
//! server: RSS of a gateway whose watch synced an empty namespace, then of one that synced N
//! GateTokens there. The Go peer has no revocation watch.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::PostParams;
use virt_gateway_api::{GateToken, GateTokenSpec};
use virt_gateway_testenv::ControlPlane;

use super::Env;
use super::results::{Results, WatchedRun};
use super::spawn::{Extra, Kind, spawn_gateway};
use crate::procs;

/// The API server and the files of the ServiceAccount the gateway runs as.
pub struct ApiFiles<'a> {
    /// `https://…` of the API server.
    pub api_url: &'a str,
    /// Its CA.
    pub ca_file: &'a Path,
    /// The ServiceAccount token (may list and watch GateTokens in `bench`).
    pub sa_file: &'a Path,
}

/// Installs the CRDs, measures the empty index, creates the GateTokens, measures again.
pub async fn run(
    env: &Env,
    cp: &ControlPlane,
    api: &ApiFiles<'_>,
    results: &mut Results,
) -> Result<()> {
    let n = env.plan.watched_tokens;
    eprintln!("[bench] gateway RSS with {n} watched GateTokens");
    let (empty, _) = synced_rss(env, api).await?;
    let tokens: Api<GateToken> = Api::namespaced(cp.client().await, "bench");
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let tokens = tokens.clone();
            async move {
                let t = GateToken::new(&format!("watched-{i:05}"), GateTokenSpec::default());
                tokens.create(&PostParams::default(), &t).await
            }
        })
        .buffer_unordered(16)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let create_secs = t0.elapsed().as_secs_f64();
    let (full, sync_secs) = synced_rss(env, api).await?;
    let run = WatchedRun {
        tokens: n,
        rss_empty_kib: empty,
        rss_kib: full,
        bytes_per_token: (full as f64 - empty as f64) * 1024.0 / n.max(1) as f64,
        create_secs,
        sync_secs,
    };
    eprintln!(
        "[bench] watched: RSS {empty} KiB empty, {full} KiB with {n} GateTokens ({:.0} bytes each), synced in {sync_secs:.1} s",
        run.bytes_per_token
    );
    results.watched.push(run);
    Ok(())
}

/// Starts our gateway watching `bench`; once /readyz is 200 (the index listed everything),
/// waits a second and reads its RSS. Returns (KiB, seconds to ready).
async fn synced_rss(env: &Env, api: &ApiFiles<'_>) -> Result<(u64, f64)> {
    let t0 = Instant::now();
    let (mut g, _) = spawn_gateway(
        Kind::Ours,
        &env.args.gateway,
        &env.dir,
        "gateway-watched",
        &env.setup.files,
        api.api_url,
        api.ca_file,
        api.sa_file,
        None,
        &Extra {
            wrapper: None,
            args: &["--revocation-namespaces=bench".to_string()],
        },
    )
    .await?;
    let ready = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = procs::rss_kib(g.pid()).unwrap_or(0);
    g.stop();
    Ok((rss, ready))
}
