//! The two small HTTP endpoints: `/metrics` (Prometheus) and `/healthz` + `/readyz` (probes).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// Process health shared with the probe endpoints.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the process ready (connected, and either leading with synced controllers or on
    /// standby).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// What an endpoint serves.
#[derive(Clone)]
pub enum Endpoints {
    /// `/metrics`.
    Metrics(Arc<Registry>),
    /// `/healthz` and `/readyz`.
    Probes(Arc<Health>),
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn handle(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed\n".into(),
        );
    }
    match (endpoints, req.uri().path()) {
        (Endpoints::Metrics(registry), "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            crate::metrics::encode(registry),
        ),
        (Endpoints::Probes(_), "/healthz") => respond(StatusCode::OK, TEXT, "ok\n".into()),
        (Endpoints::Probes(health), "/readyz") if health.is_ready() => {
            respond(StatusCode::OK, TEXT, "ok\n".into())
        }
        (Endpoints::Probes(_), "/readyz") => {
            respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into())
        }
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

/// Binds `address` and serves `endpoints` until `stop` turns true. Returns the bound address
/// (useful with port 0).
pub async fn serve(
    address: SocketAddr,
    endpoints: Endpoints,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Listen { address, source })?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let endpoints = endpoints.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let response = handle(&endpoints, &req);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    });
    Ok(bound)
}
