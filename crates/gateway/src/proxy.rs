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
use http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tower::Service;

use crate::authn::Principal;
use crate::authorize::Authorized;
use crate::console::{ConsoleKey, Consoles, websocket_bytes};
use crate::console_peers::{Replicas, route_console};
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::headers::{clean_response_headers, forwarded_headers};
use crate::limits::{SlotRefusal, is_body_timeout};
use crate::outcome::Outcome;
use crate::session::{ConsoleRole, Sessions, console_role};
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
    consoles: Option<Consoles>,
    replicas: Option<Arc<Replicas>>,
}

impl Forward {
    /// Forwards to `upstream`; long-lived responses end with their `sessions`.
    pub fn new(upstream: Arc<Upstream>, sessions: Arc<Sessions>) -> Self {
        Self {
            upstream,
            sessions,
            consoles: None,
            replicas: None,
        }
    }

    /// Shares each console with the other replicas: one replica serves it, the others forward.
    pub fn with_replicas(mut self, replicas: Option<Arc<Replicas>>) -> Self {
        self.replicas = replicas;
        self
    }

    /// Serves VMI VNC subresources through shared consoles (one upstream per VMI).
    pub fn with_consoles(mut self, consoles: Option<Consoles>) -> Self {
        self.consoles = consoles;
        self
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
        let actor = principal.actor();
        let refuse = |e: GatewayError| {
            let mut response = e.into_response();
            Outcome::of(&response).by(&actor).attach(&mut response);
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
        // Review §11: the slot is taken before the upgrade is forwarded (or a shared console
        // joined), so a token over its share costs the API server (and the VM) nothing.
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
        // Only the gateway's own tokens share: a pass-through credential must reach the API
        // server on every connection, so that the API server authorizes each viewer.
        if websocket
            && let Some(consoles) = &self.consoles
            && matches!(principal, Principal::Token { .. })
            && let Some(key) = ConsoleKey::of_vnc_path(api_path.as_str())
        {
            let Some(slot) = slot else {
                return refuse(GatewayError::Internal("no WebSocket slot was taken".into()));
            };
            // Several replicas: the one holding the console's Lease serves it.
            let (slot, audit) = match &self.replicas {
                Some(replicas) => {
                    let timeout = self.upstream.request_timeout;
                    let viewer = (&mut request, &principal, audit, slot);
                    match route_console(replicas, &self.sessions, &key, viewer, timeout).await {
                        Ok(response) => return response,
                        Err(local) => local,
                    }
                }
                None => (slot, audit),
            };
            let console = SharedConsole {
                consoles: consoles.clone(),
                key,
                uri,
                bearer,
            };
            return self.shared_console(console, request, &principal, audit, slot);
        }
        // Fail closed: any other WebSocket (a console without shared consoles, exec, a serial
        // console) would carry a watch-only token's input to the VM.
        if websocket && console_role(&principal) == ConsoleRole::Observe {
            return refuse(GatewayError::ObserverOnly);
        }
        let headers = forwarded_headers(
            request.headers(),
            Some(client),
            bearer.as_deref(),
            websocket,
        );
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
        .by(&actor);

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

/// What a shared console viewer's request resolved to.
struct SharedConsole {
    consoles: Consoles,
    key: ConsoleKey,
    uri: http::Uri,
    bearer: Option<Arc<str>>,
}

impl Forward {
    /// Answers the viewer's upgrade here and attaches it to the VMI's console; the upstream
    /// WebSocket is opened by the console when it has none.
    fn shared_console(
        &self,
        console: SharedConsole,
        mut request: http::Request<Body>,
        principal: &Principal,
        audit: crate::audit::AuditCtx,
        slot: crate::limits::SlotGuard,
    ) -> Response {
        let Some(accept) = request
            .headers()
            .get(header::SEC_WEBSOCKET_KEY)
            .map(|k| derive_accept_key(k.as_bytes()))
        else {
            return GatewayError::BadRequest("a WebSocket upgrade needs Sec-WebSocket-Key".into())
                .into_response();
        };
        let protocol = offered_protocol(request.headers());
        let client_upgrade = hyper::upgrade::on(&mut request);
        let SharedConsole {
            consoles,
            key,
            uri,
            bearer,
        } = console;
        let upstream = self.upstream.clone();
        let connect = move || open_upstream(upstream, uri, bearer);
        let mut outcome = Outcome {
            upstream_status: Some(101),
            ..Outcome::allowed()
        }
        .by(&principal.actor());
        outcome.websocket = true;
        self.sessions.spawn_console(
            consoles,
            key,
            client_upgrade,
            connect,
            principal,
            audit,
            outcome.clone(),
            slot,
        );
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(p) = protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        outcome.attach(&mut response);
        response
    }
}

/// The subprotocol to answer with: RFB in binary messages, as KubeVirt's or noVNC's name.
fn offered_protocol(headers: &http::HeaderMap) -> Option<&'static str> {
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    ["plain.kubevirt.io", "binary"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
}

/// Opens the VMI's VNC WebSocket on the API server and returns its RFB bytes.
async fn open_upstream(
    upstream: Arc<Upstream>,
    uri: http::Uri,
    bearer: Option<Arc<str>>,
) -> std::io::Result<tokio::io::DuplexStream> {
    let mut req = http::Request::new(Body::empty());
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    let key = HeaderValue::from_str(&generate_key()).map_err(std::io::Error::other)?;
    h.insert(header::SEC_WEBSOCKET_KEY, key);
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("plain.kubevirt.io"),
    );
    if let Some(bearer) = bearer {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {bearer}")).map_err(std::io::Error::other)?;
        value.set_sensitive(true);
        h.insert(header::AUTHORIZATION, value);
    }
    let response = tokio::time::timeout(upstream.request_timeout, upstream.client.request(req))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
        .map_err(|e| std::io::Error::other(upstream_error_text(&e)))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(std::io::Error::other(format!(
            "the API server answered {} to the console upgrade",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(std::io::Error::other)?;
    let ws = WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    Ok(websocket_bytes(ws).0)
}
