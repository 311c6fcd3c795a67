//! The audit log: one JSON line per decision. It never holds a token, a cookie or a query string:
//! records are built from the method, the path (without the query; segments that look like JWTs
//! are redacted) and the decision, never from headers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::config::AuditSink;

/// One audit record.
#[derive(Serialize, Debug, Clone)]
pub struct AuditRecord {
    /// RFC 3339 UTC time of the record.
    pub time: String,
    /// `request`, `websocket_open`, `websocket_close` or `auth`.
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
    /// The precise reason for a refusal (the message returned to the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The token id (`jti`), when the token was verified and has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
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
}

/// Mutable audit fields shared by the layers of one request.
#[derive(Debug)]
pub struct AuditFields {
    /// See [`AuditRecord::decision`].
    pub decision: &'static str,
    /// See [`AuditRecord::reason`].
    pub reason: &'static str,
    /// See [`AuditRecord::detail`].
    pub detail: Option<String>,
    /// See [`AuditRecord::jti`].
    pub jti: Option<String>,
    /// See [`AuditRecord::upstream_status`].
    pub upstream_status: Option<u16>,
    /// Whether the request became a WebSocket session (audited separately).
    pub websocket: bool,
}

impl Default for AuditFields {
    fn default() -> Self {
        Self {
            decision: "allow",
            reason: "ok",
            detail: None,
            jti: None,
            upstream_status: None,
            websocket: false,
        }
    }
}

/// The per-request audit context, in the request extensions.
#[derive(Clone, Debug)]
pub struct AuditCtx {
    /// Shared fields.
    pub fields: Arc<Mutex<AuditFields>>,
    /// Client address.
    pub client: SocketAddr,
    /// Method.
    pub method: String,
    /// Redacted path.
    pub path: String,
    /// Start time.
    pub start: Instant,
}

impl AuditCtx {
    /// A context for a new request.
    pub fn new(client: SocketAddr, method: &str, raw_path: &str) -> Self {
        Self {
            fields: Arc::new(Mutex::new(AuditFields::default())),
            client,
            method: method.to_string(),
            path: redact_path(raw_path),
            start: Instant::now(),
        }
    }

    /// Updates the fields.
    pub fn update(&self, f: impl FnOnce(&mut AuditFields)) {
        if let Ok(mut fields) = self.fields.lock() {
            f(&mut fields);
        }
    }

    /// Builds a record from the current fields.
    pub fn record(&self, event: &'static str, status: u16, bytes: u64) -> AuditRecord {
        let fields = self.fields.lock().map(|f| {
            (
                f.decision,
                f.reason,
                f.detail.clone(),
                f.jti.clone(),
                f.upstream_status,
            )
        });
        let (decision, reason, detail, jti, upstream_status) =
            fields.unwrap_or(("error", "internal_error", None, None, None));
        AuditRecord {
            time: now_rfc3339(),
            event,
            client: self.client.to_string(),
            method: self.method.clone(),
            path: self.path.clone(),
            decision,
            reason,
            detail,
            jti,
            status,
            upstream_status,
            bytes,
            bytes_from_client: None,
            duration_ms: self.start.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

/// Writes records to the sink.
#[derive(Clone, Debug)]
pub struct Audit {
    sink: AuditSink,
}

impl Audit {
    /// An audit log writing to `sink`.
    pub fn new(sink: AuditSink) -> Self {
        Self { sink }
    }

    /// Writes one record as a JSON line.
    pub fn write(&self, record: &AuditRecord) {
        if let Ok(line) = serde_json::to_string(record) {
            (self.sink.0)(&line);
        }
    }
}

/// Current time, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond)
        .unwrap_or(now)
        .to_string()
}

/// Whether a path segment looks like a compact JWS (three base64url parts).
fn looks_like_jwt(segment: &str) -> bool {
    let parts: Vec<&str> = segment.split('.').collect();
    parts.len() == 3
        && parts[0].starts_with("eyJ")
        && segment.len() >= 32
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'%')
        })
}

/// The path with any query removed, truncated to 2 KiB, and JWT-like segments replaced by
/// `<redacted>`, so that a token pasted into a URL path never reaches the log.
pub fn redact_path(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let mut out: String = path
        .split('/')
        .map(|s| if looks_like_jwt(s) { "<redacted>" } else { s })
        .collect::<Vec<_>>()
        .join("/");
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
