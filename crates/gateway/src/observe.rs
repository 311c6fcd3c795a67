//! Observability, the one path for the API proxy and the `/auth/*` endpoints alike: one audit
//! line (when the response body ends, so a watch is audited when it ends) and one metrics sample
//! per request, both from the [`Outcome`] the response carries. A response without one is
//! recorded as an `error`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use futures::future::BoxFuture;
use tower::Service;

use crate::audit::{AuditBody, AuditCtx};
use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::outcome::Outcome;

/// What kind of route a request took, for the audit `event` and the metrics `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The API proxy (`event: request`, `kind: api`, or `websocket` for an upgrade).
    Api,
    /// An `/auth/*` endpoint (`event: auth`, `kind: auth`).
    Auth,
}

impl Kind {
    fn event(self) -> &'static str {
        match self {
            Self::Api => "request",
            Self::Auth => "auth",
        }
    }

    fn metric(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Auth => "auth",
        }
    }
}

/// Records `response` (the answer to the request of `ctx`) in the metrics now and in the audit
/// log when its body ends; a WebSocket's 101 is audited at once as `websocket_open` (its
/// session writes `websocket_close`).
pub fn observe(kind: Kind, metrics: &Metrics, ctx: AuditCtx, response: Response) -> Response {
    let outcome = Outcome::of(&response);
    let status = response.status().as_u16();
    let metric_kind = if outcome.websocket {
        "websocket"
    } else {
        kind.metric()
    };
    metrics.request(metric_kind, &outcome);
    metrics.observe_latency(metric_kind, ctx.start.elapsed().as_secs_f64());
    if outcome.websocket && status == 101 {
        ctx.write(&ctx.record("websocket_open", &outcome, status, 0));
        return response;
    }
    let event = kind.event();
    response.map(|body| {
        Body::new(AuditBody::new(body, move |bytes| {
            ctx.write(&ctx.record(event, &outcome, status, bytes));
        }))
    })
}

/// The observability layer around a pipeline `S`.
#[derive(Clone)]
pub struct Observe<S> {
    kind: Kind,
    metrics: Arc<Metrics>,
    inner: S,
}

impl<S> Observe<S> {
    /// Observes every request `inner` answers as `kind`.
    pub fn new(kind: Kind, metrics: Arc<Metrics>, inner: S) -> Self {
        Self {
            kind,
            metrics,
            inner,
        }
    }
}

impl<S, T> Service<Exchange<T>> for Observe<S>
where
    S: Service<Exchange<T>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    T: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, exchange: Exchange<T>) -> Self::Future {
        let ctx = exchange.audit.clone();
        let mut inner = self.inner.clone();
        let (kind, metrics) = (self.kind, self.metrics.clone());
        Box::pin(async move {
            let response = inner.call(exchange).await?;
            Ok(observe(kind, &metrics, ctx, response))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::audit::{Audit, AuditSink};
    use crate::error::GatewayError;
    use crate::outcome::{Decision, Reason};
    use axum::response::IntoResponse;

    pub(crate) fn captured() -> (Audit, Arc<Mutex<Vec<serde_json::Value>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let lines = lines.clone();
            AuditSink(Arc::new(move |l: &str| {
                lines.lock().unwrap().push(serde_json::from_str(l).unwrap())
            }))
        };
        (Audit::new(sink), lines)
    }

    fn exchange(audit: &Audit) -> Exchange<()> {
        let request = axum::extract::Request::new(Body::empty());
        Exchange {
            audit: AuditCtx::new(
                audit.clone(),
                "127.0.0.1:1".parse().unwrap(),
                "GET",
                "/k8s/x",
            ),
            request,
            value: (),
        }
    }

    #[tokio::test]
    async fn one_line_per_request_from_the_outcome_and_error_by_default() {
        let (audit, lines) = captured();
        let metrics = Arc::new(Metrics::new());
        // A handler that forgets to decide.
        let forgetful = Observe::new(
            Kind::Api,
            metrics.clone(),
            service_fn(|_: Exchange<()>| async {
                Ok::<_, Infallible>(Response::new(Body::from("x")))
            }),
        );
        let response = forgetful.oneshot(exchange(&audit)).await.unwrap();
        assert!(
            lines.lock().unwrap().is_empty(),
            "written when the body ends"
        );
        let _ = response.into_body().collect().await;
        let line = lines.lock().unwrap()[0].clone();
        assert_eq!(line["event"], "request");
        assert_eq!(line["decision"], "error");
        assert_eq!(line["reason"], "internal_error");
        assert_eq!(line["bytes"], 1);

        // The same path for /auth/* with a refusal.
        let refusing = Observe::new(
            Kind::Auth,
            metrics.clone(),
            service_fn(|_: Exchange<()>| async {
                Ok::<_, Infallible>(GatewayError::NotFound.into_response())
            }),
        );
        let response = refusing.oneshot(exchange(&audit)).await.unwrap();
        drop(response);
        let line = lines.lock().unwrap()[1].clone();
        assert_eq!(line["event"], "auth");
        assert_eq!(line["decision"], "deny");
        assert_eq!(line["reason"], "not_found");
        assert_eq!(line["status"], 404);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"kube_gateway_requests_total{kind="auth",outcome="denied",reason="not_found"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"kube_gateway_requests_total{kind="api",outcome="error",reason="internal_error"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_websocket_upgrade_is_audited_as_open_at_once() {
        let (audit, lines) = captured();
        let metrics = Arc::new(Metrics::new());
        let upgrading = Observe::new(
            Kind::Api,
            metrics.clone(),
            service_fn(|_: Exchange<()>| async {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                Outcome {
                    websocket: true,
                    upstream_status: Some(101),
                    ..Outcome::allowed()
                }
                .with_jti(Some("u1"))
                .attach(&mut response);
                Ok::<_, Infallible>(response)
            }),
        );
        let _response = upgrading.oneshot(exchange(&audit)).await.unwrap();
        let line = lines.lock().unwrap()[0].clone();
        assert_eq!(line["event"], "websocket_open");
        assert_eq!(line["decision"], Decision::Allow.as_str());
        assert_eq!(line["reason"], Reason::Ok.as_str());
        assert_eq!(line["jti"], "u1");
        assert!(
            metrics
                .encode()
                .contains(r#"kind="websocket",outcome="allowed""#)
        );
    }
}
