//! Shared VM consoles: at most one upstream VNC connection per VMI in this replica, every
//! viewer of that VMI attached to it through a [`virt_gateway_console::Hub`].
//!
//! The first viewer's arrival opens the upstream connection; when the last viewer leaves, the
//! connection stays for [`DEFAULT_LINGER`] (a page reload should not reconnect to the VM) and is
//! then closed. One viewer's token ending (expiry, revocation, shutdown: the gateway's kill
//! future) ends that viewer only. Who of several controllers drives is the hub's
//! [`ControllerPolicy`] (`--console-controllers`).
//!
//! Used by the proxy when the gateway runs with `--shared-consoles` (see the gateway README).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{Mutex, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use virt_gateway_console::rfb::Limits;
use virt_gateway_console::rfb::messages::InputKind;
use virt_gateway_console::{ControllerPolicy, Hub, HubError, HubSettings, Role};

use crate::metrics::{ConsoleLabels, L1};
use crate::websocket::Kill;

/// How long an upstream connection outlives its last viewer.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(10);

/// Which console: a VMI's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConsoleKey {
    /// The VMI's namespace.
    pub namespace: String,
    /// The VMI's name.
    pub name: String,
}

impl ConsoleKey {
    /// The VMI whose VNC subresource `api_path` names, if it names one.
    pub fn of_vnc_path(api_path: &str) -> Option<Self> {
        let rest = api_path.strip_prefix("/apis/subresources.kubevirt.io/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [
                _version,
                "namespaces",
                ns,
                "virtualmachineinstances",
                name,
                "vnc",
            ] if !ns.is_empty() && !name.is_empty() => Some(Self {
                namespace: (*ns).to_string(),
                name: (*name).to_string(),
            }),
            _ => None,
        }
    }
}

/// How one viewer's session ended.
#[derive(Debug)]
pub enum ViewerEnd {
    /// The console could not be opened: the API server refused the upstream connection (e.g.
    /// KubeVirt's 503, a 404) or the VNC server's handshake failed.
    Unavailable(HubError),
    /// The viewer left, or its session broke (the hub's reason).
    Left(Result<(), HubError>),
    /// The gateway ended it (its token expired or was revoked, or shutdown).
    Killed(Kill),
}

/// The live upstream connection of one console.
struct Live {
    hub: Hub,
    upstream: AbortHandle,
    /// Tells this connection from a later one for the same VMI.
    generation: u64,
    viewers: usize,
    /// Viewers by role: control, observe (the gauge's values).
    by_role: [usize; 2],
    linger: Option<AbortHandle>,
}

/// The consoles' metrics (see [`crate::metrics::Metrics`]).
#[derive(Clone, Debug, Default)]
pub struct ConsoleMetrics {
    /// Viewers per open console and role; a console's series go when its upstream closes.
    pub viewers: Family<ConsoleLabels, Gauge>,
    /// Upstream connections by result (`opened`, `failed`).
    pub upstreams: Family<L1, Counter>,
}

impl ConsoleMetrics {
    fn labels(key: &ConsoleKey, role: Role) -> ConsoleLabels {
        [
            ("namespace", key.namespace.clone()),
            ("vmi", key.name.clone()),
            ("role", role_label(role).to_string()),
        ]
    }

    /// Sets `key`'s gauges to `live`'s counts.
    fn set(&self, key: &ConsoleKey, live: &Live) {
        for (i, role) in [Role::Control, Role::Observe].into_iter().enumerate() {
            let n = i64::try_from(live.by_role[i]).unwrap_or(i64::MAX);
            self.viewers.get_or_create(&Self::labels(key, role)).set(n);
        }
    }

    /// Removes `key`'s series: its console closed.
    fn remove(&self, key: &ConsoleKey) {
        for role in [Role::Control, Role::Observe] {
            self.viewers.remove(&Self::labels(key, role));
        }
    }
}

/// The label (and audit) value of a role: `control` or `observe`.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Control => "control",
        Role::Observe => "observe",
    }
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Control => 0,
        Role::Observe => 1,
    }
}

type Cell = Arc<Mutex<Option<Live>>>;

/// Every console of this replica.
#[derive(Clone)]
pub struct Consoles {
    cells: Arc<SyncMutex<HashMap<ConsoleKey, Cell>>>,
    linger: Duration,
    generations: Arc<std::sync::atomic::AtomicU64>,
    policy: ControllerPolicy,
    metrics: ConsoleMetrics,
}

impl std::fmt::Debug for Consoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consoles")
            .field("linger", &self.linger)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Consoles {
    /// No consoles yet; upstream connections outlive their last viewer by `linger`.
    pub fn new(linger: Duration) -> Self {
        Self {
            cells: Arc::default(),
            linger,
            generations: Arc::default(),
            policy: ControllerPolicy::default(),
            metrics: ConsoleMetrics::default(),
        }
    }

    /// Who of several controllers drives (default: take-over).
    #[must_use]
    pub fn with_policy(mut self, policy: ControllerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Counts viewers and upstream connections in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: ConsoleMetrics) -> Self {
        self.metrics = metrics;
        self
    }
    /// Viewers attached to `key`'s console now (0 when it has no upstream connection).
    pub async fn viewers(&self, key: &ConsoleKey) -> usize {
        let Some(cell) = self.cell_if_any(key) else {
            return 0;
        };
        let live = cell.lock().await;
        live.as_ref().map_or(0, |l| l.viewers)
    }

    fn cell_if_any(&self, key: &ConsoleKey) -> Option<Cell> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.get(key).cloned()
    }

    /// Serves one viewer of `key` over `io` until it leaves or `kill` resolves. `connect`
    /// opens the upstream byte stream when the console has none (or its last one ended).
    pub async fn attach<V, U, F, Fut>(
        &self,
        key: ConsoleKey,
        connect: F,
        io: V,
        role: Role,
        on_drop: &(dyn Fn(InputKind) + Sync),
        kill: BoxFuture<'static, Kill>,
    ) -> ViewerEnd
    where
        V: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::io::Result<U>>,
    {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells.entry(key.clone()).or_default().clone()
        };
        let (hub, generation) = match self.join(&cell, &key, role, connect).await {
            Ok(joined) => joined,
            Err(e) => return ViewerEnd::Unavailable(e),
        };
        let end = tokio::select! {
            result = hub.serve_with(io, role, on_drop) => ViewerEnd::Left(result),
            kill = kill => ViewerEnd::Killed(kill),
        };
        self.leave(key, cell, generation, role).await;
        end
    }

    /// Counts a viewer in, opening the upstream connection if there is none.
    async fn join<U, F, Fut>(
        &self,
        cell: &Cell,
        key: &ConsoleKey,
        role: Role,
        connect: F,
    ) -> Result<(Hub, u64), HubError>
    where
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::io::Result<U>>,
    {
        // Held across the connect: viewers arriving meanwhile wait and share it.
        let mut live = cell.lock().await;
        if live.as_ref().is_none_or(|l| l.hub.ended().is_some()) {
            if let Some(old) = live.take() {
                old.upstream.abort();
            }
            let (hub, task) = match self.open(key, connect).await {
                Ok(opened) => {
                    self.metrics
                        .upstreams
                        .get_or_create(&[("result", "opened")])
                        .inc();
                    opened
                }
                Err(e) => {
                    self.metrics
                        .upstreams
                        .get_or_create(&[("result", "failed")])
                        .inc();
                    return Err(e);
                }
            };
            let generation = self
                .generations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *live = Some(Live {
                hub,
                upstream: task.abort_handle(),
                generation,
                viewers: 0,
                by_role: [0; 2],
                linger: None,
            });
        }
        let Some(l) = live.as_mut() else {
            return Err(HubError::Ended("no upstream connection".into()));
        };
        l.viewers += 1;
        l.by_role[role_index(role)] += 1;
        self.metrics.set(key, l);
        if let Some(linger) = l.linger.take() {
            linger.abort();
        }
        Ok((l.hub.clone(), l.generation))
    }

    /// Opens the upstream connection and the hub on it.
    async fn open<U, F, Fut>(
        &self,
        key: &ConsoleKey,
        connect: F,
    ) -> Result<(Hub, tokio::task::JoinHandle<Result<(), HubError>>), HubError>
    where
        U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::io::Result<U>>,
    {
        let upstream = connect().await?;
        let settings = HubSettings {
            vmi: Some(key.name.clone()),
            policy: self.policy,
        };
        Hub::connect_with(upstream, Limits::default(), settings).await
    }

    /// Counts a viewer out; the last one starts the linger, after which the upstream closes.
    async fn leave(&self, key: ConsoleKey, cell: Cell, generation: u64, role: Role) {
        let mut live = cell.lock().await;
        let Some(l) = live.as_mut().filter(|l| l.generation == generation) else {
            return;
        };
        l.viewers = l.viewers.saturating_sub(1);
        let count = &mut l.by_role[role_index(role)];
        *count = count.saturating_sub(1);
        self.metrics.set(&key, l);
        if l.viewers > 0 {
            return;
        }
        let (linger, cells, cell2) = (self.linger, self.cells.clone(), cell.clone());
        let metrics = self.metrics.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            let mut live = cell2.lock().await;
            if live
                .as_ref()
                .is_some_and(|l| l.generation == generation && l.viewers == 0)
            {
                if let Some(old) = live.take() {
                    old.upstream.abort();
                }
                metrics.remove(&key);
                let mut cells = cells.lock().unwrap_or_else(|e| e.into_inner());
                if cells.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell2)) {
                    cells.remove(&key);
                }
            }
        });
        l.linger = Some(task.abort_handle());
    }
}

/// Bytes one viewer sent and was sent, for its audit line.
#[derive(Debug, Default)]
pub struct ViewerBytes {
    /// From the viewer to the gateway.
    pub from_viewer: std::sync::atomic::AtomicU64,
    /// From the gateway to the viewer.
    pub to_viewer: std::sync::atomic::AtomicU64,
}

/// A viewer's byte stream, counted into its [`ViewerBytes`] and the `console_bytes` metric.
pub struct Counted<S> {
    inner: S,
    bytes: Arc<ViewerBytes>,
    /// `console_bytes{direction="from_viewer"}` and `{direction="to_viewer"}`.
    metric: (Counter, Counter),
}

impl<S> Counted<S> {
    /// Counts `inner`'s bytes into `bytes` and the two counters (from, to the viewer).
    pub fn new(inner: S, bytes: Arc<ViewerBytes>, metric: (Counter, Counter)) -> Self {
        Self {
            inner,
            bytes,
            metric,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            self.bytes.from_viewer.fetch_add(n, relaxed);
            self.metric.0.inc_by(n);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            self.bytes.to_viewer.fetch_add(n as u64, relaxed);
            self.metric.1.inc_by(n as u64);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// RFB bytes over a WebSocket's binary messages, as KubeVirt's `plain.kubevirt.io` and noVNC's
/// `binary` subprotocols carry them: returns the byte side and a sender that ends the WebSocket
/// with a close frame (code, reason); a task moves the bytes.
pub fn websocket_bytes<S>(
    ws: WebSocketStream<S>,
) -> (DuplexStream, oneshot::Sender<(u16, &'static str)>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (close_tx, close_rx) = oneshot::channel::<(u16, &'static str)>();
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let mut buf = vec![0u8; 64 * 1024];
        let mut close_rx = Some(close_rx);
        let mut frame = None;
        loop {
            tokio::select! {
                // A close frame wins over the end of the viewer's stream that follows it.
                biased;
                close = async {
                    match close_rx.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                } => {
                    close_rx = None;
                    if let Ok((code, reason)) = close {
                        frame = Some(CloseFrame { code: code.into(), reason: reason.into() });
                        break;
                    }
                }
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                },
                msg = stream.next() => match msg {
                    Some(Ok(Message::Binary(data))) => {
                        if wr.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = sink.send(Message::Close(frame)).await;
        let _ = sink.close().await;
    });
    (ours, close_tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::DuplexStream;
    use virt_gateway_console::rfb::PixelFormat;
    use virt_gateway_console::rfb::handshake::{self, ServerInit};

    fn key(name: &str) -> ConsoleKey {
        ConsoleKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    /// A scripted VNC server per connection; counts connections and reports when one closes.
    #[derive(Clone, Default)]
    struct Vms {
        opened: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
    }

    impl Vms {
        async fn connect(&self) -> std::io::Result<DuplexStream> {
            self.opened.fetch_add(1, Ordering::SeqCst);
            let (hub_side, mut vm) = tokio::io::duplex(1 << 16);
            let closed = self.closed.clone();
            tokio::spawn(async move {
                let init = ServerInit {
                    width: 16,
                    height: 16,
                    format: PixelFormat::CANONICAL,
                    name: "vm".into(),
                };
                handshake::server(&mut vm, &init).await.unwrap();
                let mut sink = vec![0u8; 4096];
                while vm.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                closed.fetch_add(1, Ordering::SeqCst);
            });
            Ok(hub_side)
        }
    }

    /// Attaches a viewer that has done its handshake; returns its stream, the task, and the
    /// sender that kills it.
    async fn viewer(
        consoles: &Consoles,
        vms: &Vms,
        name: &str,
    ) -> (
        DuplexStream,
        tokio::task::JoinHandle<ViewerEnd>,
        tokio::sync::oneshot::Sender<Kill>,
    ) {
        let (mut ours, theirs) = tokio::io::duplex(1 << 16);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let kill: BoxFuture<'static, Kill> = Box::pin(async move {
            match rx.await {
                Ok(kill) => kill,
                Err(_) => std::future::pending().await,
            }
        });
        let (c, v, k) = (consoles.clone(), vms.clone(), key(name));
        let task = tokio::spawn(async move {
            c.attach(
                k,
                || async move { v.connect().await },
                theirs,
                Role::Control,
                &|_| {},
                kill,
            )
            .await
        });
        handshake::client(&mut ours, &Limits::default())
            .await
            .unwrap();
        (ours, task, tx)
    }

    #[test]
    fn only_vnc_subresources_are_consoles() {
        let vnc = "/apis/subresources.kubevirt.io/v1/namespaces/a/virtualmachineinstances/v/vnc";
        assert_eq!(
            ConsoleKey::of_vnc_path(vnc),
            Some(ConsoleKey {
                namespace: "a".into(),
                name: "v".into()
            })
        );
        for other in [
            "/apis/subresources.kubevirt.io/v1/namespaces/a/virtualmachineinstances/v/console",
            "/apis/subresources.kubevirt.io/v1/namespaces/a/virtualmachineinstances/v/vnc/x",
            "/apis/kubevirt.io/v1/namespaces/a/virtualmachineinstances/v/vnc",
            "/apis/subresources.kubevirt.io/v1/namespaces//virtualmachineinstances/v/vnc",
        ] {
            assert_eq!(ConsoleKey::of_vnc_path(other), None, "{other}");
        }
    }

    /// Two viewers of one VMI share one upstream connection; another VMI gets its own. Killing
    /// one viewer (its token revoked) ends it alone.
    #[tokio::test]
    async fn viewers_share_and_a_kill_ends_one() {
        let (consoles, vms) = (Consoles::new(DEFAULT_LINGER), Vms::default());
        let (_a, _ta, _ka) = viewer(&consoles, &vms, "vm1").await;
        let (mut b, tb, kb) = viewer(&consoles, &vms, "vm1").await;
        let (_c, _tc, _kc) = viewer(&consoles, &vms, "vm2").await;
        assert_eq!(vms.opened.load(Ordering::SeqCst), 2);
        assert_eq!(consoles.viewers(&key("vm1")).await, 2);

        kb.send(Kill::Revoked("token revoked")).unwrap();
        assert!(matches!(
            tb.await.unwrap(),
            ViewerEnd::Killed(Kill::Revoked(_))
        ));
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(consoles.viewers(&key("vm1")).await, 1);
        assert_eq!(vms.closed.load(Ordering::SeqCst), 0);
    }

    /// The upstream outlives its last viewer by the linger: a viewer within it reuses the
    /// connection; after it the connection closes and the next viewer opens a new one.
    #[tokio::test]
    async fn upstream_closes_after_the_linger() {
        let (long, vms) = (Consoles::new(Duration::from_secs(3600)), Vms::default());
        let (a, ta, _ka) = viewer(&long, &vms, "vm1").await;
        drop(a);
        assert!(matches!(ta.await.unwrap(), ViewerEnd::Left(Ok(()))));
        let (_b, _tb, _kb) = viewer(&long, &vms, "vm1").await;
        assert_eq!(
            vms.opened.load(Ordering::SeqCst),
            1,
            "reused within the linger"
        );

        let (none, vms) = (Consoles::new(Duration::ZERO), Vms::default());
        let (a, ta, _ka) = viewer(&none, &vms, "vm1").await;
        drop(a);
        ta.await.unwrap();
        while vms.closed.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(none.viewers(&key("vm1")).await, 0);
        let (_c, _tc, _kc) = viewer(&none, &vms, "vm1").await;
        assert_eq!(vms.opened.load(Ordering::SeqCst), 2);
    }

    /// The viewer gauge follows joins and leaves by role, and a console's series go when its
    /// upstream closes (after the linger), so the gauge holds live consoles only.
    #[tokio::test]
    async fn viewer_gauges_live_only_as_long_as_the_console() {
        let metrics = ConsoleMetrics::default();
        let consoles = Consoles::new(Duration::ZERO).with_metrics(metrics.clone());
        let vms = Vms::default();
        let labels = |role| ConsoleMetrics::labels(&key("vm1"), role);
        let value = |role| metrics.viewers.get(&labels(role)).map(|g| g.get());
        let (a, ta, _ka) = viewer(&consoles, &vms, "vm1").await;
        let (b, tb, _kb) = viewer(&consoles, &vms, "vm1").await;
        assert_eq!(value(Role::Control), Some(2));
        assert_eq!(value(Role::Observe), Some(0));
        assert_eq!(
            metrics
                .upstreams
                .get(&[("result", "opened")])
                .map(|c| c.get()),
            Some(1)
        );
        drop(a);
        ta.await.unwrap();
        assert_eq!(value(Role::Control), Some(1));
        drop(b);
        tb.await.unwrap();
        while vms.closed.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        while value(Role::Control).is_some() {
            tokio::task::yield_now().await;
        }
        assert_eq!(value(Role::Observe), None);
    }

    /// Bytes cross the WebSocket bridge both ways as binary messages.
    #[tokio::test]
    async fn websocket_bytes_carry_rfb_both_ways() {
        use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, WsRole::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, WsRole::Client, None).await;
        let (mut bytes, _close) = websocket_bytes(server);
        bytes.write_all(b"RFB 003.008\n").await.unwrap();
        let Some(Ok(Message::Binary(got))) = client.next().await else {
            panic!("no binary message");
        };
        assert_eq!(&got[..], b"RFB 003.008\n");
        client
            .send(Message::binary(b"hello".to_vec()))
            .await
            .unwrap();
        let mut five = [0u8; 5];
        bytes.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"hello");
    }
}
