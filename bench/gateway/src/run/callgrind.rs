//! valgrind's instruction count per proxied request (deterministic, whatever the machine's load).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::results::Callgrind;
use super::spawn::{Extra, Kind, spawn_gateway};
use super::{Env, OBJECT_PATH};
use crate::net::{HttpConn, Target};

/// Sequential GETs on one connection with the same token, counted after 200 uncounted ones.
const COUNTED: u64 = 2000;

/// Runs our gateway under callgrind, counts its instructions for `COUNTED` requests and writes
/// the inclusive and exclusive profiles to the results directory.
pub async fn run(env: &Env) -> Result<Callgrind> {
    eprintln!("[bench] callgrind: instructions per proxied request");
    let out_dir = env.out_dir();
    std::fs::create_dir_all(&out_dir)?;
    let out_file = env.dir.join("callgrind.gateway.out");
    let wrapper: Vec<String> = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        format!("--callgrind-out-file={}", out_file.display()),
    ];
    let s = &env.setup;
    let (mut g, addr) = spawn_gateway(
        Kind::Ours,
        &env.args.gateway,
        &env.dir,
        "gateway-callgrind",
        &s.files,
        &env.api_server,
        &s.ca_file,
        &s.sa_file,
        None,
        &Extra {
            wrapper: Some(&wrapper),
            args: &[],
        },
    )
    .await?;
    let t = Target {
        addr,
        ..env.through.clone()
    };
    let mut c = HttpConn::open(&t).await?;
    for _ in 0..200 {
        c.get(OBJECT_PATH, None).await?;
    }
    callgrind_control(g.pid(), "on")?;
    for _ in 0..COUNTED {
        c.get(OBJECT_PATH, None).await?;
    }
    callgrind_control(g.pid(), "off")?;
    drop(c);
    g.stop();
    let total = annotate(&out_file, &out_dir)?;
    if std::env::var_os("BENCH_KEEP_CALLGRIND").is_some() {
        std::fs::copy(&out_file, out_dir.join("callgrind.gateway.out"))?;
    }
    let c = Callgrind {
        requests: COUNTED,
        instructions: total,
        per_request: total as f64 / COUNTED as f64,
        fresh_tokens: false,
    };
    eprintln!(
        "[bench] callgrind: {:.0} instructions per request",
        c.per_request
    );
    Ok(c)
}

fn callgrind_control(pid: u32, on_off: &str) -> Result<()> {
    let out = Command::new("callgrind_control")
        .args(["-i", on_off, &pid.to_string()])
        .output()?;
    anyhow::ensure!(out.status.success(), "callgrind_control -i {on_off} failed");
    Ok(())
}

/// Writes callgrind-gateway.txt (inclusive and exclusive heads); returns the program total.
fn annotate(out_file: &Path, out_dir: &Path) -> Result<u64> {
    let run = |args: &[&str]| -> Result<String> {
        let o = Command::new("callgrind_annotate")
            .args(args)
            .arg(out_file)
            .output()?;
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    };
    let text = run(&["--inclusive=yes", "--threshold=99"])?;
    let exclusive = run(&["--inclusive=no", "--threshold=95"])?;
    let total: u64 = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(|l| l.split_whitespace().next())
        .map(|v| v.replace(',', ""))
        .and_then(|v| v.parse().ok())
        .context("no PROGRAM TOTALS in callgrind_annotate's output")?;
    let cut = |t: &str, n: usize| -> String {
        t.lines()
            .skip_while(|l| !l.contains("PROGRAM TOTALS"))
            .take(n)
            .collect::<Vec<_>>()
            .join("\n")
    };
    std::fs::write(
        out_dir.join("callgrind-gateway.txt"),
        format!(
            "# valgrind --tool=callgrind on kube-gateway: {COUNTED} sequential GETs through it \
             (one connection, the same token), counted after 200 uncounted ones\n\n\
             ## inclusive (a function and everything it calls)\n{}\n\n## exclusive (self)\n{}\n",
            cut(&text, 200),
            cut(&exclusive, 80)
        ),
    )?;
    Ok(total)
}
