//! The stand-in against the real test control plane: every request goes through the real
//! kube-apiserver's aggregation layer to the stand-in's handler and on to a real Xvnc.
//!
//! One stand-in serves every test of this binary. Tests run in parallel, and KubeVirt allows one
//! VNC session per VM, so each test that opens a session uses a VM of its own (`testvm` is only
//! opened by the test that checks its screen).

mod common;

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::{TIMEOUT, UPGRADE, raw_get, subresource, websocket};
use futures::StreamExt;
use http::StatusCode;
use kube::api::{Api, DynamicObject};
use kubevirt_standin::fleet::TAKEN_OVER_REASON;
use kubevirt_standin::rfb::Client as Rfb;
use kubevirt_standin::{PLAIN_PROTOCOL, Rgb, Standin, StandinOptions, vmi, xvnc};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Message;
use virt_gateway_testenv::ControlPlane;

/// Tests share one multi-threaded runtime: the stand-in's server tasks and clients live on it,
/// and a per-test runtime would take them down when the first test ends.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
});
static STANDIN: OnceCell<Standin> = OnceCell::const_new();

fn run<F: Future>(test: F) -> F::Output {
    RUNTIME.block_on(async {
        tokio::time::timeout(Duration::from_secs(240), test)
            .await
            .expect("test finished in time")
    })
}

async fn standin() -> (&'static ControlPlane, &'static Standin) {
    let cp = ControlPlane::shared().await;
    let standin = STANDIN
        .get_or_init(|| async {
            let options = StandinOptions {
                log_dir: Some(
                    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubevirt-standin-logs"),
                ),
                ..StandinOptions::default()
            };
            Standin::start(cp, options)
                .await
                .unwrap_or_else(|e| panic!("stand-in did not start: {e}\n{}", cp.logs(20)))
        })
        .await;
    (cp, standin)
}

const TESTVM: Rgb = Rgb::new(0x15, 0x65, 0xc0);
const TESTVM2: Rgb = Rgb::new(0xc6, 0x28, 0x28);

/// Checks the screen: 640x480, the VM's colour nearly everywhere, and the white label window
/// with the VM's name at its place.
fn assert_screen(fb: &kubevirt_standin::rfb::Framebuffer, colour: Rgb) {
    assert_eq!((fb.width, fb.height), (xvnc::WIDTH, xvnc::HEIGHT));
    for (x, y) in [(0, 0), (639, 479), (320, 240), (5, 470), (630, 10)] {
        assert_eq!(fb.pixel(x, y), colour, "pixel ({x}, {y})");
    }
    let share = fb.count(colour) as f64 / (640.0 * 480.0);
    assert!(
        share > 0.95,
        "only {:.1}% of the screen is {colour}",
        share * 100.0
    );
    let (lx, ly) = xvnc::LABEL_AT;
    let white = Rgb::new(255, 255, 255);
    let label_white = (lx..lx + 100)
        .flat_map(|x| (ly..ly + 30).map(move |y| (x, y)))
        .filter(|(x, y)| fb.pixel(*x, *y) == white)
        .count();
    assert!(
        label_white > 500,
        "no label window at {:?} ({label_white} white pixels)",
        xvnc::LABEL_AT
    );
}

#[test]
fn testvm_vnc_through_the_api_server_is_a_real_vnc_server_with_testvm_colour() {
    run(async {
        let (cp, _) = standin().await;
        let (ws, response) = websocket(
            cp,
            &subresource("v1", "default", "testvm", "vnc"),
            Some(&format!("{PLAIN_PROTOCOL}, other.example.com")),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()["sec-websocket-protocol"], PLAIN_PROTOCOL);
        let mut rfb = tokio::time::timeout(TIMEOUT, Rfb::handshake(ws))
            .await
            .unwrap()
            .unwrap();
        let init = rfb.server_init().clone();
        assert_eq!((init.width, init.height), (640, 480));
        assert_eq!(init.name, "testvm", "the desktop name is the VM name");
        let fb = tokio::time::timeout(TIMEOUT, rfb.framebuffer())
            .await
            .unwrap()
            .unwrap();
        assert_screen(&fb, TESTVM);
        assert_eq!(fb.count(TESTVM2), 0, "no trace of testvm2's colour");
    });
}

#[test]
fn testvm2_has_its_own_colour_and_the_v1alpha3_path_works_too() {
    run(async {
        let (cp, _) = standin().await;
        let (ws, _) = websocket(
            cp,
            &subresource("v1alpha3", "default", "testvm2", "vnc"),
            Some(PLAIN_PROTOCOL),
        )
        .await
        .unwrap();
        let mut rfb = tokio::time::timeout(TIMEOUT, Rfb::handshake(ws))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rfb.server_init().name, "testvm2");
        let fb = tokio::time::timeout(TIMEOUT, rfb.framebuffer())
            .await
            .unwrap()
            .unwrap();
        assert_screen(&fb, TESTVM2);
        assert_eq!(fb.count(TESTVM), 0);
    });
}

#[test]
fn an_unknown_vm_is_a_kubevirt_style_404() {
    run(async {
        let (cp, _) = standin().await;
        let path = subresource("v1", "default", "nosuchvm", "vnc");
        let err = websocket(cp, &path, Some(PLAIN_PROTOCOL))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), StatusCode::NOT_FOUND)
            }
            other => panic!("expected an HTTP refusal, got {other}"),
        }
        let (code, body) = raw_get(
            cp,
            &path,
            &[UPGRADE, &[("Sec-WebSocket-Protocol", PLAIN_PROTOCOL)]].concat(),
        )
        .await;
        assert_eq!(code, 404, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(
            status["message"],
            "virtualmachineinstance.kubevirt.io \"nosuchvm\" not found"
        );
        // A VM of that name in another namespace is not testvm either.
        let (code, _) = raw_get(
            cp,
            &subresource("v1", "kube-system", "testvm", "vnc"),
            UPGRADE,
        )
        .await;
        assert_eq!(code, 404);
    });
}

#[test]
fn the_plain_kubevirt_io_subprotocol_is_required() {
    run(async {
        let (cp, standin) = standin().await;
        standin
            .add_vm("default", "vm-protocol", Rgb::new(0x33, 0x33, 0x33))
            .await
            .unwrap();
        let path = subresource("v1", "default", "vm-protocol", "vnc");
        for offered in [
            None,
            Some("binary.kubevirt.io"),
            Some("base64url.bearer.authorization.k8s.io.abc"),
        ] {
            let err = websocket(cp, &path, offered).await.unwrap_err();
            match err {
                tokio_tungstenite::tungstenite::Error::Http(response) => {
                    assert_eq!(
                        response.status(),
                        StatusCode::BAD_REQUEST,
                        "offered {offered:?}"
                    )
                }
                other => panic!("offered {offered:?}: expected an HTTP refusal, got {other}"),
            }
        }
        let (code, body) = raw_get(cp, &path, UPGRADE).await;
        assert_eq!(code, 400);
        assert!(body.contains(PLAIN_PROTOCOL), "{body}");
        // A plain GET (no upgrade) is refused as well, and does not count as a session.
        let (code, _) = raw_get(cp, &path, &[]).await;
        assert_eq!(code, 400);
        assert!(
            !standin
                .fleet()
                .get("default", "vm-protocol")
                .unwrap()
                .busy()
        );
    });
}

#[test]
fn with_preserve_session_a_second_connection_gets_503_and_the_first_keeps_working() {
    run(async {
        let (cp, standin) = standin().await;
        let colour = Rgb::new(0x2e, 0x7d, 0x32);
        standin.add_vm("default", "vm-busy", colour).await.unwrap();
        let path = subresource("v1", "default", "vm-busy", "vnc");
        let preserve = format!("{path}?preserveSession=true");

        let (ws, _) = websocket(cp, &path, Some(PLAIN_PROTOCOL)).await.unwrap();
        let mut first = Rfb::handshake(ws).await.unwrap();

        let err = websocket(cp, &preserve, Some(PLAIN_PROTOCOL))
            .await
            .unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE)
            }
            other => panic!("expected 503, got {other}"),
        }
        // The same answer to a plain GET, so that a browser can find out why its WebSocket failed.
        let (code, body) = raw_get(cp, &preserve, &[]).await;
        assert_eq!(code, 503, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["reason"], "ServiceUnavailable");

        let fb = tokio::time::timeout(TIMEOUT, first.framebuffer())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fb.pixel(320, 240),
            colour,
            "the first session was not disturbed"
        );

        // Once the first session ends, preserveSession connects.
        first.into_inner().close(None).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ws = loop {
            match websocket(cp, &preserve, Some(PLAIN_PROTOCOL)).await {
                Ok((ws, _)) => break ws,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    panic!("preserveSession still refused after the first session closed: {e}")
                }
            }
        };
        let mut second = Rfb::handshake(ws).await.unwrap();
        assert_eq!(second.server_init().name, "vm-busy");
        assert_eq!(second.framebuffer().await.unwrap().pixel(600, 400), colour);
    });
}

#[test]
fn a_new_connection_takes_over_and_the_first_is_closed() {
    run(async {
        let (cp, standin) = standin().await;
        let colour = Rgb::new(0x6a, 0x1b, 0x9a);
        standin
            .add_vm("default", "vm-takeover", colour)
            .await
            .unwrap();
        let path = subresource("v1", "default", "vm-takeover", "vnc");

        let (ws, _) = websocket(cp, &path, Some(PLAIN_PROTOCOL)).await.unwrap();
        let first = Rfb::handshake(ws).await.unwrap();
        let (ws, _) = websocket(cp, &path, Some(PLAIN_PROTOCOL)).await.unwrap();
        let mut second = Rfb::handshake(ws).await.unwrap();

        let mut first = first.into_inner();
        let close = tokio::time::timeout(TIMEOUT, async {
            loop {
                match first.next().await {
                    Some(Ok(Message::Close(frame))) => break frame,
                    Some(Ok(_)) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        })
        .await
        .expect("the first session is closed in time");
        let close = close.expect("the close frame says why");
        assert_eq!(close.reason.as_str(), TAKEN_OVER_REASON);

        let fb = second.framebuffer().await.unwrap();
        assert_eq!(fb.pixel(320, 240), colour);
    });
}

#[test]
fn the_console_subresource_answers_with_a_login_prompt() {
    run(async {
        let (cp, _) = standin().await;
        let (mut ws, response) = websocket(
            cp,
            &subresource("v1", "default", "testvm2", "console"),
            Some(PLAIN_PROTOCOL),
        )
        .await
        .unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], PLAIN_PROTOCOL);
        let greeting = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let text = String::from_utf8(greeting.into_data().to_vec()).unwrap();
        assert!(text.contains("testvm2 login: "), "{text:?}");
    });
}

#[test]
fn the_vmis_exist_as_kubevirt_io_objects_in_both_versions() {
    run(async {
        let (cp, _) = standin().await;
        let client = cp.client().await;
        let api =
            Api::<DynamicObject>::namespaced_with(client.clone(), "default", &vmi::api_resource());
        for (name, colour) in [("testvm", TESTVM), ("testvm2", TESTVM2)] {
            let object = api.get(name).await.unwrap();
            assert_eq!(object.data["status"]["phase"], "Running");
            assert_eq!(
                object.metadata.annotations.as_ref().unwrap()[vmi::COLOUR_ANNOTATION],
                colour.to_string()
            );
        }
        let v1alpha3 = kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("kubevirt.io", "v1alpha3", "VirtualMachineInstance"),
            "virtualmachineinstances",
        );
        let old = Api::<DynamicObject>::namespaced_with(client, "default", &v1alpha3);
        assert_eq!(
            old.get("testvm").await.unwrap().metadata.name.as_deref(),
            Some("testvm")
        );
    });
}

#[test]
fn discovery_lists_the_vnc_and_console_subresources() {
    run(async {
        let (cp, standin) = standin().await;
        assert_eq!(
            standin.api_services(),
            vec![
                "v1.subresources.kubevirt.io",
                "v1alpha3.subresources.kubevirt.io"
            ]
        );
        let (code, body) = raw_get(cp, "/apis/subresources.kubevirt.io/v1", &[]).await;
        assert_eq!(code, 200);
        let list: Value = serde_json::from_str(&body).unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"virtualmachineinstances/vnc"), "{names:?}");
        assert!(
            names.contains(&"virtualmachineinstances/console"),
            "{names:?}"
        );
    });
}
