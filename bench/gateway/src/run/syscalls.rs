//! System calls per request (`strace -c`), the kernel side of what callgrind counts in user space:
//! what a proxied request costs the gateway in reads, writes, polls and thread wake-ups (`futex`),
//! against what the upstream spends serving one request directly. Counts, not times, so the same
//! whatever the machine's load.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::OBJECT_PATH;
use super::results::Syscalls;
use crate::net::{HttpConn, Target};

/// Sequential GETs on one keep-alive connection, counted after 200 uncounted ones.
const COUNTED: u64 = 2000;

/// Counts the system calls of process `pid` (every thread) while `COUNTED` GETs go to `target`.
pub async fn count(out_dir: &Path, name: &str, pid: u32, target: &Target) -> Result<Syscalls> {
    eprintln!("[bench] strace: system calls of the {name} per request");
    let mut conn = HttpConn::open(target).await?;
    for _ in 0..200 {
        conn.get(OBJECT_PATH, None).await?;
    }
    let summary = out_dir.join(format!("syscalls-{name}.txt"));
    let mut strace = attach(pid, &summary)?;
    for _ in 0..COUNTED {
        conn.get(OBJECT_PATH, None).await?;
    }
    drop(conn);
    // SAFETY: signalling our own child by its pid; SIGINT makes strace detach and summarise.
    unsafe {
        libc::kill(strace.id() as i32, libc::SIGINT);
    }
    strace.wait()?;
    let text = std::fs::read_to_string(&summary)
        .with_context(|| format!("strace wrote no summary to {}", summary.display()))?;
    let calls = parse_summary(&text)?;
    let total: u64 = calls.iter().map(|(_, n)| n).sum();
    let per = |n: u64| n as f64 / COUNTED as f64;
    let s = Syscalls {
        process: name.into(),
        requests: COUNTED,
        per_request: per(total),
        by_call: calls.into_iter().map(|(c, n)| (c, per(n))).collect(),
    };
    eprintln!(
        "[bench] strace: {name}: {:.1} system calls per request",
        s.per_request
    );
    Ok(s)
}

/// Starts `strace -c -f` on `pid` (with `-f` it attaches to every thread: "attached with N
/// threads") and waits until it has attached.
fn attach(pid: u32, summary: &Path) -> Result<std::process::Child> {
    let mut child = Command::new("strace")
        .args(["-c", "-f", "-o"])
        .arg(summary)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("strace (apt-get install strace)")?;
    let stderr = child.stderr.take().context("strace's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next().transpose()? {
            Some(line) if line.contains("attached") => break,
            Some(_) => {}
            None => bail!("strace exited before attaching to {pid}"),
        }
    }
    // The rest of its stderr (detach messages) is drained so that strace never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(child)
}

/// `strace -c`'s table: (system call, calls), most called first; the `total` row is left out.
fn parse_summary(text: &str) -> Result<Vec<(String, u64)>> {
    let mut calls: Vec<(String, u64)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors], syscall
            let name = *fields.last()?;
            let calls = fields.get(3)?.parse().ok()?;
            (fields.len() >= 5 && name != "total" && fields[0].parse::<f64>().is_ok())
                .then(|| (name.to_string(), calls))
        })
        .collect();
    if calls.is_empty() {
        bail!("no system call in strace's summary:\n{text}");
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_straces_table() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 41.32    0.010000           2      4000           write
 30.00    0.008000           1      6000      2000 recvfrom
  1.00    0.000100           1       300           futex
------ ----------- ----------- --------- --------- ----------------
100.00    0.018100           1     10300      2000 total
";
        let calls = parse_summary(text).unwrap();
        assert_eq!(
            calls,
            vec![
                ("recvfrom".to_string(), 6000),
                ("write".to_string(), 4000),
                ("futex".to_string(), 300)
            ]
        );
    }
}
