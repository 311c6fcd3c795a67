//! One upstream connection per client connection, driven inside the client connection's task.
//!
//! With a pooled client every proxied request crosses tasks twice: the client connection's task
//! hands the request to the pooled upstream connection's task and waits for the response to come
//! back. On a busy gateway those hand-offs were ~16 % of its CPU (thread wake-ups, see
//! bench/gateway/NOTES.md). A client connection of HTTP/1 asks one thing at a time, so it needs
//! at most one upstream connection at a time: the lane keeps it, and the server polls the lane's
//! [`LaneDriver`] beside the client connection, in the same task. A request and its response then
//! move between the two sockets without waking any other task.
//!
//! WebSocket upgrades do not use a lane: their upstream connection must outlive the client
//! connection's HTTP phase, which a lane driven by that phase cannot promise.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use tower::ServiceExt;

use crate::upstream::Connector;

type Driven = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The upstream connection of one client connection; cloned into each of its requests.
#[derive(Clone, Default)]
pub struct UpstreamLane(Arc<Mutex<LaneState>>);

#[derive(Default)]
struct LaneState {
    /// How to send on the connection; absent while a request holds it or when none is open.
    sender: Option<SendRequest<Body>>,
    /// The connection itself, polled by the driver.
    connection: Option<Driven>,
    /// The driver's task, woken when a connection is installed.
    driver: Option<Waker>,
}

/// Why a request could not be sent on the lane.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// Connecting (TCP or TLS) to the API server failed.
    #[error("cannot connect to the API server: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl UpstreamLane {
    /// Sends `request` (an absolute URI) on this lane's connection, opening one when there is
    /// none or it was closed. A request the connection never started to write (the API server
    /// closed an idle connection at that moment) is sent once more on a fresh connection.
    pub async fn send(
        &self,
        connector: &Connector,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, LaneError> {
        let mut request = origin_form(request);
        let authority_uri = request.extensions().get::<AuthorityUri>().cloned();
        let Some(AuthorityUri(target)) = authority_uri else {
            return Err(LaneError::Connect("the URI has no authority".into()));
        };
        let mut retried = false;
        loop {
            let mut sender = match self.take_open_sender() {
                Some(sender) => sender,
                None => self.connect(connector, &target).await?,
            };
            let ready = sender.ready().await;
            let sent = match ready {
                Ok(()) => {
                    let response = sender.try_send_request(request);
                    self.put_back(sender);
                    response.await
                }
                Err(e) if !retried => {
                    retried = true;
                    tracing::debug!(error = %e, "upstream connection closed; reconnecting");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match sent {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        tracing::debug!(error = %e.error(), "request not sent; reconnecting");
                        request = unsent;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LaneState> {
        // The state stays consistent whatever panicked while holding it: take it as it is.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_open_sender(&self) -> Option<SendRequest<Body>> {
        self.state().sender.take().filter(|s| !s.is_closed())
    }

    fn put_back(&self, sender: SendRequest<Body>) {
        self.state().sender = Some(sender);
    }

    async fn connect(
        &self,
        connector: &Connector,
        target: &Uri,
    ) -> Result<SendRequest<Body>, LaneError> {
        let io = connector
            .clone()
            .oneshot(target.clone())
            .await
            .map_err(LaneError::Connect)?;
        let (sender, connection) = http1::handshake(io).await?;
        let connection: Driven = Box::pin(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        let mut state = self.state();
        // A connection still open here is idle (its sender was closed or taken): drop it.
        state.connection = Some(connection);
        if let Some(driver) = state.driver.take() {
            driver.wake();
        }
        Ok(sender)
    }

    /// The future that drives this lane's connection; poll it beside the client connection, in
    /// the same task. It never completes.
    pub fn driver(&self) -> LaneDriver {
        LaneDriver(self.clone())
    }
}

/// Polls the lane's upstream connection while there is one.
pub struct LaneDriver(UpstreamLane);

impl Future for LaneDriver {
    type Output = std::convert::Infallible;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.state();
        if let Some(connection) = state.connection.as_mut()
            && connection.as_mut().poll(cx).is_ready()
        {
            state.connection = None;
        }
        if !state
            .driver
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.driver = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Polls `main` with `side` beside it in one task until `main` completes (`side` never does).
///
/// Driving an upstream connection in the client connection's task means each half wakes the
/// other: a request handed to the lane wakes its connection, the response wakes the request.
/// Through the task's own waker each of those wake-ups, arriving while the task is running, makes
/// tokio reschedule it as a yield and signal an idle worker (a `futex` and an eventfd `write`:
/// measured with `strace -c`, 3.4 more system calls per request). Here a wake-up that arrives
/// while `main` or `side` is being polled is noted and both are polled again at once; one that
/// arrives at any other time (a socket became readable) wakes the task as usual.
pub async fn drive_beside<M: Future + Unpin>(main: M, side: &mut LaneDriver) -> M::Output {
    let wake = Arc::new(InTaskWake::default());
    Beside {
        main,
        side,
        waker: futures::task::waker(wake.clone()),
        wake,
    }
    .await
}

/// At most this many re-polls in a row before the task yields (other tasks of the worker run).
const MAX_REPOLLS: usize = 16;

struct Beside<'a, M> {
    main: M,
    side: &'a mut LaneDriver,
    wake: Arc<InTaskWake>,
    /// `wake` as a waker, made once.
    waker: Waker,
}

#[derive(Default)]
struct InTaskWake {
    /// Set by every wake-up.
    woken: std::sync::atomic::AtomicBool,
    /// Whether `Beside::poll` is polling its futures now.
    polling: std::sync::atomic::AtomicBool,
    /// The task's own waker, for wake-ups from outside a poll.
    task: futures::task::AtomicWaker,
}

impl futures::task::ArcWake for InTaskWake {
    fn wake_by_ref(this: &Arc<Self>) {
        use std::sync::atomic::Ordering::SeqCst;
        // `woken` before `polling`, as `Beside::poll` clears `polling` before reading `woken`: a
        // wake-up is either seen by the poll loop or wakes the task (or both), never lost.
        this.woken.store(true, SeqCst);
        if !this.polling.load(SeqCst) {
            this.task.wake();
        }
    }
}

impl<M: Future + Unpin> Future for Beside<'_, M> {
    type Output = M::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Output> {
        use std::sync::atomic::Ordering::SeqCst;
        let this = &mut *self;
        this.wake.task.register(cx.waker());
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..MAX_REPOLLS {
            this.wake.polling.store(true, SeqCst);
            this.wake.woken.store(false, SeqCst);
            if let Poll::Ready(out) = Pin::new(&mut this.main).poll(&mut inner) {
                this.wake.polling.store(false, SeqCst);
                return Poll::Ready(out);
            }
            let Poll::Pending = Pin::new(&mut *this.side).poll(&mut inner);
            this.wake.polling.store(false, SeqCst);
            if !this.wake.woken.swap(false, SeqCst) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The scheme and authority a request goes to, kept when its URI is cut to origin form.
#[derive(Clone)]
struct AuthorityUri(Uri);

/// A request as HTTP/1 sends it to an origin server: path and query in the request line and the
/// authority in `Host` (what a pooled client does on its own).
fn origin_form(mut request: Request<Body>) -> Request<Body> {
    let uri = request.uri().clone();
    let mut parts = uri.into_parts();
    if let Some(authority) = parts.authority.take() {
        let scheme = parts.scheme.take().unwrap_or(http::uri::Scheme::HTTPS);
        let default_port = if scheme == http::uri::Scheme::HTTP {
            80
        } else {
            443
        };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => HeaderValue::from_str(authority.as_str()),
            _ => HeaderValue::from_str(authority.host()),
        };
        if let Ok(host) = host {
            request.headers_mut().insert(header::HOST, host);
        }
        let target = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build();
        if let Ok(target) = target {
            request.extensions_mut().insert(AuthorityUri(target));
        }
    }
    let path = parts
        .path_and_query
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs `work` with the lane's driver beside it in the same task, as the server does.
    async fn driven<T>(lane: &UpstreamLane, work: impl Future<Output = T>) -> T {
        drive_beside(std::pin::pin!(work), &mut lane.driver()).await
    }

    fn plain_connector() -> Connector {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        crate::upstream::connector(tls, std::time::Duration::from_secs(5))
    }

    /// A real HTTP/1 origin (raw sockets) that answers `ok` to one request per connection and
    /// then closes it *without* announcing it (no `Connection: close`): the client believes the
    /// connection can be reused, as when an API server drops an idle keep-alive connection.
    /// It closes a connection when told to (`close`), once its answer has been read, and says when
    /// it has (`closed`).
    async fn one_request_per_connection() -> (
        Uri,
        Arc<AtomicUsize>,
        Arc<tokio::sync::Notify>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        let close = Arc::new(tokio::sync::Notify::new());
        let close_now = close.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                close_now.notified().await;
                let _ = tcp.shutdown().await;
                drop(tcp);
                let _ = closed_tx.send(());
            }
        });
        (base, connections, close, closed)
    }

    fn get(base: &Uri) -> Request<Body> {
        Request::builder()
            .uri(format!("{base}version"))
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_closed_upstream_connection_is_replaced_and_the_request_still_answered() {
        let (base, connections, close, mut closed) = one_request_per_connection().await;
        let lane = UpstreamLane::default();
        let connector = plain_connector();
        for round in 0..3 {
            if round > 0 {
                // The origin closes the last connection while the lane's driver is not running:
                // the lane finds out only when it tries to use it.
                close.notify_one();
                closed.recv().await.unwrap();
            }
            let body = driven(&lane, async {
                let response = lane.send(&connector, get(&base)).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap().to_bytes()
            })
            .await;
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn one_connection_serves_every_request_of_a_keep_alive_client() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    hyper_util::rt::TokioIo::new(tcp),
                    hyper::service::service_fn(|request: Request<Incoming>| async move {
                        let host = request.headers()[header::HOST].clone();
                        Ok::<_, std::convert::Infallible>(Response::new(Body::from(format!(
                            "{} {host:?}",
                            request.uri()
                        ))))
                    }),
                ));
            }
        });
        let lane = UpstreamLane::default();
        let connector = plain_connector();
        let authority = base.authority().unwrap().to_string();
        for _ in 0..5 {
            let body = driven(&lane, async {
                let response = lane.send(&connector, get(&base)).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            })
            .await;
            // Origin form on the request line, the API server's authority in Host.
            assert_eq!(body, format!("/version \"{authority}\""));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn origin_form_moves_the_authority_to_host() {
        let request = Request::builder()
            .uri("https://127.0.0.1:6443/api/v1/pods?watch=1")
            .body(Body::empty())
            .unwrap();
        let request = origin_form(request);
        assert_eq!(request.uri(), "/api/v1/pods?watch=1");
        assert_eq!(request.headers()[header::HOST], "127.0.0.1:6443");
        let target = &request.extensions().get::<AuthorityUri>().unwrap().0;
        assert_eq!(target, "https://127.0.0.1:6443/");
    }

    #[test]
    fn a_default_port_is_left_out_of_host() {
        let request = Request::builder()
            .uri("https://127.0.0.1:443/version")
            .body(Body::empty())
            .unwrap();
        assert_eq!(origin_form(request).headers()[header::HOST], "127.0.0.1");
    }
}
