//! The gateway's caps (review §11), attacked through the real control plane: one token opening
//! more WebSockets than its share, everybody together more than the total, a body sent as slowly
//! as possible (slow loris), a WebSocket left idle or kept open for ever, and a flood of
//! unauthenticated requests meant to fill the audit log. Each cap answers with a clear status or
//! close frame and is audited.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, ListParams};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn vnc_token(env: &Env, jti: &str) -> String {
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.jti = Some(jti.into());
    mint(&env.key, &claims)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn open_vnc(gw: &TestGateway, env: &Env, token: &str) -> Ws {
    let path = Env::vnc_path(&env.ns, "testvm");
    let (mut ws, _) = ws_connect(gw, &path, &vnc_protocols(token), &[])
        .await
        .expect("upgrade");
    let greeting = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(greeting.into_data().as_ref(), GREETING);
    ws
}

/// The refusal of an upgrade: its status and Status body.
async fn refused_upgrade(gw: &TestGateway, env: &Env, token: &str) -> (StatusCode, Value) {
    let path = Env::vnc_path(&env.ns, "testvm");
    match ws_connect(gw, &path, &vnc_protocols(token), &[]).await {
        Ok(_) => panic!("the upgrade was served over the cap"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (response.status(), serde_json::from_slice(&body).unwrap())
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

fn vnc_sessions_at_upstream(env: &Env) -> usize {
    recorded(&format!(
        "/namespaces/{}/virtualmachineinstances/testvm/vnc",
        env.ns
    ))
    .len()
}

#[tokio::test]
async fn one_token_cannot_open_more_websockets_than_its_share_nor_all_more_than_the_total() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env
        .gateway_with(&["--max-websockets-per-token=2", "--max-websockets=3"])
        .await;
    let (a, b, c) = (
        vnc_token(&env, "jti-a"),
        vnc_token(&env, "jti-b"),
        vnc_token(&env, "jti-c"),
    );
    let mut a1 = open_vnc(&gw, &env, &a).await;
    let _a2 = open_vnc(&gw, &env, &a).await;
    let before = vnc_sessions_at_upstream(&env);

    // The attacker's third session with the same token: 429, and nothing reached KubeVirt.
    let (status, body) = refused_upgrade(&gw, &env, &a).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "TooManyRequests");
    assert!(
        body["message"].as_str().unwrap().contains("of this token"),
        "{body}"
    );
    assert_eq!(vnc_sessions_at_upstream(&env), before);
    let line = gw
        .wait_audit(|l| l["reason"] == "too_many_websockets")
        .await;
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["status"], 429);
    assert_eq!(line["jti"], "jti-a");

    // Another token still gets its session, up to the total; then everybody waits.
    let _b1 = open_vnc(&gw, &env, &b).await;
    let (status, body) = refused_upgrade(&gw, &env, &c).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at this gateway"),
        "{body}"
    );

    // A closed session gives its slot back.
    a1.close(None).await.unwrap();
    while let Some(Ok(_)) = a1.next().await {}
    let path = Env::vnc_path(&env.ns, "testvm");
    eventually("the closed session's slot to be free", || async {
        ws_connect(&gw, &path, &vnc_protocols(&c), &[])
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert_no_token_logged();
}

fn configmap_rule() -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(vec!["configmaps".into()]),
        verbs: vec!["create".into(), "list".into()],
        ..Default::default()
    }
}

/// Sends a request head announcing `len` body bytes, then only `sent` of them, then nothing;
/// returns the raw answer.
async fn slow_loris(gw: &TestGateway, head: &str, len: usize, sent: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "{head}\r\nhost: {}\r\ncontent-length: {len}\r\n\r\n",
        gw.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    // The gateway must answer and close although the body never completes.
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("an answer to a stalled body, and the connection closed")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_sent_as_slowly_as_possible_is_cut_with_408_and_audited() {
    let env = Env::new(vec![], vec![configmap_rule()]).await;
    let gw = env.gateway_with(&["--body-read-timeout=1s"]).await;
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.api_groups = Some(vec!["".into()]);
    claims.resources = Some(vec!["configmaps".into()]);
    claims.resource_names = None;
    claims.verbs = vec!["create".into()];
    claims.jti = Some("jti-loris".into());
    let token = mint(&env.key, &claims);

    // The API proxy: a ConfigMap whose body never finishes.
    let head = format!(
        "POST /k8s/api/v1/namespaces/{}/configmaps HTTP/1.1\r\nauthorization: Bearer {token}\r\ncontent-type: application/json",
        env.ns
    );
    let answer = slow_loris(
        &gw,
        &head,
        10_000,
        br#"{"apiVersion":"v1","kind":"ConfigMap","#,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""reason":"Timeout""#), "{answer}");
    let line = gw
        .wait_audit(|l| l["reason"] == "body_timeout" && l["event"] == "request")
        .await;
    assert_eq!(line["status"], 408);
    assert_eq!(line["jti"], "jti-loris");
    let created = Api::<ConfigMap>::namespaced(env.cp.client().await, &env.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        created
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() == Some("kube-root-ca.crt")),
        "nothing was created"
    );

    // A sign-in endpoint, which anybody may call.
    let answer = slow_loris(
        &gw,
        "POST /auth/token HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded",
        4000,
        b"token=ab",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    gw.wait_audit(|l| l["reason"] == "body_timeout" && l["event"] == "auth")
        .await;
    assert_no_token_logged();
}

/// Reads until a close frame arrives (answering nothing), and returns it.
async fn close_frame(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("the session ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_idle_websocket_is_closed_and_a_busy_one_ends_at_its_maximum_length() {
    let env = Env::new(vec![], vec![]).await;
    let token = vnc_token(&env, "jti-idle");

    // Left open without a byte either way.
    let gw = env.gateway_with(&["--websocket-idle-timeout=1s"]).await;
    let mut ws = open_vnc(&gw, &env, &token).await;
    assert_eq!(
        close_frame(&mut ws).await,
        (CloseCode::Library(4008), "session idle for too long".into())
    );
    let line = gw.wait_audit(|l| l["event"] == "websocket_close").await;
    assert_eq!(line["reason"], "idle_timeout");
    assert_eq!(line["jti"], "jti-idle");

    // Kept busy for ever: the maximum length ends it all the same.
    let gw = env.gateway_with(&["--websocket-max-duration=2s"]).await;
    let mut ws = open_vnc(&gw, &env, &token).await;
    let closed = async {
        loop {
            ws.send(Message::binary(b"keys".to_vec())).await.unwrap();
            match tokio::time::timeout(TIMEOUT, ws.next()).await.unwrap() {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code, frame.reason.to_string());
                }
                Some(Ok(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                other => panic!("ended without a close frame: {other:?}"),
            }
        }
    };
    assert_eq!(
        tokio::time::timeout(TIMEOUT, closed).await.unwrap(),
        (
            CloseCode::Library(4009),
            "session time limit reached".into()
        )
    );
    let line = gw.wait_audit(|l| l["event"] == "websocket_close").await;
    assert_eq!(line["reason"], "session_limit");
    assert_no_token_logged();
}

#[tokio::test]
async fn a_flood_of_unauthenticated_requests_cannot_fill_the_audit_log() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway_with(&["--audit-unauthenticated-rate=1"]).await;
    let path = Env::vmi_path(&env.ns, "testvm");
    let flood = 200;
    for i in 0..flood {
        let token = (i % 2 == 0).then_some("not-a-token");
        let (status, _, _) = gw.get(&path, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Lines are written as response bodies end: wait until every refusal is accounted for.
    let (written, suppressed) = eventually("every refusal written or counted", || async {
        let written = gw
            .audit_lines()
            .iter()
            .filter(|l| l["decision"] == "deny")
            .count();
        let metrics = gw.metrics().await;
        let suppressed: usize = metrics
            .lines()
            .find_map(|l| l.strip_prefix("kube_gateway_audit_suppressed_total "))
            .expect("the suppressed count is a metric")
            .parse()
            .unwrap();
        (written + suppressed == flood).then_some((written, suppressed))
    })
    .await;
    assert!(written >= 10, "the first burst is written: {written}");
    assert!(
        suppressed > flood / 2,
        "most of the flood is not: {written}"
    );

    // Refusals of a verified token are always written: they name who to ask.
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.jti = Some("jti-flood".into());
    let token = mint(&env.key, &claims);
    for _ in 0..30 {
        let (status, _, _) = gw
            .get(&Env::vmi_path(&env.ns, "othervm"), Some(&token))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let of_token = gw
        .audit_lines()
        .iter()
        .filter(|l| l["jti"] == "jti-flood" && l["reason"] == "forbidden")
        .count();
    assert_eq!(of_token, 30);
    assert_no_token_logged();
}
