//! Raw results (JSON, CSV) and the Markdown report.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::Result;

use crate::run::{HttpRun, Results};
use crate::stats::{Summary, fmt, summary};

/// Writes results.json and one CSV per section into `dir`.
pub fn write_raw(r: &Results, dir: &Path) -> Result<()> {
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(r)?)?;
    let mut csv = String::from(
        "upstream,target,concurrency,round,requests,seconds,rps,p50_us,p90_us,p99_us,p999_us,max_us,errors,gateway_cpu_s_per_100k,upstream_cpu_s_per_100k,kube_apiserver_cpu_s_per_100k,etcd_cpu_s_per_100k,loadavg\n",
    );
    for h in &r.http {
        let g = |k: &str| {
            h.cpu_per_100k
                .get(k)
                .map_or(String::new(), |v| format!("{v:.4}"))
        };
        let gw = if h.target == "gateway-tls" {
            g("gateway-tls")
        } else {
            g("gateway")
        };
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.3},{:.1},{},{},{},{},{},{},{},{},{},{},{}",
            h.upstream,
            h.target,
            h.concurrency,
            h.round,
            h.wrk.requests,
            h.wrk.duration_us as f64 / 1e6,
            h.rps,
            h.wrk.p50_us,
            h.wrk.p90_us,
            h.wrk.p99_us,
            h.wrk.p999_us,
            h.wrk.max_us,
            h.wrk.errors(),
            gw,
            g("upstream"),
            g("kube-apiserver"),
            g("etcd"),
            h.loadavg
        );
    }
    std::fs::write(dir.join("http.csv"), csv)?;
    let mut csv = String::from(
        "target,round,rate,scheduled,ok,errors,achieved_rate,p50_us,p90_us,p99_us,p999_us,max_us,release_lag_p50_us,release_lag_p99_us,gateway_cpu_s_per_100k,upstream_cpu_s_per_100k\n",
    );
    for f in &r.fixed {
        let o = &f.result;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{:.1},{},{},{},{},{},{},{},{:.4},{:.4}",
            o.target,
            f.round,
            o.rate,
            o.scheduled,
            o.ok,
            o.errors,
            o.achieved_rate,
            o.p50_us,
            o.p90_us,
            o.p99_us,
            o.p999_us,
            o.max_us,
            o.release_lag_p50_us,
            o.release_lag_p99_us,
            f.cpu_per_100k.get("gateway").copied().unwrap_or(f64::NAN),
            f.cpu_per_100k.get("upstream").copied().unwrap_or(f64::NAN),
        );
    }
    std::fs::write(dir.join("fixed-rate.csv"), csv)?;
    let mut csv = String::from(
        "target,direction,round,bytes,seconds,mb_per_s,gateway_cpu_s,upstream_cpu_s\n",
    );
    for w in &r.ws {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.4},{:.1},{:.3},{:.3}",
            w.target,
            w.direction,
            w.round,
            w.bytes,
            w.seconds,
            w.mb_per_s,
            w.cpu_s.get("gateway").copied().unwrap_or(f64::NAN),
            w.cpu_s.get("upstream").copied().unwrap_or(f64::NAN),
        );
    }
    std::fs::write(dir.join("websocket.csv"), csv)?;
    let mut csv = String::from(
        "sessions,round,gateway_rss_before_kib,gateway_rss_open_kib,gateway_rss_closed_kib,gateway_kib_per_session,gateway_threads,upstream_kib_per_session,open_secs\n",
    );
    for i in &r.idle {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.2},{},{:.2},{:.2}",
            i.sessions,
            i.round,
            i.gateway_rss_before_kib,
            i.gateway_rss_open_kib,
            i.gateway_rss_closed_kib,
            i.gateway_kib_per_session,
            i.gateway_threads,
            i.upstream_kib_per_session,
            i.open_secs
        );
    }
    std::fs::write(dir.join("idle-sessions.csv"), csv)?;
    Ok(())
}

/// `to` relative to the directory of `from` (both relative to the same root).
fn rel(from_file: &Path, to: &Path) -> String {
    let norm = |p: &Path| -> Vec<String> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().to_string()),
                _ => None,
            })
            .collect()
    };
    let from: Vec<String> = norm(from_file.parent().unwrap_or(Path::new("")));
    let to_c = norm(to);
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to_c[common..] {
        out.push(c);
    }
    out.to_string_lossy().to_string()
}

fn http_runs<'a>(r: &'a Results, upstream: &str, target: &str, c: u32) -> Vec<&'a HttpRun> {
    let mut v: Vec<&HttpRun> = r
        .http
        .iter()
        .filter(|h| h.upstream == upstream && h.target == target && h.concurrency == c)
        .collect();
    v.sort_by_key(|h| h.round);
    v
}

fn s_of<T>(v: &[T], f: impl Fn(&T) -> f64) -> Option<Summary> {
    summary(&v.iter().map(f).collect::<Vec<_>>())
}

/// Per-round pairs (a, b) by round number.
fn pairs<'a>(a: &[&'a HttpRun], b: &[&'a HttpRun]) -> Vec<(&'a HttpRun, &'a HttpRun)> {
    a.iter()
        .filter_map(|x| b.iter().find(|y| y.round == x.round).map(|y| (*x, *y)))
        .collect()
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

/// The report.
pub fn markdown(r: &Results, raw_dir: &Path, report: &Path, notes: &str) -> String {
    let mut m = String::new();
    let p = &r.plan;
    let link = |to: &str| rel(report, Path::new(to));
    let raw = |f: &str| rel(report, &raw_dir.join(f));
    let _ = writeln!(m, "# Benchmarks: virt-gateway's gateway ({} run)\n", p.mode);
    let _ = writeln!(
        m,
        "Generated by `make bench{}` (`bench/gateway/run.sh{}`; the harness is `bench/gateway`, binary \
         `gateway-bench`). Benchmarks, not tests: nothing here passes or fails `make test`. Started {} \
         (UTC), {:.0} s of wall time. Raw numbers: [`results.json`]({}) and the CSVs beside it \
         ([http]({}), [fixed rate]({}), [WebSocket]({}), [idle sessions]({})).\n",
        if p.mode == "quick" { "-quick" } else { "" },
        if p.mode == "quick" { " --quick" } else { "" },
        r.started,
        r.wall_secs,
        raw("results.json"),
        raw("http.csv"),
        raw("fixed-rate.csv"),
        raw("websocket.csv"),
        raw("idle-sessions.csv"),
    );
    if p.mode == "quick" {
        let _ = writeln!(
            m,
            "> **Smoke run.** Few and short rounds: the figures show that every scenario works, \
             not what they are. The figures to quote are in the full run's report, [`bench/RESULTS.md`]({}).\n",
            link("bench/RESULTS.md")
        );
    }

    // Machine.
    let _ = writeln!(m, "## Machine\n\n| | |\n|---|---|");
    for (k, v) in &r.machine.facts {
        let _ = writeln!(m, "| {k} | {} |", v.replace('|', "/"));
    }
    for (k, v) in &r.load {
        let _ = writeln!(m, "| {k} | {} |", v.replace('|', "/"));
    }
    let _ = writeln!(
        m,
        "\nThe machine may be shared with other work (the load average and busiest processes above \
         say how busy it was) and has 2 cores for everything: the load generator, the gateway, the upstream (and, in §1b, \
         etcd and kube-apiserver). Absolute requests/s are therefore bounded by the machine, not by \
         the gateway alone. Every figure is the **median [min–max] of {} interleaved runs** (for \
         each round the targets run back to back, in alternating order: A B, B A, …, so that drift \
         of the machine's load hits both sides equally); ratios and differences are taken per round \
         pair, then summarised. The most robust figure is CPU seconds per request of the gateway \
         process (§2), which a noisy neighbour barely moves.\n",
        p.http_rounds
    );

    // Go peer.
    go_section(&mut m, r);

    // Targets summary (filled below).
    let mut targets: Vec<(String, String, String)> = Vec::new();

    // ---- 1. HTTP overhead.
    let _ = writeln!(m, "## 1. HTTP overhead (closed loop, wrk)\n");
    let _ = writeln!(
        m,
        "`wrk -t1 -cN -d{}s` (keep-alive connections, each sending its next request when the last \
         answer arrived) after {}s of unrecorded warm-up per target; a Lua script adds the \
         `Authorization` header. **direct**: HTTPS to the upstream with its ServiceAccount-style \
         bearer token. **gateway**: plain HTTP to our `kube-gateway` (release build, `-listen=http://…`, \
         as the operator deploys it without a route) with a {}-byte RS256 token signed by a fresh \
         **RSA-4096** key (auth crate), which verifies it (cached), authorizes the path, and \
         forwards over HTTPS with the ServiceAccount token. **gateway-tls**: the same with \
         `-listen=https://…` (the route variant). Audit lines go to stdout (here `/dev/null`), as \
         in production. GET `{}`; latencies in µs.\n",
        p.http_secs,
        p.warmup_secs,
        r.token_bytes,
        crate::run::OBJECT_PATH
    );
    for (upstream, title) in [
        (
            "minimal",
            "### 1a. Minimal upstream (HTTPS, fixed 1 KiB JSON, Rust/hyper, 2 worker threads)",
        ),
        (
            "kube-apiserver",
            "### 1b. Real kube-apiserver (testenv control plane; GET of one ConfigMap, ~1 KiB)",
        ),
    ] {
        if !r.http.iter().any(|h| h.upstream == upstream) {
            let _ = writeln!(m, "{title}\n\nNot run{}.\n", failure_note(r, upstream));
            continue;
        }
        let _ = writeln!(m, "{title}\n");
        if upstream == "kube-apiserver" {
            let _ = writeln!(
                m,
                "{} interleaved rounds of {}s. The API server authenticates the ServiceAccount token \
                 and authorizes with RBAC on every request, and reads the object from etcd; on 2 \
                 shared cores it, etcd and the load generator compete with the gateway.\n",
                p.api_rounds, p.api_secs
            );
        }
        let _ = writeln!(
            m,
            "| conc. | target | req/s | p50 | p99 | p99.9 | errors | req/s vs direct | added p50 | added p99 |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for &c in &p.concurrency {
            let d = http_runs(r, upstream, "direct", c);
            for target in ["direct", "gateway", "gateway-tls", "go"] {
                let v = http_runs(r, upstream, target, c);
                if v.is_empty() {
                    continue;
                }
                let (ratio, add50, add99) = if target == "direct" {
                    ("".to_string(), "".to_string(), "".to_string())
                } else {
                    let pr = pairs(&v, &d);
                    (
                        fmt(s_of(&pr, |(g, d)| g.rps / d.rps), 2) + "×",
                        fmt(
                            s_of(&pr, |(g, d)| g.wrk.p50_us as f64 - d.wrk.p50_us as f64),
                            0,
                        ),
                        fmt(
                            s_of(&pr, |(g, d)| g.wrk.p99_us as f64 - d.wrk.p99_us as f64),
                            0,
                        ),
                    )
                };
                let _ = writeln!(
                    m,
                    "| {c} | {target} | {} | {} | {} | {} | {} | {ratio} | {add50} | {add99} |",
                    fmt(s_of(&v, |h| h.rps), 0),
                    fmt(s_of(&v, |h| h.wrk.p50_us as f64), 0),
                    fmt(s_of(&v, |h| h.wrk.p99_us as f64), 0),
                    fmt(s_of(&v, |h| h.wrk.p999_us as f64), 0),
                    v.iter().map(|h| h.wrk.errors()).sum::<u64>(),
                );
            }
        }
        let _ = writeln!(m);
        ours_vs_go(&mut m, r, upstream);
    }

    // ---- 2. CPU per request.
    let _ = writeln!(m, "## 2. CPU per 100,000 proxied requests\n");
    let _ = writeln!(
        m,
        "User + system CPU seconds of each process (`/proc/<pid>/stat` utime + stime, read before \
         and after each wrk run) divided by the requests wrk completed in that run, × 100,000. \
         Each run completes {}–{} requests; the figure is normalised, not a separate 100,000-request \
         run. The upstream's own cost per request (direct) is the baseline: what a request costs \
         with no proxy at all.\n",
        r.http.iter().map(|h| h.wrk.requests).min().unwrap_or(0),
        r.http.iter().map(|h| h.wrk.requests).max().unwrap_or(0),
    );
    let _ = writeln!(
        m,
        "| upstream | conc. | gateway CPU s / 100k | upstream CPU s / 100k, direct | upstream CPU s / 100k, via gateway | gateway ÷ upstream (direct) |\n|---|---:|---:|---:|---:|---:|"
    );
    for upstream in ["minimal", "kube-apiserver"] {
        let up_key = if upstream == "minimal" {
            "upstream"
        } else {
            "kube-apiserver"
        };
        for &c in &p.concurrency {
            for target in ["gateway", "gateway-tls", "go"] {
                let g = http_runs(r, upstream, target, c);
                if g.is_empty() {
                    continue;
                }
                let d = http_runs(r, upstream, "direct", c);
                let gw_cpu = |h: &&HttpRun| h.cpu_per_100k.get(target).copied().unwrap_or(f64::NAN);
                let up_cpu = |h: &&HttpRun| h.cpu_per_100k.get(up_key).copied().unwrap_or(f64::NAN);
                let pr = pairs(&g, &d);
                let label = match target {
                    "gateway" => upstream.to_string(),
                    other => format!("{upstream} (**{other}**)"),
                };
                let mut up_label = String::new();
                if upstream == "kube-apiserver" {
                    let etcd =
                        |h: &&HttpRun| h.cpu_per_100k.get("etcd").copied().unwrap_or(f64::NAN);
                    up_label = format!(
                        " (+ etcd {} / {})",
                        fmt(s_of(&d, etcd), 2),
                        fmt(s_of(&g, etcd), 2)
                    );
                }
                let _ = writeln!(
                    m,
                    "| {label} | {c} | {} | {} | {}{up_label} | {} |",
                    fmt(s_of(&g, gw_cpu), 2),
                    fmt(s_of(&d, up_cpu), 2),
                    fmt(s_of(&g, up_cpu), 2),
                    fmt(s_of(&pr, |(g, d)| gw_cpu(g) / up_cpu(d)), 2) + "×",
                );
            }
        }
    }
    rss_table(&mut m, r);
    let fixed_gw: Vec<f64> = r
        .fixed
        .iter()
        .filter(|f| f.result.target == "gateway")
        .map(|f| f.cpu_per_100k.get("gateway").copied().unwrap_or(f64::NAN))
        .collect();
    if !fixed_gw.is_empty() {
        let _ = writeln!(
            m,
            "\nAt the fixed rate of §3 ({} req/s, not saturated) the gateway used {} CPU s per \
             100,000 requests (fewer requests per wake-up than under saturation, so more per \
             request).\n",
            p.fixed_rate,
            fmt(summary(&fixed_gw), 2)
        );
    }
    if let Some(c) = &r.callgrind {
        let _ = writeln!(
            m,
            "\n**Instructions per proxied request** (valgrind `--tool=callgrind`, which counts \
             instructions, not time: the same figure whatever the machine's load): **{:.0}** \
             instructions in the gateway process per GET ({} sequential requests on one keep-alive \
             connection with a cached token, after 200 uncounted ones; kernel work is not counted). \
             The inclusive profile is in [`callgrind-gateway.txt`]({}).\n",
            c.per_request,
            c.requests,
            raw("callgrind-gateway.txt")
        );
    }
    if !r.syscalls.is_empty() {
        let _ = writeln!(
            m,
            "\n**System calls per request** (`strace -c -f` attached to every thread; {} sequential \
             GETs on one keep-alive connection after 200 uncounted ones; counts, not times): the \
             gateway proxying (plain HTTP in, TLS out) against the minimal upstream serving the same \
             GET directly (TLS in). `futex` calls are thread wake-ups.\n\n\
             | process | system calls / request | by call |\n|---|---:|---|",
            r.syscalls[0].requests
        );
        for s in &r.syscalls {
            let by_call: Vec<String> = s
                .by_call
                .iter()
                .filter(|(_, n)| *n >= 0.05)
                .map(|(c, n)| format!("{c} {n:.2}"))
                .collect();
            let _ = writeln!(
                m,
                "| {} | {:.2} | {} |",
                s.process,
                s.per_request,
                by_call.join(", ")
            );
        }
        let _ = writeln!(
            m,
            "\nThe raw tables are `syscalls-*.txt` beside `results.json`.\n"
        );
    }
    targets.extend(http_targets(r));

    // ---- 3. Fixed rate.
    let _ = writeln!(
        m,
        "## 3. Latency at a fixed rate ({} req/s)\n",
        p.fixed_rate
    );
    let _ = writeln!(
        m,
        "wrk2 is not in Debian, so `gateway-bench` has its own open-loop generator: a scheduler \
         thread releases request *i* at *start + i / rate* whatever the answers do, {} keep-alive \
         connections send them, and each latency is measured from the request's **intended** send \
         time (a stall is charged to every request it delayed: no coordinated omission). {} rounds \
         of {}s per target, interleaved. Minimal upstream. The generator runs on a thread of its \
         own with a single-threaded runtime and, where the kernel allows it, real-time priority \
         (SCHED_FIFO; this run: {}), so that on 2 shared cores its own waits for a CPU are not \
         charged to the server. \"release lag\" is how late the scheduler released requests \
         (the generator's own error).\n",
        p.fixed_connections,
        p.fixed_rounds,
        p.fixed_secs,
        if r.fixed.iter().all(|f| f.result.realtime) && !r.fixed.is_empty() {
            "granted"
        } else {
            "not granted"
        }
    );
    let fixed = |t: &str| -> Vec<&crate::run::FixedRun> {
        let mut v: Vec<_> = r.fixed.iter().filter(|f| f.result.target == t).collect();
        v.sort_by_key(|f| f.round);
        v
    };
    let (fd, fg) = (fixed("direct"), fixed("gateway"));
    if fd.is_empty() || fg.is_empty() {
        let _ = writeln!(m, "Not run{}.\n", failure_note(r, "fixed"));
        targets.push((
            "added latency at fixed rate: p50 < 100 µs, p99 < 1 ms".into(),
            "not measured".into(),
            String::new(),
        ));
    } else {
        let _ = writeln!(
            m,
            "| target | achieved req/s | p50 | p90 | p99 | p99.9 | max | errors | release lag p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (name, v) in [("direct", &fd), ("gateway", &fg)] {
            let _ = writeln!(
                m,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(s_of(v, |f| f.result.achieved_rate), 0),
                fmt(s_of(v, |f| f.result.p50_us), 0),
                fmt(s_of(v, |f| f.result.p90_us), 0),
                fmt(s_of(v, |f| f.result.p99_us), 0),
                fmt(s_of(v, |f| f.result.p999_us), 0),
                fmt(s_of(v, |f| f.result.max_us), 0),
                v.iter().map(|f| f.result.errors).sum::<u64>(),
                fmt(s_of(v, |f| f.result.release_lag_p99_us), 0),
            );
        }
        let pr: Vec<_> = fg
            .iter()
            .filter_map(|g| fd.iter().find(|d| d.round == g.round).map(|d| (*g, *d)))
            .collect();
        let a50 = s_of(&pr, |(g, d)| g.result.p50_us - d.result.p50_us);
        let a99 = s_of(&pr, |(g, d)| g.result.p99_us - d.result.p99_us);
        let a999 = s_of(&pr, |(g, d)| g.result.p999_us - d.result.p999_us);
        let _ = writeln!(
            m,
            "\n**Added by the gateway** (per round pair, gateway − direct): p50 **{} µs**, p99 **{} µs**, p99.9 {} µs.\n",
            fmt(a50, 0),
            fmt(a99, 0),
            fmt(a999, 0)
        );
        let met = match (a50, a99) {
            (Some(a), Some(b)) => Some(a.median < 100.0 && b.median < 1000.0),
            _ => None,
        };
        targets.push((
            "added latency at fixed rate over direct: p50 < 100 µs, p99 < 1 ms (minimal upstream)"
                .into(),
            verdict(met).into(),
            format!("p50 +{} µs, p99 +{} µs", fmt(a50, 0), fmt(a99, 0)),
        ));
    }

    // ---- 4. WebSockets.
    let _ = writeln!(m, "## 4. WebSockets\n");
    let _ = writeln!(
        m,
        "### 4a. Throughput\n\n{} MiB each way per transfer, in 64 KiB binary messages, on the VNC \
         path `{}` (subprotocol `plain.kubevirt.io`), to a sink (client → server: timed from the \
         first byte to the sink's `done`) or from a source (server → client: timed from the end of \
         the handshake to the last byte). **direct**: WSS to the upstream; **gateway**: WS to the \
         gateway, which authorizes the upgrade and pipes both ways over WSS to the upstream \
         (following the frames of the server → client direction). Both ends are \
         tokio-tungstenite, the same in both cases. {} interleaved rounds. MB = 10^6 bytes.\n",
        p.ws_bytes >> 20,
        crate::run::WS_PATH,
        p.ws_rounds
    );
    if r.ws.is_empty() {
        let _ = writeln!(m, "Not run{}.\n", failure_note(r, "ws"));
    } else {
        let _ = writeln!(
            m,
            "| direction | direct MB/s | gateway MB/s | gateway ÷ direct | CPU s per GiB, direct: client + upstream | CPU s per GiB, via gateway: client + upstream + **gateway** |\n|---|---:|---:|---:|---:|---:|"
        );
        let mut worst: Option<f64> = None;
        let mut detail = Vec::new();
        for dir in ["client-to-server", "server-to-client"] {
            let sel = |t: &str| -> Vec<&crate::run::WsRun> {
                r.ws.iter()
                    .filter(|w| w.direction == dir && w.target == t)
                    .collect()
            };
            let (d, g) = (sel("direct"), sel("gateway"));
            let pr: Vec<_> = g
                .iter()
                .filter_map(|g| d.iter().find(|d| d.round == g.round).map(|d| (*g, *d)))
                .collect();
            let ratio = s_of(&pr, |(g, d)| g.mb_per_s / d.mb_per_s);
            if let Some(s) = ratio {
                worst = Some(worst.map_or(s.median, |w: f64| w.min(s.median)));
                detail.push(format!("{dir} {:.0}%", s.median * 100.0));
            }
            let per_gib = |w: &crate::run::WsRun, k: &str| {
                w.cpu_s.get(k).copied().unwrap_or(f64::NAN) / (w.bytes as f64 / (1u64 << 30) as f64)
            };
            let _ = writeln!(
                m,
                "| {dir} | {} | {} | {} | {} + {} | {} + {} + **{}** |",
                fmt(s_of(&d, |w| w.mb_per_s), 0),
                fmt(s_of(&g, |w| w.mb_per_s), 0),
                fmt(ratio, 2) + "×",
                fmt(s_of(&d, |w| per_gib(w, "client")), 2),
                fmt(s_of(&d, |w| per_gib(w, "upstream")), 2),
                fmt(s_of(&g, |w| per_gib(w, "client")), 2),
                fmt(s_of(&g, |w| per_gib(w, "upstream")), 2),
                fmt(s_of(&g, |w| per_gib(w, "gateway")), 2),
            );
        }
        let _ = writeln!(m);
        ws_go_table(&mut m, r);
        targets.push((
            "WebSocket throughput ≥ 90% of direct".into(),
            verdict(worst.map(|w| w >= 0.9)).into(),
            detail.join(", "),
        ));
    }
    let _ = writeln!(
        m,
        "### 4b. Memory per idle session\n\nA fresh gateway per count and round; warm-up (100 \
         requests, 32 sessions opened and closed); RSS (`VmRSS` of `/proc/<pid>/status`) read; *n* \
         WebSockets opened through it (64 handshakes at a time) to idle upstream sessions; RSS read \
         again 2 s after the last; **(RSS open − RSS before) / n**. Each session holds a client \
         connection (plain) and an upstream TLS connection in the gateway. The upstream's own \
         figure (a minimal Rust TLS WebSocket server holding the other end) is given for \
         comparison. `ulimit -n` is raised by the harness. {} round(s) per count.\n",
        p.idle_rounds
    );
    if r.idle.is_empty() {
        let _ = writeln!(m, "Not run{}.\n", failure_note(r, "idle"));
        targets.push((
            "< 64 KiB per idle WebSocket session".into(),
            "not measured".into(),
            String::new(),
        ));
    } else {
        let _ = writeln!(
            m,
            "| sessions | target | KiB / session | RSS before → open → closed (KiB) | threads | upstream KiB / session | seconds to open |\n|---:|---|---:|---|---:|---:|---:|"
        );
        let mut worst: Option<f64> = None;
        let mut detail = Vec::new();
        for (&n, target) in p
            .idle_sessions
            .iter()
            .flat_map(|n| [(n, "gateway"), (n, "go")])
        {
            let v: Vec<_> = r
                .idle
                .iter()
                .filter(|i| i.sessions == n && i.target == target)
                .collect();
            if v.is_empty() {
                continue;
            }
            let per = s_of(&v, |i| i.gateway_kib_per_session);
            if let Some(s) = per
                && target == "gateway"
            {
                worst = Some(worst.map_or(s.median, |w: f64| w.max(s.median)));
                detail.push(format!("{n}: {:.1} KiB", s.median));
            }
            let _ = writeln!(
                m,
                "| {n} | {target} | {} | {} → {} → {} | {} | {} | {} |",
                fmt(per, 1),
                fmt(s_of(&v, |i| i.gateway_rss_before_kib as f64), 0),
                fmt(s_of(&v, |i| i.gateway_rss_open_kib as f64), 0),
                fmt(s_of(&v, |i| i.gateway_rss_closed_kib as f64), 0),
                fmt(s_of(&v, |i| i.gateway_threads as f64), 0),
                fmt(s_of(&v, |i| i.upstream_kib_per_session), 1),
                fmt(s_of(&v, |i| i.open_secs), 1),
            );
        }
        let _ = writeln!(m);
        targets.push((
            "< 64 KiB per idle WebSocket session (1,000 and 5,000)".into(),
            verdict(worst.map(|w| w < 64.0)).into(),
            detail.join(", "),
        ));
    }

    watched_section(&mut m, r, &mut targets);
    revocation_section(&mut m, r, &mut targets);
    console_section(&mut m, r);

    // ---- 5. Auth.
    let _ = writeln!(m, "## 5. Auth cost\n");
    let _ = writeln!(
        m,
        "The auth core's criterion benchmarks (verify per algorithm, sign, parse, authorize) and \
         their reading are in [`bench/auth/RESULTS.md`]({}); the full `make bench` re-runs them \
         first.",
        link("bench/auth/RESULTS.md")
    );
    if r.criterion.is_empty() {
        let _ = writeln!(m, " (Not re-run for this report.)\n");
    } else {
        let _ = writeln!(
            m,
            " The latest criterion medians found in `target/criterion` (written {}; the full `make bench` \
             writes them just before this harness runs):\n\n| benchmark | median | 95% CI of the median |\n|---|---:|---:|",
            r.criterion_date.as_deref().unwrap_or("at an unknown time")
        );
        for c in &r.criterion {
            let _ = writeln!(
                m,
                "| {} | {} | {}–{} |",
                c.id,
                ns(c.median_ns),
                ns(c.ci_ns.0),
                ns(c.ci_ns.1)
            );
        }
        let _ = writeln!(m);
    }
    let _ = writeln!(
        m,
        "**Token-cache hit path.** The gateway keeps verified tokens in a map keyed by the \
         SHA-256 of the token (`crates/gateway/src/verify.rs`, `TokenVerifier::verify`). In process, \
         with the gateway's own `TokenVerifier` and an RSA-4096 key: a **hit** (hash + locked map \
         lookup), **no cache** (`virt_gateway_auth::jwt::Verifier::verify`: the signature check a \
         cache saves), and a **miss** (first sight of a token: verify + insert). {} rounds; {} fresh \
         tokens per miss measurement.\n",
        p.micro_rounds,
        p.fresh_tokens / p.micro_rounds.max(1) as usize
    );
    if !r.token_micro.is_empty() {
        let hit = s_of(&r.token_micro, |t| t.hit_ns);
        let nocache = s_of(&r.token_micro, |t| t.nocache_ns);
        let _ = writeln!(
            m,
            "| path | per verification |\n|---|---:|\n| cache hit | {} ns |\n| no cache (RS256-4096 verify) | {} ns |\n| cache miss (verify + insert) | {} ns |\n| hit ÷ no cache | {} |\n",
            fmt(hit, 0),
            fmt(nocache, 0),
            fmt(s_of(&r.token_micro, |t| t.miss_ns), 0),
            fmt(s_of(&r.token_micro, |t| t.hit_ns / t.nocache_ns), 4) + "×",
        );
    }
    if let Some(e) = r.token_e2e.first() {
        let _ = writeln!(
            m,
            "End to end through the gateway (minimal upstream, one keep-alive connection, \
             sequential): for each of {} fresh tokens, its first request (cache miss) and then a \
             second one (hit). First request p50 **{:.0} µs** (p90 {:.0}), repeated p50 **{:.0} µs** \
             (p90 {:.0}); median per-token difference **{:.0} µs** — the RSA-4096 verification \
             that every later request of the same token is spared.\n",
            e.tokens,
            e.first_p50_us,
            e.first_p90_us,
            e.repeat_p50_us,
            e.repeat_p90_us,
            e.added_p50_us
        );
    }

    // ---- 6. Operator.
    let _ = writeln!(
        m,
        "## 6. Operator\n\nMeasured by the operator's own benchmark, `bench/operator/run.sh` (1,000 \
         GateTokens to all Ready with two signing threads and with one, 10,000 GateTokens, peak \
         RSS, cores used, RSA-4096 sign time per token), which the full `make bench` runs and \
         which writes [`bench/operator/RESULTS.md`]({}). Its targets (1,000 tokens Ready in under \
         15 s on this 2-core machine; under 50 MB RSS at 10,000 tokens) are evaluated there.\n",
        link("bench/operator/RESULTS.md")
    );
    targets.push((
        "Operator: 1,000 tokens Ready < 15 s; < 50 MB RSS at 10,000".into(),
        "see bench/operator/RESULTS.md".into(),
        String::new(),
    ));

    // ---- Targets.
    let mut t = String::from(
        "## Targets of issues 8 and 15\n\n| target | verdict | figure |\n|---|---|---|\n",
    );
    for (a, b, c) in &targets {
        let _ = writeln!(t, "| {a} | {b} | {c} |");
    }
    t.push('\n');
    if !r.failures.is_empty() {
        t.push_str("**Sections that failed in this run:**\n\n");
        for (s, e) in &r.failures {
            let _ = writeln!(t, "* {s}: `{}`", e.replace('`', "'").replace('\n', " "));
        }
        t.push('\n');
    }
    // Put the targets right after the Go section.
    let marker = "## 1. HTTP overhead";
    if let Some(pos) = m.find(marker) {
        m.insert_str(pos, &t);
    } else {
        m.push_str(&t);
    }

    if !notes.trim().is_empty() {
        m.push_str("\n---\n\n");
        m.push_str(notes.trim());
        m.push('\n');
    }
    m
}

fn failure_note(r: &Results, section: &str) -> String {
    let key = match section {
        "minimal" => "http",
        "kube-apiserver" => "apiserver",
        s => s,
    };
    r.failures
        .iter()
        .find(|(s, _)| s == key)
        .map(|(_, e)| format!(" (failed: `{}`)", e.replace('`', "'").replace('\n', " ")))
        .unwrap_or_default()
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

/// Median CPU s / 100k of `key`'s process over `runs`.
fn cpu_of(runs: &[&HttpRun], key: &str) -> Option<Summary> {
    s_of(runs, |h| {
        h.cpu_per_100k.get(key).copied().unwrap_or(f64::NAN)
    })
}

/// The verdicts of the closed-loop targets (issue 8: against Go; issue 15: against direct).
fn http_targets(r: &Results) -> Vec<(String, String, String)> {
    let g = http_runs(r, "minimal", "gateway", 16);
    let d = http_runs(r, "minimal", "direct", 16);
    let go = http_runs(r, "minimal", "go", 16);
    let (gd, gg) = (pairs(&g, &d), pairs(&g, &go));
    let ours_cpu = cpu_of(&g, "gateway");
    let up_cpu = cpu_of(&d, "upstream");
    let mut t = Vec::new();
    let no_go = || "not measured (no Go rows: see its section)".to_string();
    let cpu_vs_go = s_of(&gg, |(a, b)| {
        a.cpu_per_100k.get("gateway").copied().unwrap_or(f64::NAN)
            / b.cpu_per_100k.get("go").copied().unwrap_or(f64::NAN)
    });
    t.push((
        "CPU per proxied request ≤ ½ of the Go gateway's (c=16, minimal)".into(),
        cpu_vs_go.map_or_else(no_go, |s| verdict(Some(s.median <= 0.5)).into()),
        format!(
            "ours {} vs Go {} CPU s / 100k; ours ÷ Go {}",
            fmt(ours_cpu, 2),
            fmt(cpu_of(&go, "go"), 2),
            fmt(cpu_vs_go, 2) + "×"
        ),
    ));
    let rps_vs_go = s_of(&gg, |(a, b)| a.rps / b.rps);
    let p99_vs_go = s_of(&gg, |(a, b)| a.wrk.p99_us as f64 / b.wrk.p99_us as f64);
    t.push((
        "≥ 2× the Go gateway's req/s at c=16, lower p99".into(),
        match (rps_vs_go, p99_vs_go) {
            (Some(a), Some(b)) => verdict(Some(a.median >= 2.0 && b.median < 1.0)).into(),
            _ => no_go(),
        },
        format!(
            "ours ÷ Go: req/s {}, p99 {}",
            fmt(rps_vs_go, 2) + "×",
            fmt(p99_vs_go, 2) + "×"
        ),
    ));
    let rps = s_of(&gd, |(a, b)| a.rps / b.rps);
    let p99 = s_of(&gd, |(a, b)| a.wrk.p99_us as f64 / b.wrk.p99_us as f64);
    t.push((
        "≥ 0.6× direct req/s at c=16 with p99 ≤ 2× direct's (minimal)".into(),
        verdict(
            rps.zip(p99)
                .map(|(a, b)| a.median >= 0.6 && b.median <= 2.0),
        )
        .into(),
        format!(
            "{} of direct, p99 {} of direct's",
            fmt(rps, 2) + "×",
            fmt(p99, 2) + "×"
        ),
    ));
    let per_up = s_of(&gd, |(a, b)| {
        a.cpu_per_100k.get("gateway").copied().unwrap_or(f64::NAN)
            / b.cpu_per_100k.get("upstream").copied().unwrap_or(f64::NAN)
    });
    t.push((
        "gateway CPU per request ≤ 2× the upstream's own, and ≤ 1.5 s / 100k (half of 3.0) at c=16"
            .into(),
        verdict(
            per_up
                .zip(ours_cpu)
                .map(|(a, b)| a.median <= 2.0 && b.median <= 1.5),
        )
        .into(),
        format!(
            "{} CPU s / 100k (upstream {}): {} of the upstream's",
            fmt(ours_cpu, 2),
            fmt(up_cpu, 2),
            fmt(per_up, 2) + "×"
        ),
    ));
    t
}

/// The Go peer: what it is, how it runs, and what it cannot do.
fn go_section(m: &mut String, r: &Results) {
    let _ = writeln!(m, "## The peer: the upstream Go gateway (Gen B)\n");
    let Some(bin) = &r.go_peer.binary else {
        let _ = writeln!(
            m,
            "**Not run**: {}. Every figure below is against direct access only; the Go columns \
             are empty.\n",
            if r.go_peer.note.is_empty() {
                "no binary was given (`--go-peer`)"
            } else {
                &r.go_peer.note
            }
        );
        return;
    };
    let _ = writeln!(
        m,
        "`bench/gateway/build-go-peer.sh` builds it from its source \
         (`shared/peers/kube-gateway-gen-b`, Apache-2.0, never copied into this repository) with \
         the source's own `build.sh` (modules from the Go module proxy) and caches the binary by \
         the hash of the source (`{bin}`). It runs beside ours, interleaved, with **the same \
         flags** (`-api-server`, `-ca-file`, `-listen=http://…`, `-jwt-token-key-file` with the \
         same RSA-4096 public key, `-k8s-bearer-token-file`, `-k8s-bearer-token-passthrough=false`, \
         `-oauth-server-disable`, `-public-dir`), the same upstreams and the same token; its \
         target cell is **go**. Its request log (two lines per request on stderr) goes to \
         `/dev/null`, like our audit lines.\n"
    );
    let _ = writeln!(
        m,
        "What it cannot do, so has no figure here: it keeps **no verified-token cache** (an \
         RSA-4096 verification on every request); it has **no revocation** (no GateToken watch: \
         the revocation measurement is ours only); no `/readyz`, no metrics. Its upstream \
         transport keeps Go's default of 2 idle connections per host, so at high concurrency it \
         opens new TLS connections to the upstream. The HTTPS-listener variant, the fixed-rate \
         run, the profiles and callgrind are run for ours only.\n"
    );
    if !r.go_peer.note.is_empty() {
        let _ = writeln!(m, "It failed to start: `{}`.\n", r.go_peer.note);
    }
    for (s, e) in r.failures.iter().filter(|(s, _)| s.starts_with("go")) {
        let _ = writeln!(m, "* {s} failed: `{}`", e.replace('`', "'"));
    }
}

/// Ours against Go, per concurrency, as ratios of per-round pairs.
fn ours_vs_go(m: &mut String, r: &Results, upstream: &str) {
    let p = &r.plan;
    if !r
        .http
        .iter()
        .any(|h| h.upstream == upstream && h.target == "go")
    {
        return;
    }
    let _ = writeln!(
        m,
        "Ours ÷ Go (per round pair; req/s above 1 and latencies below 1 favour ours):\n\n\
         | conc. | req/s | p50 | p99 | p99.9 | Go ÷ direct req/s |\n|---:|---:|---:|---:|---:|---:|"
    );
    for &c in &p.concurrency {
        let (g, go, d) = (
            http_runs(r, upstream, "gateway", c),
            http_runs(r, upstream, "go", c),
            http_runs(r, upstream, "direct", c),
        );
        let pr = pairs(&g, &go);
        let lat = |f: fn(&HttpRun) -> u64| s_of(&pr, |(a, b)| f(a) as f64 / f(b) as f64);
        let _ = writeln!(
            m,
            "| {c} | {} | {} | {} | {} | {} |",
            fmt(s_of(&pr, |(a, b)| a.rps / b.rps), 2) + "×",
            fmt(lat(|h| h.wrk.p50_us), 2) + "×",
            fmt(lat(|h| h.wrk.p99_us), 2) + "×",
            fmt(lat(|h| h.wrk.p999_us), 2) + "×",
            fmt(s_of(&pairs(&go, &d), |(a, b)| a.rps / b.rps), 2) + "×",
        );
    }
    let _ = writeln!(m);
}

/// Resident memory of each gateway after its closed-loop runs.
fn rss_table(m: &mut String, r: &Results) {
    if !r.http.iter().any(|h| !h.rss_kib.is_empty()) {
        return;
    }
    let _ = writeln!(
        m,
        "\n**Resident memory** (`VmRSS`, MiB) of each gateway process right after its runs:\n\n\
         | upstream | conc. | ours | Go |\n|---|---:|---:|---:|"
    );
    for upstream in ["minimal", "kube-apiserver"] {
        for &c in &r.plan.concurrency {
            let rss = |t: &str| {
                s_of(&http_runs(r, upstream, t, c), |h| {
                    h.rss_kib.get(t).map_or(f64::NAN, |k| *k as f64 / 1024.0)
                })
            };
            if http_runs(r, upstream, "gateway", c).is_empty() {
                continue;
            }
            let _ = writeln!(
                m,
                "| {upstream} | {c} | {} | {} |",
                fmt(rss("gateway"), 1),
                fmt(rss("go"), 1)
            );
        }
    }
    let _ = writeln!(m);
}

/// WebSocket throughput through the Go peer, beside ours.
fn ws_go_table(m: &mut String, r: &Results) {
    if !r.ws.iter().any(|w| w.target == "go") {
        return;
    }
    let _ = writeln!(
        m,
        "Through the Go peer (`httputil.ReverseProxy` hijacks the upgraded connection and copies \
         bytes both ways):\n\n| direction | Go MB/s | Go ÷ direct | ours ÷ Go | CPU s per GiB, \
         **Go** |\n|---|---:|---:|---:|---:|"
    );
    for dir in ["client-to-server", "server-to-client"] {
        let sel = |t: &str| -> Vec<&crate::run::WsRun> {
            r.ws.iter()
                .filter(|w| w.direction == dir && w.target == t)
                .collect()
        };
        let (d, g, go) = (sel("direct"), sel("gateway"), sel("go"));
        let ratio = |a: &[&crate::run::WsRun], b: &[&crate::run::WsRun]| {
            let pr: Vec<_> = a
                .iter()
                .filter_map(|x| b.iter().find(|y| y.round == x.round).map(|y| (*x, *y)))
                .collect();
            s_of(&pr, |(x, y)| x.mb_per_s / y.mb_per_s)
        };
        let per_gib = |w: &&crate::run::WsRun| {
            w.cpu_s.get("go").copied().unwrap_or(f64::NAN) / (w.bytes as f64 / (1u64 << 30) as f64)
        };
        let _ = writeln!(
            m,
            "| {dir} | {} | {} | {} | {} |",
            fmt(s_of(&go, |w| w.mb_per_s), 0),
            fmt(ratio(&go, &d), 2) + "×",
            fmt(ratio(&g, &go), 2) + "×",
            fmt(s_of(&go, per_gib), 2),
        );
    }
    let _ = writeln!(m);
}

/// 4c: our gateway's memory with N watched GateTokens (revocation index).
fn watched_section(m: &mut String, r: &Results, targets: &mut Vec<(String, String, String)>) {
    let _ = writeln!(
        m,
        "### 4c. Memory of the revocation index (watched GateTokens)\n\nOn the real \
         kube-apiserver (§1b's control plane, the project's CRDs installed): RSS of our gateway \
         whose GateToken watch (`--revocation-namespaces=bench`) synced the empty namespace, \
         then of a fresh one that synced {} GateTokens created there; each read 1 s after \
         `/readyz` turned 200 (which waits for the initial list). The index keeps, per token, its \
         `jti` (the map's key) and 16 bytes: revoked/completed flags, `exp`, and which watch \
         and which list delivered it; never the object, nor its namespace as a string. The Go \
         peer has no revocation watch.\n",
        r.plan.watched_tokens
    );
    let Some(w) = r.watched.first() else {
        let _ = writeln!(m, "Not run{}.\n", failure_note(r, "watched"));
        return;
    };
    let _ = writeln!(
        m,
        "| GateTokens | RSS, empty index (KiB) | RSS, {} tokens (KiB) | bytes per token | seconds to create them | seconds to ready |\n|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {:.0} | {:.1} | {:.1} |\n",
        w.tokens,
        w.tokens,
        w.rss_empty_kib,
        w.rss_kib,
        w.bytes_per_token,
        w.create_secs,
        w.sync_secs
    );
    targets.push((
        "gateway RSS with 10,000 watched GateTokens reported and kept small".into(),
        "reported".into(),
        format!(
            "{:.1} MiB with {} ({:.0} bytes per token)",
            w.rss_kib as f64 / 1024.0,
            w.tokens,
            w.bytes_per_token
        ),
    ));
}

/// 4d: revocation at scale (sessions closed after their GateToken's revocation, wake-ups).
fn revocation_section(m: &mut String, r: &Results, targets: &mut Vec<(String, String, String)>) {
    let n = r.plan.revocation_sessions;
    let _ = writeln!(
        m,
        "### 4d. Revocation at scale\n\n{n} WebSocket sessions are open through our gateway \
         (`--revocation-namespaces=revoke`), each with its own RSA-4096 token whose `jti` is the \
         UID of its own GateToken; then every fifth GateToken ({}) is revoked as `kubectl gate \
         revoke` does it (merge patch `spec.revoked: true`, {} in flight). Per revoked session: \
         when its close reached the client, minus when the API server answered that token's \
         patch (negative: the close arrived first), and minus when the patch was sent (an upper \
         bound). Wake-ups are the gateway's `kube_gateway_revocation_wakeups_total` after − \
         before (one per revoked session is the target: any more woke other sessions); then \
         every other session sends a message and must get its echo. The gateway's API server \
         is a split upstream: its GateToken list and watch go on to the real kube-apiserver \
         (§1b's control plane), its WebSockets end in an echo server, as KubeVirt's would \
         behind the API server. Latencies in ms: p50 / p99 / max. The Go peer has no \
         revocation.\n",
        n / 5,
        r.revocation
            .first()
            .map_or_else(|| "several".to_string(), |v| v.in_flight.to_string())
    );
    let Some(v) = r.revocation.first() else {
        let _ = writeln!(m, "Not run{}.\n", failure_note(r, "revocation"));
        targets.push((
            "revocation at scale: 5,000 WebSocket sessions, 1,000 GateTokens revoked at once"
                .into(),
            "not measured in this run".into(),
            failure_note(r, "revocation"),
        ));
        return;
    };
    let spread = |s: &crate::run::Spread| format!("{:.0} / {:.0} / {:.0}", s.p50, s.p99, s.max);
    let _ = writeln!(
        m,
        "| sessions | revoked | closed after the API's answer | closed after the patch was sent | not closed | first patch → last close (s) | wake-ups | others still echoing | opened in (s) | gateway RSS open (KiB) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {} | {:.2} | {} | {} of {} | {:.1} | {} |\n",
        v.sessions,
        v.revoked,
        spread(&v.close_after_ack_ms),
        spread(&v.close_after_send_ms),
        v.not_closed,
        v.last_close_secs,
        v.wakeups,
        v.others_working,
        v.others,
        v.open_secs,
        v.gateway_rss_open_kib,
    );
    let closed_in_time = v.not_closed == 0 && v.close_after_ack_ms.max < 1000.0;
    let no_other_wakeup = v.wakeups as usize <= v.revoked && v.others_failed == 0;
    targets.push((
        format!(
            "revocation at scale: {} WebSocket sessions, {} GateTokens revoked at once: closed \
             within 1 s of the API event, the others see no wake-up",
            v.sessions, v.revoked
        ),
        verdict(Some(closed_in_time && no_other_wakeup)).into(),
        format!(
            "closed max {:.0} ms, p99 {:.0} ms after the API's answer ({:.0} / {:.0} ms after the \
             patch was sent), {} not closed; {} wake-ups for {} revoked sessions; {} of {} others \
             still echo",
            v.close_after_ack_ms.max,
            v.close_after_ack_ms.p99,
            v.close_after_send_ms.max,
            v.close_after_send_ms.p99,
            v.not_closed,
            v.wakeups,
            v.revoked,
            v.others_working,
            v.others
        ),
    ));
}

/// §4e: issue 16's shared console against one direct viewer.
fn console_section(m: &mut String, r: &Results) {
    use crate::consolescreen::{BAND, CHANGES_PER_SEC, HEIGHT, WIDTH};
    let _ = writeln!(
        m,
        "### 4e. Shared consoles (issue 16): 1 controller + {} observers vs one direct viewer\n\n\
         The minimal upstream serves the VMI `{}` as a VNC server whose {WIDTH}×{HEIGHT} screen \
         changes continuously: {CHANGES_PER_SEC} times a second a {BAND}-row band of a moving \
         gradient is repainted (the whole screen turns over {} times a second), sent Raw to \
         whoever asked. Viewers behave as noVNC does (its pixel format; ZRLE, CopyRect, Raw, \
         desktop size and name; each update decoded, the next one asked for at once; the \
         controller also moves the pointer once per update). **direct**: one viewer through a \
         gateway without `--shared-consoles` (the WebSocket passed through, the upstream's Raw \
         bytes relayed). **shared**: a fresh gateway with `--shared-consoles`, one controller \
         and {} observers (tokens with `consoleRole: observe`) on one upstream connection: the \
         gateway decodes the screen once and encodes each viewer's updates (ZRLE). Gateway CPU \
         (`utime+stime` of `/proc/<pid>/stat`, percent of one core) over {} s after a warm-up, \
         RSS at the end and its peak (`VmHWM`). {} round(s).\n",
        crate::run::console::OBSERVERS,
        crate::consolescreen::VMI,
        CHANGES_PER_SEC * u64::from(BAND) / u64::from(HEIGHT),
        crate::run::console::OBSERVERS,
        r.plan.console_secs,
        r.plan.console_rounds
    );
    if r.console.is_empty() {
        let _ = writeln!(m, "Not run{}.\n", failure_note(r, "console"));
        return;
    }
    let _ = writeln!(
        m,
        "| scenario | viewers | gateway CPU % | RSS before → end (KiB) | peak RSS (KiB) | updates/s per viewer (slowest, fastest) | MB/s to viewers |\n|---|---:|---:|---|---:|---|---:|"
    );
    for scenario in ["direct", "shared"] {
        let v: Vec<_> = r
            .console
            .iter()
            .filter(|c| c.scenario == scenario)
            .collect();
        if v.is_empty() {
            continue;
        }
        let _ = writeln!(
            m,
            "| {scenario} | {} | {} | {} → {} | {} | {}, {} | {} |",
            v[0].controllers + v[0].observers,
            fmt(s_of(&v, |c| c.gateway_cpu_percent), 1),
            fmt(s_of(&v, |c| c.gateway_rss_before_kib as f64), 0),
            fmt(s_of(&v, |c| c.gateway_rss_kib as f64), 0),
            fmt(s_of(&v, |c| c.gateway_peak_rss_kib as f64), 0),
            fmt(s_of(&v, |c| c.updates_per_s_min), 1),
            fmt(s_of(&v, |c| c.updates_per_s_max), 1),
            fmt(s_of(&v, |c| c.mb_per_s_to_viewers), 1),
        );
    }
    let _ = writeln!(m);
}
