//! Issue 16's shared console end to end, every part real: the control plane, the operator
//! signing the tokens, the KubeVirt stand-in with a real Xvnc behind the aggregation layer, the
//! gateway run with the command line the operator wrote for a GateServer with
//! `spec.consoles.shared: true` (as `make demo` does), and Debian's Chromium driven by
//! `web/e2e/shared.test.mjs`, one browser with a context per viewer:
//!
//! - two controllers and one observer open testvm in three pages: all show the same screen
//!   (every canvas pixel), each page says its role and the viewer count (the gateway's
//!   DesktopName contract: `<vmi> · <state> · <N> viewer(s)`);
//! - the observer's key does not reach the VM (the gateway counts it as dropped; the stand-in
//!   records every key testvm received), the current controller's does;
//! - with the default take-over policy, the second controller takes control: the first page
//!   says so and its keys no longer reach the VM; its "Take control" gives control back;
//! - a viewer joining late sees the whole current screen;
//! - revoking the observer's GateToken closes its page alone: the others keep updating;
//! - all along, a viewer that stops reading (a raw WebSocket client here that asks for frames
//!   and never reads them) is open: the pages keep getting frames, and at the end the frames
//!   the gateway sent it are waiting, unread, in its socket.
//!
//! Needs Chromium, Xvnc and xsetroot (`scripts/install-system-deps.sh`) and node; builds the
//! operator, the gateway and the web app if they are not up to date.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use kube::api::{Api, Patch, PatchParams};
use kubevirt_standin::Rgb;
use kubevirt_standin::fleet::Vm;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use virt_gateway_api::{ConsoleRole, GateToken};
use virt_gateway_demo::stack::{OBSERVER_TOKEN, SAMPLES_NAMESPACE};
use virt_gateway_demo::{Stack, StackOptions};

use common::{build_prerequisites, repo};

const VNC_PATH: &str =
    "/k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc";
/// One frame of the stand-in's screen in the raw encoding at 32 bits per pixel.
const FRAME_BYTES: usize = 640 * 480 * 4;

/// A viewer that asks for frames and never reads them: RFB written blindly (version 3.8,
/// security None, shared, the raw encoding only, so every screen change costs its full size) over a
/// socket with a small receive buffer, so that the gateway's writes to it soon block.
struct StalledViewer {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl StalledViewer {
    async fn open(gateway: &str, token: &str) -> Self {
        let authority = gateway.trim_start_matches("http://");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket
            .connect(authority.parse().unwrap())
            .await
            .expect("the gateway accepts");
        let mut request = format!("ws://{authority}{VNC_PATH}")
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers.insert(
            "sec-websocket-protocol",
            "plain.kubevirt.io".parse().unwrap(),
        );
        let (mut ws, response) = tokio_tungstenite::client_async(request, tcp)
            .await
            .expect("the gateway upgrades the stalled viewer");
        assert_eq!(response.status(), 101);
        let mut rfb = b"RFB 003.008\n".to_vec();
        rfb.extend([1, 1]); // security None; ClientInit shared
        // SetEncodings: Raw, and DesktopSize (-223) to follow the screen's size.
        rfb.extend([2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21]);
        rfb.extend([3, 0, 0, 0, 0, 0, 2, 128, 1, 224]); // the whole screen
        for _ in 0..4096 {
            rfb.extend([3, 1, 0, 0, 0, 0, 2, 128, 1, 224]); // and every change after it
        }
        ws.send(Message::binary(rfb))
            .await
            .expect("the stalled viewer's requests are sent");
        Self { ws }
    }

    /// Reads what waited in its socket (up to `enough` bytes, or until nothing more comes).
    async fn unread_bytes(mut self, enough: usize) -> usize {
        use futures::StreamExt;
        let mut got = 0;
        while got < enough {
            match tokio::time::timeout(Duration::from_secs(5), self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(data)))) => got += data.len(),
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        got
    }
}

/// The test's control endpoint for the browser test (loopback, one request at a time):
/// `GET /keys` (the keysyms of the last key presses testvm received), `POST /repaint?colour=%23rrggbb` (testvm's screen),
/// `POST /revoke` (the observer's GateToken gets `spec.revoked: true`).
fn serve_control(vm: Arc<Vm>, client: kube::Client) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let target = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let (status, body) = runtime.block_on(control(&vm, &client, &target));
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

async fn control(vm: &Vm, client: &kube::Client, target: &str) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/keys" => ("200 OK", serde_json::Value::from(vm.keys()).to_string()),
        "/repaint" => {
            let colour = form_urlencoded::parse(query.as_bytes())
                .find_map(|(k, v)| (k == "colour").then(|| v.into_owned()))
                .and_then(|c| c.parse::<Rgb>().ok());
            let Some(colour) = colour else {
                return ("400 Bad Request", "\"colour=#rrggbb\"".into());
            };
            match vm.server().repaint(colour).await {
                Ok(()) => ("200 OK", "true".into()),
                Err(e) => ("500 Internal Server Error", format!("{:?}", e.to_string())),
            }
        }
        "/revoke" => {
            let patch = serde_json::json!({"spec": {"revoked": true}});
            match Api::<GateToken>::namespaced(client.clone(), SAMPLES_NAMESPACE)
                .patch(
                    OBSERVER_TOKEN,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => ("200 OK", "true".into()),
                Err(e) => ("500 Internal Server Error", format!("{:?}", e.to_string())),
            }
        }
        _ => ("404 Not Found", "null".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_an_observer_and_a_late_joiner_share_one_console() {
    build_prerequisites();
    let repo = repo();
    let mut options = StackOptions::from_repo(&repo);
    options.shared_consoles = true;
    let stack = Stack::start(options, |step| eprintln!("shared console e2e: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the stack did not start: {e}"));

    let token = |name: &'static str, role| {
        let stack = &stack;
        async move {
            stack
                .create_console_token(name, "testvm", 3600, role)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        }
    };
    let controller_b = token("e2e-controller-b", ConsoleRole::Control).await;
    let late = token("e2e-late", ConsoleRole::Observe).await;
    let stalled_token = token("e2e-stalled", ConsoleRole::Observe).await;
    let observer = stack.observer_token.clone().expect("the view-only token");
    let url = stack.gateway_url().to_string();
    let metrics = format!(
        "http://{}/metrics",
        stack.gateway_metrics_addr().expect("the gateway's metrics")
    );
    let vm = stack
        .standin()
        .fleet()
        .get("default", "testvm")
        .expect("testvm runs");
    let control = serve_control(vm, stack.control_plane().client().await);

    let stalled = StalledViewer::open(&url, &stalled_token).await;
    let web = repo.join("web");
    let env = [
        ("GATEWAY_URL", url),
        ("METRICS_URL", metrics),
        ("CONTROL_URL", control),
        ("TOKEN_CONTROLLER_A", stack.sample_token.clone()),
        ("TOKEN_CONTROLLER_B", controller_b),
        ("TOKEN_OBSERVER", observer),
        ("TOKEN_LATE", late),
    ];
    let node = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "e2e/shared.test.mjs"])
            .current_dir(web)
            .envs(env)
            .status()
            .expect("node runs")
    })
    .await
    .expect("the browser run finishes");
    // The stalled viewer was sent frames it never read (at least the first whole screen), while
    // the pages above kept getting theirs.
    let unread = stalled.unread_bytes(FRAME_BYTES).await;
    let gateway_log = virt_gateway_testenv::process::tail(stack.gateway_log(), 40);
    stack.stop().await;
    assert!(
        node.success(),
        "the browser test failed ({node})\n--- kube-gateway ---\n{gateway_log}"
    );
    assert!(
        unread >= FRAME_BYTES,
        "the stalled viewer was sent {unread} bytes, less than one frame: it never stalled"
    );
}
