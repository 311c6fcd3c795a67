//! Shared consoles (`--shared-consoles`) against the real control plane and the KubeVirt
//! stand-in with a real Xvnc: three viewers of one VM all see its screen at once (with the plain
//! pass-through, KubeVirt's one-session rule would close the first two), and one viewer's token
//! expiring closes that viewer alone, with 4001, while the others go on; an observer's input
//! is dropped and counted.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use kubevirt_standin::rfb::Client;
use kubevirt_standin::{Rgb, Standin, StandinOptions};
use tokio_tungstenite::tungstenite::Message;

const BLUE: Rgb = Rgb::new(0x20, 0x40, 0xc0);

/// An environment like [`Env::new`], with the stand-in (real Xvnc) as KubeVirt.
async fn standin_env() -> (Env, Standin) {
    init_logging();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cp = virt_gateway_testenv::ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let standin = Standin::start(
        cp,
        StandinOptions {
            namespace: ns.clone(),
            vms: vec![("testvm".into(), BLUE)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let env = Env::in_namespace(cp, ns, vec![], vec![]).await;
    (env, standin)
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
    let (env, _standin) = standin_env().await;
    let gw = env.gateway_with(&["--shared-consoles"]).await;
    let path = Env::vnc_path(&env.ns, "testvm");
    let token = env.seed_token();
    let short = mint(&env.key, &seed_claims(&env.ns, now() + 4));

    let mut first = open(&gw, &path, &token).await;
    sees_the_vm(&mut first).await;
    let mut second = open(&gw, &path, &token).await;
    let mut third = open(&gw, &path, &short).await;
    assert_eq!(third.server_init().name, "testvm");
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
    // A controller's input is not counted as dropped.
    let ws = first.transport_mut();
    ws.send(Message::binary(vec![5, 0, 0, 20, 0, 20]))
        .await
        .unwrap();
    sees_the_vm(&mut first).await;
    assert!(
        gw.metrics()
            .await
            .contains("kube_gateway_console_input_dropped_total{kind=\"pointer\"} 1")
    );
    drop((first, second, watcher));
    an_observer_link_never_opens_a_console_that_would_carry_its_input(&env).await;
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
