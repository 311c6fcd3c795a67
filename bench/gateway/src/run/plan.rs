//! Sizes of a run: the full run and the quick smoke run.

use serde::Serialize;
/// Sizes of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `quick` or `full`.
    pub mode: String,
    /// Interleaved rounds of the closed-loop HTTP runs against the minimal upstream.
    pub http_rounds: u32,
    /// Seconds per wrk run.
    pub http_secs: f64,
    /// Seconds of unrecorded warm-up per target and concurrency.
    pub warmup_secs: f64,
    /// Concurrency levels.
    pub concurrency: Vec<u32>,
    /// Fixed rate, requests/s.
    pub fixed_rate: f64,
    /// Seconds per fixed-rate run.
    pub fixed_secs: f64,
    /// Connections of the fixed-rate generator.
    pub fixed_connections: usize,
    /// Rounds of fixed-rate runs.
    pub fixed_rounds: u32,
    /// Bytes per WebSocket transfer and direction.
    pub ws_bytes: u64,
    /// Rounds of WebSocket transfers.
    pub ws_rounds: u32,
    /// Idle session counts.
    pub idle_sessions: Vec<usize>,
    /// Rounds per idle session count (each with a fresh gateway process).
    pub idle_rounds: u32,
    /// Rounds against the real kube-apiserver.
    pub api_rounds: u32,
    /// Seconds per wrk run against the real kube-apiserver.
    pub api_secs: f64,
    /// Fresh tokens for the cache-miss measurements.
    pub fresh_tokens: usize,
    /// Rounds of the in-process token-cache measurement.
    pub micro_rounds: u32,
    /// Also measure a gateway with an HTTPS listener (at concurrency 16).
    pub tls_listen: bool,
    /// GateTokens watched by the gateway's revocation index in the memory measurement.
    pub watched_tokens: usize,
    /// WebSocket sessions of the revocation-at-scale measurement (a fifth of them revoked).
    pub revocation_sessions: usize,
    /// Seconds per shared-console scenario (after a warm-up); `BENCH_CONSOLE_SECS` overrides it.
    pub console_secs: f64,
    /// Rounds of the shared-console scenarios.
    pub console_rounds: u32,
}

/// `BENCH_CONSOLE_SECS`, to try the shared-console measurement briefly on its own.
fn console_secs(default: f64) -> f64 {
    std::env::var("BENCH_CONSOLE_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(default)
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                mode: "quick".into(),
                http_rounds: 2,
                http_secs: 2.0,
                warmup_secs: 1.0,
                concurrency: vec![1, 16, 128],
                fixed_rate: 2000.0,
                fixed_secs: 3.0,
                fixed_connections: 32,
                fixed_rounds: 2,
                ws_bytes: 64 << 20,
                ws_rounds: 2,
                idle_sessions: vec![1000, 5000],
                idle_rounds: 1,
                api_rounds: 1,
                api_secs: 2.0,
                fresh_tokens: 40,
                micro_rounds: 2,
                tls_listen: false,
                watched_tokens: 1_000,
                revocation_sessions: 1_000,
                console_secs: console_secs(5.0),
                console_rounds: 1,
            }
        } else {
            Self {
                mode: "full".into(),
                http_rounds: 5,
                http_secs: 5.0,
                warmup_secs: 1.0,
                concurrency: vec![1, 16, 128],
                fixed_rate: 2000.0,
                fixed_secs: 10.0,
                fixed_connections: 32,
                fixed_rounds: 5,
                ws_bytes: 1 << 30,
                ws_rounds: 3,
                idle_sessions: vec![1000, 5000],
                idle_rounds: 3,
                api_rounds: 3,
                api_secs: 5.0,
                fresh_tokens: 300,
                micro_rounds: 5,
                tls_listen: true,
                watched_tokens: 10_000,
                revocation_sessions: 5_000,
                console_secs: console_secs(20.0),
                console_rounds: 3,
            }
        }
    }
}
