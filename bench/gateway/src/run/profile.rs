//! perf profiles of the gateway under HTTP and WebSocket load.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{OBJECT_PATH, WS_PATH};
use crate::net::Target;
use crate::{wrk, wsbench};
/// perf's cpu-clock sampling of the gateway under wrk at concurrency 16 (hardware counters are
/// not available in this VM).
/// With `websocket_bytes` > 0 the load is a WebSocket transfer each way instead of wrk.
pub async fn profile(
    out_dir: &Path,
    name: &str,
    pid: u32,
    script: &Path,
    target: &Target,
    secs: f64,
    websocket_bytes: u64,
) -> Result<()> {
    let data = out_dir.join(format!("perf-{name}.data"));
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "1999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf (apt-get install linux-perf)")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, url, auth) = (
        script.to_path_buf(),
        target.url(OBJECT_PATH),
        target.authorization.clone(),
    );
    let header = if websocket_bytes > 0 {
        let up = wsbench::upload(target, WS_PATH, websocket_bytes).await?;
        let down = wsbench::download(target, WS_PATH, websocket_bytes).await?;
        format!(
            "# perf record -e cpu-clock -F 1999 -g -p <gateway> during a WebSocket transfer of {} MiB each way ({:.0} MB/s up, {:.0} MB/s down)\n",
            websocket_bytes >> 20,
            websocket_bytes as f64 / up / 1e6,
            websocket_bytes as f64 / down / 1e6
        )
    } else {
        let result =
            tokio::task::spawn_blocking(move || wrk::run(&s, &url, 16, secs, auth.as_deref()))
                .await??;
        format!(
            "# perf record -e cpu-clock -F 1999 -g -p <gateway> during wrk -c16 ({} requests, {:.0} req/s)\n",
            result.requests,
            result.rps()
        )
    };
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(perf.id() as i32, libc::SIGINT);
    }
    perf.wait()?;
    let (by_dso, flat) = perf_report(&data)?;
    let mut text = header;
    text.push_str("\n## by shared object\n");
    text.push_str(&by_dso);
    text.push_str("\n\n## by symbol\n");
    text.push_str(&flat);
    text.push('\n');
    std::fs::write(out_dir.join(format!("profile-{name}.txt")), text)?;
    let _ = std::fs::remove_file(&data);
    Ok(())
}

/// `perf report` of `data` by shared object and by symbol, with perf's column padding squeezed.
fn perf_report(data: &Path) -> Result<(String, String)> {
    let flat = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
            "--percent-limit",
            "0.3",
            "--sort",
            "dso,symbol",
            "-i",
        ])
        .arg(data)
        .output()?;
    let by_dso = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "-g",
            "none",
            "--sort",
            "dso",
            "-i",
        ])
        .arg(data)
        .output()?;
    let squeeze = |raw: &[u8]| -> String {
        String::from_utf8_lossy(raw)
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("# ."))
            .map(|l| {
                let mut out = String::new();
                for w in l.split("  ").filter(|w| !w.trim().is_empty()) {
                    if !out.is_empty() {
                        out.push_str("  ");
                    }
                    out.push_str(w.trim());
                }
                out
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok((squeeze(&by_dso.stdout), squeeze(&flat.stdout)))
}
