//! Composition: builds every part from the [`Config`], binds the listeners, serves connections,
//! runs the background reloads and the revocation watch, and shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::{Audit, AuditCtx};
use crate::authn::Authenticator;
use crate::config::{Config, Scheme};
use crate::console::Consoles;
use crate::console_peers::Replicas;
use crate::endpoints::gettoken::GetToken;
use crate::endpoints::health::Readiness;
use crate::endpoints::login::Login;
use crate::error::ConfigError;
use crate::exchange::ClientAddr;
use crate::limits::AuditLimiter;
use crate::metrics::Metrics;
use crate::oidc::Provider;
use crate::origin::OriginPolicy;
use crate::outcome::{Decision, Outcome, Reason};
use crate::proxy::{Forward, Upstream};
use crate::revocation::Revocation;
use crate::routes::{MetricsRoutes, Routes, api_pipeline};
use crate::seal::Sealer;
use crate::session::{Sessions, WebSocketLimits};
use crate::signin::SignIn;
use crate::tls::ReloadingCert;
use crate::upstream::{self, KubeClients, SecretFile};
use crate::verify::TokenVerifier;

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

/// How connections are served.
#[derive(Clone, Copy)]
struct ConnectionLimits {
    header_read_timeout: Duration,
    max_header_bytes: usize,
}

/// What runs in the background: file reloads and the revocation watch.
struct Background {
    reload_interval: Duration,
    verifier: Arc<TokenVerifier>,
    sa_token: Option<Arc<SecretFile>>,
    cert: Option<Arc<ReloadingCert>>,
    metrics: Arc<Metrics>,
    revocation: Option<(Arc<Revocation>, kube::Client)>,
}

/// A bound, not yet serving gateway.
pub struct Gateway {
    routes: Arc<Routes>,
    metrics_routes: Arc<MetricsRoutes>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    max_connections: usize,
    background: Background,
    shutdown: CancellationToken,
    sessions: Arc<Sessions>,
    shutdown_timeout: Duration,
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
        let audit = Audit::new(config.audit.clone()).with_limiter(AuditLimiter::new(
            config.audit_unauthenticated_rate,
            metrics.audit_suppressed.clone(),
        ));
        let shutdown = CancellationToken::new();
        let verifier = Arc::new(
            TokenVerifier::load(&config.jwt_key_files, config.jwt_leeway, metrics.clone())?
                .with_audience(config.audience.clone()),
        );
        let sa_token = match &config.bearer_token_file {
            Some(path) if !config.passthrough => {
                Some(Arc::new(SecretFile::load(path, metrics.clone())?))
            }
            _ => None,
        };
        let kube_clients = KubeClients::new(&config)?;
        let cert = match config.listen.scheme {
            Scheme::Https => Some(Arc::new(ReloadingCert::new(
                &config.cert_file,
                &config.key_file,
            )?)),
            Scheme::Http => None,
        };
        let tls = match &cert {
            Some(cert) => Some(TlsAcceptor::from(Arc::new(cert.server_config()?))),
            None => None,
        };
        let revocation = if config.revocation_namespaces.is_empty() {
            None
        } else {
            let index = Arc::new(
                Revocation::new(
                    config.revocation_namespaces.clone(),
                    config.revocation_grace,
                    metrics.clone(),
                )
                .with_max_staleness(config.revocation_max_staleness),
            );
            Some((index, kube_clients.service_account(sa_token.clone())?))
        };
        let revocation_index = revocation.as_ref().map(|(r, _)| r.clone());

        let signin = match &config.signin {
            Some(settings) => Some(Arc::new(SignIn {
                provider: Provider::new(settings.clone(), Some(upstream::http_client(&config)?))?,
                sealer: Sealer::load(&settings.session_key_file)?,
                leeway: config.jwt_leeway,
            })),
            None => None,
        };
        let authn = Arc::new(
            Authenticator::new(
                verifier.clone(),
                revocation_index.clone(),
                config.passthrough,
            )
            .with_origins(OriginPolicy::new(config.allowed_origins.clone()))
            .with_signin(signin),
        );
        let sessions = Arc::new(
            Sessions::new(
                shutdown.clone(),
                revocation_index.clone(),
                config.jwt_leeway,
                metrics.clone(),
            )
            .with_websocket_limits(WebSocketLimits {
                max_total: config.max_websockets,
                max_per_token: config.max_websockets_per_token,
                idle_timeout: config.websocket_idle_timeout,
                max_duration: config.websocket_max_duration,
            }),
        );
        let upstream = Arc::new(Upstream {
            client: upstream::http_client(&config)?,
            api_server: config.api_server.clone(),
            sa_token: sa_token.clone(),
            request_timeout: config.request_timeout,
            body_read_timeout: config.body_read_timeout,
        });
        let readiness = Arc::new(Readiness {
            shutdown: shutdown.clone(),
            passthrough: config.passthrough,
            verifier: verifier.clone(),
            revocation: revocation_index.clone(),
        });
        // Bound first: the port is part of the address peer replicas forward viewers to.
        let listener = bind(&config.listen.host, config.listen.port).await?;
        let consoles = config.shared_consoles.then(|| {
            Consoles::new(crate::console::DEFAULT_LINGER)
                .with_policy(config.console_controllers)
                .with_metrics(crate::console::ConsoleMetrics {
                    viewers: metrics.console_viewers.clone(),
                    upstreams: metrics.console_upstream_connections.clone(),
                })
        });
        let replicas = match (&consoles, &config.console_replicas) {
            (Some(consoles), Some(replicas)) => {
                let port = listener
                    .local_addr()
                    .map(|a| a.port())
                    .unwrap_or(config.listen.port);
                Some(Arc::new(Replicas::new(
                    replicas,
                    config.listen.scheme,
                    port,
                    cert.clone(),
                    kube_clients.service_account(sa_token.clone())?,
                    consoles.clone(),
                )?))
            }
            _ => None,
        };
        let routes = Arc::new(Routes {
            audit,
            metrics: metrics.clone(),
            api_prefix: config.api_prefix().to_string(),
            base_path: config.base_path.clone(),
            public_dir: config.public_dir.clone(),
            api: api_pipeline(
                metrics.clone(),
                authn.clone(),
                Forward::new(upstream, sessions.clone())
                    .with_consoles(consoles)
                    .with_replicas(replicas),
            ),
            authn: authn.clone(),
            login: Arc::new(Login {
                authn,
                https: tls.is_some(),
                api_path: config.api_path.clone(),
                client_path: config.client_path.clone(),
            }),
            gettoken: Arc::new(GetToken {
                clients: kube_clients,
                wait: config.gettoken_timeout,
            }),
            verifier: verifier.clone(),
            readiness: readiness.clone(),
            frame_ancestors: crate::headers::frame_ancestors(&config.allowed_origins),
            publish_jwks: config.publish_jwks,
            body_read_timeout: config.body_read_timeout,
        });
        let metrics_routes = Arc::new(MetricsRoutes {
            metrics: metrics.clone(),
            revocation: revocation_index,
            readiness,
        });

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
        Ok(Self {
            routes,
            metrics_routes,
            listener,
            metrics_listener,
            tls,
            limits: ConnectionLimits {
                header_read_timeout: config.header_read_timeout,
                max_header_bytes: config.max_header_bytes,
            },
            background: Background {
                reload_interval: config.reload_interval,
                verifier,
                sa_token,
                cert,
                metrics,
                revocation,
            },
            shutdown,
            sessions,
            shutdown_timeout: config.shutdown_timeout,
            max_connections: config.max_connections,
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
            routes,
            metrics_routes,
            listener,
            metrics_listener,
            tls,
            limits,
            max_connections,
            background,
            shutdown: stop,
            sessions,
            shutdown_timeout,
        } = self;
        let background_tasks = TaskTracker::new();
        let connections = TaskTracker::new();
        background.spawn(&background_tasks, &stop);

        let main = {
            let routes = routes.clone();
            move |req: Request| {
                let routes = routes.clone();
                async move { routes.handle(req).await }
            }
        };
        let metrics = move |req: Request| {
            let routes = metrics_routes.clone();
            async move { routes.handle(req).await }
        };
        let cap = ConnectionCap {
            permits: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            audit: routes.audit.clone(),
        };
        let main_loop = accept_loop(
            listener,
            tls,
            main,
            limits,
            stop.clone(),
            connections.clone(),
            Some(cap),
        );
        let metrics_loop = async {
            if let Some(l) = metrics_listener {
                accept_loop(
                    l,
                    None,
                    metrics,
                    limits,
                    stop.clone(),
                    connections.clone(),
                    None,
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
        sessions.tasks().close();
        background_tasks.close();
        let drained = tokio::time::timeout(shutdown_timeout, async {
            connections.wait().await;
            sessions.tasks().wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown timeout reached with requests still open");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), background_tasks.wait()).await;
        Ok(())
    }
}

impl Background {
    fn spawn(self, tasks: &TaskTracker, stop: &CancellationToken) {
        let Self {
            reload_interval,
            verifier,
            sa_token,
            cert,
            metrics,
            revocation,
        } = self;
        let reload_stop = stop.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = reload_stop.cancelled() => return,
                    _ = tick.tick() => {
                        verifier.reload();
                        if let Some(sa) = &sa_token { sa.reload(); }
                        if let Some(cert) = &cert { cert.reload(&metrics); }
                    }
                }
            }
        });
        if let Some((index, client)) = revocation {
            tasks.spawn(index.run(client, stop.clone()));
        }
    }
}

/// Builds, binds and serves a gateway until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    Gateway::bind(config).await?.serve(shutdown).await
}

async fn accept_loop<H, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    limits: ConnectionLimits,
    stop: CancellationToken,
    connections: TaskTracker,
    cap: Option<ConnectionCap>,
) where
    H: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = axum::response::Response> + Send + 'static,
{
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
        // Review §11: one task per connection without limit let a flood exhaust memory. Over
        // the cap a connection gets a plain 503 (TLS ones are closed: no handshake is spent).
        let permit = match &cap {
            None => None,
            Some(cap) => match cap.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::warn!(client = %peer, "connection refused: --max-connections reached");
                    cap.audit_refusal(peer);
                    if tls.is_none() {
                        connections.spawn(refuse_connection(tcp));
                    }
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(tcp, peer, handler, limits, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, handler, limits, stop).await
                        }
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

/// The connection cap of the main listener, and where its refusals are audited.
#[derive(Clone)]
struct ConnectionCap {
    permits: Arc<tokio::sync::Semaphore>,
    audit: Audit,
}

impl ConnectionCap {
    /// One `connection` audit line (no request was read: method and path are empty). Nobody
    /// is authenticated yet, so these lines are rate-limited with the other anonymous refusals.
    fn audit_refusal(&self, peer: SocketAddr) {
        let ctx = AuditCtx::new(self.audit.clone(), peer, "", "");
        let outcome = Outcome::refused(
            Decision::Deny,
            Reason::TooManyConnections,
            "too many connections".into(),
        );
        ctx.write(&ctx.record("connection", &outcome, 503, 0));
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse_connection(mut tcp: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too many connections; retry shortly","reason":"ServiceUnavailable","code":503}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(response.as_bytes())).await;
    let _ = tcp.shutdown().await;
}

async fn serve_connection<IO, H, Fut>(
    io: IO,
    peer: SocketAddr,
    handler: H,
    limits: ConnectionLimits,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = axum::response::Response> + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        let response = handler(req.map(Body::new));
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
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
