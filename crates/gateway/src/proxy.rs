//! Forwarding, the last stage of the API pipeline: an authorized request goes to the API server
//! with the header policy of [`crate::headers`] and the gateway's ServiceAccount token (or, in
//! pass-through mode, the caller's), and its response streams back; an upgraded WebSocket becomes
//! a session ([`crate::session`]).
//!
//! The whole pipeline, outermost first (assembled in [`crate::routes`]):
//! [`crate::observe::Observe`] → [`crate::authn::Authenticate`] →
//! [`crate::authorize::Authorize`] → [`Forward`].

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{StatusCode, header};
use tower::Service;

use crate::authn::Principal;
use crate::authorize::Authorized;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::headers::{clean_response_headers, forwarded_headers};
use crate::limits::{SlotRefusal, is_body_timeout};
use crate::outcome::Outcome;
use crate::session::Sessions;
use crate::upstream::{HttpClient, SecretFile, upstream_uri};

/// The API server and how to reach it.
pub struct Upstream {
    /// The HTTP client.
    pub client: HttpClient,
    /// Base URL, without a trailing slash.
    pub api_server: String,
    /// The ServiceAccount token forwarded requests carry (not in pass-through mode).
    pub sa_token: Option<Arc<SecretFile>>,
    /// Time for the API server's response head.
    pub request_timeout: Duration,
    /// Time for the client's request body (cut by [`crate::routes`]; named in the refusal).
    pub body_read_timeout: Duration,
}

impl Upstream {
    /// The bearer token a request of `principal` is forwarded with.
    fn bearer_for(&self, principal: &Principal) -> Option<Arc<str>> {
        match principal {
            Principal::PassThrough { credential } | Principal::Person { credential, .. } => {
                Some(Arc::from(credential.token.as_str()))
            }
            Principal::Token { .. } => self.sa_token.as_ref().and_then(|f| f.get()),
        }
    }
}

/// The forwarding stage.
#[derive(Clone)]
pub struct Forward {
    upstream: Arc<Upstream>,
    sessions: Arc<Sessions>,
}

impl Forward {
    /// Forwards to `upstream`; long-lived responses end with their `sessions`.
    pub fn new(upstream: Arc<Upstream>, sessions: Arc<Sessions>) -> Self {
        Self { upstream, sessions }
    }
}

impl Service<Exchange<Authorized>> for Forward {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, exchange: Exchange<Authorized>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(exchange).await) })
    }
}

impl Forward {
    async fn forward(&self, exchange: Exchange<Authorized>) -> Response {
        let client = exchange.client();
        let Exchange {
            mut request,
            audit,
            value: authorized,
        } = exchange;
        let Authorized {
            api_path,
            principal,
            websocket,
            ..
        } = authorized;
        let jti = principal.jti().map(str::to_owned);
        let refuse = |e: GatewayError| {
            let mut response = e.into_response();
            Outcome::of(&response)
                .with_jti(jti.as_deref())
                .attach(&mut response);
            response
        };
        let upstream = &self.upstream;
        let Ok(uri) = upstream_uri(
            &upstream.api_server,
            api_path.as_str(),
            request.uri().query(),
        ) else {
            return refuse(GatewayError::BadRequest(
                "the path cannot be forwarded".into(),
            ));
        };
        let bearer = upstream.bearer_for(&principal);
        let headers = forwarded_headers(
            request.headers(),
            Some(client),
            bearer.as_deref(),
            websocket,
        );
        // Review §11: the slot is taken before the upgrade is forwarded, so a token over its
        // share costs the API server (and the VM) nothing.
        let slot = if websocket {
            match self.sessions.open_slot(&principal) {
                Ok(slot) => Some(slot),
                Err(refusal) => {
                    return refuse(GatewayError::TooManyWebSockets(slot_message(refusal)));
                }
            }
        } else {
            None
        };
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
        let method = request.method().clone();
        let body = if websocket {
            Body::empty()
        } else {
            request.into_body()
        };
        let mut upstream_req = http::Request::new(body);
        *upstream_req.method_mut() = method;
        *upstream_req.uri_mut() = uri;
        *upstream_req.headers_mut() = headers;

        let sent = tokio::time::timeout(
            upstream.request_timeout,
            upstream.client.request(upstream_req),
        )
        .await;
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) if is_body_timeout(&e) => {
                return refuse(GatewayError::BodyTimeout(
                    upstream.body_read_timeout.as_secs(),
                ));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                return refuse(GatewayError::Upstream(upstream_error_text(&e)));
            }
            Err(_) => {
                return refuse(GatewayError::UpstreamTimeout(
                    upstream.request_timeout.as_secs(),
                ));
            }
        };
        let status = response.status();
        let mut outcome = Outcome {
            upstream_status: Some(status.as_u16()),
            ..Outcome::allowed()
        }
        .with_jti(jti.as_deref());

        if websocket && status == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(client_upgrade), Some(slot)) = (client_upgrade, slot) else {
                return refuse(GatewayError::Internal(
                    "client connection cannot be upgraded".into(),
                ));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let (mut parts, _) = response.into_parts();
            clean_response_headers(&mut parts.headers, true);
            parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
            outcome.websocket = true;
            self.sessions.spawn_websocket(
                client_upgrade,
                upstream_upgrade,
                &principal,
                audit,
                outcome.clone(),
                slot,
            );
            let mut response = Response::from_parts(parts, Body::empty());
            outcome.attach(&mut response);
            return response;
        }

        // A plain response (including a refused upgrade, e.g. 503 with preserveSession); a stream
        // ends with its session.
        let (mut parts, body) = response.into_parts();
        clean_response_headers(&mut parts.headers, false);
        let body = self.sessions.body(&parts.headers, body, &principal);
        let mut response = Response::from_parts(parts, body);
        outcome.attach(&mut response);
        response
    }
}

fn slot_message(refusal: SlotRefusal) -> String {
    match refusal {
        SlotRefusal::PerToken { max } => format!(
            "too many WebSocket sessions of this token (at most {max}); close one and retry"
        ),
        SlotRefusal::Total { max } => {
            format!("too many WebSocket sessions at this gateway (at most {max}); retry later")
        }
    }
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
