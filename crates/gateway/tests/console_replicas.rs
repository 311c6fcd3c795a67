//! Shared consoles across gateway replicas (`--shared-consoles` with `--console-peer-address`),
//! against the real control plane and the KubeVirt stand-in with a real Xvnc: two gateways
//! (replicas `gw-a` on 127.0.0.2 and `gw-b` on 127.0.0.3, the same port, as pods of one
//! Deployment) coordinate through console Leases in their namespace. Viewers of one VM on both
//! replicas share ONE VNC connection (the VM sees one session); input from the replica that does
//! not hold the Lease reaches the VM; a forged forwarding mark or a forged Lease grants nothing;
//! when the holder stops, the other replica takes the console over.

mod common;

use common::*;
use futures::{FutureExt, SinkExt, StreamExt};
use http::StatusCode;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube_gateway::console_route::{FORWARDED_TO, PEER_ANNOTATION, lease_name};
use kubevirt_standin::rfb::Client;
use kubevirt_standin::{Rgb, Standin};
use tokio_tungstenite::tungstenite::Message;

const BLUE: Rgb = Rgb::new(0x20, 0x40, 0xc0);
const GREEN: Rgb = Rgb::new(0x20, 0xc0, 0x40);
/// A KeyEvent (down) with a keysym no test sends otherwise (U+2603 as a Unicode keysym).
const KEY: [u8; 8] = [4, 1, 0, 0, 0x01, 0x00, 0x26, 0x03];

type Viewer = Client<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>;

/// The gateway ServiceAccount's Lease rule in its own namespace (what the operator grants).
fn lease_rule() -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec!["coordination.k8s.io".into()]),
        resources: Some(vec!["leases".into()]),
        verbs: vec!["get".into(), "create".into(), "update".into()],
        ..Default::default()
    }
}

async fn replicas_env() -> (Env, Standin) {
    let vms = vec![
        ("testvm".into(), BLUE),
        ("othervm".into(), GREEN),
        ("thirdvm".into(), GREEN),
    ];
    let (env, standin) = common::standin_env(vms, vec![lease_rule()]).await;
    let cp = env.cp;
    let user = format!("system:serviceaccount:{}:kube-gateway", env.ns);
    for verb in ["get", "create", "update"] {
        wait_allowed(
            cp,
            &user,
            verb,
            "coordination.k8s.io",
            "leases",
            "",
            &env.ns,
        )
        .await;
    }
    (env, standin)
}

/// A replica named `pod` listening (and reachable by its peers) on `ip:port`.
async fn replica(env: &Env, pod: &str, ip: &str, port: u16) -> TestGateway {
    let mut args: Vec<String> = env
        .args()
        .into_iter()
        .filter(|a| !a.starts_with("-listen="))
        .collect();
    args.extend([
        format!("-listen=http://{ip}:{port}"),
        "--shared-consoles".into(),
        format!("--console-peer-address={ip}"),
        format!("--pod-name={pod}"),
        format!("--pod-namespace={}", env.ns),
        "--console-lease-duration=2s".into(),
    ]);
    TestGateway::start(args).await
}

async fn open_with(
    gw: &TestGateway,
    ns: &str,
    vm: &str,
    token: &str,
    extra: &[(&str, String)],
) -> Viewer {
    let path = Env::vnc_path(ns, vm);
    let (ws, response) = ws_connect(gw, &path, &vnc_protocols(token), extra)
        .await
        .expect("upgrade");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-protocol"], VNC_PROTOCOL);
    tokio::time::timeout(TIMEOUT, Client::handshake(ws))
        .await
        .expect("handshake in time")
        .expect("RFB handshake")
}

async fn sees(viewer: &mut Viewer, colour: Rgb) {
    let fb = tokio::time::timeout(TIMEOUT, viewer.framebuffer())
        .await
        .expect("a screen in time")
        .expect("a screen");
    assert_eq!(fb.pixel(fb.width - 40, fb.height - 40), colour);
}

async fn holder(leases: &Api<Lease>, vm: &str, ns: &str) -> Option<(String, String)> {
    let lease = leases.get_opt(&lease_name(ns, vm)).await.unwrap()?;
    let holder = lease.spec?.holder_identity?;
    let address = lease.metadata.annotations?.get(PEER_ANNOTATION)?.clone();
    Some((holder, address))
}

/// The upgrade's refusal status, when it is refused.
async fn refused(
    gw: &TestGateway,
    ns: &str,
    vm: &str,
    token: &str,
    extra: &[(&str, String)],
) -> StatusCode {
    let path = Env::vnc_path(ns, vm);
    match ws_connect(gw, &path, &vnc_protocols(token), extra).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status(),
        Ok((_, response)) => panic!("upgrade of {vm} not refused: {}", response.status()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_vnc_connection_and_take_over_from_a_stopped_holder() {
    let (env, standin) = replicas_env().await;
    let leases: Api<Lease> = Api::namespaced(env.cp.client().await, &env.ns);
    let vm = standin.fleet().get(&env.ns, "testvm").unwrap();
    let mut a = replica(&env, "gw-a", "127.0.0.2", 0).await;
    let port = a.addr.port();
    let b = replica(&env, "gw-b", "127.0.0.3", port).await;
    let token = env.seed_token();

    // The first viewer, on gw-a: gw-a holds the console's Lease with its address.
    let mut first = open_with(&a, &env.ns, "testvm", &token, &[]).await;
    sees(&mut first, BLUE).await;
    let (who, address) = holder(&leases, "testvm", &env.ns).await.expect("a Lease");
    assert_eq!(who, "gw-a");
    assert_eq!(address, format!("http://127.0.0.2:{port}"));

    // A second viewer, on gw-b (with its own token id, to find it in gw-a's audit): forwarded
    // to gw-a, which authorizes and serves it; the VM still sees one session.
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.jti = Some("viewer-on-gw-b".into());
    let mut second = open_with(&b, &env.ns, "testvm", &mint(&env.key, &claims), &[]).await;
    sees(&mut second, BLUE).await;
    sees(&mut first, BLUE).await;
    assert_eq!(
        vm.sessions_opened(),
        1,
        "one VNC connection for both replicas"
    );
    // The viewer only ever talked to gw-b: gw-a authorized and audited it, gw-b carried it.
    a.wait_audit(|v| v["event"] == "websocket_open" && v["jti"] == "viewer-on-gw-b")
        .await;
    b.wait_audit(|v| {
        v["event"] == "websocket_open"
            && v["jti"] == "viewer-on-gw-b"
            && v["detail"] == "console served by another replica"
    })
    .await;

    // A key typed on gw-b reaches the VM (through gw-a's one connection).
    second
        .transport_mut()
        .send(Message::binary(KEY.to_vec()))
        .await
        .unwrap();
    eventually("the key at the VM", || {
        let seen = vm.received().windows(KEY.len()).any(|w| w == KEY);
        async move { seen.then_some(()) }
    })
    .await;

    forged_marks_grant_nothing(&env, &a, &b, &vm).await;
    a_forged_lease_is_never_forwarded_to(&env, &b, &leases, &standin).await;
    a_stale_lease_is_taken_over(&env, &b, &leases, port).await;

    // gw-a stops: its viewers (and the one gw-b carried to it) end; a new viewer on gw-b finds
    // gw-a unreachable, takes the Lease over and opens the console itself.
    a.shutdown().await;
    for viewer in [&mut first, &mut second] {
        let ended = tokio::time::timeout(TIMEOUT, async {
            while let Some(Ok(_)) = viewer.transport_mut().next().await {}
        })
        .await;
        assert!(ended.is_ok(), "a viewer of the stopped replica ended");
    }
    let mut third = open_with(&b, &env.ns, "testvm", &token, &[]).await;
    sees(&mut third, BLUE).await;
    assert_eq!(vm.sessions_opened(), 2);
    let (who, address) = holder(&leases, "testvm", &env.ns).await.expect("a Lease");
    assert_eq!(who, "gw-b");
    assert_eq!(address, format!("http://127.0.0.3:{port}"));
    drop(third);
    assert_no_token_logged();
}

/// Attack: a client forging the forwarding mark. Sent to the replica that does not hold the
/// console, naming that replica, it would have it open a second VNC connection (taking the
/// console from the holder's viewers): refused with 503 instead, never forwarded again. Sent to
/// the holder, it skips nothing: a token that does not allow the VM is still refused there.
async fn forged_marks_grant_nothing(
    env: &Env,
    a: &TestGateway,
    b: &TestGateway,
    vm: &kubevirt_standin::fleet::Vm,
) {
    let token = env.seed_token();
    let to_b = [(FORWARDED_TO, "gw-b".to_string())];
    assert_eq!(
        refused(b, &env.ns, "testvm", &token, &to_b).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let mut other = seed_claims(&env.ns, now() + 3600);
    other.resource_names = Some(vec!["othervm".into()]);
    let to_a = [(FORWARDED_TO, "gw-a".to_string())];
    assert_eq!(
        refused(a, &env.ns, "testvm", &mint(&env.key, &other), &to_a).await,
        StatusCode::FORBIDDEN
    );
    // A mark naming another replica is not trusted either: gw-b forwards as usual.
    let mut via_b = open_with(b, &env.ns, "testvm", &token, &to_a).await;
    sees(&mut via_b, BLUE).await;
    assert_eq!(vm.sessions_opened(), 1, "no second VNC connection");
}

/// Attack: a Lease written to send viewers, token included, elsewhere (here a listener on
/// another address and port). It names no replica address (the gateway's scheme and port on
/// an IP), so gw-b never connects there: it takes the Lease over and serves the viewer itself.
async fn a_forged_lease_is_never_forwarded_to(
    env: &Env,
    b: &TestGateway,
    leases: &Api<Lease>,
    standin: &Standin,
) {
    let trap = tokio::net::TcpListener::bind("127.0.0.4:0").await.unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let forged = lease_of(env, "othervm", "gw-x", &format!("http://{trap_addr}"), 0);
    leases
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    let mut viewer = open_with(b, &env.ns, "othervm", &token_for(env, "othervm"), &[]).await;
    sees(&mut viewer, GREEN).await;
    assert!(
        trap.accept().now_or_never().is_none(),
        "the forged Lease's address was connected to"
    );
    let (who, _) = holder(leases, "othervm", &env.ns).await.expect("a Lease");
    assert_eq!(who, "gw-b");
    let other = standin.fleet().get(&env.ns, "othervm").unwrap();
    assert_eq!(other.sessions_opened(), 1);
}

/// A Lease of `vm`'s console held by `holder` at `address`, renewed `age` seconds ago, for an
/// hour: what a replica (or someone forging one) writes.
fn lease_of(env: &Env, vm: &str, holder: &str, address: &str, age: i64) -> Lease {
    let renewed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(age);
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(&env.ns, vm)),
            annotations: Some(
                [(PEER_ANNOTATION.to_string(), address.to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(3600),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        }),
    }
}

fn token_for(env: &Env, vm: &str) -> String {
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.resource_names = Some(vec![vm.into()]);
    mint(&env.key, &claims)
}

/// A Lease whose holder stopped renewing it (for longer than its duration; something listens at
/// its replica-shaped address) is taken over, never forwarded to.
async fn a_stale_lease_is_taken_over(env: &Env, b: &TestGateway, leases: &Api<Lease>, port: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.5", port))
        .await
        .unwrap();
    let address = format!("http://127.0.0.5:{port}");
    let stale = lease_of(env, "thirdvm", "gw-gone", &address, 3601);
    leases.create(&PostParams::default(), &stale).await.unwrap();
    let mut viewer = open_with(b, &env.ns, "thirdvm", &token_for(env, "thirdvm"), &[]).await;
    sees(&mut viewer, GREEN).await;
    assert!(
        listener.accept().now_or_never().is_none(),
        "the stale Lease's holder was connected to"
    );
    let (who, _) = holder(leases, "thirdvm", &env.ns).await.expect("a Lease");
    assert_eq!(who, "gw-b");
}
