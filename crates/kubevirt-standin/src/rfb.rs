//! A minimal RFB (VNC) client for tests: protocol 3.8, security type None, a shared session,
//! 32 bits per pixel true colour and the Raw encoding only. Enough to prove that the bytes on a
//! WebSocket really come from a VNC server and to read the colour of its pixels.

use std::future::Future;
use std::io;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::Rgb;

/// A byte stream the RFB client runs over.
pub trait Transport: Send {
    /// Sends bytes.
    fn send(&mut self, data: Vec<u8>) -> impl Future<Output = io::Result<()>> + Send;
    /// Receives the next non-empty chunk of bytes; an error at the end of the stream.
    fn recv(&mut self) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
}

/// RFB over WebSocket binary messages, as KubeVirt's `plain.kubevirt.io` carries it.
impl<S> Transport for WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn send(&mut self, data: Vec<u8>) -> io::Result<()> {
        SinkExt::send(self, Message::binary(data))
            .await
            .map_err(io::Error::other)
    }

    async fn recv(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.next().await {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => return Ok(data.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("WebSocket closed: {frame:?}"),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }
}

/// RFB straight over TCP (to talk to an Xvnc directly).
impl Transport for tokio::net::TcpStream {
    async fn send(&mut self, data: Vec<u8>) -> io::Result<()> {
        self.write_all(&data).await
    }

    async fn recv(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.truncate(n);
        Ok(buf)
    }
}

/// What the server said in ServerInit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    /// The server's native bits per pixel.
    pub bits_per_pixel: u8,
    pub name: String,
}

/// A whole screen, read with the Raw encoding.
#[derive(Clone, Debug)]
pub struct Framebuffer {
    pub width: u16,
    pub height: u16,
    pixels: Vec<Rgb>,
}

impl Framebuffer {
    /// The colour at (`x`, `y`).
    pub fn pixel(&self, x: u16, y: u16) -> Rgb {
        self.pixels[y as usize * self.width as usize + x as usize]
    }

    /// How many pixels have exactly `colour`.
    pub fn count(&self, colour: Rgb) -> usize {
        self.pixels.iter().filter(|p| **p == colour).count()
    }

    /// Every pixel, row by row.
    pub fn pixels(&self) -> &[Rgb] {
        &self.pixels
    }
}

/// An RFB session after the handshake.
pub struct Client<T> {
    transport: T,
    buf: Vec<u8>,
    init: ServerInit,
}

fn protocol_error(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl<T: Transport> Client<T> {
    /// Runs the handshake: ProtocolVersion 3.8, security type None, ClientInit (shared),
    /// ServerInit.
    pub async fn handshake(transport: T) -> io::Result<Self> {
        let mut client = Self {
            transport,
            buf: Vec::new(),
            init: ServerInit {
                width: 0,
                height: 0,
                bits_per_pixel: 0,
                name: String::new(),
            },
        };
        let version = client.read(12).await?;
        if !version.starts_with(b"RFB 003.") {
            return Err(protocol_error(format!(
                "not an RFB server: {:?}",
                String::from_utf8_lossy(&version)
            )));
        }
        client.transport.send(b"RFB 003.008\n".to_vec()).await?;
        let count = client.u8().await?;
        if count == 0 {
            let reason = client.string().await?;
            return Err(protocol_error(format!("server refused: {reason}")));
        }
        let types = client.read(count as usize).await?;
        if !types.contains(&1) {
            return Err(protocol_error(format!(
                "security type None not offered (offered {types:?})"
            )));
        }
        client.transport.send(vec![1]).await?;
        let result = client.u32().await?;
        if result != 0 {
            let reason = client.string().await.unwrap_or_default();
            return Err(protocol_error(format!(
                "security handshake failed: {reason}"
            )));
        }
        client.transport.send(vec![1]).await?; // ClientInit: shared
        let width = client.u16().await?;
        let height = client.u16().await?;
        let format = client.read(16).await?;
        let name = client.string().await?;
        client.init = ServerInit {
            width,
            height,
            bits_per_pixel: format[0],
            name,
        };
        Ok(client)
    }

    /// ServerInit.
    pub fn server_init(&self) -> &ServerInit {
        &self.init
    }

    /// Asks for 32-bit little-endian true colour, the Raw encoding only, and a full update;
    /// returns the screen once every pixel has arrived.
    pub async fn framebuffer(&mut self) -> io::Result<Framebuffer> {
        let (width, height) = (self.init.width, self.init.height);
        // SetPixelFormat: 32 bpp, depth 24, little endian, true colour, 8 bits a channel,
        // red at bit 16, green at 8, blue at 0.
        let mut set_pixel_format = vec![0u8, 0, 0, 0, 32, 24, 0, 1];
        set_pixel_format.extend_from_slice(&255u16.to_be_bytes());
        set_pixel_format.extend_from_slice(&255u16.to_be_bytes());
        set_pixel_format.extend_from_slice(&255u16.to_be_bytes());
        set_pixel_format.extend_from_slice(&[16, 8, 0, 0, 0, 0]);
        self.transport.send(set_pixel_format).await?;
        // SetEncodings: Raw (0) only.
        self.transport.send(vec![2, 0, 0, 1, 0, 0, 0, 0]).await?;
        let mut pixels = vec![Rgb::new(0, 0, 0); width as usize * height as usize];
        let mut seen = vec![false; pixels.len()];
        let mut missing = pixels.len();
        for _ in 0..100 {
            self.request_update(false).await?;
            loop {
                let kind = self.u8().await?;
                match kind {
                    0 => {
                        self.read(1).await?;
                        let rects = self.u16().await?;
                        for _ in 0..rects {
                            let x = self.u16().await? as usize;
                            let y = self.u16().await? as usize;
                            let w = self.u16().await? as usize;
                            let h = self.u16().await? as usize;
                            let encoding = i32::from_be_bytes(self.array().await?);
                            if encoding != 0 {
                                return Err(protocol_error(format!(
                                    "unexpected encoding {encoding} (only Raw was asked for)"
                                )));
                            }
                            if x + w > width as usize || y + h > height as usize {
                                return Err(protocol_error("rectangle outside the screen"));
                            }
                            let data = self.read(w * h * 4).await?;
                            for row in 0..h {
                                for col in 0..w {
                                    let i = (row * w + col) * 4;
                                    let at = (y + row) * width as usize + x + col;
                                    pixels[at] = Rgb::new(data[i + 2], data[i + 1], data[i]);
                                    if !seen[at] {
                                        seen[at] = true;
                                        missing -= 1;
                                    }
                                }
                            }
                        }
                        break;
                    }
                    1 => {
                        self.read(3).await?;
                        let colours = self.u16().await?;
                        self.read(colours as usize * 6).await?;
                    }
                    2 => {}
                    3 => {
                        self.read(3).await?;
                        let len = self.u32().await?;
                        self.read(len as usize).await?;
                    }
                    other => {
                        return Err(protocol_error(format!(
                            "unexpected server message type {other}"
                        )));
                    }
                }
            }
            if missing == 0 {
                return Ok(Framebuffer {
                    width,
                    height,
                    pixels,
                });
            }
        }
        Err(protocol_error("the screen never arrived whole"))
    }

    async fn request_update(&mut self, incremental: bool) -> io::Result<()> {
        let mut message = vec![3, incremental as u8, 0, 0, 0, 0];
        message.extend_from_slice(&self.init.width.to_be_bytes());
        message.extend_from_slice(&self.init.height.to_be_bytes());
        self.transport.send(message).await
    }

    /// The transport, to close it or keep using it.
    pub fn into_inner(self) -> T {
        self.transport
    }

    /// The transport.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    async fn read(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            let chunk = self.transport.recv().await?;
            self.buf.extend_from_slice(&chunk);
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    async fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let bytes = self.read(N).await?;
        Ok(bytes.try_into().expect("read returns exactly N bytes"))
    }

    async fn u8(&mut self) -> io::Result<u8> {
        Ok(self.array::<1>().await?[0])
    }

    async fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_be_bytes(self.array().await?))
    }

    async fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.array().await?))
    }

    async fn string(&mut self) -> io::Result<String> {
        let len = self.u32().await? as usize;
        if len > 1 << 20 {
            return Err(protocol_error("string too long"));
        }
        Ok(String::from_utf8_lossy(&self.read(len).await?).into_owned())
    }
}
