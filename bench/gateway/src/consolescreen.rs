//! The two RFB ends of the shared-console measurement (issue 16), over KubeVirt's
//! `plain.kubevirt.io` WebSocket:
//!
//! * [`serve`]: the VM's VNC server, in the minimal upstream for the VMI [`VMI`]: a 1280×800
//!   screen that changes continuously: 30 times a second a 160-row band of a moving gradient is
//!   repainted (the band moves down, so the whole screen turns over 6 times a second), and a
//!   client that asked for an update gets that band, Raw, in the pixel format it asked for;
//! * [`Viewer`]: a viewer as noVNC is one (its pixel format; ZRLE, CopyRect, Raw, desktop size
//!   and name), which decodes every update (`virt-gateway-console`'s decoder) and asks for the
//!   next one when an update ends; a controller also moves the pointer once per update.
//!
//! RFB 3.8, security None, as KubeVirt's VNC servers (QEMU) do behind the API server.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use virt_gateway_console::rfb::decode::{Event, ServerDecoder};
use virt_gateway_console::rfb::messages::ClientMessage;
use virt_gateway_console::rfb::{Limits, PixelFormat, PixelWriter, Rect};
use virt_gateway_console::screen::Framebuffer;

/// The VMI whose VNC subresource the minimal upstream serves as this screen.
pub const VMI: &str = "screen";
/// Screen size.
pub const WIDTH: u16 = 1280;
/// Screen size.
pub const HEIGHT: u16 = 800;
/// Rows repainted per change.
pub const BAND: u16 = 160;
/// Changes per second.
pub const CHANGES_PER_SEC: u64 = 30;

/// Reads from `ws` until `inbox` holds at least `n` bytes.
async fn need<S>(ws: &mut WebSocketStream<S>, inbox: &mut Vec<u8>, n: usize) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while inbox.len() < n {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => inbox.extend_from_slice(&b),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => bail!("the peer closed"),
            Some(Ok(_)) => {}
        }
    }
    Ok(())
}

async fn send<S>(ws: &mut WebSocketStream<S>, bytes: impl Into<bytes::Bytes>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::Binary(bytes.into())).await.context("send")
}

/// Serves the changing screen on an accepted WebSocket until the client leaves.
pub async fn serve<S>(mut ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = screen(&mut ws).await {
        // The gateway closing its upstream connection ends every run.
        let _ = e;
    }
}

async fn screen<S>(ws: &mut WebSocketStream<S>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut inbox = Vec::new();
    send(ws, &b"RFB 003.008\n"[..]).await?;
    need(ws, &mut inbox, 12).await?;
    inbox.drain(..12);
    send(ws, vec![1u8, 1]).await?; // one security type: None
    need(ws, &mut inbox, 1).await?;
    inbox.drain(..1);
    send(ws, 0u32.to_be_bytes().to_vec()).await?;
    need(ws, &mut inbox, 1).await?; // ClientInit
    inbox.drain(..1);
    let mut init = Vec::new();
    init.extend(WIDTH.to_be_bytes());
    init.extend(HEIGHT.to_be_bytes());
    init.extend(PixelFormat::CANONICAL.to_bytes());
    init.extend((VMI.len() as u32).to_be_bytes());
    init.extend(VMI.as_bytes());
    send(ws, init).await?;

    let limits = Limits::default();
    let mut writer = PixelWriter::new(PixelFormat::CANONICAL);
    let mut asked = false;
    let mut change = 0u64;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / CHANGES_PER_SEC));
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Binary(b))) => inbox.extend_from_slice(&b),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(()),
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                change += 1;
                if std::mem::take(&mut asked) {
                    send(ws, band(change, &writer)).await?;
                }
                continue;
            }
        }
        while let Some((message, used)) = ClientMessage::parse(&inbox, &limits)? {
            inbox.drain(..used);
            match message {
                ClientMessage::SetPixelFormat(format) => writer = PixelWriter::new(format),
                ClientMessage::FramebufferUpdateRequest { .. } => asked = true,
                ClientMessage::SkippedCutText { len } => {
                    need(ws, &mut inbox, len).await?;
                    inbox.drain(..len);
                }
                _ => {}
            }
        }
    }
}

/// The FramebufferUpdate of change number `change`: one Raw rectangle, the band it repainted.
fn band(change: u64, writer: &PixelWriter) -> Vec<u8> {
    let y0 = ((change * u64::from(BAND)) % u64::from(HEIGHT)) as u16;
    let mut out = vec![0u8, 0, 0, 1];
    for v in [0, y0, WIDTH, BAND] {
        out.extend(v.to_be_bytes());
    }
    out.extend(0i32.to_be_bytes()); // Raw
    let shift = change as u32;
    let pixels: Vec<u32> = (u32::from(y0)..u32::from(y0 + BAND))
        .flat_map(|y| {
            (0..u32::from(WIDTH)).map(move |x| {
                ((x + 3 * shift) & 0xff) << 16 | ((y + shift) & 0xff) << 8 | ((x ^ y) & 0xff)
            })
        })
        .collect();
    writer.write_pixels(&pixels, &mut out);
    out
}

/// A viewer of the screen through a gateway.
pub struct Viewer<S> {
    ws: WebSocketStream<S>,
    inbox: Vec<u8>,
    decoder: ServerDecoder,
    fb: Framebuffer,
    controller: bool,
    /// Updates received in full.
    pub updates: u64,
    /// Bytes received (RFB payload).
    pub bytes: u64,
}

impl<S> Viewer<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The RFB set-up on an open WebSocket, then the encodings and the first (full) request.
    pub async fn start(mut ws: WebSocketStream<S>, controller: bool) -> Result<Self> {
        let mut inbox = Vec::new();
        need(&mut ws, &mut inbox, 12).await?;
        inbox.drain(..12);
        send(&mut ws, &b"RFB 003.008\n"[..]).await?;
        need(&mut ws, &mut inbox, 2).await?;
        let n = usize::from(inbox[0]);
        need(&mut ws, &mut inbox, 1 + n).await?;
        if !inbox[1..=n].contains(&1) {
            bail!("no security type None: {:?}", &inbox[1..=n]);
        }
        inbox.drain(..=n);
        send(&mut ws, vec![1u8]).await?;
        need(&mut ws, &mut inbox, 4).await?;
        inbox.drain(..4);
        send(&mut ws, vec![1u8]).await?; // shared
        need(&mut ws, &mut inbox, 24).await?;
        let (width, height) = (
            u16::from_be_bytes([inbox[0], inbox[1]]),
            u16::from_be_bytes([inbox[2], inbox[3]]),
        );
        let name = u32::from_be_bytes([inbox[20], inbox[21], inbox[22], inbox[23]]) as usize;
        need(&mut ws, &mut inbox, 24 + name).await?;
        inbox.drain(..24 + name);
        let format = PixelFormat::NOVNC;
        let mut out = BytesMut::new();
        ClientMessage::SetPixelFormat(format).write(&mut out);
        // noVNC's choice: ZRLE, CopyRect, Raw, DesktopSize, DesktopName.
        ClientMessage::SetEncodings(vec![16, 1, 0, -223, -307]).write(&mut out);
        request(false, width, height).write(&mut out);
        send(&mut ws, out.freeze()).await?;
        Ok(Self {
            ws,
            inbox,
            decoder: ServerDecoder::new(format, Limits::default()),
            fb: Framebuffer::new(width, height),
            controller,
            updates: 0,
            bytes: 0,
        })
    }

    /// Reads and decodes until the next update ends, then asks for the following one.
    pub async fn next_update(&mut self) -> Result<()> {
        loop {
            while let Some((event, used)) = self.decoder.step(&self.inbox, &mut self.fb)? {
                self.inbox.drain(..used);
                match event {
                    Event::UpdateEnd => {
                        self.updates += 1;
                        return self.ask().await;
                    }
                    Event::Resize { width, height } => self.fb = Framebuffer::new(width, height),
                    _ => {}
                }
            }
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    self.bytes += b.len() as u64;
                    self.inbox.extend_from_slice(&b);
                }
                Some(Ok(Message::Close(frame))) => bail!("the gateway closed: {frame:?}"),
                Some(Err(e)) => bail!("the gateway's WebSocket: {e}"),
                None => bail!("the gateway went away"),
                Some(Ok(_)) => {}
            }
        }
    }

    async fn ask(&mut self) -> Result<()> {
        let (width, height) = (self.fb.width(), self.fb.height());
        let mut out = BytesMut::new();
        if self.controller {
            let x = (self.updates % u64::from(width)) as u16;
            ClientMessage::Pointer {
                buttons: 0,
                x,
                y: height / 2,
            }
            .write(&mut out);
        }
        request(true, width, height).write(&mut out);
        send(&mut self.ws, out.freeze()).await
    }

    /// Closes the WebSocket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

fn request(incremental: bool, width: u16, height: u16) -> ClientMessage {
    ClientMessage::FramebufferUpdateRequest {
        incremental,
        rect: Rect {
            x: 0,
            y: 0,
            width,
            height,
        },
    }
}
