//! Revocation at scale (issue 15): N WebSocket sessions open through our gateway, each with its
//! own token minted for its own GateToken; a fifth of the GateTokens revoked at once, as
//! `kubectl gate revoke` does it (a merge patch `spec.revoked: true`). Measured: per revoked
//! session, when its close reached the client minus when the API server answered its patch (and
//! minus when the patch was sent); the gateway's `kube_gateway_revocation_wakeups_total` before
//! and after (one wake-up per revoked session is the target: the others must see none); and
//! whether every other session is still open and echoes a message afterwards.
//!
//! The gateway's `-api-server` is a split upstream (`gateway-bench upstream --api-proxy`): its
//! GateToken list and watch are forwarded to the real kube-apiserver of the test control plane,
//! its WebSocket upgrades end in that upstream (an echo server), as KubeVirt's VNC would behind
//! the API server. Thousands of sessions through kube-apiserver itself would measure the API
//! server on this 2-core machine, not the gateway. The Go peer has no revocation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use virt_gateway_api::{GateToken, GateTokenSpec};
use virt_gateway_testenv::ControlPlane;

use super::results::{Results, RevocationRun, Spread};
use super::setup::claims;
use super::spawn::{Extra, Kind, spawn_gateway, spawn_upstream_with};
use super::watched::ApiFiles;
use super::{Env, WS_PATH};
use crate::net::{Target, Ws, websocket};
use crate::stats::percentile_sorted;

/// The namespace of the GateTokens (a fresh one: §4c's `bench` holds its own thousands).
const NAMESPACE: &str = "revoke";
/// Patches in flight while revoking "at once" (the API server takes them as fast as it can).
const REVOKE_PARALLEL: usize = 100;
/// How long the revoked sessions may take to close before the rest count as not closed.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Runs the measurement on the control plane of §1b.
pub async fn run(
    env: &Env,
    cp: &ControlPlane,
    api: &ApiFiles<'_>,
    results: &mut Results,
) -> Result<()> {
    let n = env.plan.revocation_sessions;
    let revoked = n / 5;
    eprintln!(
        "[bench] 4d. revocation at scale: {n} WebSocket sessions, {revoked} GateTokens revoked at once"
    );
    let client = cp.client().await;
    grant(client.clone()).await?;
    let tokens: Api<GateToken> = Api::namespaced(client.clone(), NAMESPACE);
    let uids = create_tokens(&tokens, n).await?;
    eprintln!("[bench] revocation: {n} GateTokens created; signing their tokens");
    let jwts = uids
        .iter()
        .map(|uid| {
            Ok(virt_gateway_auth::jwt::sign(
                &env.setup.key,
                &claims(uid.clone()),
            )?)
        })
        .collect::<Result<Vec<String>>>()?;

    let api_addr = api
        .api_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let (_upstream, upstream_addr) = spawn_upstream_with(
        &env.dir,
        "upstream-revocation",
        &env.setup.cert_file,
        &env.setup.serving_key_file,
        &[
            format!("--api-proxy={api_addr}"),
            format!("--api-ca={}", api.ca_file.display()),
        ],
    )?;
    let metrics_port = super::spawn::free_port()?;
    let (gateway, addr) = spawn_gateway(
        Kind::Ours,
        &env.args.gateway,
        &env.dir,
        "gateway-revocation",
        &env.setup.files,
        &format!("https://{upstream_addr}"),
        &env.setup.ca_file,
        api.sa_file,
        None,
        &Extra {
            wrapper: None,
            args: &[
                format!("--revocation-namespaces={NAMESPACE}"),
                format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            ],
        },
    )
    .await?;
    let metrics = Target {
        name: "gateway-metrics".into(),
        addr: ([127, 0, 0, 1], metrics_port).into(),
        tls: None,
        prefix: String::new(),
        authorization: None,
    };
    let target = |jwt: &str| Target {
        name: "gateway".into(),
        addr,
        tls: None,
        prefix: "/k8s".into(),
        authorization: Some(format!("Bearer {jwt}")),
    };

    let t0 = Instant::now();
    let mut sessions = open_sessions(&jwts, &target).await?;
    let open_secs = t0.elapsed().as_secs_f64();
    let rss_open_kib = crate::procs::rss_kib(gateway.pid()).unwrap_or(0);
    eprintln!("[bench] revocation: {n} sessions open in {open_secs:.1} s; revoking {revoked}");

    // Every fifth session is revoked: they are spread over the whole set.
    let mut kept = Vec::new();
    let mut watched = Vec::new();
    for (i, ws) in sessions.drain(..).enumerate() {
        if i % 5 == 0 && watched.len() < revoked {
            watched.push((i, ws));
        } else {
            kept.push((i, ws));
        }
    }
    let closes: Vec<_> = watched
        .into_iter()
        .map(|(i, ws)| (i, tokio::spawn(await_close(ws))))
        .collect();
    let wakeups_before = wakeups(&metrics).await?;
    let start = Instant::now();
    let names: Vec<(usize, String)> = closes
        .iter()
        .map(|(i, _)| (*i, format!("rv-{i:05}")))
        .collect();
    let events = revoke(&tokens, &names).await?;
    let revoke_secs = start.elapsed().as_secs_f64();

    let mut after_ack = Vec::new();
    let mut after_send = Vec::new();
    let mut not_closed = 0;
    let mut last_close_secs = 0.0f64;
    for ((_, close), (sent, acked)) in closes.into_iter().zip(&events) {
        match close.await? {
            Some(at) => {
                after_ack.push(signed_ms(at, *acked));
                after_send.push(signed_ms(at, *sent));
                last_close_secs = last_close_secs.max(signed_ms(at, start) / 1e3);
            }
            None => not_closed += 1,
        }
    }
    // Late wake-ups would still count: give them a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wakeups_after = wakeups(&metrics).await?;
    let (still_working, failed) = check_kept(kept).await;
    drop(gateway);
    let run = RevocationRun {
        sessions: n,
        revoked,
        in_flight: REVOKE_PARALLEL,
        open_secs,
        gateway_rss_open_kib: rss_open_kib,
        revoke_secs,
        last_close_secs,
        close_after_ack_ms: Spread::of(&after_ack),
        close_after_send_ms: Spread::of(&after_send),
        not_closed,
        wakeups: wakeups_after - wakeups_before,
        others: n - revoked,
        others_working: still_working,
        others_failed: failed,
    };
    eprintln!(
        "[bench] revocation: closed max {:.0} ms / p99 {:.0} ms after the API answered (max {:.0} ms after sending), {not_closed} not closed; wake-ups {}; {still_working} of {} others still echo",
        run.close_after_ack_ms.max,
        run.close_after_ack_ms.p99,
        run.close_after_send_ms.max,
        run.wakeups,
        run.others
    );
    results.revocation.push(run);
    Ok(())
}

impl Spread {
    fn of(values: &[f64]) -> Self {
        // Microseconds as u32 for the shared nearest-rank percentile (delays are far below 71 min).
        let mut us: Vec<u32> = values
            .iter()
            .map(|ms| (ms * 1e3).clamp(0.0, f64::from(u32::MAX)) as u32)
            .collect();
        us.sort_unstable();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        Self {
            n: values.len(),
            min: if values.is_empty() { f64::NAN } else { min },
            p50: percentile_sorted(&us, 50.0) / 1e3,
            p99: percentile_sorted(&us, 99.0) / 1e3,
            max: values.iter().copied().fold(f64::NAN, f64::max),
        }
    }
}

/// `a − b` in ms, negative when `a` came first (a close seen before the patch's answer arrived).
fn signed_ms(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(b.duration_since(a).as_secs_f64() * 1e3),
    }
}

/// The namespace, and a Role letting the gateway's ServiceAccount list and watch its GateTokens.
async fn grant(client: Client) -> Result<()> {
    super::apiserver::create_namespace(client.clone(), NAMESPACE).await?;
    super::apiserver::grant_role(
        client,
        NAMESPACE,
        vec![PolicyRule {
            api_groups: Some(vec!["ocgate.yaacov.com".into()]),
            resources: Some(vec!["gatetokens".into()]),
            verbs: vec!["list".into(), "watch".into()],
            ..Default::default()
        }],
    )
    .await?;
    Ok(())
}

/// Creates `rv-00000` … and returns their UIDs (each token's `jti`), in order.
async fn create_tokens(tokens: &Api<GateToken>, n: usize) -> Result<Vec<String>> {
    let created: Vec<(usize, String)> = futures::stream::iter(0..n)
        .map(|i| {
            let tokens = tokens.clone();
            async move {
                let t = GateToken::new(&format!("rv-{i:05}"), GateTokenSpec::default());
                let t = tokens.create(&PostParams::default(), &t).await?;
                Ok::<_, anyhow::Error>((i, t.uid().context("a GateToken without a UID")?))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let mut uids = vec![String::new(); n];
    for (i, uid) in created {
        uids[i] = uid;
    }
    Ok(uids)
}

/// Opens one echo session per token, 64 handshakes at a time (retrying a timed-out handshake).
async fn open_sessions(jwts: &[String], target: &dyn Fn(&str) -> Target) -> Result<Vec<Ws>> {
    let url = format!("{WS_PATH}?mode=echo");
    let opened: Vec<Result<Ws>> = futures::stream::iter(jwts.iter().map(|j| target(j)))
        .map(|t| {
            let url = url.clone();
            async move {
                let mut last = None;
                for _ in 0..3 {
                    match tokio::time::timeout(Duration::from_secs(30), websocket(&t, &url)).await {
                        Ok(Ok(ws)) => return Ok(ws),
                        Ok(Err(e)) => last = Some(e),
                        Err(_) => last = Some(anyhow::anyhow!("handshake timed out")),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
            }
        })
        .buffered(64)
        .collect()
        .await;
    opened.into_iter().collect()
}

/// When the session was closed by the other side (close frame, EOF or error); `None` when it
/// stayed open for `CLOSE_WAIT`.
async fn await_close(mut ws: Ws) -> Option<Instant> {
    let closed = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Instant::now(),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .ok();
    drop(ws);
    closed
}

/// The merge patch of `kubectl gate revoke` on each GateToken, `REVOKE_PARALLEL` in flight;
/// returns, in the order of `names`, when each was sent and when the API server answered.
async fn revoke(
    tokens: &Api<GateToken>,
    names: &[(usize, String)],
) -> Result<Vec<(Instant, Instant)>> {
    let patch = Patch::Merge(serde_json::json!({"spec": {"revoked": true}}));
    let pp = PatchParams::default();
    let times = futures::stream::iter(names.iter())
        .map(|(_, name)| {
            let (tokens, patch, pp) = (tokens.clone(), &patch, &pp);
            async move {
                let sent = Instant::now();
                tokens.patch(name, pp, patch).await?;
                Ok::<_, anyhow::Error>((sent, Instant::now()))
            }
        })
        .buffered(REVOKE_PARALLEL)
        .try_collect()
        .await?;
    Ok(times)
}

/// `kube_gateway_revocation_wakeups_total` from the gateway's metrics listener.
async fn wakeups(metrics: &Target) -> Result<u64> {
    let io = crate::net::connect(metrics).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get("/metrics")
        .header(http::header::HOST, metrics.addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let name = "kube_gateway_revocation_wakeups_total";
    let Some(value) = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
    else {
        bail!("no {name} in the gateway's /metrics");
    };
    Ok(value.trim().parse::<f64>()? as u64)
}

/// Sends a text message on every kept session and waits for its echo: (still working, failed).
async fn check_kept(kept: Vec<(usize, Ws)>) -> (usize, usize) {
    let ok = Arc::new(Mutex::new(0usize));
    let total = kept.len();
    futures::stream::iter(kept)
        .for_each_concurrent(128, |(i, mut ws)| {
            let ok = ok.clone();
            async move {
                let text = format!("still-open-{i}");
                let echoed = tokio::time::timeout(Duration::from_secs(10), async {
                    ws.send(Message::text(text.clone())).await.ok()?;
                    loop {
                        match ws.next().await? {
                            Ok(Message::Text(t)) => return Some(t.as_str() == text),
                            Ok(Message::Close(_)) | Err(_) => return Some(false),
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                if matches!(echoed, Ok(Some(true))) {
                    *ok.lock().await += 1;
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
            }
        })
        .await;
    let ok = *ok.lock().await;
    (ok, total - ok)
}
