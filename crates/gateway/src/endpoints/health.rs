//! Health: `/healthz` (the process serves), `/readyz` (requests can be decided) and `/metrics`.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::revocation::Revocation;
use crate::verify::TokenVerifier;

/// `/healthz`: 200 `ok` while the process serves.
pub fn healthz() -> Response {
    let mut response = "ok".into_response();
    Outcome::allowed().attach(&mut response);
    response
}

/// What readiness depends on.
pub struct Readiness {
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    /// Pass-through mode (no keys needed).
    pub passthrough: bool,
    /// The verification keys.
    pub verifier: Arc<TokenVerifier>,
    /// The revocation index, when the watch is on.
    pub revocation: Option<Arc<Revocation>>,
}

/// The readiness report: whether requests can be decided, the overall status, and one line per
/// check.
#[derive(Debug, PartialEq)]
pub struct Report {
    /// Requests can be decided.
    pub ready: bool,
    /// `ok`, `degraded` or `unavailable`.
    pub status: &'static str,
    /// One text per check.
    pub checks: Map<String, Value>,
}

impl Readiness {
    /// Not ready before the gateway can decide requests (no verification key; revocation index
    /// not listed yet; shutting down). A revocation watch that lost the API server keeps the
    /// gateway ready (it serves from the last known state) but is reported as `degraded`.
    pub fn report(&self) -> Report {
        let mut ready = true;
        let mut degraded = false;
        let mut checks = Map::new();
        if self.shutdown.is_cancelled() {
            ready = false;
            checks.insert("shutdown".into(), json!("in progress"));
        }
        if self.passthrough {
            checks.insert("keys".into(), json!("pass-through: not used"));
        } else if self.verifier.has_keys() {
            checks.insert(
                "keys".into(),
                json!(format!("{} loaded", self.verifier.keys().len())),
            );
        } else {
            ready = false;
            checks.insert("keys".into(), json!("no verification key loaded"));
        }
        match &self.revocation {
            None => {
                checks.insert("revocation".into(), json!("off"));
            }
            Some(r) => {
                let h = r.health();
                let text = if !h.synced {
                    ready = false;
                    format!(
                        "not synchronised yet{}",
                        h.last_error
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    )
                } else if h.stale {
                    ready = false;
                    format!(
                        "stale: the watch is broken for longer than allowed, tokens are refused (last error: {})",
                        h.last_error.unwrap_or_default()
                    )
                } else if !h.healthy {
                    degraded = true;
                    format!(
                        "stale: serving from the last known state ({} GateTokens, last data {:.0} s ago; last error: {})",
                        h.entries,
                        h.age_secs.unwrap_or(0.0),
                        h.last_error.unwrap_or_default()
                    )
                } else {
                    format!("ok ({} GateTokens)", h.entries)
                };
                checks.insert("revocation".into(), json!(text));
            }
        }
        let status = if !ready {
            "unavailable"
        } else if degraded {
            "degraded"
        } else {
            "ok"
        };
        Report {
            ready,
            status,
            checks,
        }
    }

    /// `/readyz` of the public listener: 200 when ready, else 503, with the status only. The
    /// checks name key and GateToken counts and watch errors (URLs, the ServiceAccount), which
    /// are for the metrics listener only (review §14).
    pub fn readyz_public(&self) -> Response {
        let mut report = self.report();
        report.checks.clear();
        Self::respond(report, false)
    }

    /// `/readyz` of the metrics listener: 200 when ready, else 503, with the report.
    pub fn readyz(&self) -> Response {
        Self::respond(self.report(), true)
    }

    fn respond(report: Report, checks: bool) -> Response {
        let code = if report.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body = if checks {
            json!({"status": report.status, "checks": report.checks})
        } else {
            json!({"status": report.status})
        };
        let mut response = (code, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Outcome::allowed().attach(&mut response);
        response
    }
}

/// `/metrics` (metrics listener only).
pub fn metrics(metrics: &Metrics, revocation: Option<&Revocation>) -> Response {
    if let Some(r) = revocation {
        r.refresh_metrics();
    }
    let mut response = metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::watcher::Event;

    use super::*;

    fn readiness(revocation: Option<Arc<Revocation>>) -> Readiness {
        let key = virt_gateway_auth::keys::KeyPair::generate(
            virt_gateway_auth::keys::KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
        Readiness {
            shutdown: CancellationToken::new(),
            passthrough: false,
            verifier: Arc::new(TokenVerifier::from_keys(
                vec![key.public_key().clone()],
                Duration::ZERO,
                Arc::new(Metrics::new()),
            )),
            revocation,
        }
    }

    #[test]
    fn ready_once_every_namespace_is_listed_and_not_while_shutting_down() {
        let revocation = Arc::new(Revocation::new(
            vec!["a".into()],
            Duration::ZERO,
            Arc::new(Metrics::new()),
        ));
        let r = readiness(Some(revocation.clone()));
        assert!(!r.report().ready);
        revocation.apply("a", Event::Init);
        revocation.apply("a", Event::InitDone);
        assert_eq!(r.report().status, "ok");
        revocation.failed("connection refused".into());
        assert_eq!(r.report().status, "degraded");
        r.shutdown.cancel();
        let report = r.report();
        assert!(!report.ready);
        assert_eq!(report.status, "unavailable");
    }
}
