//! Server-side WebSocket handshakes on a hyper request, for test servers behind the API server
//! (the aggregated API stand-ins need the real subprotocol negotiation that KubeVirt does).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The subprotocols a client offered in `Sec-WebSocket-Protocol`.
pub fn offered_protocols<B>(req: &Request<B>) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A response with a small in-memory body.
pub type SimpleResponse = Response<Full<Bytes>>;

/// Accepts a WebSocket upgrade selecting `protocol`, which the client must have offered (as
/// KubeVirt requires `plain.kubevirt.io` for VNC). Returns the 101 response to send and a future
/// of the upgraded stream, or a 400 response when the request is not an acceptable upgrade.
#[allow(clippy::result_large_err)]
pub fn accept<B>(
    req: &mut Request<B>,
    protocol: &str,
) -> Result<(SimpleResponse, PendingSocket), SimpleResponse> {
    let bad = |msg: &str| {
        Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from(msg.to_string())))
            .expect("static response")
    };
    if !is_upgrade(req) {
        return Err(bad("expected a WebSocket upgrade"));
    }
    if !offered_protocols(req).iter().any(|p| p == protocol) {
        return Err(bad(&format!("subprotocol {protocol} is required")));
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Err(bad("missing Sec-WebSocket-Key"));
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err(bad("connection cannot be upgraded"));
    };
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .header(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocol).map_err(|_| bad("invalid protocol"))?,
        )
        .body(Full::new(Bytes::new()))
        .expect("valid 101 response");
    Ok((response, PendingSocket(on_upgrade)))
}

/// The upgraded connection, available once the 101 response has been sent.
pub struct PendingSocket(OnUpgrade);

impl PendingSocket {
    /// Waits for the upgrade and wraps the connection as a server-side WebSocket.
    pub async fn socket(self) -> Result<WebSocketStream<TokioIo<Upgraded>>, hyper::Error> {
        let upgraded = self.0.await?;
        Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
    }
}
