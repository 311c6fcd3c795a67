//! Long-lived responses: when a session must end (the token expires, is revoked, the gateway shuts
//! down), streamed bodies that end then, and WebSocket sessions with their metrics and their
//! `websocket_close` audit line.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::upgrade::OnUpgrade;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use virt_gateway_auth::jwt::expires_at;

use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
pub use virt_gateway_console::Role as ConsoleRole;
use virt_gateway_console::rfb::messages::InputKind;

use crate::audit::AuditCtx;
use crate::authn::Principal;
use crate::console::{self, ConsoleKey, Consoles, ViewerEnd};
use crate::limits::{SlotGuard, SlotRefusal, WebSocketSlots};
use crate::metrics::Metrics;
use crate::outcome::{Decision, Outcome};
use crate::revocation::{Refusal, Revocation};
use crate::websocket::{self, Kill, SessionBytes, SessionEnd};

/// When (as a tokio instant) a token with `exp` stops verifying: a token is valid while
/// `now <= exp + leeway` in whole seconds, so it stops at the start of the next second. `None`:
/// never (an `exp` beyond what the clock can represent, up to `u64::MAX`, must not panic).
pub fn expiry_instant(exp: u64, leeway: Duration) -> Option<tokio::time::Instant> {
    let deadline = expires_at(exp, leeway)?;
    let remaining = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::Instant::now().checked_add(remaining)
}

/// The bounds of WebSocket sessions (review §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebSocketLimits {
    /// Open sessions in total.
    pub max_total: usize,
    /// Open sessions of one token.
    pub max_per_token: usize,
    /// A session without data either way for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// A session is closed this long after it opened.
    pub max_duration: Option<Duration>,
}

impl Default for WebSocketLimits {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            max_total: 512,
            max_per_token: 8,
            idle_timeout: None,
            max_duration: None,
        }
    }
}

/// Ends sessions: knows the shutdown signal, the revocation index and the leeway, and tracks the
/// WebSocket session tasks and their slots.
pub struct Sessions {
    shutdown: CancellationToken,
    revocation: Option<Arc<Revocation>>,
    leeway: Duration,
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    limits: WebSocketLimits,
    slots: Arc<WebSocketSlots>,
}

impl Sessions {
    /// Sessions that end on `shutdown`, on revocation in `revocation`, and at expiry (`exp` plus
    /// `leeway`).
    pub fn new(
        shutdown: CancellationToken,
        revocation: Option<Arc<Revocation>>,
        leeway: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limits = WebSocketLimits::default();
        Self {
            shutdown,
            revocation,
            leeway,
            tasks: TaskTracker::new(),
            metrics,
            slots: Arc::new(WebSocketSlots::new(limits.max_total, limits.max_per_token)),
            limits,
        }
    }

    /// Bounds WebSocket sessions by `limits`.
    #[must_use]
    pub fn with_websocket_limits(mut self, limits: WebSocketLimits) -> Self {
        self.slots = Arc::new(WebSocketSlots::new(limits.max_total, limits.max_per_token));
        self.limits = limits;
        self
    }

    /// A slot for one more WebSocket session of `principal`, taken before the upgrade is
    /// forwarded (so a refused one costs the API server nothing) and held until it ends.
    pub fn open_slot(&self, principal: &Principal) -> Result<SlotGuard, SlotRefusal> {
        self.slots.try_open(self.slots.key(principal))
    }

    /// What ends a WebSocket session: [`Sessions::kill`], and the idle timeout and maximum
    /// length, measured on `bytes`.
    pub fn websocket_kill(
        &self,
        principal: &Principal,
        bytes: Arc<SessionBytes>,
    ) -> BoxFuture<'static, Kill> {
        self.bounded_kill(principal, Some(bytes))
    }

    /// [`Sessions::kill`] and the maximum length, plus the idle timeout when `bytes` are
    /// counted (a shared console viewer's are not: it gets the maximum length only).
    fn bounded_kill(
        &self,
        principal: &Principal,
        bytes: Option<Arc<SessionBytes>>,
    ) -> BoxFuture<'static, Kill> {
        let kill = self.kill(principal);
        let WebSocketLimits {
            idle_timeout,
            max_duration,
            ..
        } = self.limits;
        let ends = max_duration.and_then(|d| tokio::time::Instant::now().checked_add(d));
        async move {
            let idle = async {
                match (idle_timeout, &bytes) {
                    (Some(limit), Some(bytes)) => bytes.idle_for(limit).await,
                    _ => futures::future::pending().await,
                }
            };
            let too_long = async {
                match ends {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                k = kill => k,
                () = idle => Kill::Idle,
                () = too_long => Kill::SessionLimit,
            }
        }
        .boxed()
    }

    /// The WebSocket session tasks (shutdown waits for them).
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// A future resolving when a session of `principal` must end: expiry, revocation or shutdown.
    pub fn kill(&self, principal: &Principal) -> BoxFuture<'static, Kill> {
        let shutdown = self.shutdown.clone();
        // A signed-in person's streams end with the session (the API server checked the person
        // when the stream opened).
        let expiry = principal
            .claims()
            .map(|c| c.exp)
            .or(principal.session_ends())
            .and_then(|exp| expiry_instant(exp, self.leeway));
        let revocation = self.revocation.clone();
        let jti = principal.jti().map(str::to_owned);
        let verified = principal.claims().is_some();
        async move {
            let expired = async {
                match expiry {
                    // Already over: end now (a timer due "now" may only fire on the next tick).
                    Some(at) if at <= tokio::time::Instant::now() => {}
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => futures::future::pending::<()>().await,
                }
            };
            let revoked = async {
                match &revocation {
                    Some(r) if verified => r.wait_refused(jti).await,
                    _ => futures::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => Kill::Shutdown,
                () = expired => Kill::Expired,
                // A GateToken the operator marked Completed has expired: say so, not "revoked" (the
                // operator marks it at `exp`, before our own timer, which allows for clock leeway).
                r = revoked => match r {
                    Refusal::Completed => Kill::Expired,
                    r => Kill::Revoked(r.message()),
                },
            }
        }
        .boxed()
    }

    /// The response body of `principal`: a small body with a known length is passed as it is
    /// (it ends on its own, like a response finished just before a revocation); anything else —
    /// a watch, `follow`, chunked or large — is cut when the session ends ([`Self::stream`]).
    /// Only the latter pay for the kill future, its timer and its revocation subscription.
    pub fn body<B>(&self, headers: &http::HeaderMap, body: B, principal: &Principal) -> Body
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if ends_on_its_own(headers) {
            Body::new(body)
        } else {
            self.stream(body, principal)
        }
    }

    /// A streamed response body of `principal` that ends with its session.
    pub fn stream<B>(&self, body: B, principal: &Principal) -> Body
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Body::new(SessionBody {
            inner: body,
            kill: Some(self.kill(principal)),
        })
    }

    /// Runs one viewer of a shared console: waits for the client's upgrade, frames its
    /// WebSocket, attaches it to `key`'s console (opening the upstream with `connect` when
    /// there is none), and ends it alone, with the close code of its kill, when its token ends.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_console<F, Fut, U>(
        &self,
        consoles: Consoles,
        key: ConsoleKey,
        client: OnUpgrade,
        connect: F,
        principal: &Principal,
        audit: AuditCtx,
        opened: Outcome,
        slot: SlotGuard,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = std::io::Result<U>> + Send,
        U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let kill = self.bounded_kill(principal, None);
        let role = console_role(principal);
        let metrics = self.metrics.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            let Ok(io) = client.await else {
                tracing::warn!("WebSocket upgrade did not complete");
                return;
            };
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), WsRole::Server, None).await;
            let (bytes, close) = console::websocket_bytes(ws);
            // The close frame goes out when the kill fires, before the viewer's stream is
            // dropped, so the bridge sends the frame rather than a bare end.
            let close = Arc::new(std::sync::Mutex::new(Some(close)));
            let send_close = {
                let close = close.clone();
                move |frame: (u16, &'static str)| {
                    let sender = close.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(sender) = sender {
                        let _ = sender.send(frame);
                    }
                }
            };
            let kill = {
                let send_close = send_close.clone();
                async move {
                    let kill = kill.await;
                    send_close(kill.close());
                    kill
                }
                .boxed()
            };
            metrics.websocket_sessions.inc();
            let viewer = ConsoleViewer::new(&key, role);
            audit.write(&viewer.record(&audit, "console_join", &opened));
            let dropped_metric = metrics.console_input_dropped.clone();
            let dropped = viewer.dropped.clone();
            let on_drop = move |kind: InputKind| {
                dropped.fetch_add(1, Ordering::Relaxed);
                dropped_metric
                    .get_or_create(&[("kind", kind.as_str())])
                    .inc();
            };
            // One statement each: a Family guard held while another label set is created
            // (a write lock) would deadlock.
            let from_viewer = metrics
                .console_bytes
                .get_or_create(&[("direction", "from_viewer")])
                .clone();
            let to_viewer = metrics
                .console_bytes
                .get_or_create(&[("direction", "to_viewer")])
                .clone();
            let counters = (from_viewer, to_viewer);
            // Lent, not given: the viewer's stream must outlive the close frame sent below.
            let mut bytes = console::Counted::new(bytes, viewer.bytes.clone(), counters);
            let end = consoles
                .attach(key, connect, &mut bytes, role, &on_drop, kill)
                .await;
            metrics.websocket_sessions.dec();
            let (end, detail) = match end {
                ViewerEnd::Killed(kill) => (SessionEnd::Killed(kill), None),
                ViewerEnd::Left(Ok(())) => (SessionEnd::Closed, None),
                // The viewer hears only that the console is gone; the audit line says why (an
                // API server's status or a protocol error: never a credential).
                ViewerEnd::Unavailable(e) => {
                    tracing::info!(error = %e, "console unavailable");
                    send_close((1011, "console unavailable"));
                    (SessionEnd::ConsoleUnavailable, Some(e.to_string()))
                }
                ViewerEnd::Left(Err(e)) => {
                    tracing::info!(error = %e, "console viewer ended");
                    send_close((1011, "console ended"));
                    (SessionEnd::ConsoleUnavailable, Some(e.to_string()))
                }
            };
            drop(bytes);
            let mut outcome = closed(&metrics, opened, &end);
            if let Some(detail) = detail {
                outcome.detail = Some(detail.into());
            }
            audit.write(&viewer.leave_record(&audit, &outcome));
            let mut record = audit.record(
                "websocket_close",
                &outcome,
                101,
                viewer.bytes.to_viewer.load(Ordering::Relaxed),
            );
            record.bytes_from_client = Some(viewer.bytes.from_viewer.load(Ordering::Relaxed));
            audit.write(&record);
        });
    }

    /// Runs the WebSocket session of an upgraded request: waits for both upgrades, pipes the
    /// bytes until a side closes or the session must end, then writes `websocket_close`.
    pub fn spawn_websocket(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        principal: &Principal,
        audit: AuditCtx,
        opened: Outcome,
        slot: SlotGuard,
    ) {
        let bytes = Arc::new(SessionBytes::default());
        let kill = self.websocket_kill(principal, bytes.clone());
        let metrics = self.metrics.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            let (client_io, upstream_io) = match tokio::join!(client, upstream) {
                (Ok(c), Ok(u)) => (c, u),
                _ => {
                    tracing::warn!("WebSocket upgrade did not complete");
                    return;
                }
            };
            metrics.websocket_sessions.inc();
            let end =
                websocket::pipe(client_io, upstream_io, kill, bytes.clone(), metrics.clone()).await;
            metrics.websocket_sessions.dec();
            let outcome = closed(&metrics, opened, &end);
            let mut record = audit.record(
                "websocket_close",
                &outcome,
                101,
                bytes.to_client.load(Ordering::Relaxed),
            );
            record.bytes_from_client = Some(bytes.from_client.load(Ordering::Relaxed));
            audit.write(&record);
        });
    }
}

/// One shared-console viewer, as its `console_join` and `console_leave` audit lines see it.
struct ConsoleViewer {
    vm: String,
    role: ConsoleRole,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    bytes: Arc<console::ViewerBytes>,
}

impl ConsoleViewer {
    fn new(key: &ConsoleKey, role: ConsoleRole) -> Self {
        Self {
            vm: format!("{}/{}", key.namespace, key.name),
            role,
            dropped: Arc::default(),
            bytes: Arc::default(),
        }
    }

    /// A record of `event` naming the VM and the role (and, through `outcome`, the `jti`).
    fn record(
        &self,
        audit: &AuditCtx,
        event: &'static str,
        outcome: &Outcome,
    ) -> crate::audit::AuditRecord {
        let mut record = audit.record(event, outcome, 101, 0);
        record.vm = Some(self.vm.clone());
        record.role = Some(console::role_label(self.role));
        record
    }

    /// The `console_leave` line: how it ended, how long it lasted, bytes each way, input dropped.
    fn leave_record(&self, audit: &AuditCtx, outcome: &Outcome) -> crate::audit::AuditRecord {
        let mut record = self.record(audit, "console_leave", outcome);
        record.bytes = self.bytes.to_viewer.load(Ordering::Relaxed);
        record.bytes_from_client = Some(self.bytes.from_viewer.load(Ordering::Relaxed));
        record.input_dropped = Some(self.dropped.load(Ordering::Relaxed));
        record
    }
}

/// Counts a WebSocket session's end and turns its opening outcome into the closing one: the
/// gateway's own ends (expiry, revocation, idle, time limit) are denials, with their reason.
/// One place for plain and shared-console sessions, so that their audit lines cannot drift.
fn closed(metrics: &Metrics, opened: Outcome, end: &SessionEnd) -> Outcome {
    metrics
        .websocket_closed
        .get_or_create(&[("reason", end.reason().as_str())])
        .inc();
    let mut outcome = opened;
    outcome.reason = end.reason();
    outcome.decision = match end {
        SessionEnd::Killed(Kill::Expired | Kill::Revoked(_) | Kill::Idle | Kill::SessionLimit) => {
            Decision::Deny
        }
        SessionEnd::ConsoleUnavailable => Decision::Error,
        _ => Decision::Allow,
    };
    outcome.detail = match end {
        SessionEnd::Killed(Kill::Revoked(text)) => Some((*text).into()),
        SessionEnd::Killed(k @ (Kill::Idle | Kill::SessionLimit)) => Some(k.close().1.into()),
        _ => None,
    };
    outcome
}

/// Bodies up to this size with a `Content-Length` are sent without a kill future.
pub const SHORT_BODY: u64 = 1 << 20;

/// Whether a response with `headers` ends by itself soon: a `Content-Length` of at most
/// [`SHORT_BODY`] bytes.
pub fn ends_on_its_own(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= SHORT_BODY)
}

/// A streamed upstream body that ends when the token expires, is revoked (with an error, so the
/// client sees an aborted response) or the gateway shuts down (a clean end, so watch clients
/// simply reconnect elsewhere).
struct SessionBody<B> {
    inner: B,
    kill: Option<BoxFuture<'static, Kill>>,
}

impl<B> HttpBody for SessionBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(kill) = self.kill.as_mut()
            && let Poll::Ready(reason) = kill.as_mut().poll(cx)
        {
            self.kill = None;
            return match reason {
                Kill::Shutdown => Poll::Ready(None),
                other => Poll::Ready(Some(Err(
                    format!("stream ended: {}", other.close().1).into()
                ))),
            };
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The console role a principal's token grants: `control` when the claim is absent (tokens
/// issued before roles, the seed sample) or says so; any other value watches only (fail closed).
pub fn console_role(principal: &Principal) -> ConsoleRole {
    match principal.claims().map(|c| c.console_role.as_deref()) {
        None | Some(None) | Some(Some("control")) => ConsoleRole::Control,
        Some(Some(_)) => ConsoleRole::Observe,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::{BodyExt, StreamBody};
    use kube::runtime::watcher::Event;
    use virt_gateway_api::{GateToken, GateTokenData, GateTokenSpec, GateTokenStatus};
    use virt_gateway_auth::jwt::{Claims, VerifiedToken};
    use virt_gateway_auth::keys::KeyAlgorithm;

    use super::*;
    use crate::token::{Credential, TokenSource};
    use crate::util::now_unix;

    fn principal(exp: u64, jti: &str) -> Principal {
        let mut claims = Claims::new(exp);
        claims.jti = Some(jti.into());
        Principal::Token {
            credential: Credential {
                token: "t".into(),
                source: TokenSource::Cookie,
            },
            verified: Arc::new(VerifiedToken {
                claims,
                kid: "k".into(),
                algorithm: KeyAlgorithm::EcdsaP256,
                kid_in_header: true,
            }),
        }
    }

    /// No claim (the seed sample, tokens from before roles) controls; `observe` and any value
    /// this gateway does not know only watch (fail closed); pass-through never reaches here.
    #[test]
    fn console_role_defaults_to_control_and_fails_closed() {
        let with = |role: Option<&str>| {
            let mut p = principal(4_102_444_800, "j");
            if let Principal::Token { verified, .. } = &mut p {
                let mut v = (**verified).clone();
                v.claims.console_role = role.map(str::to_owned);
                *verified = Arc::new(v);
            }
            console_role(&p)
        };
        assert_eq!(with(None), ConsoleRole::Control);
        assert_eq!(with(Some("control")), ConsoleRole::Control);
        for other in ["observe", "Control", "admin", ""] {
            assert_eq!(with(Some(other)), ConsoleRole::Observe, "{other:?}");
        }
    }

    fn gatetoken(uid: &str, revoked: bool) -> GateToken {
        let mut t = GateToken::new(
            "t",
            GateTokenSpec {
                revoked,
                ..GateTokenSpec::default()
            },
        );
        t.metadata.namespace = Some("a".into());
        t.metadata.uid = Some(uid.into());
        t.status = Some(GateTokenStatus {
            phase: "Ready".into(),
            data: GateTokenData {
                exp: 4_000_000_000,
                ..GateTokenData::default()
            },
            ..GateTokenStatus::default()
        });
        t
    }

    #[tokio::test]
    async fn a_session_ends_at_expiry_on_revocation_and_on_shutdown() {
        let metrics = Arc::new(Metrics::new());
        let revocation = Arc::new(Revocation::new(
            vec!["a".into()],
            Duration::from_millis(10),
            metrics.clone(),
        ));
        revocation.apply("a", Event::Init);
        revocation.apply("a", Event::InitApply(gatetoken("u1", false)));
        revocation.apply("a", Event::InitDone);
        let shutdown = CancellationToken::new();
        let sessions = Sessions::new(
            shutdown.clone(),
            Some(revocation.clone()),
            Duration::ZERO,
            metrics,
        );
        // Expired a second ago: ends at once.
        let kill = sessions.kill(&principal(now_unix().saturating_sub(2), "u1"));
        assert_eq!(kill.await, Kill::Expired);
        // Revocation.
        let kill = sessions.kill(&principal(now_unix() + 3600, "u1"));
        revocation.apply("a", Event::Apply(gatetoken("u1", true)));
        assert_eq!(kill.await, Kill::Revoked("token revoked"));
        // Shutdown.
        revocation.apply("a", Event::Apply(gatetoken("u2", false)));
        let kill = sessions.kill(&principal(now_unix() + 3600, "u2"));
        shutdown.cancel();
        assert_eq!(kill.await, Kill::Shutdown);
    }

    /// Review §11: an idle or endless session held its slot and the VM's console forever.
    #[tokio::test(start_paused = true)]
    async fn a_websocket_ends_when_idle_for_too_long_or_at_its_maximum_length() {
        let sessions = |idle, max| {
            Sessions::new(
                CancellationToken::new(),
                None,
                Duration::ZERO,
                Arc::new(Metrics::new()),
            )
            .with_websocket_limits(WebSocketLimits {
                idle_timeout: idle,
                max_duration: max,
                ..WebSocketLimits::default()
            })
        };
        let token = principal(now_unix() + 3600, "u1");
        let secs = Duration::from_secs;

        // Idle: data at 9 s moves the deadline to 19 s.
        let idle = sessions(Some(secs(10)), None);
        let bytes = Arc::new(SessionBytes::default());
        let mut kill = idle.websocket_kill(&token, bytes.clone());
        tokio::time::sleep(secs(9)).await;
        bytes.touch();
        assert!(
            futures::poll!(kill.as_mut()).is_pending(),
            "not idle at 9 s"
        );
        tokio::time::sleep(secs(9)).await;
        assert!(
            futures::poll!(kill.as_mut()).is_pending(),
            "data at 9 s keeps it open at 18 s"
        );
        tokio::time::sleep(secs(2)).await;
        assert_eq!(kill.await, Kill::Idle);

        // Maximum length: traffic does not extend it.
        let limited = sessions(None, Some(secs(60)));
        let bytes = Arc::new(SessionBytes::default());
        let mut kill = limited.websocket_kill(&token, bytes.clone());
        for _ in 0..59 {
            tokio::time::sleep(secs(1)).await;
            bytes.touch();
        }
        assert!(futures::poll!(kill.as_mut()).is_pending());
        tokio::time::sleep(secs(1)).await;
        assert_eq!(kill.await, Kill::SessionLimit);
        assert_eq!(
            Kill::SessionLimit.close(),
            (4009, "session time limit reached")
        );
        assert_eq!(Kill::Idle.close(), (4008, "session idle for too long"));

        // Neither set: only the token's own end.
        let open = sessions(None, None);
        let mut kill = open.websocket_kill(&token, Arc::new(SessionBytes::default()));
        tokio::time::sleep(secs(3000)).await;
        assert!(futures::poll!(kill.as_mut()).is_pending());
    }

    #[tokio::test]
    async fn a_streamed_body_is_cut_when_its_session_ends() {
        let shutdown = CancellationToken::new();
        let sessions = Sessions::new(
            shutdown.clone(),
            None,
            Duration::ZERO,
            Arc::new(Metrics::new()),
        );
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, std::io::Error>>();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"event\n"))))
            .unwrap();
        let mut body = sessions.stream(
            StreamBody::new(rx),
            &principal(now_unix().saturating_sub(2), "u1"),
        );
        let first = body.frame().await.unwrap();
        assert!(
            first.is_err(),
            "an expired token's stream is aborted, not ended cleanly"
        );
        drop(tx);
    }

    #[test]
    fn only_small_sized_bodies_go_without_a_kill_future() {
        let with = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CONTENT_LENGTH, v.parse().unwrap());
            h
        };
        assert!(ends_on_its_own(&with("1024")));
        assert!(ends_on_its_own(&with(&SHORT_BODY.to_string())));
        assert!(!ends_on_its_own(&with(&(SHORT_BODY + 1).to_string())));
        assert!(!ends_on_its_own(&with("not a number")));
        // A watch or a `follow` log: chunked, no length.
        assert!(!ends_on_its_own(&http::HeaderMap::new()));
    }
}
