//! The minimal fast upstream: an HTTPS server (the gateway only talks TLS to its API server)
//! that answers every GET with the same 1 KiB JSON object, and WebSocket upgrades (subprotocol
//! `plain.kubevirt.io`) with a sink, a source or an idle session:
//!
//! * `?mode=sink&bytes=N`: reads binary messages until N payload bytes arrived, then sends the
//!   text message `done`;
//! * `?mode=source&bytes=N`: sends N payload bytes in 64 KiB binary messages, then closes;
//! * `?mode=echo`: sends every text message back (the revocation measurement checks with it that
//!   a session still works);
//! * `?mode=idle` (or anything else): reads until the client closes;
//! * the VNC subresource of the VMI `screen`: a VNC server whose screen changes continuously
//!   ([`crate::consolescreen`]), for the shared-console measurement.
//!
//! With `--api-proxy`, every request that is not a WebSocket upgrade is forwarded to the real API
//! server instead (the revocation measurement: the gateway's GateToken watch reaches the test
//! control plane through here, while its WebSocket sessions end here, as KubeVirt's would behind
//! the API server).
//!
//! Run as its own process (`gateway-bench upstream`), so that its CPU is counted apart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use virt_gateway_testenv::websocket as ws;

/// WebSocket message size of the source and of the clients.
pub const CHUNK: usize = 64 * 1024;

/// The fixed JSON body: a ConfigMap-shaped object padded to exactly 1,024 bytes.
pub fn body_1k() -> Bytes {
    let head = r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"bench","namespace":"bench","uid":"6a0f3e43-7d0b-4b8e-9a55-0c9c2b1d2e11","resourceVersion":"4242","creationTimestamp":"2026-01-01T00:00:00Z"},"data":{"payload":""#;
    let tail = r#""}}"#;
    let pad = 1024 - head.len() - tail.len();
    let mut s = String::with_capacity(1024);
    s.push_str(head);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(tail);
    debug_assert_eq!(s.len(), 1024);
    Bytes::from(s)
}

/// Where requests other than WebSocket upgrades go: the real API server.
#[derive(Clone)]
pub struct ApiProxy {
    /// Its address (loopback).
    pub addr: SocketAddr,
    /// A TLS client trusting its CA.
    pub tls: Arc<rustls::ClientConfig>,
}

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves on `addr` with the PEM certificate chain and key; prints `LISTENING <port>` once bound.
pub async fn serve(
    addr: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
    api: Option<ApiProxy>,
) -> Result<()> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("certificate PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("key PEM")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(addr).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    let body = body_1k();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off briefly.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let body = body.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req| handle(req, body.clone(), api.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn full(body: Bytes) -> Body {
    boxed(Full::new(body))
}

fn boxed(body: Full<Bytes>) -> Body {
    body.map_err(|never| match never {}).boxed()
}

/// Forwards `req` to the API server over a fresh TLS connection; streams the answer back (a
/// watch stays open as long as the API server keeps it).
async fn forward(req: Request<Incoming>, api: &ApiProxy) -> Result<Response<Body>> {
    let tcp = tokio::net::TcpStream::connect(api.addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::IpAddress(api.addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(api.tls.clone())
        .connect(name, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut parts, body) = req.into_parts();
    parts
        .headers
        .insert(hyper::header::HOST, api.addr.to_string().parse()?);
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    Ok(resp.map(BodyExt::boxed))
}

async fn handle(
    mut req: Request<Incoming>,
    body: Bytes,
    api: Option<ApiProxy>,
) -> Result<Response<Body>, Infallible> {
    if !ws::is_upgrade(&req) {
        if let Some(api) = &api {
            return Ok(forward(req, api).await.unwrap_or_else(|e| {
                Response::builder()
                    .status(502)
                    .body(full(Bytes::from(format!("API server: {e:#}"))))
                    .expect("static response")
            }));
        }
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(full(body))
            .expect("static response"));
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    let screen = req.uri().path().ends_with(&format!(
        "/virtualmachineinstances/{}/vnc",
        crate::consolescreen::VMI
    ));
    let mode = if screen {
        "screen".into()
    } else {
        param("mode").unwrap_or_else(|| "idle".into())
    };
    let bytes: u64 = param("bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
    match ws::accept(&mut req, "plain.kubevirt.io") {
        Err(resp) => Ok(resp.map(boxed)),
        Ok((resp, pending)) => {
            tokio::spawn(async move {
                let Ok(mut socket) = pending.socket().await else {
                    return;
                };
                match mode.as_str() {
                    "screen" => crate::consolescreen::serve(socket).await,
                    "sink" => {
                        let mut got = 0u64;
                        let mut done = false;
                        while let Some(Ok(msg)) = socket.next().await {
                            match msg {
                                Message::Binary(b) => got += b.len() as u64,
                                Message::Close(_) => break,
                                _ => {}
                            }
                            if !done && got >= bytes {
                                done = true;
                                if socket.send(Message::text("done")).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    "source" => {
                        let chunk = Bytes::from(vec![0x5a; CHUNK]);
                        let mut sent = 0u64;
                        while sent < bytes {
                            let n = ((bytes - sent) as usize).min(CHUNK);
                            if socket
                                .feed(Message::Binary(chunk.slice(..n)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                            sent += n as u64;
                        }
                        let _ = socket.flush().await;
                        let _ = socket.close(None).await;
                        while let Some(Ok(_)) = socket.next().await {}
                    }
                    "echo" => {
                        while let Some(Ok(msg)) = socket.next().await {
                            if let Message::Text(t) = msg
                                && socket.send(Message::Text(t)).await.is_err()
                            {
                                break;
                            }
                        }
                    }
                    _ => while let Some(Ok(_)) = socket.next().await {},
                }
            });
            Ok(resp.map(boxed))
        }
    }
}
