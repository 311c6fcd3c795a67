//! Helpers shared by the stand-in's integration tests: raw requests and WebSockets through the
//! real API server with the admin client certificate.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use virt_gateway_testenv::ControlPlane;

pub const TIMEOUT: Duration = Duration::from_secs(30);

pub type Socket = WebSocketStream<TlsStream<TcpStream>>;

/// `/apis/subresources.kubevirt.io/<version>/namespaces/<ns>/virtualmachineinstances/<name>/<sub>`.
pub fn subresource(version: &str, ns: &str, name: &str, sub: &str) -> String {
    format!(
        "/apis/subresources.kubevirt.io/{version}/namespaces/{ns}/virtualmachineinstances/{name}/{sub}"
    )
}

async fn tls(cp: &ControlPlane) -> TlsStream<TcpStream> {
    let host = cp
        .api_server_url()
        .trim_start_matches("https://")
        .to_string();
    let tcp = TcpStream::connect(&host).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cp.admin_tls_config()))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Opens a WebSocket to `path_and_query` through the API server as the admin, offering
/// `protocols` (comma-separated) if given.
pub async fn websocket(
    cp: &ControlPlane,
    path_and_query: &str,
    protocols: Option<&str>,
) -> Result<
    (
        Socket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!(
        "{}{path_and_query}",
        cp.api_server_url().replace("https://", "wss://")
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(protocols) = protocols {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    let stream = tls(cp).await;
    tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("WebSocket handshake in time")
}

/// Sends a raw HTTP/1.1 GET through the API server as the admin (with `headers`), and returns
/// the status code and body.
pub async fn raw_get(
    cp: &ControlPlane,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = tls(cp).await;
    let mut request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .ok();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Headers of a WebSocket upgrade request.
pub const UPGRADE: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];
