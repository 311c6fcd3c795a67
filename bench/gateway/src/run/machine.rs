//! Facts about the machine and the auth core's criterion figures, for the report.

use std::path::Path;
use std::process::Command;

use super::results::{CriterionFigure, Machine};
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn cmd_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

pub fn machine() -> Machine {
    let mut facts = Vec::new();
    facts.push(("nproc".into(), cmd_output("nproc", &[])));
    let lscpu = cmd_output("lscpu", &[]);
    for key in [
        "Architecture",
        "Model name",
        "CPU(s)",
        "Thread(s) per core",
        "Core(s) per socket",
        "Socket(s)",
        "Hypervisor vendor",
        "Virtualization type",
        "L2 cache",
        "L3 cache",
    ] {
        if let Some(v) = lscpu
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
        {
            facts.push((format!("lscpu {key}"), v));
        }
    }
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.to_string())
        })
        .unwrap_or_default();
    facts.push(("memory".into(), mem.replace("MemTotal:", "").trim().into()));
    facts.push(("kernel".into(), cmd_output("uname", &["-srm"])));
    facts.push(("rustc".into(), cmd_output("rustc", &["-V"])));
    facts.push(("go".into(), cmd_output("go", &["version"])));
    facts.push((
        "wrk".into(),
        cmd_output("wrk", &["-v"])
            .lines()
            .next()
            .unwrap_or("")
            .into(),
    ));
    facts.push((
        "perf counters".into(),
        if cmd_output("perf", &["stat", "-e", "instructions", "true"]).contains("not supported") {
            "not supported (KVM guest without a PMU): profiles use perf's cpu-clock sampling".into()
        } else {
            "available".into()
        },
    ));
    facts.push((
        "git".into(),
        format!(
            "{} ({} paths modified or untracked)",
            cmd_output("git", &["rev-parse", "--short", "HEAD"]),
            cmd_output("git", &["status", "--porcelain"])
                .lines()
                .count()
        ),
    ));
    Machine { facts }
}

pub fn busiest_processes() -> String {
    cmd_output("ps", &["-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"])
        .lines()
        .take(5)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn criterion_figures(dir: &Path) -> Vec<CriterionFigure> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let bench = std::fs::read_to_string(p.join("benchmark.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
                let est = std::fs::read_to_string(p.join("estimates.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
                if let (Some(b), Some(e)) = (bench, est) {
                    let id = b["full_id"].as_str().unwrap_or("").to_string();
                    let m = &e["median"];
                    if let Some(median) = m["point_estimate"].as_f64() {
                        out.push(CriterionFigure {
                            id,
                            median_ns: median,
                            ci_ns: (
                                m["confidence_interval"]["lower_bound"]
                                    .as_f64()
                                    .unwrap_or(f64::NAN),
                                m["confidence_interval"]["upper_bound"]
                                    .as_f64()
                                    .unwrap_or(f64::NAN),
                            ),
                        });
                    }
                }
            } else if p.file_name().is_some_and(|n| n != "report" && n != "base") {
                stack.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The newest modification time of criterion's estimates, UTC.
pub fn criterion_date(dir: &Path) -> Option<String> {
    let mut newest: Option<std::time::SystemTime> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "estimates.json")
                && let Ok(t) = e.metadata().and_then(|m| m.modified())
            {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
    }
    let t = jiff::Timestamp::try_from(newest?).ok()?;
    Some(
        t.round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    )
}
