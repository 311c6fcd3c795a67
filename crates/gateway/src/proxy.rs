//! The API proxy under `-api-path`, built from small layers with one job each, outermost first:
//!
//! 1. [`audit_layer`]: one audit line per request (at the end of the response body);
//! 2. [`extract_layer`]: finds the token (header, cookie, WebSocket subprotocol);
//! 3. [`verify_layer`]: verifies it (cached until `exp`) and checks revocation;
//! 4. [`authorize_layer`]: parses the path exactly as kube-apiserver and authorizes the claims;
//! 5. [`forward`]: strips what must not reach the API server, adds the ServiceAccount token and
//!    `X-Forwarded-For`, and streams the response (or pipes an upgraded WebSocket).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use virt_gateway_auth::jwt::VerifiedToken;
use virt_gateway_auth::request::{self, RequestInfo};

use crate::audit::AuditCtx;
use crate::error::GatewayError;
use crate::revocation::Refusal;
use crate::server::AppState;
use crate::token::{self, Credential};
use crate::verify::now_unix;
use crate::websocket::{self, Kill, SessionBytes, SessionEnd};

/// The client's address, set by the server for every connection.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// A verified token, in the request extensions.
#[derive(Clone, Debug)]
pub struct Verified(pub Arc<VerifiedToken>);

/// The parsed request, in the request extensions.
#[derive(Clone, Debug)]
pub struct Parsed(pub Arc<RequestInfo>);

/// The path under the API prefix (e.g. `/api/v1/pods`), in the request extensions.
#[derive(Clone, Debug)]
pub struct ApiPath(pub String);

/// Builds the API router for `state`.
pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .fallback(forward)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authorize_layer,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), verify_layer))
        .layer(middleware::from_fn_with_state(state.clone(), extract_layer))
        .layer(middleware::from_fn_with_state(state.clone(), audit_layer))
        .with_state(state)
}

/// Records the refusal in the audit context and renders it.
fn refuse(req: &Request, err: GatewayError) -> Response {
    if let Some(ctx) = req.extensions().get::<AuditCtx>() {
        let decision = match err.status_code() {
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::BAD_REQUEST
            | StatusCode::METHOD_NOT_ALLOWED => "deny",
            _ => "error",
        };
        let reason = err.reason_code();
        let detail = err.to_string();
        ctx.update(|f| {
            f.decision = decision;
            f.reason = reason;
            f.detail = Some(detail);
        });
    }
    err.into_response()
}

/// Layer 1: audit.
pub async fn audit_layer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let ctx = AuditCtx::new(client, req.method().as_str(), req.uri().path());
    req.extensions_mut().insert(ctx.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let (decision, reason, websocket) = ctx
        .fields
        .lock()
        .map(|f| (f.decision, f.reason, f.websocket))
        .unwrap_or(("error", "internal_error", false));
    let kind = if websocket { "websocket" } else { "api" };
    let outcome = match decision {
        "allow" => "allowed",
        "deny" => "denied",
        _ => "error",
    };
    state.metrics.request(kind, outcome, reason);
    state
        .metrics
        .latency
        .get_or_create(&[("kind", kind)])
        .observe(ctx.start.elapsed().as_secs_f64());
    if websocket && status == 101 {
        state.audit.write(&ctx.record("websocket_open", status, 0));
        return response;
    }
    let audit = state.audit.clone();
    response.map(|body| {
        Body::new(AuditBody::new(body, move |bytes| {
            audit.write(&ctx.record("request", status, bytes))
        }))
    })
}

/// Layer 2: token extraction. In pass-through mode a token is still required.
pub async fn extract_layer(mut req: Request, next: Next) -> Response {
    match token::extract(req.headers()) {
        Ok(Some(credential)) => {
            req.extensions_mut().insert(credential);
            next.run(req).await
        }
        Ok(None) => refuse(&req, GatewayError::NoToken),
        Err(e) => refuse(&req, e),
    }
}

/// The error for a revocation refusal: 503 while the index is not ready, else 401 with the
/// refusal's message ("token revoked", ...).
pub fn refusal_error(refusal: &Refusal) -> GatewayError {
    match refusal {
        Refusal::NotReady => GatewayError::RevocationNotReady,
        other => GatewayError::Revoked(other.message().to_string()),
    }
}

/// Verifies `token` (cached until `exp`) and checks its revocation: the one decision behind API
/// requests, `/auth/token`, `/auth/jwt/set` and `/auth/session`. The token's `jti` goes into the
/// audit context `ctx` as soon as the token verifies (also when revocation then refuses it).
/// Not for pass-through mode, where nothing is verified.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    ctx: Option<&AuditCtx>,
) -> Result<Arc<VerifiedToken>, GatewayError> {
    let verified = state.verifier.verify(token, now_unix())?;
    let jti = verified.claims.jti.clone();
    if let Some(ctx) = ctx {
        let jti = jti.clone();
        ctx.update(|f| f.jti = jti);
    }
    if let Some(revocation) = &state.revocation
        && let Err(refusal) = revocation.check(jti.as_deref()).await
    {
        return Err(refusal_error(&refusal));
    }
    Ok(verified)
}

/// Layer 3: verification (skipped in pass-through mode) and revocation ([`authenticate`]).
pub async fn verify_layer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if state.config.passthrough {
        return next.run(req).await;
    }
    let Some(credential) = req.extensions().get::<Credential>().cloned() else {
        return refuse(&req, GatewayError::NoToken);
    };
    let ctx = req.extensions().get::<AuditCtx>().cloned();
    match authenticate(&state, &credential.token, ctx.as_ref()).await {
        Ok(verified) => {
            req.extensions_mut().insert(Verified(verified));
            next.run(req).await
        }
        Err(e) => refuse(&req, e),
    }
}

/// Layer 4: request parsing and authorization. In pass-through mode only parsing (the path must
/// still be canonical); the API server authorizes with the caller's token.
pub async fn authorize_layer(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let prefix = state.config.api_prefix();
    let raw = req.uri().path();
    let api_path = match raw.strip_prefix(prefix) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => return refuse(&req, GatewayError::NotFound),
    };
    let info = match request::parse(req.method().as_str(), &api_path, req.uri().query()) {
        Ok(info) => info,
        Err(e) => return refuse(&req, GatewayError::BadPath(e)),
    };
    if !state.config.passthrough {
        let Some(verified) = req.extensions().get::<Verified>() else {
            return refuse(&req, GatewayError::NoToken);
        };
        if let Err(denied) = virt_gateway_auth::authz::authorize(&verified.0.claims, &info) {
            return refuse(&req, GatewayError::Forbidden(denied));
        }
    }
    req.extensions_mut().insert(Parsed(Arc::new(info)));
    req.extensions_mut().insert(ApiPath(api_path));
    next.run(req).await
}

/// Request headers never forwarded: hop-by-hop headers, credentials, identity and forwarding
/// headers the caller could forge, and method overrides.
pub fn is_stripped_request_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
            | "cookie"
            | "forwarded"
            | "x-real-ip"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
            | "sec-websocket-protocol"
            | "sec-websocket-extensions"
    ) || n.starts_with("impersonate-")
        || n.starts_with("x-remote-")
        || n.starts_with("x-forwarded-")
}

/// Headers named by the `Connection` header (also hop-by-hop).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The headers to send upstream for a client request.
pub fn forwarded_headers(
    incoming: &HeaderMap,
    client: Option<SocketAddr>,
    bearer: Option<&str>,
    websocket: bool,
) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 4);
    for (name, value) in incoming {
        if is_stripped_request_header(name) || listed.iter().any(|l| l == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(addr) = client
        && let Ok(v) = HeaderValue::from_str(&addr.ip().to_string())
    {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if let Some(token) = bearer
        && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        v.set_sensitive(true);
        out.insert(header::AUTHORIZATION, v);
    }
    if websocket {
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Some(protocols) = token::forwarded_protocols(incoming)
            && let Ok(v) = HeaderValue::from_str(&protocols)
        {
            out.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    out
}

/// Whether the request asks for a WebSocket upgrade; `Err` for other upgrade protocols.
fn upgrade_kind(headers: &HeaderMap) -> Result<bool, GatewayError> {
    let Some(upgrade) = headers.get(header::UPGRADE) else {
        return Ok(false);
    };
    let is_ws = upgrade
        .to_str()
        .map(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
        .unwrap_or(false);
    let connection_upgrade = connection_listed(headers).iter().any(|t| t == "upgrade");
    match (is_ws, connection_upgrade) {
        (true, true) => Ok(true),
        (false, true) => Err(GatewayError::BadRequest(
            "only WebSocket upgrades are supported".into(),
        )),
        _ => Ok(false),
    }
}

/// Strips hop-by-hop headers from an upstream response (except on a 101).
fn clean_response_headers(headers: &mut HeaderMap, switching: bool) {
    let listed = connection_listed(headers);
    for name in listed {
        if switching && name == "upgrade" {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    for name in [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "proxy-authenticate",
    ] {
        headers.remove(name);
    }
    if !switching {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// When (as a tokio instant) the token stops verifying: a token is valid while
/// `now <= exp + leeway` in whole seconds, so it stops at the start of the next second.
fn expiry_instant(exp: u64, leeway: Duration) -> tokio::time::Instant {
    let deadline = UNIX_EPOCH + Duration::from_secs(exp) + leeway + Duration::from_secs(1);
    let remaining = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + remaining
}

/// A future resolving when the session must end: expiry, revocation or shutdown.
fn session_kill(state: &Arc<AppState>, verified: Option<&Verified>) -> BoxFuture<'static, Kill> {
    let shutdown = state.shutdown.clone();
    let expiry = verified.map(|v| expiry_instant(v.0.claims.exp, state.verifier.leeway()));
    let revocation = state.revocation.clone();
    let jti = verified.and_then(|v| v.0.claims.jti.clone());
    async move {
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => futures::future::pending::<()>().await,
            }
        };
        let revoked = async {
            match &revocation {
                Some(r) => r.wait_refused(jti).await,
                None => futures::future::pending().await,
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

/// Layer 5: forwarding.
pub async fn forward(State(state): State<Arc<AppState>>, mut req: Request) -> Response {
    let websocket = match upgrade_kind(req.headers()) {
        Ok(ws) => ws,
        Err(e) => return refuse(&req, e),
    };
    let Some(ApiPath(api_path)) = req.extensions().get::<ApiPath>().cloned() else {
        return refuse(
            &req,
            GatewayError::Internal("request reached forwarding unparsed".into()),
        );
    };
    let ctx = req.extensions().get::<AuditCtx>().cloned();
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    let verified = req.extensions().get::<Verified>().cloned();
    let bearer: Option<Arc<str>> = if state.config.passthrough {
        req.extensions()
            .get::<Credential>()
            .map(|c| Arc::from(c.token.as_str()))
    } else {
        state.sa_token.as_ref().and_then(|f| f.get())
    };
    let uri =
        match crate::upstream::upstream_uri(&state.config.api_server, &api_path, req.uri().query())
        {
            Ok(uri) => uri,
            Err(_) => {
                return refuse(
                    &req,
                    GatewayError::BadRequest("the path cannot be forwarded".into()),
                );
            }
        };
    let headers = forwarded_headers(req.headers(), client, bearer.as_deref(), websocket);
    let client_upgrade = if websocket {
        Some(hyper::upgrade::on(&mut req))
    } else {
        None
    };
    let method = req.method().clone();
    let body = if websocket {
        Body::empty()
    } else {
        req.into_body()
    };
    let mut upstream_req = http::Request::new(body);
    *upstream_req.method_mut() = method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;

    let sent = tokio::time::timeout(
        state.config.request_timeout,
        state.client.request(upstream_req),
    )
    .await;
    let mut upstream = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "upstream request failed");
            let err = GatewayError::Upstream(upstream_error_text(&e));
            return match ctx {
                Some(ctx) => {
                    ctx.update(|f| {
                        f.decision = "error";
                        f.reason = "upstream_error";
                    });
                    err.into_response()
                }
                None => err.into_response(),
            };
        }
        Err(_) => {
            if let Some(ctx) = &ctx {
                ctx.update(|f| {
                    f.decision = "error";
                    f.reason = "timeout";
                });
            }
            return GatewayError::UpstreamTimeout(state.config.request_timeout.as_secs())
                .into_response();
        }
    };
    let upstream_status = upstream.status();
    if let Some(ctx) = &ctx {
        ctx.update(|f| f.upstream_status = Some(upstream_status.as_u16()));
    }

    if websocket && upstream_status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return GatewayError::Internal("client connection cannot be upgraded".into())
                .into_response();
        };
        let upstream_upgrade = hyper::upgrade::on(&mut upstream);
        let (mut parts, _) = upstream.into_parts();
        clean_response_headers(&mut parts.headers, true);
        parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        if let Some(ctx) = &ctx {
            ctx.update(|f| f.websocket = true);
        }
        let kill = session_kill(&state, verified.as_ref());
        let session_state = state.clone();
        state.sessions.spawn(async move {
            let (client_io, upstream_io) = match tokio::join!(client_upgrade, upstream_upgrade) {
                (Ok(c), Ok(u)) => (c, u),
                _ => {
                    tracing::warn!("WebSocket upgrade did not complete");
                    return;
                }
            };
            let metrics = session_state.metrics.clone();
            metrics.websocket_sessions.inc();
            let bytes = Arc::new(SessionBytes::default());
            let end =
                websocket::pipe(client_io, upstream_io, kill, bytes.clone(), metrics.clone()).await;
            metrics.websocket_sessions.dec();
            metrics
                .websocket_closed
                .get_or_create(&[("reason", end.code())])
                .inc();
            if let Some(ctx) = ctx {
                let mut record = ctx.record(
                    "websocket_close",
                    101,
                    bytes.to_client.load(std::sync::atomic::Ordering::Relaxed),
                );
                record.bytes_from_client =
                    Some(bytes.from_client.load(std::sync::atomic::Ordering::Relaxed));
                record.reason = end.code();
                record.decision = match end {
                    SessionEnd::Killed(Kill::Expired | Kill::Revoked(_)) => "deny",
                    _ => "allow",
                };
                if let SessionEnd::Killed(Kill::Revoked(text)) = &end {
                    record.detail = Some((*text).to_string());
                }
                session_state.audit.write(&record);
            }
        });
        return Response::from_parts(parts, Body::empty());
    }

    // A plain response (including a refused upgrade, e.g. 503 with preserveSession): stream it.
    let (mut parts, body) = upstream.into_parts();
    clean_response_headers(&mut parts.headers, false);
    let kill = session_kill(&state, verified.as_ref());
    Response::from_parts(
        parts,
        Body::new(SessionBody {
            inner: body,
            kill: Some(kill),
        }),
    )
}

fn upstream_error_text(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts body bytes and calls `done` once, when the body ends or is dropped.
pub struct AuditBody<F: FnOnce(u64) + Send + 'static> {
    inner: Body,
    bytes: u64,
    done: Option<F>,
}

impl<F: FnOnce(u64) + Send + 'static> AuditBody<F> {
    /// Wraps `inner`.
    pub fn new(inner: Body, done: F) -> Self {
        Self {
            inner,
            bytes: 0,
            done: Some(done),
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.bytes);
        }
    }
}

impl<F: FnOnce(u64) + Send + 'static> Drop for AuditBody<F> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<F: FnOnce(u64) + Send + Unpin + 'static> HttpBody for AuditBody<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_strip_credentials_and_identity() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer caller"),
            ("cookie", "ocgate-session-token=x"),
            ("impersonate-user", "admin"),
            ("impersonate-group", "system:masters"),
            ("x-remote-user", "admin"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
            ("x-http-method-override", "DELETE"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("host", "gateway.example.com"),
            ("accept", "application/json"),
            ("user-agent", "test"),
            (
                "sec-websocket-protocol",
                "plain.kubevirt.io, base64url.bearer.authorization.k8s.io.dA",
            ),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("sec-websocket-key", "abc"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let out = forwarded_headers(&h, Some(client), Some("sa-token"), false);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(out["authorization"], "Bearer sa-token");
        assert_eq!(out["x-forwarded-for"], "10.1.2.3");
        assert_eq!(out.get_all("x-forwarded-for").iter().count(), 1);
        for gone in [
            "cookie",
            "impersonate-user",
            "impersonate-group",
            "x-remote-user",
            "x-forwarded-proto",
            "forwarded",
            "x-http-method-override",
            "connection",
            "x-custom-hop",
            "keep-alive",
            "transfer-encoding",
            "host",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
            "upgrade",
        ] {
            assert!(!names.contains(&gone), "{gone} was forwarded");
        }
        assert_eq!(out["accept"], "application/json");
        assert_eq!(out["sec-websocket-key"], "abc");

        let ws = forwarded_headers(&h, None, None, true);
        assert_eq!(ws["sec-websocket-protocol"], "plain.kubevirt.io");
        assert_eq!(ws["upgrade"], "websocket");
        assert_eq!(ws["connection"], "Upgrade");
        assert!(ws.get("authorization").is_none());
    }

    #[test]
    fn revocation_refusals_are_401_with_their_message_except_not_ready() {
        let err = refusal_error(&Refusal::NotReady);
        assert_eq!(err.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.reason_code(), "revocation_not_ready");
        for (refusal, text) in [
            (Refusal::Revoked, "token revoked"),
            (Refusal::Deleted, "token revoked"),
            (Refusal::Completed, "token expired"),
            (Refusal::Unknown, "unknown"),
            (Refusal::NoJti, "no jti"),
        ] {
            let err = refusal_error(&refusal);
            assert_eq!(err.status_code(), StatusCode::UNAUTHORIZED, "{refusal:?}");
            assert_eq!(err.reason_code(), "token_revoked", "{refusal:?}");
            assert!(err.to_string().contains(text), "{refusal:?}: {err}");
        }
    }

    #[test]
    fn only_websocket_upgrades() {
        let mut h = HeaderMap::new();
        assert!(!upgrade_kind(&h).unwrap());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(upgrade_kind(&h).unwrap());
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(upgrade_kind(&h).is_err());
    }
}
