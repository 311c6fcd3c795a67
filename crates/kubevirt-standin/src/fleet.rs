//! The VMs a stand-in runs (one Xvnc each), their VNC sessions, and the WebSocket-to-RFB bridge.
//!
//! Sessions follow KubeVirt (kubevirt/kubevirt#15267): one VNC session per VMI; a new connection
//! takes over (the old one is closed), unless it asks for `preserveSession=true`, in which case it
//! is refused with 503 while a session is open.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::keys::KeyTap;
use crate::xvnc::VncServer;
use crate::{Error, Rgb};

/// How many of the last key presses a VM remembers.
const KEYS_KEPT: usize = 64;

/// The close reason sent to a session that a newer connection took over.
pub const TAKEN_OVER_REASON: &str = "VNC session taken over by a new connection";

/// One VM: its VNC server and its current session, if any.
#[derive(Debug)]
pub struct Vm {
    namespace: String,
    name: String,
    server: VncServer,
    session: Mutex<Option<Active>>,
    next_session: AtomicU64,
    /// Keysyms of the last key presses its sessions sent, oldest first.
    keys: Mutex<Vec<u32>>,
}

#[derive(Debug)]
struct Active {
    id: u64,
    // Dropping (or firing) it tells the session that it was taken over.
    _takeover: oneshot::Sender<()>,
}

/// The right to be a VM's one VNC session; released on drop.
#[derive(Debug)]
pub struct Claim {
    vm: Arc<Vm>,
    id: u64,
    taken_over: oneshot::Receiver<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut session) = self.vm.session.lock()
            && session.as_ref().is_some_and(|a| a.id == self.id)
        {
            *session = None;
        }
    }
}

impl Vm {
    /// The namespace of the VMI.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The VMI name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its VNC server.
    pub fn server(&self) -> &VncServer {
        &self.server
    }

    /// The keysym of the last key press a session sent this VM, if any.
    pub fn last_key(&self) -> Option<u32> {
        self.keys().last().copied()
    }

    /// The keysyms of the last key presses sessions sent this VM (at most 64), oldest first.
    pub fn keys(&self) -> Vec<u32> {
        self.keys.lock().map(|k| k.clone()).unwrap_or_default()
    }

    fn record_keys(&self, keys: Vec<u32>) {
        if keys.is_empty() {
            return;
        }
        if let Ok(mut kept) = self.keys.lock() {
            kept.extend(keys);
            let over = kept.len().saturating_sub(KEYS_KEPT);
            kept.drain(..over);
        }
    }

    /// Whether a VNC session is open.
    pub fn busy(&self) -> bool {
        self.session.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// Becomes the VM's session. With `preserve_session`, fails (returns `None`) while another
    /// session is open; otherwise the open session, if any, is taken over.
    pub fn claim(self: &Arc<Self>, preserve_session: bool) -> Option<Claim> {
        let mut session = self.session.lock().ok()?;
        if preserve_session && session.is_some() {
            return None;
        }
        let id = self.next_session.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        // Replacing the old `Active` drops its sender: the old session sees it was taken over.
        *session = Some(Active { id, _takeover: tx });
        Some(Claim {
            vm: self.clone(),
            id,
            taken_over: rx,
        })
    }
}

/// The VMs of a stand-in, by namespace and name.
pub struct Fleet {
    vms: Mutex<BTreeMap<(String, String), Arc<Vm>>>,
    log_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Fleet {
    /// An empty fleet whose VNC server logs go to `log_dir` (created), or to a temporary
    /// directory removed when the fleet is dropped.
    pub fn new(log_dir: Option<&Path>) -> Result<Self, Error> {
        let (temp, log_dir) = match log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
                (None, dir.to_path_buf())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("kubevirt-standin-")
                    .tempdir()
                    .map_err(|e| Error::Io(format!("cannot create a temporary directory: {e}")))?;
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        Ok(Self {
            vms: Mutex::new(BTreeMap::new()),
            log_dir,
            _temp: temp,
        })
    }

    /// Where the VNC servers' logs go.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Starts a VNC server for `namespace/name` showing `colour`.
    pub async fn add(&self, namespace: &str, name: &str, colour: Rgb) -> Result<Arc<Vm>, Error> {
        let key = (namespace.to_string(), name.to_string());
        if self.lock().contains_key(&key) {
            return Err(Error::Invalid(format!(
                "VM {namespace}/{name} is already running"
            )));
        }
        let server = VncServer::start(name, colour, &self.log_dir).await?;
        let vm = Arc::new(Vm {
            namespace: namespace.to_string(),
            name: name.to_string(),
            server,
            session: Mutex::new(None),
            next_session: AtomicU64::new(1),
            keys: Mutex::new(Vec::new()),
        });
        let mut vms = self.lock();
        if vms.contains_key(&key) {
            return Err(Error::Invalid(format!(
                "VM {namespace}/{name} is already running"
            )));
        }
        vms.insert(key, vm.clone());
        Ok(vm)
    }

    /// The VM `namespace/name`, if it runs.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Vm>> {
        self.lock()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every VM.
    pub fn vms(&self) -> Vec<Arc<Vm>> {
        self.lock().values().cloned().collect()
    }

    /// Forgets `namespace/name`; its VNC server stops when its last session ends.
    pub fn remove(&self, namespace: &str, name: &str) -> Option<Arc<Vm>> {
        self.lock()
            .remove(&(namespace.to_string(), name.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Arc<Vm>>> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a bridged session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The WebSocket client closed (or went away).
    ClientClosed,
    /// The VNC server closed the RFB connection.
    ServerClosed,
    /// A newer connection took the session over.
    TakenOver,
    /// The caller's `stop` future fired; the session was closed with its frame.
    Stopped,
    /// The VNC server could not be reached.
    Unreachable,
}

/// Carries raw RFB bytes between a WebSocket (binary messages) and the claimed VM's VNC server
/// until one side closes, the session is taken over, or `stop` yields the close frame to send.
pub async fn bridge<S, F>(mut ws: WebSocketStream<S>, mut claim: Claim, stop: F) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = CloseFrame>,
{
    let close = |code: CloseCode, reason: &str| CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    let tcp = match tokio::net::TcpStream::connect(claim.vm.server.addr()).await {
        Ok(tcp) => tcp,
        Err(e) => {
            let _ = ws
                .close(Some(close(
                    CloseCode::Error,
                    &format!("VNC server unreachable: {e}"),
                )))
                .await;
            return Ended::Unreachable;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut rfb_in, mut rfb_out) = tcp.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    let mut tap = KeyTap::default();
    tokio::pin!(stop);
    let (ended, frame) = loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    claim.vm.record_keys(tap.feed(&data));
                    if rfb_out.write_all(&data).await.is_err() {
                        break (Ended::ServerClosed, Some(close(CloseCode::Normal, "VNC server closed the connection")));
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break (Ended::ClientClosed, None),
                // KubeVirt carries RFB in binary messages only; text, pings and pongs carry none.
                Some(Ok(_)) => {}
            },
            read = rfb_in.read(&mut buf) => match read {
                Ok(0) | Err(_) => break (Ended::ServerClosed, Some(close(CloseCode::Normal, "VNC server closed the connection"))),
                Ok(n) => {
                    if ws.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break (Ended::ClientClosed, None);
                    }
                }
            },
            _ = &mut claim.taken_over => break (Ended::TakenOver, Some(close(CloseCode::Normal, TAKEN_OVER_REASON))),
            frame = &mut stop => break (Ended::Stopped, Some(frame)),
        }
    };
    // Sends our close frame (or answers the client's) and flushes it, then gives the client a
    // moment to answer so that it sees a clean close with our code and reason.
    let _ = ws.close(frame).await;
    drop(claim);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    ended
}
