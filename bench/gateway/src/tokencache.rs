//! The token-cache hit path: the gateway's own `TokenVerifier` (SHA-256 of the token, a mutex-
//! guarded map) against a full signature check (`virt_gateway_auth::jwt::Verifier`, what a miss
//! costs), in process; and end to end, the first request of a fresh token against the next one.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use kube_gateway::metrics::Metrics;
use kube_gateway::util::now_unix;
use kube_gateway::verify::TokenVerifier;
use serde::Serialize;
use virt_gateway_auth::jwt::Verifier;
use virt_gateway_auth::keys::PublicKey;

use crate::net::{HttpConn, Target};
use crate::stats::percentile_sorted;

/// In-process figures of one round, ns per verification.
#[derive(Clone, Debug, Serialize)]
pub struct MicroRound {
    /// Cache hit (`TokenVerifier::verify` of a cached token).
    pub hit_ns: f64,
    /// No cache (`Verifier::verify`: signature, header and claims).
    pub nocache_ns: f64,
    /// Cache miss (`TokenVerifier::verify` of a token seen for the first time: verify + insert).
    pub miss_ns: f64,
}

/// One in-process round: `hits` cache hits, `full` uncached verifications, and one miss per
/// token of `fresh`.
pub fn micro_round(
    key_file: &Path,
    keys: &[PublicKey],
    token: &str,
    fresh: &[String],
    hits: u32,
    full: u32,
) -> Result<MicroRound> {
    let now = now_unix();
    let cached = TokenVerifier::load(
        &[key_file.to_path_buf()],
        Duration::from_secs(30),
        Arc::new(Metrics::new()),
    )?;
    cached.verify(token, now)?;
    let t = Instant::now();
    for _ in 0..hits {
        std::hint::black_box(cached.verify(std::hint::black_box(token), now)?);
    }
    let hit_ns = t.elapsed().as_nanos() as f64 / f64::from(hits);

    let verifier = Verifier::new(keys.to_vec()).with_leeway(Duration::from_secs(30));
    let t = Instant::now();
    for _ in 0..full {
        std::hint::black_box(verifier.verify(std::hint::black_box(token), now)?);
    }
    let nocache_ns = t.elapsed().as_nanos() as f64 / f64::from(full);

    let t = Instant::now();
    for f in fresh {
        std::hint::black_box(cached.verify(f, now)?);
    }
    let miss_ns = t.elapsed().as_nanos() as f64 / fresh.len().max(1) as f64;
    Ok(MicroRound {
        hit_ns,
        nocache_ns,
        miss_ns,
    })
}

/// End to end through a running gateway: per fresh token, the latency of its first request
/// (cache miss) and of its second (hit), on one keep-alive connection.
#[derive(Clone, Debug, Serialize)]
pub struct EndToEnd {
    /// Tokens used.
    pub tokens: usize,
    /// First request of each token: median and p90, µs.
    pub first_p50_us: f64,
    /// p90 of the first requests.
    pub first_p90_us: f64,
    /// Second request: median and p90, µs.
    pub repeat_p50_us: f64,
    /// p90 of the repeated requests.
    pub repeat_p90_us: f64,
    /// Median of the per-token differences (first − repeat), µs.
    pub added_p50_us: f64,
}

/// Measures [`EndToEnd`] with `tokens` (each unseen by the gateway).
pub async fn end_to_end(target: &Target, path: &str, tokens: &[String]) -> Result<EndToEnd> {
    let mut conn = HttpConn::open(target).await?;
    // Warm the connection with a token that is not part of the sample.
    conn.get(path, None).await?;
    let mut first = Vec::new();
    let mut repeat = Vec::new();
    let mut diff = Vec::new();
    for t in tokens {
        let auth = format!("Bearer {t}");
        let s = Instant::now();
        let (status, _) = conn.get(path, Some(&auth)).await?;
        let a = s.elapsed().as_micros() as u32;
        anyhow::ensure!(status == 200, "first request: status {status}");
        let s = Instant::now();
        let (status, _) = conn.get(path, Some(&auth)).await?;
        let b = s.elapsed().as_micros() as u32;
        anyhow::ensure!(status == 200, "repeated request: status {status}");
        first.push(a);
        repeat.push(b);
        diff.push(i64::from(a) - i64::from(b));
    }
    first.sort_unstable();
    repeat.sort_unstable();
    diff.sort_unstable();
    Ok(EndToEnd {
        tokens: tokens.len(),
        first_p50_us: percentile_sorted(&first, 50.0),
        first_p90_us: percentile_sorted(&first, 90.0),
        repeat_p50_us: percentile_sorted(&repeat, 50.0),
        repeat_p90_us: percentile_sorted(&repeat, 90.0),
        added_p50_us: diff.get(diff.len() / 2).map_or(f64::NAN, |&d| d as f64),
    })
}
