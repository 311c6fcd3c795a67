//! One VM's shared console: one upstream RFB connection, the framebuffer it shows, and an RFB
//! server for every viewer.
//!
//! The upstream task reads the VM's updates into the framebuffer and adds what changed to every
//! viewer's [`Damage`]; it never waits for a viewer. Each viewer's task answers that viewer's
//! update requests from the framebuffer, so a slow viewer's damage coalesces (it gets fewer,
//! newer frames) while the others go on. Observers' input is dropped here and counted, and so
//! is a controller's whose control another took ([`crate::policy`]). Each viewer is told its
//! state and the number of viewers in the desktop name (ServerInit, then DesktopName updates).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::policy::{Control, ControllerPolicy, desktop_name};
use crate::rfb::decode::{Event, ServerDecoder};
use crate::rfb::encode::{Copy, Pseudo, UpdateWriter, ViewerEncodings};
use crate::rfb::handshake::{self, HandshakeError, ServerInit};
use crate::rfb::messages::{ClientMessage, InputKind};
use crate::rfb::{Limits, PixelFormat, PixelWriter, ProtocolError, Rect, encoding};
use crate::screen::{Damage, Framebuffer};

/// Most CopyRects kept for a viewer between two of its updates; more become damage.
const MAX_COPIES: usize = 16;
/// Controllers' input waiting for the upstream connection.
const INPUT_QUEUE: usize = 256;

/// What a viewer may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sees the screen and sends keys, pointer and clipboard to the VM.
    Control,
    /// Sees the screen; its input is dropped and counted.
    Observe,
}

/// Why a console or one viewer's session ended.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("console I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the VM's console ended: {0}")]
    Ended(String),
}

/// How a console is set up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubSettings {
    /// The name viewers see first in the desktop name (the VMI's); the VNC server's own
    /// desktop name when `None`.
    pub vmi: Option<String>,
    /// Who of several controllers drives.
    pub policy: ControllerPolicy,
}

/// A shared console. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    input: mpsc::Sender<ClientMessage>,
    /// Observers' input dropped, by [`InputKind`] (key, pointer, clipboard, resize).
    dropped: [AtomicU64; 4],
}

#[derive(Debug)]
struct State {
    fb: Framebuffer,
    /// The VMI's name, as viewers see it.
    name: String,
    qemu_keys: bool,
    control: Control,
    viewers: HashMap<u64, Slot>,
    next_id: u64,
    ended: Option<String>,
}

/// What one viewer has not been sent yet.
#[derive(Debug)]
struct Slot {
    role: Role,
    /// The viewer count or this viewer's state changed: its desktop name may be out of date.
    name_changed: bool,
    damage: Damage,
    copies: Vec<Copy>,
    resize: bool,
    wake: Arc<Notify>,
    held: Held,
}

/// Keys and buttons a controller holds down on the VM: released for it when it stops driving
/// (it leaves or loses control), so a Ctrl held at take-over does not turn the next
/// controller's "c" into Ctrl+C.
#[derive(Debug, Default)]
struct Held {
    /// Keysyms held, with the scancode of a QEMU extended key event.
    keys: Vec<(u32, Option<u32>)>,
    buttons: u8,
    pointer: (u16, u16),
}

impl Held {
    /// Notes input forwarded to the VM.
    fn track(&mut self, msg: &ClientMessage) {
        match *msg {
            ClientMessage::Key { down, keysym } => self.key(down, keysym, None),
            ClientMessage::QemuKey {
                down,
                keysym,
                keycode,
            } => self.key(down, keysym, Some(keycode)),
            ClientMessage::Pointer { buttons, x, y } => {
                self.buttons = buttons;
                self.pointer = (x, y);
            }
            _ => {}
        }
    }

    fn key(&mut self, down: bool, keysym: u32, keycode: Option<u32>) {
        self.keys.retain(|(k, _)| *k != keysym);
        // Bounded by what a keyboard can hold; a flood keeps the first 32.
        if down && self.keys.len() < 32 {
            self.keys.push((keysym, keycode));
        }
    }

    /// The messages that release everything held (QEMU key events when the VM takes them).
    fn releases(&mut self, qemu_keys: bool) -> Vec<ClientMessage> {
        let mut out: Vec<ClientMessage> = std::mem::take(&mut self.keys)
            .into_iter()
            .map(|(keysym, keycode)| match keycode {
                Some(keycode) if qemu_keys => ClientMessage::QemuKey {
                    down: false,
                    keysym,
                    keycode,
                },
                _ => ClientMessage::Key {
                    down: false,
                    keysym,
                },
            })
            .collect();
        if std::mem::take(&mut self.buttons) != 0 {
            let (x, y) = self.pointer;
            out.push(ClientMessage::Pointer { buttons: 0, x, y });
        }
        out
    }
}

impl Hub {
    /// Sets up the upstream connection (RFB client, shared session) and starts reading it.
    /// The task ends, with the reason, when the VNC server closes or breaks the protocol.
    pub async fn connect<S>(
        upstream: S,
        limits: Limits,
    ) -> Result<(Self, JoinHandle<Result<(), HubError>>), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::connect_with(upstream, limits, HubSettings::default()).await
    }

    /// [`Hub::connect`] with `settings`.
    pub async fn connect_with<S>(
        mut upstream: S,
        limits: Limits,
        settings: HubSettings,
    ) -> Result<(Self, JoinHandle<Result<(), HubError>>), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let init = handshake::client(&mut upstream, &limits).await?;
        if init.width > limits.max_dimension
            || init.height > limits.max_dimension
            || usize::from(init.width) * usize::from(init.height) > limits.max_pixels
        {
            return Err(ProtocolError::Invalid(format!(
                "screen {}x{} above the limits",
                init.width, init.height
            ))
            .into());
        }
        let mut out = BytesMut::new();
        ClientMessage::SetPixelFormat(PixelFormat::CANONICAL).write(&mut out);
        ClientMessage::SetEncodings(vec![
            encoding::ZRLE,
            encoding::HEXTILE,
            encoding::COPY_RECT,
            encoding::RAW,
            encoding::DESKTOP_SIZE,
            encoding::EXTENDED_DESKTOP_SIZE,
            encoding::LAST_RECT,
            encoding::QEMU_EXTENDED_KEY,
        ])
        .write(&mut out);
        full_request(&init, false).write(&mut out);
        upstream.write_all(&out).await?;
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                fb: Framebuffer::new(init.width, init.height),
                name: settings.vmi.unwrap_or(init.name),
                qemu_keys: false,
                control: Control::new(settings.policy),
                viewers: HashMap::new(),
                next_id: 0,
                ended: None,
            }),
            input: tx,
            dropped: Default::default(),
        });
        let task = tokio::spawn(run_upstream(shared.clone(), upstream, rx, limits));
        Ok((Self { shared }, task))
    }

    /// Viewers connected now.
    pub fn viewers(&self) -> usize {
        self.shared.lock().viewers.len()
    }

    /// Viewers connected now, with the control role and with the observer role.
    pub fn viewers_by_role(&self) -> (usize, usize) {
        let state = self.shared.lock();
        let controllers = state
            .viewers
            .values()
            .filter(|s| s.role == Role::Control)
            .count();
        (controllers, state.viewers.len() - controllers)
    }

    /// Input of `kind` dropped so far (observers', and controllers' without control).
    pub fn dropped(&self, kind: InputKind) -> u64 {
        self.shared.dropped[kind_index(kind)].load(Ordering::Relaxed)
    }

    /// Why the console ended, once it has.
    pub fn ended(&self) -> Option<String> {
        self.shared.lock().ended.clone()
    }

    /// A copy of the current screen.
    pub fn snapshot(&self) -> Framebuffer {
        self.shared.lock().fb.clone()
    }

    /// Serves one viewer over `io` until it leaves (`Ok`), breaks the protocol, or the console
    /// ends. The viewer's first update is the whole current screen. It counts as joined (and,
    /// as a controller under take-over, takes control) from before its handshake, so that the
    /// desktop name in its ServerInit is already right.
    pub async fn serve<S>(&self, io: S, role: Role) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.serve_with(io, role, &|_| {}).await
    }

    /// [`Hub::serve`], calling `on_drop` for every input of this viewer that is dropped (an
    /// observer's), for the caller's metrics.
    pub async fn serve_with<S>(
        &self,
        mut io: S,
        role: Role,
        on_drop: &(dyn Fn(InputKind) + Sync),
    ) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (id, wake, init) = self.join(role);
        let _leave = Leave {
            shared: &self.shared,
            id,
        };
        handshake::server(&mut io, &init).await?;
        Viewer {
            shared: &self.shared,
            id,
            role,
            on_drop,
            wake,
            writer: UpdateWriter::new(PixelWriter::new(PixelFormat::CANONICAL)),
            enc: ViewerEncodings::from_list(&[encoding::RAW]),
            requested: false,
            qemu_keys_sent: false,
            sent_name: init.name,
            skip: 0,
        }
        .run(&mut io)
        .await
    }

    /// Counts a viewer in; returns its id, its wake-up and the ServerInit it is greeted with.
    fn join(&self, role: Role) -> (u64, Arc<Notify>, ServerInit) {
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        let mut damage = Damage::new(state.fb.width(), state.fb.height());
        damage.add_all();
        let wake = Arc::new(Notify::new());
        let before = state.control.current();
        state.control.join(id, role);
        if let Some(previous) = before.filter(|p| state.control.current() != Some(*p)) {
            state.release(previous, &self.shared.input);
        }
        state.names_changed();
        state.viewers.insert(
            id,
            Slot {
                role,
                name_changed: false,
                damage,
                copies: Vec::new(),
                resize: false,
                wake: wake.clone(),
                held: Held::default(),
            },
        );
        let init = ServerInit {
            width: state.fb.width(),
            height: state.fb.height(),
            format: PixelFormat::CANONICAL,
            name: state.name_of(id, role),
        };
        (id, wake, init)
    }
}

impl State {
    /// Releases what viewer `id` holds down on the VM (best effort: never waits, so a full
    /// input queue loses the releases rather than stalling a join or a leave).
    fn release(&mut self, id: u64, input: &mpsc::Sender<ClientMessage>) {
        let qemu_keys = self.qemu_keys;
        if let Some(slot) = self.viewers.get_mut(&id) {
            for msg in slot.held.releases(qemu_keys) {
                let _ = input.try_send(msg);
            }
        }
    }

    /// The desktop name viewer `id` (with `role`) should see now.
    fn name_of(&self, id: u64, role: Role) -> String {
        desktop_name(&self.name, self.control.state(id, role), self.viewers.len())
    }

    /// The viewer count or who controls changed: every viewer's name is to be checked.
    fn names_changed(&mut self) {
        for slot in self.viewers.values_mut() {
            slot.name_changed = true;
            slot.wake.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn kind_index(kind: InputKind) -> usize {
    match kind {
        InputKind::Key => 0,
        InputKind::Pointer => 1,
        InputKind::Clipboard => 2,
        InputKind::Resize => 3,
    }
}

fn full_request(init: &ServerInit, incremental: bool) -> ClientMessage {
    ClientMessage::FramebufferUpdateRequest {
        incremental,
        rect: Rect::new(0, 0, init.width, init.height),
    }
}

/// Removes a viewer's slot however its session ends.
struct Leave<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.release(self.id, &self.shared.input);
        state.viewers.remove(&self.id);
        state.control.leave(self.id);
        state.names_changed();
    }
}

async fn run_upstream<S>(
    shared: Arc<Shared>,
    upstream: S,
    mut input: mpsc::Receiver<ClientMessage>,
    limits: Limits,
) -> Result<(), HubError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = pump_upstream(&shared, upstream, &mut input, limits).await;
    let reason = match &result {
        Ok(()) => "the VNC server closed the connection".to_string(),
        Err(e) => e.to_string(),
    };
    let mut state = shared.lock();
    state.ended = Some(reason);
    for slot in state.viewers.values() {
        slot.wake.notify_one();
    }
    result
}

async fn pump_upstream<S>(
    shared: &Shared,
    upstream: S,
    input: &mut mpsc::Receiver<ClientMessage>,
    limits: Limits,
) -> Result<(), HubError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(upstream);
    let mut decoder = ServerDecoder::new(PixelFormat::CANONICAL, limits);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut out = BytesMut::new();
    loop {
        tokio::select! {
            n = rd.read_buf(&mut buf) => {
                if n? == 0 {
                    return Ok(());
                }
                if let Some(size) = apply(shared, &mut decoder, &mut buf)? {
                    out.clear();
                    ClientMessage::FramebufferUpdateRequest {
                        incremental: true,
                        rect: Rect::new(0, 0, size.0, size.1),
                    }
                    .write(&mut out);
                    wr.write_all(&out).await?;
                }
            }
            msg = input.recv() => {
                // The hub holds a sender, so the queue never closes while this task runs.
                let Some(msg) = msg else { return Ok(()) };
                out.clear();
                msg.write(&mut out);
                wr.write_all(&out).await?;
            }
        }
    }
}

/// Applies every complete step in `buf`; returns the screen size when an update ended (time to
/// ask for the next one).
fn apply(
    shared: &Shared,
    decoder: &mut ServerDecoder,
    buf: &mut BytesMut,
) -> Result<Option<(u16, u16)>, ProtocolError> {
    let mut state = shared.lock();
    let mut ended = None;
    let state = &mut *state;
    while let Some((event, n)) = decoder.step(buf, &mut state.fb)? {
        let _ = buf.split_to(n);
        match event {
            Event::Damage(rect) => state.viewers.values_mut().for_each(|s| s.damage.add(rect)),
            Event::Copy { src_x, src_y, dst } => {
                let src = Rect::new(src_x, src_y, dst.width, dst.height);
                for slot in state.viewers.values_mut() {
                    // The viewer's copy is right only if its source is what the VM copied from.
                    if slot.resize || slot.copies.len() >= MAX_COPIES || slot.damage.touches(src) {
                        slot.damage.add(dst);
                    } else {
                        slot.copies.push(Copy { src_x, src_y, dst });
                    }
                }
            }
            Event::Resize { width, height } => {
                for slot in state.viewers.values_mut() {
                    slot.damage = Damage::new(width, height);
                    slot.damage.add_all();
                    slot.copies.clear();
                    slot.resize = true;
                }
            }
            Event::QemuKeys => state.qemu_keys = true,
            Event::UpdateEnd => {
                for slot in state.viewers.values() {
                    slot.wake.notify_one();
                }
                ended = Some((state.fb.width(), state.fb.height()));
            }
            // The VM's own name is not shown: viewers see the VMI's name and their state.
            Event::Bell | Event::CutText(_) | Event::Name(_) | Event::Nothing => {}
        }
        if buf.is_empty() && ended.is_some() {
            break;
        }
    }
    Ok(ended)
}

/// One viewer's RFB server.
struct Viewer<'a> {
    shared: &'a Shared,
    id: u64,
    role: Role,
    on_drop: &'a (dyn Fn(InputKind) + Sync),
    wake: Arc<Notify>,
    writer: UpdateWriter,
    enc: ViewerEncodings,
    requested: bool,
    qemu_keys_sent: bool,
    /// The desktop name this viewer was last told.
    sent_name: String,
    /// Bytes of an oversized clipboard text still to discard.
    skip: usize,
}

impl Viewer<'_> {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut S) -> Result<(), HubError> {
        let mut buf = BytesMut::with_capacity(4096);
        let mut out = BytesMut::new();
        loop {
            if self.requested {
                out.clear();
                if self.update(&mut out)? {
                    self.requested = false;
                    io.write_all(&out).await?;
                    continue;
                }
            } else if let Some(reason) = self.shared.lock().ended.clone() {
                return Err(HubError::Ended(reason));
            }
            tokio::select! {
                n = io.read_buf(&mut buf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                    self.handle(&mut buf).await?;
                }
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Writes this viewer's pending changes, if any, into `out`.
    fn update(&mut self, out: &mut BytesMut) -> Result<bool, HubError> {
        let mut state = self.shared.lock();
        if let Some(reason) = &state.ended {
            return Err(HubError::Ended(reason.clone()));
        }
        let qemu_keys = state.qemu_keys && self.enc.qemu_keys && !self.qemu_keys_sent;
        let name = self.new_name(&mut state);
        let state = &mut *state;
        let Some(slot) = state.viewers.get_mut(&self.id) else {
            return Err(HubError::Ended("viewer removed".into()));
        };
        if slot.damage.is_empty()
            && slot.copies.is_empty()
            && !slot.resize
            && !qemu_keys
            && name.is_none()
        {
            return Ok(false);
        }
        let pseudo = Pseudo {
            resize: std::mem::take(&mut slot.resize).then(|| (state.fb.width(), state.fb.height())),
            qemu_keys,
            name: name.as_deref(),
        };
        let copies = std::mem::take(&mut slot.copies);
        let rects = slot.damage.take();
        self.writer
            .write(&state.fb, pseudo, &copies, &rects, &self.enc, out)?;
        self.qemu_keys_sent |= qemu_keys;
        if let Some(name) = name {
            self.sent_name = name;
        }
        Ok(true)
    }

    /// This viewer's desktop name, when it changed since it was last told and it can be told
    /// (it asked for DesktopName).
    fn new_name(&self, state: &mut State) -> Option<String> {
        let slot = state.viewers.get_mut(&self.id)?;
        // Kept for later when the viewer has not asked for DesktopName (yet).
        if !self.enc.desktop_name || !std::mem::take(&mut slot.name_changed) {
            return None;
        }
        let name = state.name_of(self.id, self.role);
        (name != self.sent_name).then_some(name)
    }

    /// Handles every complete message in `buf`.
    async fn handle(&mut self, buf: &mut BytesMut) -> Result<(), HubError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                let _ = buf.split_to(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            let Some((msg, n)) = ClientMessage::parse(buf, &Limits::default())? else {
                return Ok(());
            };
            let _ = buf.split_to(n);
            self.message(msg).await?;
        }
    }

    async fn message(&mut self, msg: ClientMessage) -> Result<(), HubError> {
        if let Some(kind) = msg.input_kind() {
            if let ClientMessage::SkippedCutText { len } = msg {
                self.skip = len;
            }
            return self.input(kind, msg).await;
        }
        match msg {
            ClientMessage::SetPixelFormat(format) => {
                format.validate()?;
                self.writer.set_pixel_writer(PixelWriter::new(format));
            }
            ClientMessage::SetEncodings(list) => self.enc = ViewerEncodings::from_list(&list),
            ClientMessage::FramebufferUpdateRequest { incremental, rect } => {
                self.requested = true;
                if !incremental && let Some(slot) = self.shared.lock().viewers.get_mut(&self.id) {
                    slot.damage.add(rect);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn input(&mut self, kind: InputKind, msg: ClientMessage) -> Result<(), HubError> {
        let (sends, upstream_qemu_keys) = {
            let mut state = self.shared.lock();
            let sends = state.control.state(self.id, self.role).sends_input();
            if sends && let Some(slot) = state.viewers.get_mut(&self.id) {
                slot.held.track(&msg);
            }
            (sends, state.qemu_keys)
        };
        // An observer, or a controller whose control another took: watch only.
        if !sends {
            self.shared.dropped[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
            (self.on_drop)(kind);
            return Ok(());
        }
        let msg = match msg {
            // Resizing the VM's screen is not a viewer's to do; text too long was skipped.
            ClientMessage::SetDesktopSize { .. } | ClientMessage::SkippedCutText { .. } => {
                return Ok(());
            }
            ClientMessage::QemuKey { down, keysym, .. } if !upstream_qemu_keys => {
                ClientMessage::Key { down, keysym }
            }
            other => other,
        };
        self.shared
            .input
            .send(msg)
            .await
            .map_err(|_| HubError::Ended("the upstream connection is gone".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// A scripted VNC server: answers the hub's handshake, then hands back the stream.
    async fn upstream(qemu_keys: bool) -> (Hub, DuplexStream) {
        upstream_with(qemu_keys, HubSettings::default()).await
    }

    async fn upstream_with(qemu_keys: bool, settings: HubSettings) -> (Hub, DuplexStream) {
        let (hub_side, mut vm) = tokio::io::duplex(1 << 16);
        let init = ServerInit {
            width: 32,
            height: 32,
            format: PixelFormat::CANONICAL,
            name: "vm".into(),
        };
        let vm_task = tokio::spawn(async move {
            handshake::server(&mut vm, &init).await.unwrap();
            if qemu_keys {
                // An update acknowledging QEMU extended key events.
                vm.write_all(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xfe, 0xfe])
                    .await
                    .unwrap();
            }
            vm
        });
        let (hub, _task) = Hub::connect_with(hub_side, Limits::default(), settings)
            .await
            .unwrap();
        let mut vm = vm_task.await.unwrap();
        // SetPixelFormat, SetEncodings, the first full request.
        let mut setup = vec![0u8; 20 + 4 + 8 * 4 + 10];
        vm.read_exact(&mut setup).await.unwrap();
        assert_eq!(setup[0], 0);
        (hub, vm)
    }

    /// Next message the hub sent the VM, skipping update requests.
    async fn next_input(vm: &mut DuplexStream, buf: &mut BytesMut) -> ClientMessage {
        loop {
            if let Some((msg, n)) = ClientMessage::parse(buf, &Limits::default()).unwrap() {
                let _ = buf.split_to(n);
                if !matches!(msg, ClientMessage::FramebufferUpdateRequest { .. }) {
                    return msg;
                }
                continue;
            }
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), vm.read_buf(buf))
                .await
                .expect("input reaching the VM in time");
            assert!(read.unwrap() > 0, "the hub closed");
        }
    }

    async fn viewer(hub: &Hub, role: Role) -> DuplexStream {
        viewer_init(hub, role).await.0
    }

    /// A viewer after its handshake, with the ServerInit it got.
    async fn viewer_init(hub: &Hub, role: Role) -> (DuplexStream, ServerInit) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let hub = hub.clone();
        tokio::spawn(async move { hub.serve(theirs, role).await });
        let mut ours = ours;
        let init = handshake::client(&mut ours, &Limits::default())
            .await
            .unwrap();
        (ours, init)
    }

    /// An observer's keys, pointer, clipboard and resize requests never reach the VM; they are
    /// counted. A controller's input does, in order.
    #[tokio::test]
    async fn observers_input_is_dropped_and_counted() {
        let (hub, mut vm) = upstream(false).await;
        let mut observer = viewer(&hub, Role::Observe).await;
        let mut controller = viewer(&hub, Role::Control).await;
        let attack = [
            ClientMessage::Key {
                down: true,
                keysym: 0x72,
            },
            ClientMessage::QemuKey {
                down: true,
                keysym: 0x72,
                keycode: 0x13,
            },
            ClientMessage::Pointer {
                buttons: 1,
                x: 3,
                y: 3,
            },
            ClientMessage::CutText(b"rm -rf /".to_vec()),
            ClientMessage::SetDesktopSize {
                width: 8,
                height: 8,
                screens: vec![],
            },
        ];
        for msg in &attack {
            observer.write_all(&msg.to_bytes()).await.unwrap();
        }
        // Oversized clipboard text is skipped without being buffered, and still counted.
        let mut big = BytesMut::from(&[6u8, 0, 0, 0][..]);
        big.extend_from_slice(&(2u32 << 20).to_be_bytes());
        observer.write_all(&big).await.unwrap();
        observer.write_all(&vec![b'x'; 2 << 20]).await.unwrap();
        observer.write_all(&attack[0].to_bytes()).await.unwrap();
        while hub.dropped(InputKind::Key) < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hub.dropped(InputKind::Pointer), 1);
        assert_eq!(hub.dropped(InputKind::Clipboard), 2);
        assert_eq!(hub.dropped(InputKind::Resize), 1);

        let key = ClientMessage::Key {
            down: true,
            keysym: 0x61,
        };
        controller.write_all(&key.to_bytes()).await.unwrap();
        let pointer = ClientMessage::Pointer {
            buttons: 0,
            x: 9,
            y: 9,
        };
        controller.write_all(&pointer.to_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(next_input(&mut vm, &mut buf).await, key);
        assert_eq!(next_input(&mut vm, &mut buf).await, pointer);
        // QEMU key events become plain key events for a VM that did not accept them.
        let qemu = ClientMessage::QemuKey {
            down: false,
            keysym: 0x62,
            keycode: 0x30,
        };
        controller.write_all(&qemu.to_bytes()).await.unwrap();
        assert_eq!(
            next_input(&mut vm, &mut buf).await,
            ClientMessage::Key {
                down: false,
                keysym: 0x62
            }
        );
    }

    #[tokio::test]
    async fn qemu_key_events_pass_through_when_the_vm_takes_them() {
        let (hub, mut vm) = upstream(true).await;
        let mut controller = viewer(&hub, Role::Control).await;
        let enc = ClientMessage::SetEncodings(vec![encoding::RAW, encoding::QEMU_EXTENDED_KEY]);
        controller.write_all(&enc.to_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        // Wait until the hub has read the VM's acknowledgement (it then asks for more).
        while !hub.shared.lock().qemu_keys {
            vm.read_buf(&mut buf).await.unwrap();
        }
        let qemu = ClientMessage::QemuKey {
            down: true,
            keysym: 0xff0d,
            keycode: 0x1c,
        };
        controller.write_all(&qemu.to_bytes()).await.unwrap();
        assert_eq!(next_input(&mut vm, &mut buf).await, qemu);
    }

    /// A viewer built on the crate's own decoder, in the hub's default (canonical) format.
    struct TestViewer {
        io: DuplexStream,
        dec: ServerDecoder,
        fb: Framebuffer,
        buf: BytesMut,
    }

    impl TestViewer {
        async fn new(hub: &Hub, encodings: Vec<i32>) -> Self {
            Self::with_role(hub, Role::Control, encodings).await
        }

        async fn with_role(hub: &Hub, role: Role, encodings: Vec<i32>) -> Self {
            let mut io = viewer(hub, role).await;
            io.write_all(&ClientMessage::SetEncodings(encodings).to_bytes())
                .await
                .unwrap();
            let fb = hub.snapshot();
            Self {
                io,
                dec: ServerDecoder::new(PixelFormat::CANONICAL, Limits::default()),
                fb: Framebuffer::new(fb.width(), fb.height()),
                buf: BytesMut::new(),
            }
        }

        /// Asks for an update and returns its events.
        async fn update(&mut self, incremental: bool) -> Vec<Event> {
            let rect = self.fb.bounds();
            let req = ClientMessage::FramebufferUpdateRequest { incremental, rect };
            self.io.write_all(&req.to_bytes()).await.unwrap();
            let mut events = Vec::new();
            loop {
                while let Some((event, n)) = self.dec.step(&self.buf, &mut self.fb).unwrap() {
                    let _ = self.buf.split_to(n);
                    if event == Event::UpdateEnd {
                        return events;
                    }
                    events.push(event);
                }
                assert!(self.io.read_buf(&mut self.buf).await.unwrap() > 0);
            }
        }
    }

    /// Writes one update from the VM: `screen` at `rects` (Raw), after `copies` and an optional
    /// resize.
    async fn vm_update(
        vm: &mut DuplexStream,
        screen: &Framebuffer,
        resize: Option<(u16, u16)>,
        copies: &[Copy],
        rects: &[Rect],
    ) {
        let enc = ViewerEncodings::from_list(&[
            encoding::RAW,
            encoding::COPY_RECT,
            encoding::DESKTOP_SIZE,
        ]);
        let mut w = UpdateWriter::new(PixelWriter::new(PixelFormat::CANONICAL));
        let mut out = BytesMut::new();
        let pseudo = Pseudo {
            resize,
            ..Pseudo::default()
        };
        w.write(screen, pseudo, copies, rects, &enc, &mut out)
            .unwrap();
        vm.write_all(&out).await.unwrap();
    }

    /// The VM's screen changes size: a viewer that follows DesktopSize gets the resize and then
    /// the whole new screen.
    #[tokio::test]
    async fn desktop_resize_reaches_viewers() {
        let (hub, mut vm) = upstream(false).await;
        let mut v = TestViewer::new(&hub, vec![encoding::RAW, encoding::DESKTOP_SIZE]).await;
        v.update(false).await;
        assert_eq!((v.fb.width(), v.fb.height()), (32, 32));
        let mut screen = Framebuffer::new(48, 40);
        screen.fill(screen.bounds(), 0x0012_3456);
        vm_update(&mut vm, &screen, Some((48, 40)), &[], &[screen.bounds()]).await;
        let mut resized = false;
        while v.fb != screen {
            let events = v.update(true).await;
            resized |= events.contains(&Event::Resize {
                width: 48,
                height: 40,
            });
        }
        assert!(resized);
    }

    /// A VM CopyRect reaches a viewer as a CopyRect when that viewer's copy source is up to
    /// date, and as pixels when it is not (a viewer that has not had its first screen yet).
    #[tokio::test]
    async fn copy_rect_is_forwarded_only_from_a_clean_source() {
        let (hub, mut vm) = upstream(false).await;
        let encs = vec![encoding::RAW, encoding::COPY_RECT];
        let mut clean = TestViewer::new(&hub, encs.clone()).await;
        clean.update(false).await;
        let mut screen = Framebuffer::new(32, 32);
        screen.fill(Rect::new(0, 0, 8, 8), 0x00ff_0000);
        vm_update(&mut vm, &screen, None, &[], &[Rect::new(0, 0, 8, 8)]).await;
        while clean.fb != screen {
            clean.update(true).await;
        }
        let mut fresh = TestViewer::new(&hub, encs).await;
        let copy = Copy {
            src_x: 0,
            src_y: 0,
            dst: Rect::new(16, 16, 8, 8),
        };
        screen.copy(0, 0, copy.dst);
        vm_update(&mut vm, &screen, None, &[copy], &[]).await;
        let mut copied = false;
        while clean.fb != screen {
            let events = clean.update(true).await;
            copied |= events.iter().any(|e| matches!(e, Event::Copy { .. }));
        }
        assert!(copied, "the clean viewer got a CopyRect");
        while fresh.fb != screen {
            let events = fresh.update(true).await;
            assert!(!events.iter().any(|e| matches!(e, Event::Copy { .. })));
        }
    }

    /// When the VM's side closes, every viewer's session ends with the reason.
    #[tokio::test]
    async fn viewers_end_with_the_console() {
        let (hub, vm) = upstream(false).await;
        let mut v = viewer(&hub, Role::Control).await;
        drop(vm);
        let mut rest = Vec::new();
        v.read_to_end(&mut rest).await.unwrap();
        assert!(hub.ended().is_some());
        assert_eq!(hub.viewers(), 0);
    }

    /// Waits (a bounded time, so a broken rule fails rather than hangs) until `done`.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let wait = async {
            while !done() {
                tokio::task::yield_now().await;
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            panic!("timed out waiting for {what}");
        }
    }

    fn key(keysym: u32) -> ClientMessage {
        ClientMessage::Key { down: true, keysym }
    }

    /// Sends `msg` from `viewer`.
    async fn send(viewer: &mut DuplexStream, msg: &ClientMessage) {
        viewer.write_all(&msg.to_bytes()).await.unwrap();
    }

    /// Take-over (the default), attacked as a controller who lost control would: after a
    /// second controller joins, the first one's keys are dropped and counted, the second one's
    /// reach the VM; an observer never drives. Each is told its state in ServerInit.
    #[tokio::test]
    async fn take_over_drops_the_earlier_controllers_input() {
        let settings = HubSettings {
            vmi: Some("testvm".into()),
            policy: ControllerPolicy::TakeOver,
        };
        let (hub, mut vm) = upstream_with(false, settings).await;
        let (mut first, init) = viewer_init(&hub, Role::Control).await;
        assert_eq!(init.name, "testvm · you have control · 1 viewer");
        let (mut second, init) = viewer_init(&hub, Role::Control).await;
        assert_eq!(init.name, "testvm · you have control · 2 viewers");
        let (mut watcher, init) = viewer_init(&hub, Role::Observe).await;
        assert_eq!(init.name, "testvm · view only · 3 viewers");
        send(&mut first, &key(0x61)).await;
        send(&mut watcher, &key(0x62)).await;
        until("hub.dropped(InputKind::Key) >= 2", || {
            hub.dropped(InputKind::Key) >= 2
        })
        .await;
        send(&mut second, &key(0x63)).await;
        let mut buf = BytesMut::new();
        assert_eq!(next_input(&mut vm, &mut buf).await, key(0x63));
        // Control is not handed back when its holder leaves (fail safe); what it held down
        // is released.
        drop(second);
        assert_eq!(
            next_input(&mut vm, &mut buf).await,
            ClientMessage::Key {
                down: false,
                keysym: 0x63
            }
        );
        until("hub.viewers() <= 2", || hub.viewers() <= 2).await;
        send(&mut first, &key(0x64)).await;
        until("hub.dropped(InputKind::Key) >= 3", || {
            hub.dropped(InputKind::Key) >= 3
        })
        .await;
        // Reconnecting makes it the newest controller again.
        let (mut again, init) = viewer_init(&hub, Role::Control).await;
        assert_eq!(init.name, "testvm · you have control · 3 viewers");
        send(&mut again, &key(0x65)).await;
        assert_eq!(next_input(&mut vm, &mut buf).await, key(0x65));
        assert_eq!(hub.dropped(InputKind::Key), 3);
        assert_eq!(hub.viewers_by_role(), (2, 1));
    }

    /// Attack on the next controller: the one losing control holds Ctrl and a mouse button.
    /// Both are released on the VM when control is taken, before the new controller's input.
    #[tokio::test]
    async fn losing_control_releases_what_was_held() {
        let (hub, mut vm) = upstream(false).await;
        let (mut first, _) = viewer_init(&hub, Role::Control).await;
        let ctrl = ClientMessage::Key {
            down: true,
            keysym: 0xffe3,
        };
        let press = ClientMessage::Pointer {
            buttons: 1,
            x: 5,
            y: 6,
        };
        send(&mut first, &ctrl).await;
        send(&mut first, &press).await;
        let mut buf = BytesMut::new();
        assert_eq!(next_input(&mut vm, &mut buf).await, ctrl);
        assert_eq!(next_input(&mut vm, &mut buf).await, press);
        let (mut second, _) = viewer_init(&hub, Role::Control).await;
        send(&mut second, &key(0x63)).await;
        assert_eq!(
            next_input(&mut vm, &mut buf).await,
            ClientMessage::Key {
                down: false,
                keysym: 0xffe3
            }
        );
        assert_eq!(
            next_input(&mut vm, &mut buf).await,
            ClientMessage::Pointer {
                buttons: 0,
                x: 5,
                y: 6
            }
        );
        assert_eq!(next_input(&mut vm, &mut buf).await, key(0x63));
    }

    /// Shared: every controller drives; observers still do not.
    #[tokio::test]
    async fn shared_control_lets_every_controller_drive() {
        let settings = HubSettings {
            vmi: Some("testvm".into()),
            policy: ControllerPolicy::Shared,
        };
        let (hub, mut vm) = upstream_with(false, settings).await;
        let (mut first, _) = viewer_init(&hub, Role::Control).await;
        let (mut second, init) = viewer_init(&hub, Role::Control).await;
        assert_eq!(init.name, "testvm · shared control · 2 viewers");
        let (mut watcher, _) = viewer_init(&hub, Role::Observe).await;
        send(&mut watcher, &key(0x62)).await;
        send(&mut first, &key(0x61)).await;
        let mut buf = BytesMut::new();
        assert_eq!(next_input(&mut vm, &mut buf).await, key(0x61));
        send(&mut second, &key(0x63)).await;
        assert_eq!(next_input(&mut vm, &mut buf).await, key(0x63));
        assert_eq!(hub.dropped(InputKind::Key), 1);
    }

    /// A viewer that asked for DesktopName is told when the count or its state changes, in
    /// its next update; one that did not ask gets no DesktopName rectangle.
    #[tokio::test]
    async fn desktop_name_follows_joins_leaves_and_take_over() {
        let settings = HubSettings {
            vmi: Some("testvm".into()),
            policy: ControllerPolicy::TakeOver,
        };
        let (hub, _vm) = upstream_with(false, settings).await;
        let mut named = TestViewer::with_role(
            &hub,
            Role::Control,
            vec![encoding::RAW, encoding::DESKTOP_NAME],
        )
        .await;
        let mut plain = TestViewer::with_role(&hub, Role::Observe, vec![encoding::RAW]).await;
        let names = |events: Vec<Event>| -> Vec<String> {
            events
                .into_iter()
                .filter_map(|e| match e {
                    Event::Name(n) => Some(n),
                    _ => None,
                })
                .collect()
        };
        // The observer joined after this viewer's ServerInit: the new count comes with the
        // next update.
        assert_eq!(
            names(named.update(false).await),
            ["testvm · you have control · 2 viewers"]
        );
        let (later, _) = viewer_init(&hub, Role::Control).await;
        assert_eq!(
            names(named.update(true).await),
            ["testvm · control taken by another viewer · 3 viewers"]
        );
        drop(later);
        assert_eq!(
            names(named.update(true).await),
            ["testvm · control taken by another viewer · 2 viewers"]
        );
        assert!(names(plain.update(false).await).is_empty());
    }
}
