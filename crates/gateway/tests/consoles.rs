//! Shared consoles (`--shared-consoles`) against the real control plane and the KubeVirt
//! stand-in with a real Xvnc: three viewers of one VM all see its screen at once (with the plain
//! pass-through, KubeVirt's one-session rule would close the first two), and one viewer's token
//! expiring closes that viewer alone, with 4001, while the others go on; an observer's input
//! is dropped and counted. Several controllers: under take-over only the newest one's keys reach
//! the VM, under `shared` every controller's do, an observer's never; each viewer is told its
//! state in the desktop name; a console that cannot be opened closes its viewer with 1011.

mod common;

use bytes::BytesMut;
use common::*;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use kubevirt_standin::rfb::Client;
use kubevirt_standin::{Rgb, Standin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use virt_gateway_console::rfb::decode::{Event, ServerDecoder};
use virt_gateway_console::rfb::handshake;
use virt_gateway_console::rfb::messages::ClientMessage;
use virt_gateway_console::rfb::{Limits, PixelFormat, encoding};
use virt_gateway_console::screen::Framebuffer;

const BLUE: Rgb = Rgb::new(0x20, 0x40, 0xc0);

/// An environment like [`Env::new`], with the stand-in (real Xvnc) as KubeVirt.
async fn standin_env() -> (Env, Standin) {
    common::standin_env(vec![("testvm".into(), BLUE)], vec![]).await
}

type Viewer = Client<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>;

async fn open(gw: &TestGateway, path: &str, token: &str) -> Viewer {
    let (ws, response) = ws_connect(gw, path, &vnc_protocols(token), &[])
        .await
        .expect("upgrade");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-protocol"], VNC_PROTOCOL);
    tokio::time::timeout(TIMEOUT, Client::handshake(ws))
        .await
        .expect("handshake in time")
        .expect("RFB handshake")
}

async fn sees_the_vm(viewer: &mut Viewer) {
    let fb = tokio::time::timeout(TIMEOUT, viewer.framebuffer())
        .await
        .expect("a screen in time")
        .expect("a screen");
    assert_eq!(fb.pixel(fb.width - 40, fb.height - 40), BLUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_share_one_console_and_a_token_ending_closes_only_its_viewer() {
    let (env, standin) = standin_env().await;
    let gw = env.gateway_with(&["--shared-consoles"]).await;
    let path = Env::vnc_path(&env.ns, "testvm");
    let token = env.seed_token();
    let short = mint(&env.key, &seed_claims(&env.ns, now() + 4));

    let mut first = open(&gw, &path, &token).await;
    sees_the_vm(&mut first).await;
    let mut second = open(&gw, &path, &token).await;
    let mut third = open(&gw, &path, &short).await;
    assert_eq!(
        third.server_init().name,
        "testvm · you have control · 3 viewers"
    );
    sees_the_vm(&mut second).await;
    sees_the_vm(&mut third).await;
    // Not taken over: the first viewer still gets screens after the others joined.
    sees_the_vm(&mut first).await;

    // The short token expires: its viewer is closed with 4001, the others go on.
    let code = loop {
        match tokio::time::timeout(TIMEOUT, third.transport_mut().next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, 4001);
    sees_the_vm(&mut first).await;
    sees_the_vm(&mut second).await;

    // An observer (consoleRole: observe) sees the VM; its key and click are dropped and counted.
    let mut observe = seed_claims(&env.ns, now() + 3600);
    observe.console_role = Some("observe".into());
    let mut watcher = open(&gw, &path, &mint(&env.key, &observe)).await;
    sees_the_vm(&mut watcher).await;
    let ws = watcher.transport_mut();
    ws.send(Message::binary(vec![4, 1, 0, 0, 0, 0, 0, 0x61]))
        .await
        .unwrap();
    ws.send(Message::binary(vec![5, 1, 0, 10, 0, 10]))
        .await
        .unwrap();
    for kind in ["key", "pointer"] {
        let line = format!("kube_gateway_console_input_dropped_total{{kind=\"{kind}\"}} 1");
        let mut tries = 0;
        while !gw.metrics().await.contains(&line) {
            tries += 1;
            assert!(tries < 600, "no {line}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    sees_the_vm(&mut watcher).await;
    // The input of the controller in control (under take-over, the newest one: the third
    // took control from the first two, and control is not handed back when it left) is not
    // counted as dropped.
    let mut driver = open(&gw, &path, &token).await;
    let ws = driver.transport_mut();
    ws.send(Message::binary(vec![5, 0, 0, 20, 0, 20]))
        .await
        .unwrap();
    sees_the_vm(&mut driver).await;
    assert!(
        gw.metrics()
            .await
            .contains("kube_gateway_console_input_dropped_total{kind=\"pointer\"} 1")
    );
    drop((first, second, watcher, driver));
    an_observer_link_never_opens_a_console_that_would_carry_its_input(&env).await;
    take_over_gives_the_vm_to_the_newest_controller_only(&env, &standin).await;
    shared_control_lets_every_controller_drive(&env, &standin).await;
    a_console_that_cannot_be_opened_closes_its_viewer_with_1011(&env).await;
    assert_no_token_logged();
}

/// Attack: a watch-only link used where its input would reach the VM. Without shared consoles
/// the VNC WebSocket is a plain pass-through that carries every key, so the observer's upgrade
/// is refused with 403 before anything reaches the API server, while a controller's link still
/// opens the console; the same holds for the serial console (not a shared console at all).
/// (Run inside the test above: the stand-in's APIService is cluster-wide, one per control plane.)
async fn an_observer_link_never_opens_a_console_that_would_carry_its_input(env: &Env) {
    let gw = env.gateway().await;
    let vnc = Env::vnc_path(&env.ns, "testvm");
    let mut observe = seed_claims(&env.ns, now() + 3600);
    observe.console_role = Some("observe".into());
    // Its rule allows both consoles: the refusal must come from the role, not the rule.
    observe.resources = Some(vec![
        "virtualmachineinstances/vnc".into(),
        "virtualmachineinstances/console".into(),
    ]);
    let observer = mint(&env.key, &observe);

    for path in [vnc.clone(), vnc.replace("/vnc", "/console")] {
        let refused = ws_connect(&gw, &path, &vnc_protocols(&observer), &[]).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
                let body =
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[])).into_owned();
                assert!(body.contains("consoleRole: observe"), "{body}");
            }
            other => panic!("the observer's upgrade of {path} was not refused: {other:?}"),
        }
    }
    // The refusal is the role's, not the path's: a controller's token opens the same console.
    let mut controller = open(&gw, &vnc, &env.seed_token()).await;
    sees_the_vm(&mut controller).await;
    assert_no_token_logged();
}

/// A viewer built on the console crate's RFB client side: it asks for ZRLE and DesktopName
/// (as noVNC does) and keeps the desktop names it is told.
struct NamedViewer {
    io: tokio::io::DuplexStream,
    dec: ServerDecoder,
    fb: Framebuffer,
    buf: BytesMut,
    names: Vec<String>,
}

impl NamedViewer {
    async fn open(gw: &TestGateway, path: &str, token: &str) -> Self {
        let (ws, response) = ws_connect(gw, path, &vnc_protocols(token), &[])
            .await
            .expect("upgrade");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let (mut io, _close) = kube_gateway::console::websocket_bytes(ws);
        let init = tokio::time::timeout(TIMEOUT, handshake::client(&mut io, &Limits::default()))
            .await
            .expect("handshake in time")
            .expect("RFB handshake");
        let encodings = ClientMessage::SetEncodings(vec![
            encoding::ZRLE,
            encoding::RAW,
            encoding::DESKTOP_SIZE,
            encoding::DESKTOP_NAME,
        ]);
        io.write_all(&encodings.to_bytes()).await.unwrap();
        let mut viewer = Self {
            io,
            dec: ServerDecoder::new(PixelFormat::CANONICAL, Limits::default()),
            fb: Framebuffer::new(init.width, init.height),
            buf: BytesMut::new(),
            names: vec![init.name],
        };
        viewer.update(false).await;
        viewer
    }

    /// The last desktop name it was told.
    fn name(&self) -> &str {
        self.names.last().map_or("", String::as_str)
    }

    /// Asks for an update and reads it, noting any new desktop name.
    async fn update(&mut self, incremental: bool) {
        let rect = self.fb.bounds();
        let req = ClientMessage::FramebufferUpdateRequest { incremental, rect };
        self.io.write_all(&req.to_bytes()).await.unwrap();
        loop {
            while let Some((event, n)) = self.dec.step(&self.buf, &mut self.fb).unwrap() {
                let _ = self.buf.split_to(n);
                match event {
                    Event::UpdateEnd => return,
                    Event::Name(name) => self.names.push(name),
                    _ => {}
                }
            }
            let read = tokio::time::timeout(TIMEOUT, self.io.read_buf(&mut self.buf))
                .await
                .expect("an update in time")
                .unwrap();
            assert!(read > 0, "the gateway closed the console");
        }
    }

    /// Reads updates until the desktop name is `want`.
    async fn wait_name(&mut self, want: &str) {
        while self.name() != want {
            self.update(true).await;
        }
    }

    async fn press(&mut self, keysym: u32) {
        for down in [true, false] {
            let key = ClientMessage::Key { down, keysym };
            self.io.write_all(&key.to_bytes()).await.unwrap();
        }
    }
}

/// The value of the metric line starting with `series ` (0 when absent).
async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = gw.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn wait_metric(gw: &TestGateway, series: &str, want: f64) {
    eventually(&format!("{series} = {want}"), || async {
        (metric(gw, series).await == want).then_some(())
    })
    .await;
}

const DROPPED_KEYS: &str = "kube_gateway_console_input_dropped_total{kind=\"key\"}";

fn token_with(env: &Env, jti: &str, role: Option<&str>) -> String {
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.jti = Some(jti.into());
    claims.console_role = role.map(str::to_owned);
    mint(&env.key, &claims)
}

/// Waits until the VM got `keysym`, and asserts it never got any of `never`.
async fn vm_gets(standin: &Standin, ns: &str, keysym: u32, never: &[u32]) {
    let vm = standin.fleet().get(ns, "testvm").expect("the VM");
    eventually(&format!("key {keysym:#x} reaching the VM"), || async {
        vm.keys().contains(&keysym).then_some(())
    })
    .await;
    for k in never {
        assert!(
            !vm.keys().contains(k),
            "key {k:#x} reached the VM: {:?}",
            vm.keys()
        );
    }
}

/// Attack: a controller whose control a newer controller took keeps typing. Under take-over
/// (the default) its keys are dropped and counted, the newest controller's reach the VM, an
/// observer's never; control is not handed back when the newest leaves. Every viewer is told
/// its state and the count in the desktop name; the viewer gauge, the upstream counter and the
/// console_join/console_leave audit lines (VM, role, jti; duration, bytes, input dropped) say
/// the same. Fails before issue 16's policy: both controllers' keys reached the VM.
async fn take_over_gives_the_vm_to_the_newest_controller_only(env: &Env, standin: &Standin) {
    let gw = env.gateway_with(&["--shared-consoles"]).await;
    let path = Env::vnc_path(&env.ns, "testvm");
    let mut first = NamedViewer::open(&gw, &path, &token_with(env, "ctl-1", None)).await;
    let mut second = NamedViewer::open(&gw, &path, &token_with(env, "ctl-2", None)).await;
    let observer = token_with(env, "obs-1", Some("observe"));
    let mut watcher = NamedViewer::open(&gw, &path, &observer).await;

    let dropped = metric(&gw, DROPPED_KEYS).await;
    first.press(0x78).await; // 'x'
    wait_metric(&gw, DROPPED_KEYS, dropped + 2.0).await;
    watcher.press(0x7a).await; // 'z'
    wait_metric(&gw, DROPPED_KEYS, dropped + 4.0).await;
    second.press(0x79).await; // 'y'
    vm_gets(standin, &env.ns, 0x79, &[0x78, 0x7a]).await;

    assert_eq!(first.names[0], "testvm · you have control · 1 viewer");
    assert_eq!(second.names[0], "testvm · you have control · 2 viewers");
    assert_eq!(watcher.names[0], "testvm · view only · 3 viewers");
    first
        .wait_name("testvm · control taken by another viewer · 3 viewers")
        .await;
    second
        .wait_name("testvm · you have control · 3 viewers")
        .await;

    let ns = &env.ns;
    let gauge = |role: &str| {
        format!("kube_gateway_console_viewers{{namespace=\"{ns}\",vmi=\"testvm\",role=\"{role}\"}}")
    };
    wait_metric(&gw, &gauge("control"), 2.0).await;
    wait_metric(&gw, &gauge("observe"), 1.0).await;
    assert!(
        metric(
            &gw,
            "kube_gateway_console_upstream_connections_total{result=\"opened\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        metric(
            &gw,
            "kube_gateway_console_bytes_total{direction=\"to_viewer\"}"
        )
        .await
            > 0.0
    );
    assert!(
        metric(
            &gw,
            "kube_gateway_console_bytes_total{direction=\"from_viewer\"}"
        )
        .await
            > 0.0
    );

    // The one in control leaves: the other controller stays watch-only (fail safe).
    drop(second);
    first
        .wait_name("testvm · control taken by another viewer · 2 viewers")
        .await;
    watcher.wait_name("testvm · view only · 2 viewers").await;
    wait_metric(&gw, &gauge("control"), 1.0).await;
    first.press(0x71).await; // 'q'
    wait_metric(&gw, DROPPED_KEYS, dropped + 6.0).await;
    // Reconnecting makes it the newest controller: its keys reach the VM again. (Another jti,
    // so that the audit lines below tell the two sessions apart.)
    let mut again = NamedViewer::open(&gw, &path, &token_with(env, "ctl-1-again", None)).await;
    assert_eq!(again.names[0], "testvm · you have control · 3 viewers");
    again.press(0x77).await; // 'w'
    vm_gets(standin, &env.ns, 0x77, &[0x78, 0x7a, 0x71]).await;

    drop((first, again, watcher));
    let joined = gw
        .wait_audit(|l| l["event"] == "console_join" && l["jti"] == "obs-1")
        .await;
    assert_eq!(joined["vm"], format!("{ns}/testvm"));
    assert_eq!(joined["role"], "observe");
    let left = gw
        .wait_audit(|l| l["event"] == "console_leave" && l["jti"] == "ctl-1")
        .await;
    assert_eq!(left["vm"], format!("{ns}/testvm"));
    assert_eq!(left["role"], "control");
    assert_eq!(left["reason"], "closed");
    assert_eq!(
        left["input_dropped"], 4,
        "two presses of two key events each"
    );
    assert!(left["bytes"].as_u64().unwrap() > 0);
    assert!(left["bytes_from_client"].as_u64().unwrap() > 0);
    assert!(left["duration_ms"].as_f64().unwrap() > 0.0);
    let observer_left = gw
        .wait_audit(|l| l["event"] == "console_leave" && l["jti"] == "obs-1")
        .await;
    assert_eq!(observer_left["input_dropped"], 2);
}

/// `--console-controllers=shared`: both controllers' keys reach the VM, the observer's do
/// not, and the names say "shared control". Fails before issue 16 (no such flag).
async fn shared_control_lets_every_controller_drive(env: &Env, standin: &Standin) {
    let gw = env
        .gateway_with(&["--shared-consoles", "--console-controllers=shared"])
        .await;
    let path = Env::vnc_path(&env.ns, "testvm");
    let mut first = NamedViewer::open(&gw, &path, &token_with(env, "s-1", None)).await;
    let mut second = NamedViewer::open(&gw, &path, &token_with(env, "s-2", None)).await;
    let observer = token_with(env, "s-obs", Some("observe"));
    let mut watcher = NamedViewer::open(&gw, &path, &observer).await;
    assert_eq!(second.names[0], "testvm · shared control · 2 viewers");
    assert_eq!(watcher.names[0], "testvm · view only · 3 viewers");
    first.wait_name("testvm · shared control · 3 viewers").await;

    let dropped = metric(&gw, DROPPED_KEYS).await;
    watcher.press(0x63).await; // 'c'
    wait_metric(&gw, DROPPED_KEYS, dropped + 2.0).await;
    first.press(0x61).await; // 'a'
    vm_gets(standin, &env.ns, 0x61, &[0x63]).await;
    second.press(0x62).await; // 'b'
    vm_gets(standin, &env.ns, 0x62, &[0x63]).await;
}

/// The VM's console cannot be opened (here: the API server answers 404 for a VMI that does
/// not exist; KubeVirt's 503 takes the same path): the viewer, already upgraded, is closed with
/// 1011 and a short reason, and the refusal is audited without any credential.
async fn a_console_that_cannot_be_opened_closes_its_viewer_with_1011(env: &Env) {
    let gw = env.gateway_with(&["--shared-consoles"]).await;
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.resource_names = Some(vec!["novm".into()]);
    claims.jti = Some("refused-1".into());
    let token = mint(&env.key, &claims);
    let path = Env::vnc_path(&env.ns, "novm");
    let (mut ws, response) = ws_connect(&gw, &path, &vnc_protocols(&token), &[])
        .await
        .expect("upgrade");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let frame = loop {
        match tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(frame.code), 1011);
    assert_eq!(frame.reason.as_str(), "console unavailable");
    let line = gw
        .wait_audit(|l| l["event"] == "console_leave" && l["jti"] == "refused-1")
        .await;
    assert_eq!(line["reason"], "console_unavailable");
    assert_eq!(line["decision"], "error");
    let detail = line["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("the API server answered"), "{detail}");
    assert_eq!(
        metric(
            &gw,
            "kube_gateway_console_upstream_connections_total{result=\"failed\"}"
        )
        .await,
        1.0
    );
}
