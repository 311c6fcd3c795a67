//! Binding, serving, background reloads and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderValue, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::audit::Audit;
use crate::config::{Config, ConfigError, Scheme};
use crate::metrics::Metrics;
use crate::proxy::{self, ClientAddr};
use crate::revocation::Revocation;
use crate::tls::ReloadingCert;
use crate::upstream::{self, HttpClient, SecretFile};
use crate::verify::TokenVerifier;
use crate::{auth, static_files};

/// Shared state of a running gateway.
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// Keys and token cache.
    pub verifier: TokenVerifier,
    /// The revocation index, when the watch is on.
    pub revocation: Option<Arc<Revocation>>,
    /// The upstream HTTP client.
    pub client: HttpClient,
    /// The ServiceAccount token for forwarded requests.
    pub sa_token: Option<Arc<SecretFile>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The audit log.
    pub audit: Audit,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    /// WebSocket session tasks.
    pub sessions: TaskTracker,
    /// Whether the main listener is HTTPS.
    pub https: bool,
}

/// A startup failure.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration or unreadable file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound, not yet serving gateway.
pub struct Gateway {
    state: Arc<AppState>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    tls: Option<(TlsAcceptor, Arc<ReloadingCert>)>,
    kube_client: Option<kube::Client>,
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, StartError> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl Gateway {
    /// Loads keys, certificates and tokens, binds the listeners, and prepares the revocation
    /// watch. Nothing is served until [`Gateway::serve`].
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        for note in &config.notes {
            tracing::info!("{note}");
        }
        let metrics = Arc::new(Metrics::new());
        let verifier = TokenVerifier::load(
            &config.jwt_key_files,
            config.jwt_leeway,
            metrics.clone(),
            true,
        )?;
        let sa_token = match &config.bearer_token_file {
            Some(path) if !config.passthrough => {
                Some(Arc::new(SecretFile::load(path, metrics.clone())?))
            }
            _ => None,
        };
        let client = upstream::http_client(&config)?;
        let tls = match config.listen.scheme {
            Scheme::Https => {
                let cert = Arc::new(ReloadingCert::new(&config.cert_file, &config.key_file)?);
                Some((TlsAcceptor::from(Arc::new(cert.server_config()?)), cert))
            }
            Scheme::Http => None,
        };
        let (revocation, kube_client) = if config.revocation_namespaces.is_empty() {
            (None, None)
        } else {
            let r = Arc::new(Revocation::new(
                config.revocation_namespaces.clone(),
                config.revocation_grace,
                metrics.clone(),
            ));
            (
                Some(r),
                Some(upstream::kube_client(&config, sa_token.clone())?),
            )
        };
        let listener = bind(&config.listen.host, config.listen.port).await?;
        let metrics_listener = match &config.metrics_listen {
            Some((host, port)) => Some(bind(host, *port).await?),
            None => None,
        };
        tracing::info!(
            listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            scheme = ?config.listen.scheme,
            api_server = %config.api_server,
            api_path = %config.api_path,
            passthrough = config.passthrough,
            keys = verifier.keys().len(),
            revocation = ?config.revocation_namespaces,
            "kube-gateway ready to serve"
        );
        let state = Arc::new(AppState {
            audit: Audit::new(config.audit.clone()),
            https: tls.is_some(),
            config: Arc::new(config),
            verifier,
            revocation,
            client,
            sa_token,
            metrics,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        });
        Ok(Self {
            state,
            listener,
            metrics_listener,
            tls,
            kube_client,
        })
    }

    /// The main listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The metrics listener's address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// `http://ADDR` or `https://ADDR` of the main listener.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    /// Serves until `shutdown` resolves, then stops accepting, ends streams and WebSocket sessions
    /// cleanly (close code 1001), and waits up to `--shutdown-timeout` for requests to drain.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StartError> {
        let Self {
            state,
            listener,
            metrics_listener,
            tls,
            kube_client,
        } = self;
        let stop = state.shutdown.clone();
        let background = TaskTracker::new();
        let connections = TaskTracker::new();

        // File reloads.
        {
            let state = state.clone();
            let cert = tls.as_ref().map(|(_, c)| c.clone());
            let stop = stop.clone();
            background.spawn(async move {
                let mut tick = tokio::time::interval(state.config.reload_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = tick.tick() => {
                            state.verifier.reload();
                            if let Some(sa) = &state.sa_token { sa.reload(); }
                            if let Some(cert) = &cert { cert.reload(&state.metrics); }
                        }
                    }
                }
            });
        }
        // Revocation watch.
        if let (Some(revocation), Some(client)) = (state.revocation.clone(), kube_client) {
            background.spawn(revocation.run(client, stop.clone()));
        }

        let main = main_router(state.clone());
        let tls_acceptor = tls.map(|(a, _)| a);
        let main_loop = accept_loop(
            listener,
            tls_acceptor,
            main,
            state.clone(),
            connections.clone(),
        );
        let metrics_loop = async {
            if let Some(l) = metrics_listener {
                accept_loop(
                    l,
                    None,
                    metrics_router(state.clone()),
                    state.clone(),
                    connections.clone(),
                )
                .await;
            }
        };
        let serving = async { tokio::join!(main_loop, metrics_loop) };
        tokio::select! {
            _ = serving => {}
            () = shutdown => {}
        }
        tracing::info!("shutting down: draining requests and closing WebSocket sessions");
        stop.cancel();
        connections.close();
        state.sessions.close();
        background.close();
        let drained = tokio::time::timeout(state.config.shutdown_timeout, async {
            connections.wait().await;
            state.sessions.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown timeout reached with requests still open");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), background.wait()).await;
        Ok(())
    }
}

/// Builds, binds and serves a gateway until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    Gateway::bind(config).await?.serve(shutdown).await
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    state: Arc<AppState>,
    connections: TaskTracker,
) {
    let stop = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let state = state.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(tcp, peer, router, state).await,
                Some(acceptor) => {
                    match tokio::time::timeout(
                        state.config.header_read_timeout,
                        acceptor.accept(tcp),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => serve_connection(stream, peer, router, state).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, client = %peer, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<IO>(io: IO, peer: SocketAddr, router: Router, state: Arc<AppState>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let router = router.clone();
        req.extensions_mut().insert(ClientAddr(peer));
        async move {
            let response = router.oneshot(req.map(Body::new)).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|e| match e {}))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        .max_buf_size(state.config.max_header_bytes)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stop = state.shutdown.clone();
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, client = %peer, "connection ended with an error");
            }
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn main_router(state: Arc<AppState>) -> Router {
    let api = proxy::api_router(state.clone());
    let prefix = state.config.api_prefix().to_string();
    let base_path = state.config.base_path.clone();
    let public_dir = state.config.public_dir.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/auth/token", any(auth::auth_token))
        .route("/auth/jwt/set", any(auth::auth_jwt_set))
        .route("/auth/logout", any(auth::auth_logout))
        .route("/auth/session", any(auth::auth_session))
        .route("/auth/gettoken", any(auth::auth_gettoken))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .fallback(move |req: Request| {
            let api = api.clone();
            let prefix = prefix.clone();
            let base_path = base_path.clone();
            let public_dir = public_dir.clone();
            async move {
                let path = req.uri().path();
                if path == prefix || path.starts_with(&format!("{prefix}/")) {
                    return api.oneshot(req).await.unwrap_or_else(|e| match e {});
                }
                if path.starts_with(&base_path) || format!("{path}/") == base_path {
                    return static_files::serve(&public_dir, &base_path, req).await;
                }
                crate::error::GatewayError::NotFound.into_response()
            }
        })
        .with_state(state)
}

fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { crate::error::GatewayError::NotFound.into_response() })
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(r) = &state.revocation {
        r.health();
    }
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn healthz() -> Response {
    "ok".into_response()
}

/// `/readyz`: 503 before the gateway can decide requests (no verification key; revocation index
/// not listed yet; shutting down); 200 otherwise. A revocation watch that lost the API server
/// keeps the gateway ready (it serves from the last known state) but is reported as `degraded`.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut ready = true;
    let mut degraded = false;
    let mut checks = serde_json::Map::new();
    if state.shutdown.is_cancelled() {
        ready = false;
        checks.insert("shutdown".into(), json!("in progress"));
    }
    if state.config.passthrough {
        checks.insert("keys".into(), json!("pass-through: not used"));
    } else if state.verifier.has_keys() {
        checks.insert(
            "keys".into(),
            json!(format!("{} loaded", state.verifier.keys().len())),
        );
    } else {
        ready = false;
        checks.insert("keys".into(), json!("no verification key loaded"));
    }
    match &state.revocation {
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
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (
        code,
        axum::Json(json!({"status": status, "checks": checks})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
