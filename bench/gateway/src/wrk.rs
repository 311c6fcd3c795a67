//! Closed-loop load with wrk (Debian's package): N keep-alive connections, each sending its next
//! request when the previous answer arrived. A Lua script adds the `Authorization` header (from
//! the environment, so no token is written to disk) and prints wrk's own statistics as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

const SCRIPT: &str = r#"
local auth = os.getenv("BENCH_AUTHORIZATION")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"#;

/// wrk's summary of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Run time, µs.
    pub duration_us: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Socket errors.
    pub connect_errors: u64,
    /// Read errors.
    pub read_errors: u64,
    /// Write errors.
    pub write_errors: u64,
    /// Non-2xx/3xx answers.
    pub status_errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Latency percentiles, µs.
    pub p50_us: u64,
    /// p90.
    pub p90_us: u64,
    /// p99.
    pub p99_us: u64,
    /// p99.9.
    pub p999_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Max.
    pub max_us: u64,
}

impl WrkResult {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    /// All errors.
    pub fn errors(&self) -> u64 {
        self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.status_errors
            + self.timeouts
    }
}

/// Writes the Lua script into `dir`.
pub fn write_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("bench.lua");
    std::fs::write(&path, SCRIPT)?;
    Ok(path)
}

/// Runs wrk with one thread and `connections` connections for `seconds` against `url`.
pub fn run(
    script: &Path,
    url: &str,
    connections: u32,
    seconds: f64,
    authorization: Option<&str>,
) -> Result<WrkResult> {
    let threads = 1;
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", seconds.round().max(1.0) as u64))
        .arg("--timeout=10s")
        .arg("-s")
        .arg(script)
        .arg(url)
        .env("BENCH_AUTHORIZATION", authorization.unwrap_or(""))
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("BENCHJSON ")) else {
        bail!(
            "wrk printed no result (exit {:?}): {}\n{}",
            out.status.code(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    serde_json::from_str(line).with_context(|| format!("wrk result {line}"))
}
