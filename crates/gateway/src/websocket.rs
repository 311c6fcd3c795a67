//! WebSocket sessions: the bytes are piped unchanged both ways, while the gateway follows the frame
//! boundaries of the server-to-client direction so that it can end a session with a proper close
//! frame (RFC 6455 §5.5.1) when the token expires, is revoked, or the gateway shuts down.
//!
//! The gateway offers no WebSocket extension upstream (it drops `Sec-WebSocket-Extensions`), so
//! the framing is exactly RFC 6455's and a close frame can be injected between any two frames
//! (control frames may be interleaved with fragments, §5.4).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::metrics::Metrics;
use crate::outcome::Reason;

/// Close code: the token expired (application range 4000–4999).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code: the token was revoked.
pub const CLOSE_TOKEN_REVOKED: u16 = 4003;
/// Close code: going away (gateway shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the session carried no data for `--websocket-idle-timeout`.
pub const CLOSE_IDLE: u16 = 4008;
/// Close code: the session reached `--websocket-max-duration`.
pub const CLOSE_SESSION_LIMIT: u16 = 4009;

/// How long a session being closed waits for the current frame to end before cutting the
/// connection without a close frame.
pub const DRAIN_LIMIT: Duration = Duration::from_millis(500);

/// Why the gateway ends a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kill {
    /// The token expired.
    Expired,
    /// The token was revoked; the text says how.
    Revoked(&'static str),
    /// The gateway is shutting down.
    Shutdown,
    /// No data either way for the idle timeout.
    Idle,
    /// The session reached its maximum length.
    SessionLimit,
}

impl Kill {
    /// The close code and reason text sent to the client.
    pub fn close(&self) -> (u16, &'static str) {
        match self {
            Self::Expired => (CLOSE_TOKEN_EXPIRED, "token expired"),
            Self::Revoked(_) => (CLOSE_TOKEN_REVOKED, "token revoked"),
            Self::Shutdown => (CLOSE_GOING_AWAY, "gateway shutting down"),
            Self::Idle => (CLOSE_IDLE, "session idle for too long"),
            Self::SessionLimit => (CLOSE_SESSION_LIMIT, "session time limit reached"),
        }
    }

    /// Bounded reason code for metrics and the audit log.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Expired => Reason::TokenExpired,
            Self::Revoked(_) => Reason::TokenRevoked,
            Self::Shutdown => Reason::Shutdown,
            Self::Idle => Reason::IdleTimeout,
            Self::SessionLimit => Reason::SessionLimit,
        }
    }
}

/// An unmasked (server-to-client) close frame with `code` and `reason` (truncated to fit 125 bytes).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut reason = reason.as_bytes();
    if reason.len() > 123 {
        reason = &reason[..123];
    }
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.push(0x88); // FIN + opcode 8 (close)
    frame.push((2 + reason.len()) as u8);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

/// Follows frame boundaries in a byte stream of WebSocket frames.
#[derive(Debug, Default, Clone)]
pub struct FrameTracker {
    header: [u8; 14],
    have: usize,
    need: usize,
    remaining: u64,
}

impl FrameTracker {
    /// Whether the bytes seen so far end exactly at a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Consumes bytes up to the first frame boundary. Returns `Some(n)` when a boundary is
    /// reached after `n` bytes (`Some(0)` if already at one), `None` when all of `data` was
    /// consumed inside a frame.
    pub fn until_boundary(&mut self, data: &[u8]) -> Option<usize> {
        if self.at_boundary() {
            return Some(0);
        }
        let mut i = 0;
        while i < data.len() {
            i += self.step(&data[i..]);
            if self.at_boundary() {
                return Some(i);
            }
        }
        None
    }

    /// Consumes all of `data`.
    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            i += self.step(&data[i..]);
        }
    }

    /// Consumes at least one byte of non-empty `data` (a header byte, or payload up to the end of
    /// the frame); returns how many.
    fn step(&mut self, data: &[u8]) -> usize {
        if self.remaining > 0 {
            let n = (self.remaining.min(data.len() as u64)) as usize;
            self.remaining -= n as u64;
            return n;
        }
        let Some(&byte) = data.first() else { return 0 };
        self.header[self.have] = byte;
        self.have += 1;
        if self.have == 2 {
            let masked = self.header[1] & 0x80 != 0;
            let ext = match self.header[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            self.need = 2 + ext + if masked { 4 } else { 0 };
        }
        if self.have >= 2 && self.have == self.need {
            let len7 = u64::from(self.header[1] & 0x7f);
            let payload = match len7 {
                126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                127 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.header[2..10]);
                    u64::from_be_bytes(b)
                }
                n => n,
            };
            self.have = 0;
            self.need = 0;
            self.remaining = payload;
        }
        1
    }
}

/// Counters of one session, and when it last carried data.
#[derive(Debug)]
pub struct SessionBytes {
    /// Client to upstream.
    pub from_client: AtomicU64,
    /// Upstream to client.
    pub to_client: AtomicU64,
    opened: tokio::time::Instant,
    /// Milliseconds from `opened` to the last data either way.
    last_active_ms: AtomicU64,
}

impl Default for SessionBytes {
    fn default() -> Self {
        Self {
            from_client: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            opened: tokio::time::Instant::now(),
            last_active_ms: AtomicU64::new(0),
        }
    }
}

impl SessionBytes {
    /// Notes that data passed now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When data last passed (the session's start when none has).
    pub fn last_active(&self) -> tokio::time::Instant {
        self.opened + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }

    /// Resolves once the session has carried no data for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let at = self.last_active() + limit;
            if at <= tokio::time::Instant::now() {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// A side closed the connection.
    Closed,
    /// The gateway ended it.
    Killed(Kill),
    /// An I/O error.
    Error,
    /// A shared console's upstream connection could not be opened, or it ended.
    ConsoleUnavailable,
}

impl SessionEnd {
    /// Bounded reason code.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Closed => Reason::Closed,
            Self::Killed(k) => k.reason(),
            Self::Error => Reason::IoError,
            Self::ConsoleUnavailable => Reason::ConsoleUnavailable,
        }
    }
}

/// Smallest and largest copy buffer of one direction of a session.
const MIN_BUF: usize = 4 * 1024;
const MAX_BUF: usize = 128 * 1024;

/// A copy buffer that starts small and grows (×4, up to [`MAX_BUF`]) whenever a read fills it.
/// An idle console keeps 4 KiB per direction instead of 16 KiB; a bulk transfer moves up to
/// 128 KiB per read, so a session pays its wake-ups, syscalls and TLS flushes per 128 KiB
/// instead of per 16 KiB (these were most of the gateway's CPU per byte, bench/gateway/NOTES.md).
struct CopyBuf(Vec<u8>);

impl CopyBuf {
    fn new() -> Self {
        Self(vec![0u8; MIN_BUF])
    }

    /// Notes that a read returned `n` bytes: a full buffer means more is waiting.
    fn filled(&mut self, n: usize) {
        if n == self.0.len() && n < MAX_BUF {
            self.0.resize((n * 4).min(MAX_BUF), 0);
        }
    }
}

async fn copy_counting<R, W>(
    mut from: R,
    mut to: W,
    bytes: &SessionBytes,
    metric: prometheus_client::metrics::counter::Counter,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = CopyBuf::new();
    loop {
        let n = from.read(&mut buf.0).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        bytes.touch();
        to.write_all(&buf.0[..n]).await?;
        to.flush().await?;
        bytes.from_client.fetch_add(n as u64, Ordering::Relaxed);
        metric.inc_by(n as u64);
        buf.filled(n);
    }
}

enum Downstream {
    UpstreamClosed,
    Killed(Kill),
    Error,
}

/// Upstream-to-client copy that follows frames. When `kill` fires it stops the client-to-upstream
/// copy at once (`input`), then finishes the current frame and sends a close frame, all within
/// [`DRAIN_LIMIT`]. The kill races every read *and* every write: a client that stops reading
/// blocks the write, and must not keep the session (and its input) alive past the deadline.
async fn downstream<R, W>(
    mut from: R,
    mut to: W,
    kill: impl std::future::Future<Output = Kill>,
    input: tokio::task::AbortHandle,
    bytes: &SessionBytes,
    metric: prometheus_client::metrics::counter::Counter,
) -> Downstream
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut tracker = FrameTracker::default();
    let mut buf = CopyBuf::new();
    tokio::pin!(kill);
    // (why, whether the client stream is still at a byte we know: false after a cut write)
    let (reason, intact) = loop {
        let n = tokio::select! {
            biased;
            reason = &mut kill => break (reason, true),
            read = from.read(&mut buf.0) => match read {
                Ok(0) => {
                    let _ = tokio::time::timeout(DRAIN_LIMIT, to.shutdown()).await;
                    return Downstream::UpstreamClosed;
                }
                Ok(n) => n,
                Err(_) => return Downstream::Error,
            }
        };
        tracker.feed(&buf.0[..n]);
        bytes.touch();
        let written = tokio::select! {
            biased;
            reason = &mut kill => break (reason, false),
            written = async {
                to.write_all(&buf.0[..n]).await?;
                to.flush().await
            } => written,
        };
        if written.is_err() {
            return Downstream::Error;
        }
        bytes.to_client.fetch_add(n as u64, Ordering::Relaxed);
        metric.inc_by(n as u64);
        buf.filled(n);
    };
    input.abort();
    // Finish the frame in flight and close, or give up (the caller then drops the connection).
    let _ = tokio::time::timeout(DRAIN_LIMIT, async {
        if intact && finish_frame(&mut from, &mut to, &mut tracker, &mut buf.0, bytes).await {
            let (code, text) = reason.close();
            let _ = to.write_all(&close_frame(code, text)).await;
            let _ = to.flush().await;
        }
        let _ = to.shutdown().await;
    })
    .await;
    Downstream::Killed(reason)
}

/// Copies up to the end of the frame in flight; false when that fails.
async fn finish_frame<R, W>(
    from: &mut R,
    to: &mut W,
    tracker: &mut FrameTracker,
    buf: &mut [u8],
    bytes: &SessionBytes,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while !tracker.at_boundary() {
        let n = match from.read(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let upto = tracker.until_boundary(&buf[..n]).unwrap_or(n);
        if to.write_all(&buf[..upto]).await.is_err() {
            return false;
        }
        bytes.to_client.fetch_add(upto as u64, Ordering::Relaxed);
    }
    true
}

/// Pipes an upgraded client connection and an upgraded upstream connection until one side
/// closes or `kill` fires.
pub async fn pipe(
    client: Upgraded,
    upstream: Upgraded,
    kill: impl std::future::Future<Output = Kill>,
    bytes: Arc<SessionBytes>,
    metrics: Arc<Metrics>,
) -> SessionEnd {
    let (client_read, client_write) = tokio::io::split(TokioIo::new(client));
    let (upstream_read, upstream_write) = tokio::io::split(TokioIo::new(upstream));
    pipe_io(
        (client_read, client_write),
        (upstream_read, upstream_write),
        kill,
        bytes,
        metrics,
    )
    .await
}

/// [`pipe`] over any byte streams (so that the kill can be tested on in-memory pipes).
pub async fn pipe_io<CR, CW, UR, UW>(
    (client_read, client_write): (CR, CW),
    (upstream_read, upstream_write): (UR, UW),
    kill: impl std::future::Future<Output = Kill>,
    bytes: Arc<SessionBytes>,
    metrics: Arc<Metrics>,
) -> SessionEnd
where
    CR: AsyncRead + Unpin + Send + 'static,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin + Send + 'static,
{
    let up_metric = metrics
        .websocket_bytes
        .get_or_create(&[("direction", "client_to_upstream")])
        .clone();
    let down_metric = metrics
        .websocket_bytes
        .get_or_create(&[("direction", "upstream_to_client")])
        .clone();
    let up_bytes = bytes.clone();
    let mut upstream_task = tokio::spawn(async move {
        copy_counting(client_read, upstream_write, &up_bytes, up_metric).await
    });
    let input = upstream_task.abort_handle();
    let end = downstream(
        upstream_read,
        client_write,
        kill,
        input,
        &bytes,
        down_metric,
    )
    .await;
    match end {
        Downstream::Killed(reason) => {
            upstream_task.abort();
            SessionEnd::Killed(reason)
        }
        Downstream::UpstreamClosed => {
            // The client normally closes right after; do not wait forever for it.
            if tokio::time::timeout(Duration::from_secs(5), &mut upstream_task)
                .await
                .is_err()
            {
                upstream_task.abort();
            }
            SessionEnd::Closed
        }
        Downstream::Error => {
            upstream_task.abort();
            SessionEnd::Error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if let Some(k) = mask {
            f.extend_from_slice(&k);
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn tracks_boundaries_across_sizes_and_splits() {
        let mut stream = Vec::new();
        let mut boundaries = vec![0];
        for (op, len, mask) in [
            (2u8, 0usize, None),
            (2, 5, None),
            (1, 125, Some([1, 2, 3, 4])),
            (2, 126, None),
            (2, 70_000, None),
            (9, 3, None),
        ] {
            stream.extend(frame(op, &vec![7u8; len], mask));
            boundaries.push(stream.len());
        }
        // Feed in every chunk size from 1 to 9 bytes and check boundary detection.
        for chunk in 1..10 {
            let mut t = FrameTracker::default();
            let mut pos = 0;
            let mut seen = vec![0];
            while pos < stream.len() {
                let end = (pos + chunk).min(stream.len());
                let mut at = pos;
                while at < end {
                    match t.until_boundary(&stream[at..end]) {
                        Some(0) => {
                            // at a boundary already: consume one byte to move on
                            t.feed(&stream[at..at + 1]);
                            at += 1;
                            if t.at_boundary() {
                                seen.push(at);
                            }
                        }
                        Some(n) => {
                            at += n;
                            seen.push(at);
                        }
                        None => at = end,
                    }
                }
                pos = end;
            }
            seen.dedup();
            assert_eq!(seen, boundaries, "chunk size {chunk}");
        }
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            close_frame(4001, "token expired"),
            [&[0x88, 15, 0x0f, 0xa1][..], b"token expired"].concat()
        );
        assert_eq!(close_frame(1000, &"x".repeat(300)).len(), 2 + 125);
    }

    /// Review §4: a client that stops reading while it keeps sending input blocked the write to
    /// it, so the kill was never polled and its input kept reaching the VM after revocation.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off_when_the_session_is_killed() {
        use std::sync::atomic::AtomicBool;
        let (gw_client, mut client) = tokio::io::duplex(4096);
        let (gw_upstream, upstream) = tokio::io::duplex(4096);
        let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let session = tokio::spawn(pipe_io(
            tokio::io::split(gw_client),
            tokio::io::split(gw_upstream),
            async move {
                let _ = kill_rx.await;
                Kill::Revoked("token revoked")
            },
            Arc::new(SessionBytes::default()),
            Arc::new(Metrics::new()),
        ));
        // The VM streams one endless frame; count what it sent.
        let sent = Arc::new(AtomicU64::new(0));
        let vm_sent = sent.clone();
        tokio::spawn(async move {
            let header = [0x82, 127, 0, 0, 0, 0, 0x40, 0, 0, 0]; // 1 GiB binary frame
            upstream_write.write_all(&header).await.unwrap();
            let chunk = [7u8; 1024];
            while upstream_write.write_all(&chunk).await.is_ok() {
                vm_sent.fetch_add(1024, Ordering::Relaxed);
            }
        });
        // The VM records the client's input.
        let received = Arc::new(AtomicU64::new(0));
        let late = Arc::new(AtomicBool::new(false));
        let (vm_received, vm_late) = (received.clone(), late.clone());
        let recorder = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                match upstream_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        vm_received.fetch_add(n as u64, Ordering::Relaxed);
                        if buf[..n].contains(&b'L') {
                            vm_late.store(true, Ordering::Relaxed);
                        }
                    }
                };
            }
        });
        // The client never reads; it types until every buffer towards it is full: with 4 KiB
        // pipes, 10 KiB sent by the VM means the gateway holds at least 2 KiB it cannot write.
        while sent.load(Ordering::Relaxed) < 10 * 1024 || received.load(Ordering::Relaxed) == 0 {
            client.write_all(b"key").await.unwrap();
            tokio::task::yield_now().await;
        }
        kill_tx.send(()).unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the kill ends a session whose client stopped reading")
            .unwrap();
        assert_eq!(end, SessionEnd::Killed(Kill::Revoked("token revoked")));
        // Input typed after the kill never reaches the VM, whose connection is closed (the
        // recorder sees its end).
        for _ in 0..100 {
            if client.write_all(b"LATE").await.is_err() {
                break;
            }
        }
        tokio::time::timeout(Duration::from_secs(5), recorder)
            .await
            .expect("the upstream connection is closed")
            .unwrap();
        assert!(
            !late.load(Ordering::Relaxed),
            "input after the kill reached the VM"
        );
    }

    #[test]
    fn empty_frames_are_boundaries() {
        let mut t = FrameTracker::default();
        t.feed(&frame(2, &[], None));
        assert!(t.at_boundary());
        t.feed(&frame(2, b"ab", None)[..3]);
        assert!(!t.at_boundary());
        assert_eq!(t.until_boundary(b"bXYZ"), Some(1));
    }
}
