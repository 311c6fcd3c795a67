//! The audit log: one JSON line per decision. It never holds a token, a cookie or a query string:
//! records are built from the method, the path (without the query; segments that look like JWTs
//! are redacted) and the request's [`Outcome`], never from headers.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::Serialize;

use crate::limits::AuditLimiter;
use crate::outcome::Outcome;

/// Where audit lines go: a function called with each JSON line (without the newline).
#[derive(Clone)]
pub struct AuditSink(pub Arc<dyn Fn(&str) + Send + Sync>);

impl AuditSink {
    /// Standard output, one line per record, written by a background thread
    /// ([`crate::audit_writer`]): the request path only queues the line. The binary calls
    /// [`crate::audit_writer::close_stdout`] on shutdown so that no record is lost.
    pub fn stdout() -> Self {
        Self(Arc::new(|line: &str| match crate::audit_writer::stdout() {
            Some(w) => w.line(line),
            None => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }))
    }
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditSink")
    }
}

/// One audit record.
#[derive(Serialize, Debug, Clone)]
pub struct AuditRecord {
    /// RFC 3339 UTC time of the record.
    pub time: String,
    /// `request`, `websocket_open`, `websocket_close`, `auth`, `connection` (refused over
    /// `--max-connections` before any request was read), or `console_join` / `console_leave`
    /// (a viewer of a shared console).
    pub event: &'static str,
    /// Client address.
    pub client: String,
    /// HTTP method.
    pub method: String,
    /// Path, without the query string.
    pub path: String,
    /// `allow`, `deny` or `error`.
    pub decision: &'static str,
    /// Why (a bounded reason code, e.g. `ok`, `no_token`, `forbidden`).
    pub reason: &'static str,
    /// A description of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The token id (`jti`), when the token was verified and has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The signed-in person's user name, when the request acted as a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Status code returned to the client.
    pub status: u16,
    /// Status code from the API server, when the request was forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Response body bytes sent to the client (for a WebSocket close: upstream to client).
    pub bytes: u64,
    /// For a WebSocket close: bytes from the client to the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_from_client: Option<u64>,
    /// Milliseconds from the request to the end of the response (for a WebSocket close: the session).
    pub duration_ms: f64,
    /// For a console viewer: the VMI, as `namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// For a console viewer: its role (`control` or `observe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// For a console viewer leaving: its input dropped at the gateway (watch only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_dropped: Option<u64>,
}

/// Writes records to the sink.
#[derive(Clone, Debug)]
pub struct Audit {
    sink: AuditSink,
    limiter: Option<Arc<AuditLimiter>>,
}

impl Audit {
    /// An audit log writing to `sink`, every record.
    pub fn new(sink: AuditSink) -> Self {
        Self {
            sink,
            limiter: None,
        }
    }

    /// Writes the records that anybody can cause (see [`AuditRecord::is_anonymous_refusal`])
    /// only as fast as `limiter` admits (review §11: a flood must not fill the log).
    #[must_use]
    pub fn with_limiter(mut self, limiter: AuditLimiter) -> Self {
        self.limiter = Some(Arc::new(limiter));
        self
    }

    /// Writes one record as a JSON line (unless rate-limited).
    pub fn write(&self, record: &AuditRecord) {
        if record.is_anonymous_refusal()
            && let Some(limiter) = &self.limiter
            && !limiter.admit()
        {
            return;
        }
        if let Ok(line) = serde_json::to_string(record) {
            (self.sink.0)(&line);
        }
    }
}

impl AuditRecord {
    /// A refusal of a request that carried no verified token and no sign-in session: anybody
    /// on the network can cause as many as they like. Refusals that name who acted (a `jti`, a
    /// signed-in `user`) and every allow and error are always written.
    pub fn is_anonymous_refusal(&self) -> bool {
        self.decision == "deny"
            && self.jti.is_none()
            && self.user.is_none()
            && self.event != "websocket_close"
    }
}

/// What the audit log knows about one request from its start: who, what, when. Records are built
/// from it and an [`Outcome`].
#[derive(Clone, Debug)]
pub struct AuditCtx {
    /// Client address.
    pub client: SocketAddr,
    /// Method.
    pub method: String,
    /// Redacted path.
    pub path: String,
    /// Start time.
    pub start: Instant,
    audit: Audit,
}

impl AuditCtx {
    /// A context for a new request to `raw_path` (redacted here).
    pub fn new(audit: Audit, client: SocketAddr, method: &str, raw_path: &str) -> Self {
        Self {
            client,
            method: method.to_string(),
            path: redact_path(raw_path),
            start: Instant::now(),
            audit,
        }
    }

    /// A record of `event` with `outcome`.
    pub fn record(
        &self,
        event: &'static str,
        outcome: &Outcome,
        status: u16,
        bytes: u64,
    ) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            event,
            client: self.client.to_string(),
            method: self.method.clone(),
            path: self.path.clone(),
            decision: outcome.decision.as_str(),
            reason: outcome.reason.as_str(),
            detail: outcome.detail.as_ref().map(|d| d.to_string()),
            jti: outcome.jti.clone(),
            user: outcome.user.clone(),
            status,
            upstream_status: outcome.upstream_status,
            bytes,
            bytes_from_client: None,
            duration_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            vm: None,
            role: None,
            input_dropped: None,
        }
    }

    /// Writes `record`.
    pub fn write(&self, record: &AuditRecord) {
        self.audit.write(record);
    }
}

/// Current time, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond)
        .unwrap_or(now)
        .to_string()
}

/// Whether a path segment looks like a compact JWS (three base64url parts). Checked for every
/// segment of every request: the cheap tests come first and nothing is allocated.
fn looks_like_jwt(segment: &str) -> bool {
    if segment.len() < 32 || !segment.starts_with("eyJ") {
        return false;
    }
    let mut parts = 0;
    for part in segment.split('.') {
        parts += 1;
        let base64url = part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'%');
        if parts > 3 || part.is_empty() || !base64url {
            return false;
        }
    }
    parts == 3
}

/// The path with any query removed, truncated to 2 KiB, and JWT-like segments replaced by
/// `<redacted>`, so that a token pasted into a URL path never reaches the log.
pub fn redact_path(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let mut out = if path.split('/').any(looks_like_jwt) {
        path.split('/')
            .map(|s| if looks_like_jwt(s) { "<redacted>" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    } else {
        path.to_owned()
    };
    if out.len() > 2048 {
        let mut cut = 2048;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
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
    use crate::outcome::{Actor, Decision, Reason};

    #[test]
    fn paths_lose_queries_and_tokens() {
        assert_eq!(
            redact_path("/k8s/api/v1/pods?token=abc"),
            "/k8s/api/v1/pods"
        );
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJlc2lnbmF0dXJl";
        assert_eq!(redact_path(&format!("/k8s/{jwt}/x")), "/k8s/<redacted>/x");
        assert_eq!(
            redact_path("/k8s/apis/subresources.kubevirt.io/v1"),
            "/k8s/apis/subresources.kubevirt.io/v1"
        );
    }

    /// Review §11: anybody could fill the audit log with refusals; what a verified token (or an
    /// allowed request) causes is always written.
    #[test]
    fn only_anonymous_refusals_are_rate_limited() {
        let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = {
            let lines = lines.clone();
            AuditSink(Arc::new(move |l: &str| {
                lines.lock().unwrap().push(l.into())
            }))
        };
        let suppressed = prometheus_client::metrics::counter::Counter::default();
        let audit = Audit::new(sink).with_limiter(AuditLimiter::new(1, suppressed.clone()));
        let ctx = AuditCtx::new(audit, "10.0.0.1:5000".parse().unwrap(), "GET", "/k8s/x");
        let anonymous = Outcome::refused(Decision::Deny, Reason::NoToken, "no token".into());
        let of_token = anonymous.clone().with_jti(Some("u1"));
        let of_person = anonymous.clone().by(&Actor {
            jti: None,
            user: Some("u1@example.test".into()),
        });
        for _ in 0..1000 {
            ctx.write(&ctx.record("request", &anonymous, 401, 0));
            ctx.write(&ctx.record("request", &of_token, 401, 0));
            ctx.write(&ctx.record("request", &of_person, 401, 0));
            ctx.write(&ctx.record("request", &Outcome::allowed(), 200, 0));
        }
        let lines = lines.lock().unwrap();
        let anonymous_written = lines
            .iter()
            .filter(|l| l.contains("no_token") && !l.contains("u1"))
            .count();
        assert_eq!(anonymous_written, 10, "a burst of ten, then one a second");
        assert_eq!(suppressed.get(), 990);
        assert_eq!(lines.len(), 10 + 3000);
    }

    #[test]
    fn records_come_from_the_context_and_the_outcome() {
        let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = {
            let lines = lines.clone();
            AuditSink(Arc::new(move |l: &str| {
                lines.lock().unwrap().push(l.into())
            }))
        };
        let ctx = AuditCtx::new(
            Audit::new(sink),
            "10.0.0.1:5000".parse().unwrap(),
            "GET",
            "/k8s/api?token=secret",
        );
        let outcome = Outcome::refused(
            Decision::Deny,
            Reason::Forbidden,
            "verb not permitted".into(),
        )
        .with_jti(Some("u1"));
        ctx.write(&ctx.record("request", &outcome, 403, 12));
        let line: serde_json::Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
        assert_eq!(line["path"], "/k8s/api");
        assert_eq!(line["decision"], "deny");
        assert_eq!(line["reason"], "forbidden");
        assert_eq!(line["jti"], "u1");
        assert_eq!(line["status"], 403);
        assert_eq!(line["bytes"], 12);
        assert_eq!(line["client"], "10.0.0.1:5000");
        assert!(line.get("user").is_none(), "a token's line names no person");

        let person = Actor {
            jti: None,
            user: Some("alice@example.test".into()),
        };
        ctx.write(&ctx.record("request", &Outcome::allowed().by(&person), 200, 0));
        let line: serde_json::Value = serde_json::from_str(&lines.lock().unwrap()[1]).unwrap();
        assert_eq!(line["user"], "alice@example.test");
        assert!(line.get("jti").is_none());
    }
}
