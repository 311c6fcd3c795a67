//! Client connections for the load generators: plain TCP or TLS (trusting the bench CA), HTTP/1.1
//! request senders and WebSocket clients on top. Loopback only.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Any byte stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where requests go: an address, TLS or not, and the Authorization header to send.
#[derive(Clone)]
pub struct Target {
    /// Short name for reports (`direct`, `gateway`, ...).
    pub name: String,
    /// Loopback address.
    pub addr: SocketAddr,
    /// TLS client configuration when the target speaks HTTPS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Path prefix before the API path (`/k8s` for the gateway, empty for direct).
    pub prefix: String,
    /// `Authorization` header value.
    pub authorization: Option<String>,
}

impl Target {
    /// `http(s)://addr` + prefix + path, for wrk.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}{}", self.addr, self.prefix, path)
    }
}

/// A TLS client configuration trusting the CA certificates in `ca_pem`, HTTP/1.1 only.
pub fn tls_client(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("CA PEM")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Opens a byte stream to the target (TCP_NODELAY, TLS when configured).
pub async fn connect(target: &Target) -> Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connect {}", target.addr))?;
    tcp.set_nodelay(true)?;
    match &target.tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => {
            let name = ServerName::IpAddress(target.addr.ip().into());
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .context("TLS handshake")?;
            Ok(Box::new(stream))
        }
    }
}

/// An HTTP/1.1 keep-alive connection.
pub struct HttpConn {
    sender: SendRequest<Empty<Bytes>>,
    target: Target,
}

impl HttpConn {
    /// Connects and performs the HTTP/1.1 handshake.
    pub async fn open(target: &Target) -> Result<Self> {
        let io = connect(target).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            target: target.clone(),
        })
    }

    /// GET `path` (under the target's prefix) with `authorization` (or the target's); returns the
    /// status and the body length once the whole body is read.
    pub async fn get(&mut self, path: &str, authorization: Option<&str>) -> Result<(u16, usize)> {
        self.sender.ready().await?;
        let mut req = http::Request::get(format!("{}{}", self.target.prefix, path))
            .header(http::header::HOST, self.target.addr.to_string());
        if let Some(auth) = authorization.or(self.target.authorization.as_deref()) {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        let resp = self.sender.send_request(req.body(Empty::new())?).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body.len()))
    }
}

/// A WebSocket client session (subprotocol `plain.kubevirt.io`, as the VNC console offers).
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Opens a WebSocket to `path_and_query` under the target's prefix.
pub async fn websocket(target: &Target, path_and_query: &str) -> Result<Ws> {
    let io = connect(target).await?;
    let url = format!("ws://{}{}{}", target.addr, target.prefix, path_and_query);
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("plain.kubevirt.io"),
    );
    if let Some(auth) = &target.authorization {
        req.headers_mut()
            .insert("Authorization", HeaderValue::from_str(auth)?);
    }
    let (ws, resp) = tokio_tungstenite::client_async(req, io)
        .await
        .with_context(|| format!("WebSocket handshake with {} ({})", target.name, target.addr))?;
    anyhow::ensure!(
        resp.status().as_u16() == 101,
        "WebSocket upgrade refused: {}",
        resp.status()
    );
    Ok(ws)
}
