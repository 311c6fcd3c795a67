//! The minimal fast upstream: an HTTPS server (the gateway only talks TLS to its API server)
//! that answers every GET with the same 1 KiB JSON object, and WebSocket upgrades (subprotocol
//! `plain.kubevirt.io`) with a sink, a source or an idle session:
//!
//! * `?mode=sink&bytes=N`: reads binary messages until N payload bytes arrived, then sends the
//!   text message `done`;
//! * `?mode=source&bytes=N`: sends N payload bytes in 64 KiB binary messages, then closes;
//! * `?mode=idle` (or anything else): reads until the client closes;
//! * the VNC subresource of the VMI `screen`: a VNC server whose screen changes continuously
//!   ([`crate::consolescreen`]), for the shared-console measurement.
//!
//! Run as its own process (`gateway-bench upstream`), so that its CPU is counted apart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
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

/// Serves on `addr` with the PEM certificate chain and key; prints `LISTENING <port>` once bound.
pub async fn serve(addr: SocketAddr, cert_pem: &str, key_pem: &str) -> Result<()> {
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
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req| handle(req, body.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    mut req: Request<Incoming>,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !ws::is_upgrade(&req) {
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(body))
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
        Err(resp) => Ok(resp),
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
                    _ => while let Some(Ok(_)) = socket.next().await {},
                }
            });
            Ok(resp)
        }
    }
}
