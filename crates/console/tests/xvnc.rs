//! The hub in front of a real TigerVNC `Xvnc`, started exactly as the KubeVirt stand-in starts
//! it: viewers with different pixel formats and encodings see the VM's screen, follow its
//! changes, a late joiner gets the whole screen, and a viewer that stops reading does not stop
//! the others.

use std::time::Duration;

use bytes::BytesMut;
use kubevirt_standin::Rgb;
use kubevirt_standin::rfb::Client;
use kubevirt_standin::xvnc::{HEIGHT, LABEL_AT, VncServer, WIDTH, which};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use virt_gateway_console::rfb::decode::{Event, ServerDecoder};
use virt_gateway_console::rfb::handshake;
use virt_gateway_console::rfb::messages::ClientMessage;
use virt_gateway_console::rfb::{Limits, PixelFormat, Rect, encoding};
use virt_gateway_console::screen::Framebuffer;
use virt_gateway_console::{Hub, Role};

const STEP: Duration = Duration::from_secs(20);
/// Where to sample the background: clear of the label and of the pointer (drawn at the centre).
const SAMPLE: (u16, u16) = (WIDTH - 40, HEIGHT - 40);

/// A viewer built from the crate's own client-side codecs, asking for noVNC's pixel format and
/// the given encodings.
struct Viewer {
    io: TcpStream,
    dec: ServerDecoder,
    fb: Framebuffer,
    buf: BytesMut,
}

impl Viewer {
    async fn connect(addr: std::net::SocketAddr, encodings: Vec<i32>) -> Self {
        let mut io = TcpStream::connect(addr).await.unwrap();
        let init = handshake::client(&mut io, &Limits::default())
            .await
            .unwrap();
        let mut out = BytesMut::new();
        ClientMessage::SetPixelFormat(PixelFormat::NOVNC).write(&mut out);
        ClientMessage::SetEncodings(encodings).write(&mut out);
        io.write_all(&out).await.unwrap();
        Self {
            io,
            dec: ServerDecoder::new(PixelFormat::NOVNC, Limits::default()),
            fb: Framebuffer::new(init.width, init.height),
            buf: BytesMut::new(),
        }
    }

    /// Asks for an update and reads it whole.
    async fn update(&mut self, incremental: bool) {
        let rect = self.fb.bounds();
        let req = ClientMessage::FramebufferUpdateRequest { incremental, rect };
        self.io.write_all(&req.to_bytes()).await.unwrap();
        loop {
            while let Some((event, n)) = self.dec.step(&self.buf, &mut self.fb).unwrap() {
                let _ = self.buf.split_to(n);
                if event == Event::UpdateEnd {
                    return;
                }
            }
            let n = tokio::time::timeout(STEP, self.io.read_buf(&mut self.buf))
                .await
                .expect("an update in time")
                .unwrap();
            assert!(n > 0, "the hub closed the viewer");
        }
    }

    /// Reads updates until the background is `colour`.
    async fn until_background(&mut self, colour: Rgb) {
        let want = (u32::from(colour.r) << 16) | (u32::from(colour.g) << 8) | u32::from(colour.b);
        let (x, y) = SAMPLE;
        for _ in 0..200 {
            if self.fb.pixel(x, y) == want {
                return;
            }
            self.update(true).await;
        }
        panic!(
            "background never became {colour}: {:06x}",
            self.fb.pixel(x, y)
        );
    }
}

async fn paint(server: &VncServer, colour: Rgb) {
    let status = tokio::process::Command::new(which("xsetroot").expect("xsetroot"))
        .args(["-display", &format!(":{}", server.display())])
        .args(["-solid", &colour.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// Serves viewers accepted on a loopback listener with `role`.
async fn listen(hub: &Hub, role: Role) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = hub.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hub = hub.clone();
            tokio::spawn(async move { hub.serve(stream, role).await });
        }
    });
    addr
}

fn rgb(p: u32) -> Rgb {
    Rgb::new((p >> 16) as u8, (p >> 8) as u8, p as u8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_one_xvnc_connection() {
    let logs = tempfile::tempdir().unwrap();
    let blue = Rgb::new(0x20, 0x40, 0xc0);
    let server = VncServer::start("hubvm", blue, logs.path()).await.unwrap();
    let upstream = TcpStream::connect(server.addr()).await.unwrap();
    let (hub, _task) = Hub::connect(upstream, Limits::default()).await.unwrap();
    let control = listen(&hub, Role::Control).await;
    let observe = listen(&hub, Role::Observe).await;

    // A viewer of the stand-in's own client (Raw, 32 bits) sees what a direct client sees.
    let mut direct = Client::handshake(TcpStream::connect(server.addr()).await.unwrap())
        .await
        .unwrap();
    let expected = direct.framebuffer().await.unwrap();
    let mut raw = Client::handshake(TcpStream::connect(control).await.unwrap())
        .await
        .unwrap();
    // The desktop name tells the viewer its state (the VNC server's own name first).
    assert_eq!(
        raw.server_init().name,
        "hubvm · you have control · 1 viewer"
    );
    let seen = raw.framebuffer().await.unwrap();
    assert_eq!(seen.pixel(SAMPLE.0, SAMPLE.1), blue);
    assert_eq!(
        seen.pixels(),
        expected.pixels(),
        "hub and direct views differ"
    );

    // A ZRLE viewer in noVNC's pixel format sees the same screen, the label included.
    let mut zrle = Viewer::connect(observe, vec![encoding::ZRLE, encoding::COPY_RECT]).await;
    zrle.update(false).await;
    for (x, y) in [
        (0, 0),
        SAMPLE,
        (WIDTH / 2, HEIGHT / 2),
        (LABEL_AT.0 + 20, LABEL_AT.1 + 10),
    ] {
        assert_eq!(rgb(zrle.fb.pixel(x, y)), expected.pixel(x, y), "at {x},{y}");
    }

    // A viewer that asks for many Raw screens and never reads them.
    let mut stuck = Viewer::connect(control, vec![encoding::RAW]).await;
    let full = ClientMessage::FramebufferUpdateRequest {
        incremental: false,
        rect: Rect::new(0, 0, WIDTH, HEIGHT),
    };
    for _ in 0..64 {
        stuck.io.write_all(&full.to_bytes()).await.unwrap();
    }

    // The screen changes: the ZRLE viewer follows every change while the stuck one sleeps.
    for colour in [
        Rgb::new(0, 0xa0, 0),
        Rgb::new(0xc0, 0x10, 0x10),
        Rgb::new(0x80, 0x80, 0),
    ] {
        paint(&server, colour).await;
        zrle.until_background(colour).await;
    }
    assert_eq!(hub.viewers(), 3);

    // A late joiner gets the whole current screen in its first update.
    let mut late = Viewer::connect(observe, vec![encoding::ZRLE]).await;
    late.update(true).await;
    for (x, y) in [
        (0, HEIGHT - 1),
        (WIDTH - 1, 0),
        (WIDTH - 1, HEIGHT - 1),
        SAMPLE,
    ] {
        assert_eq!(late.fb.pixel(x, y), 0x0080_8000, "late joiner at {x},{y}");
    }

    // A viewer that leaves is forgotten; the upstream connection stays for the others.
    drop(stuck);
    drop(late);
    drop(raw);
    for _ in 0..100 {
        if hub.viewers() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.viewers(), 1);
    paint(&server, blue).await;
    zrle.until_background(blue).await;
    assert!(hub.ended().is_none());
}
