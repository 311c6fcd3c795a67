//! Long-lived traffic through the gateway against the real control plane: watches stream as
//! events happen, WebSockets to the KubeVirt stand-in carry bytes both ways with the real
//! subprotocol and are closed with a close frame when the token expires or its GateToken is
//! revoked or deleted, `/auth/gettoken` mints through the API server with the caller's
//! credentials, and shutdown is graceful. Every test ends by asserting that no token was logged.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use virt_gateway_api::{GateToken, GateTokenData, GateTokenPhase, GateTokenSpec, GateTokenStatus};
use virt_gateway_auth::jwt::Claims;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn configmap_claims(ns: &str, verbs: &[&str]) -> Claims {
    let mut c = Claims::new(now() + 3600);
    c.namespace = ns.into();
    c.api_groups = Some(vec!["".into()]);
    c.resources = Some(vec!["configmaps".into()]);
    c.verbs = verbs.iter().map(|s| s.to_string()).collect();
    c
}

/// Opens a streaming GET through the gateway and returns the response (body not read).
async fn open_stream(
    gw: &TestGateway,
    path: &str,
    token: &str,
) -> http::Response<hyper::body::Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("{}{path}", gw.url))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .unwrap()
        .unwrap()
}

/// Reads watch events until one names `name`; panics if the stream ends first.
async fn wait_event(body: &mut hyper::body::Incoming, name: &str) -> Value {
    let mut buffer = Vec::new();
    loop {
        let frame = tokio::time::timeout(TIMEOUT, body.frame())
            .await
            .expect("an event in time");
        let Some(frame) = frame else {
            panic!("the watch ended before the event arrived")
        };
        if let Ok(data) = frame.unwrap().into_data() {
            buffer.extend_from_slice(&data);
        }
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            let event: Value = serde_json::from_slice(&line).unwrap();
            if event["object"]["metadata"]["name"] == name {
                return event;
            }
        }
    }
}

#[tokio::test]
async fn a_watch_streams_events_through_the_gateway_as_they_happen() {
    let env = Env::new(
        vec![],
        vec![rule(&[""], &["configmaps"], &["get", "list", "watch"])],
    )
    .await;
    wait_allowed(
        env.cp,
        &format!("system:serviceaccount:{}:kube-gateway", env.ns),
        "watch",
        "",
        "configmaps",
        "",
        &env.ns,
    )
    .await;
    let gw = env.gateway().await;
    let token = mint(&env.key, &configmap_claims(&env.ns, &["watch"]));
    let path = format!("/k8s/api/v1/namespaces/{}/configmaps?watch=true", env.ns);
    let response = open_stream(&gw, &path, &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();

    // Created after the watch started: the event must arrive while the request is still open.
    let cms = Api::<ConfigMap>::namespaced(env.cp.client().await, &env.ns);
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("cm-live".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let event = wait_event(&mut body, "cm-live").await;
    assert_eq!(event["type"], "ADDED");
    assert!(
        !http_body::Body::is_end_stream(&body),
        "the watch is still open"
    );
    cms.delete("cm-live", &DeleteParams::default())
        .await
        .unwrap();
    let event = wait_event(&mut body, "cm-live").await;
    assert_eq!(event["type"], "DELETED");
    drop(body);

    // A token that lists cannot watch, and one that watches cannot list.
    let (status, _, body) = gw
        .get(
            &path,
            Some(&mint(&env.key, &configmap_claims(&env.ns, &["list"]))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(status_of(&body).0.contains("verb \"watch\""));
    let (status, _, _) = gw
        .get(
            &format!("/k8s/api/v1/namespaces/{}/configmaps", env.ns),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    gw.wait_audit(|l| {
        l["event"] == "request"
            && l["upstream_status"] == 200
            && l["bytes"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_no_token_logged();
}

#[tokio::test]
async fn a_websocket_carries_bytes_both_ways_with_the_real_subprotocol() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let token = env.seed_token();
    let path = Env::vnc_path(&env.ns, "testvm");

    let (mut ws, response) = ws_connect(&gw, &path, &vnc_protocols(&token), &[])
        .await
        .expect("upgrade");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-protocol"], VNC_PROTOCOL);
    let greeting = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(greeting.into_data().as_ref(), GREETING);
    for payload in [
        b"\x00\x01\x02\xff".to_vec(),
        (0..200_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    ] {
        ws.send(Message::binary(payload.clone())).await.unwrap();
        let reply = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let expected: Vec<u8> = payload.iter().rev().copied().collect();
        assert_eq!(reply.into_data().as_ref(), expected.as_slice());
    }

    // The upstream saw the real subprotocol only: the token was stripped.
    let vnc = recorded(&format!(
        "/namespaces/{}/virtualmachineinstances/testvm/vnc",
        env.ns
    ));
    assert_eq!(vnc.len(), 1);
    assert_eq!(
        vnc[0].headers["sec-websocket-protocol"],
        vec![VNC_PROTOCOL.to_string()]
    );
    assert!(!vnc[0].headers.contains_key("cookie"));
    assert_eq!(
        vnc[0].user.as_deref(),
        Some(format!("system:serviceaccount:{}:kube-gateway", env.ns).as_str())
    );

    // While it is open, a second session with preserveSession gets KubeVirt's 503, passed through.
    let err = ws_connect(
        &gw,
        &format!("{path}?preserveSession=true"),
        &vnc_protocols(&token),
        &[],
    )
    .await
    .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!("expected the upstream 503, got {other}"),
    }
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let close = gw.wait_audit(|l| l["event"] == "websocket_close").await;
    assert!(close["bytes"].as_u64().unwrap() >= 200_000, "{close}");
    assert!(
        close["bytes_from_client"].as_u64().unwrap() >= 200_000,
        "{close}"
    );
    assert_eq!(close["reason"], "closed");
    let open = gw.wait_audit(|l| l["event"] == "websocket_open").await;
    assert_eq!(open["status"], 101);
    assert_eq!(open["decision"], "allow");

    // The session cookie works for WebSockets too (what noVNC uses after /auth/token).
    let (mut ws, response) = ws_connect(
        &gw,
        &path,
        VNC_PROTOCOL,
        &[("cookie", format!("ocgate-session-token={token}"))],
    )
    .await
    .expect("cookie upgrade");
    assert_eq!(response.headers()["sec-websocket-protocol"], VNC_PROTOCOL);
    assert_eq!(
        tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .into_data()
            .as_ref(),
        GREETING
    );
    ws.close(None).await.unwrap();

    // No token, or a token for another VM: refused before anything reaches KubeVirt.
    let before = recorded(&format!("/namespaces/{}/", env.ns)).len();
    for protocols in [
        VNC_PROTOCOL.to_string(),
        vnc_protocols(&mint(&env.key, &{
            let mut c = seed_claims(&env.ns, now() + 3600);
            c.resource_names = Some(vec!["othervm".into()]);
            c
        })),
    ] {
        let err = ws_connect(&gw, &path, &protocols, &[]).await.unwrap_err();
        match err {
            tokio_tungstenite::tungstenite::Error::Http(r) => assert!(
                r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN
            ),
            other => panic!("expected a refusal, got {other}"),
        }
    }
    assert_eq!(recorded(&format!("/namespaces/{}/", env.ns)).len(), before);
    eventually("sessions to be closed", || async {
        gw.metrics()
            .await
            .contains("kube_gateway_websocket_sessions 0")
            .then_some(())
    })
    .await;
    assert!(
        gw.metrics()
            .await
            .contains("kube_gateway_websocket_bytes_total{direction=\"upstream_to_client\"}")
    );
    assert_no_token_logged();
}

/// Reads until a close frame arrives and returns it.
async fn wait_close(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("the connection failed without a close frame: {e}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn a_websocket_is_closed_with_a_close_frame_when_its_token_expires() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let path = Env::vnc_path(&env.ns, "testvm");
    // A short-lived token; on a very slow machine it may expire before the session opens, so
    // the lifetime doubles until a session opens (the test checks behaviour, not speed).
    let mut lifetime = 4;
    let (mut ws, token, exp) = loop {
        let exp = now() + lifetime;
        let token = mint(&env.key, &seed_claims(&env.ns, exp));
        match ws_connect(&gw, &path, &vnc_protocols(&token), &[]).await {
            Ok((ws, _)) => break (ws, token, exp),
            Err(_) if lifetime < 64 => lifetime *= 2,
            Err(e) => panic!("cannot open a session: {e}"),
        }
    };
    let greeting = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(greeting.into_data().as_ref(), GREETING);
    let (code, reason) = wait_close(&mut ws).await;
    assert_eq!(code, CloseCode::Library(4001));
    assert_eq!(reason, "token expired");
    assert!(now() >= exp, "closed before the token expired");
    // The connection is then cut.
    assert!(
        tokio::time::timeout(TIMEOUT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await
        .is_ok()
    );
    let close = gw.wait_audit(|l| l["event"] == "websocket_close").await;
    assert_eq!(close["reason"], "token_expired");
    let (status, _, body) = gw
        .get(&Env::vmi_path(&env.ns, "testvm"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(status_of(&body).0.contains("expired"));
    assert_no_token_logged();
}

fn gatetokens(client: kube::Client, ns: &str) -> Api<GateToken> {
    Api::namespaced(client, ns)
}

async fn create_gatetoken(api: &Api<GateToken>, name: &str, target_ns: &str) -> String {
    let spec = GateTokenSpec {
        namespace: target_ns.into(),
        resource_names: Some(vec!["testvm".into()]),
        ..GateTokenSpec::default()
    };
    let created = api
        .create(&PostParams::default(), &GateToken::new(name, spec))
        .await
        .unwrap();
    created.metadata.uid.unwrap()
}

/// The status the operator writes for a token of `spec`, built from the API crate's types as the
/// operator builds it (so this test cannot drift from the contract).
fn signed_status(
    spec: &GateTokenSpec,
    token: &str,
    phase: GateTokenPhase,
    jti: &str,
    exp: u64,
) -> Value {
    let rule = spec.effective_rule().unwrap();
    let validity = spec.validity(jiff::Timestamp::now()).unwrap();
    let mut data = GateTokenData::new(&rule, &validity, "ES256");
    data.exp = i64::try_from(exp).unwrap();
    data.jti = Some(jti.into());
    let mut status = GateTokenStatus {
        token: token.into(),
        data,
        ..GateTokenStatus::default()
    };
    status.set_phase(phase);
    json!({ "status": status })
}

/// The CRDs installed and an environment whose gateway may watch GateTokens in its namespace,
/// once RBAC lets it.
async fn revocation_env() -> Env {
    let env = Env::new(
        vec![],
        vec![rule(
            &["ocgate.yaacov.com"],
            &["gatetokens"],
            &["get", "list", "watch"],
        )],
    )
    .await;
    install_crds(env.cp).await;
    wait_allowed(
        env.cp,
        &format!("system:serviceaccount:{}:kube-gateway", env.ns),
        "watch",
        "ocgate.yaacov.com",
        "gatetokens",
        "",
        &env.ns,
    )
    .await;
    env
}

/// The gateway with a revocation index on the environment's namespace, once the index synced.
async fn revocation_gateway(env: &Env) -> TestGateway {
    let gw = env
        .gateway_with(&[&format!("--revocation-namespaces={}", env.ns)])
        .await;
    eventually("the revocation index to sync", || async {
        let (status, _) = gw.readyz().await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    gw
}

#[tokio::test]
async fn revocation_closes_sessions_and_refuses_revoked_deleted_completed_and_unknown_tokens() {
    let env = revocation_env().await;
    let api = gatetokens(env.cp.client().await, &env.ns);
    let token_for = |jti: Option<&str>| {
        let mut c = seed_claims(&env.ns, now() + 3600);
        c.jti = jti.map(str::to_string);
        mint(&env.key, &c)
    };
    let live = create_gatetoken(&api, "live", &env.ns).await;
    let revoke_me = create_gatetoken(&api, "revoke-me", &env.ns).await;
    let delete_me = create_gatetoken(&api, "delete-me", &env.ns).await;
    let complete_me = create_gatetoken(&api, "complete-me", &env.ns).await;

    let gw = revocation_gateway(&env).await;
    let vmi = Env::vmi_path(&env.ns, "testvm");
    let vnc = Env::vnc_path(&env.ns, "testvm");

    assert_eq!(
        gw.get(&vmi, Some(&token_for(Some(&live)))).await.0,
        StatusCode::OK
    );
    let (status, _, body) = gw
        .get(
            &vmi,
            Some(&token_for(Some("00000000-0000-0000-0000-000000000000"))),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        status_of(&body).0.contains("unknown"),
        "{}",
        status_of(&body).0
    );
    let (status, _, body) = gw.get(&vmi, Some(&token_for(None))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(status_of(&body).0.contains("no jti"));

    // The revoked mark closes an open session and refuses the token from then on.
    let revoked_token = token_for(Some(&revoke_me));
    let (mut ws, _) = ws_connect(&gw, &vnc, &vnc_protocols(&revoked_token), &[])
        .await
        .expect("session opens");
    assert_eq!(
        tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .into_data()
            .as_ref(),
        GREETING
    );
    api.patch(
        "revoke-me",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"revoked": true}})),
    )
    .await
    .unwrap();
    let (code, reason) = wait_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Library(4003), "token revoked")
    );
    let (status, _, body) = gw.get(&vmi, Some(&revoked_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(status_of(&body).0.contains("token revoked"));

    // Deleting the GateToken does the same.
    let deleted_token = token_for(Some(&delete_me));
    let (mut ws, _) = ws_connect(&gw, &vnc, &vnc_protocols(&deleted_token), &[])
        .await
        .expect("session opens");
    assert_eq!(
        tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .into_data()
            .as_ref(),
        GREETING
    );
    api.delete("delete-me", &DeleteParams::default())
        .await
        .unwrap();
    let (code, reason) = wait_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Library(4003), "token revoked")
    );
    let (status, _, body) = gw.get(&vmi, Some(&deleted_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(status_of(&body).0.contains("deleted"));

    // A Completed GateToken (expired per the operator) is refused.
    let completed_token = token_for(Some(&complete_me));
    assert_eq!(gw.get(&vmi, Some(&completed_token)).await.0, StatusCode::OK);
    api.patch_status(
        "complete-me",
        &PatchParams::default(),
        &Patch::Merge(signed_status(
            &GateTokenSpec::default(),
            "",
            GateTokenPhase::Completed,
            &complete_me,
            now() + 3600,
        )),
    )
    .await
    .unwrap();
    eventually("the Completed phase to be seen", || async {
        (gw.get(&vmi, Some(&completed_token)).await.0 == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // A GateToken created after the gateway started is accepted.
    let late = create_gatetoken(&api, "late", &env.ns).await;
    assert_eq!(
        gw.get(&vmi, Some(&token_for(Some(&late)))).await.0,
        StatusCode::OK
    );

    let metrics = gw.metrics().await;
    for expected in [
        "kube_gateway_revocation_synced 1",
        "kube_gateway_revocation_watch_up 1",
        "kube_gateway_revocation_index_age_seconds",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    let closes: Vec<Value> = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "websocket_close")
        .collect();
    assert_eq!(closes.len(), 2);
    assert!(
        closes
            .iter()
            .all(|l| l["reason"] == "token_revoked" && l["jti"].is_string())
    );
    assert_no_token_logged();
}

fn unix_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Opens a session to the `floodvm` (which streams the screen as fast as it can), then behaves as
/// the attacker of review §4: never reads again, and types (each keystroke stamped with the time
/// it was sent) until the connection fails. Returns when typing failed: both directions closed.
async fn type_without_reading(
    gw: &TestGateway,
    ns: &str,
    token: &str,
) -> tokio::task::JoinHandle<u64> {
    let (ws, _) = ws_connect(
        gw,
        &Env::vnc_path(ns, "floodvm"),
        &vnc_protocols(token),
        &[],
    )
    .await
    .expect("session opens");
    let (mut keys, screen) = ws.split();
    tokio::spawn(async move {
        let _never_read = screen;
        let mut sent = 0u64;
        loop {
            let stamp = unix_ms();
            if keys
                .send(Message::binary(stamp.to_be_bytes().to_vec()))
                .await
                .is_err()
            {
                return sent;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Waits until typing fails and the VM's connection has ended; returns the send times of the
/// keystrokes that reached the VM.
async fn keystrokes_that_reached_the_vm(
    ns: &str,
    typing: tokio::task::JoinHandle<u64>,
) -> Vec<u64> {
    let sent = tokio::time::timeout(TIMEOUT, typing)
        .await
        .expect("typing into a killed session fails: the gateway closed the client connection")
        .unwrap();
    assert!(sent > 0);
    let key = format!("{ns}/floodvm");
    eventually("the VM's connection to be closed", || async {
        FLOOD_ENDED.lock().unwrap().contains(&key).then_some(())
    })
    .await;
    let received = FLOOD_RECEIVED
        .lock()
        .unwrap()
        .remove(&key)
        .unwrap_or_default();
    received
        .iter()
        .map(|m| u64::from_be_bytes(m[..8].try_into().unwrap()))
        .collect()
}

/// Issue 14 point 3 (review §4): a client that stops reading while it keeps typing blocked the
/// gateway's write to it, so the kill was never polled and its input reached the VM after the
/// token expired. Now input sent after the deadline never arrives, and both directions close.
#[tokio::test]
async fn input_typed_after_expiry_by_a_client_that_stopped_reading_never_reaches_the_vm() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let mut lifetime = 4;
    let (typing, exp) = loop {
        let exp = now() + lifetime;
        let mut claims = seed_claims(&env.ns, exp);
        claims.resource_names = Some(vec!["floodvm".into()]);
        let token = mint(&env.key, &claims);
        let path = Env::vnc_path(&env.ns, "floodvm");
        // On a slow machine the token may expire before the session opens: try a longer one.
        match ws_connect(&gw, &path, &vnc_protocols(&token), &[]).await {
            Ok((ws, _)) if now() + 2 < exp => {
                drop(ws);
                eventually("the probe session to end", || async {
                    FLOOD_ENDED
                        .lock()
                        .unwrap()
                        .contains(&format!("{}/floodvm", env.ns))
                        .then_some(())
                })
                .await;
                FLOOD_ENDED.lock().unwrap().clear();
                FLOOD_RECEIVED.lock().unwrap().clear();
                break (type_without_reading(&gw, &env.ns, &token).await, exp);
            }
            _ if lifetime < 64 => lifetime *= 2,
            _ => panic!("cannot open a session"),
        }
    };
    let received = keystrokes_that_reached_the_vm(&env.ns, typing).await;
    assert!(!received.is_empty(), "input before expiry reaches the VM");
    // The token stops verifying at the start of the second after `exp` (leeway 0); the issue
    // allows the kill 1 s to act.
    let deadline_ms = (exp + 1) * 1000 + 1000;
    let late: Vec<u64> = received.into_iter().filter(|t| *t >= deadline_ms).collect();
    assert!(
        late.is_empty(),
        "{} keystrokes sent after the deadline reached the VM",
        late.len()
    );
    // (The probe session before it ended with its client's drop.)
    gw.wait_audit(|l| l["event"] == "websocket_close" && l["reason"] == "token_expired")
        .await;
    assert_no_token_logged();
}

/// The same attacker, stopped by revoking the token's GateToken.
#[tokio::test]
async fn input_typed_after_revocation_by_a_client_that_stopped_reading_never_reaches_the_vm() {
    let env = revocation_env().await;
    let api = gatetokens(env.cp.client().await, &env.ns);
    let jti = create_gatetoken(&api, "typist", &env.ns).await;
    let gw = revocation_gateway(&env).await;
    let mut claims = seed_claims(&env.ns, now() + 3600);
    claims.resource_names = Some(vec!["floodvm".into()]);
    claims.jti = Some(jti);
    let token = mint(&env.key, &claims);
    let typing = type_without_reading(&gw, &env.ns, &token).await;
    // Let the screen fill every buffer towards the client, so that the gateway's writes block.
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.patch(
        "typist",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"revoked": true}})),
    )
    .await
    .unwrap();
    // The API server has stored the revocation; the watch delivers it to the gateway, whose
    // kill then acts within 1 s (2 s allowed in all).
    let deadline_ms = unix_ms() + 2000;
    let received = keystrokes_that_reached_the_vm(&env.ns, typing).await;
    assert!(
        !received.is_empty(),
        "input before revocation reaches the VM"
    );
    let late = received.iter().filter(|t| **t >= deadline_ms).count();
    assert_eq!(
        late, 0,
        "keystrokes sent after the revocation reached the VM"
    );
    let close = gw.wait_audit(|l| l["event"] == "websocket_close").await;
    assert_eq!(close["reason"], "token_revoked");
    assert_no_token_logged();
}

#[tokio::test]
async fn auth_session_applies_the_revocation_check_of_api_requests() {
    let env = revocation_env().await;
    let api = gatetokens(env.cp.client().await, &env.ns);
    let token_for = |jti: Option<&str>| {
        let mut c = seed_claims(&env.ns, now() + 3600);
        c.jti = jti.map(str::to_string);
        mint(&env.key, &c)
    };
    let revoke_me = create_gatetoken(&api, "session-revoke-me", &env.ns).await;
    let delete_me = create_gatetoken(&api, "session-delete-me", &env.ns).await;
    let gw = revocation_gateway(&env).await;
    let vmi = Env::vmi_path(&env.ns, "testvm");

    // A live GateToken's token: described, with its jti (cookie and bearer alike).
    let revoked_token = token_for(Some(&revoke_me));
    for answer in [
        gw.session(Some(&revoked_token), None).await,
        gw.session(None, Some(&revoked_token)).await,
    ] {
        let (status, headers, body) = answer;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["cache-control"], "no-store");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["jti"], revoke_me.as_str());
        assert_eq!(v["namespace"], env.ns.as_str());
    }

    // Revoked: refused with the API path's message, "token revoked".
    api.patch(
        "session-revoke-me",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"revoked": true}})),
    )
    .await
    .unwrap();
    let message = eventually("the revocation to be seen", || async {
        let answer = gw.session(Some(&revoked_token), None).await;
        (answer.0 == StatusCode::UNAUTHORIZED).then(|| session_refusal(&answer))
    })
    .await;
    assert!(message.contains("token revoked"), "{message:?}");
    assert_eq!(
        message,
        status_of(&gw.get(&vmi, Some(&revoked_token)).await.2).0
    );
    assert_eq!(
        session_refusal(&gw.session(None, Some(&revoked_token)).await),
        message
    );

    // Deleted, unknown and jti-less tokens: the same refusals as on the API path.
    let deleted_token = token_for(Some(&delete_me));
    assert_eq!(
        gw.session(Some(&deleted_token), None).await.0,
        StatusCode::OK
    );
    api.delete("session-delete-me", &DeleteParams::default())
        .await
        .unwrap();
    let message = eventually("the deletion to be seen", || async {
        let answer = gw.session(Some(&deleted_token), None).await;
        (answer.0 == StatusCode::UNAUTHORIZED).then(|| session_refusal(&answer))
    })
    .await;
    assert!(message.contains("deleted"), "{message:?}");
    for (what, token, expected) in [
        ("deleted", deleted_token.clone(), "deleted"),
        (
            "unknown",
            token_for(Some("00000000-0000-0000-0000-000000000000")),
            "unknown",
        ),
        ("no jti", token_for(None), "no jti"),
    ] {
        let message = session_refusal(&gw.session(Some(&token), None).await);
        assert!(message.contains(expected), "{what}: {message:?}");
        assert_eq!(
            message,
            status_of(&gw.get(&vmi, Some(&token)).await.2).0,
            "{what}"
        );
    }

    // Audited as auth decisions: the refusals with the reason and the jti.
    let lines: Vec<Value> = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["path"] == "/auth/session")
        .collect();
    assert!(
        lines.iter().any(|l| l["event"] == "auth"
            && l["decision"] == "deny"
            && l["reason"] == "token_revoked"
            && l["jti"] == revoke_me.as_str()
            && l["detail"]
                .as_str()
                .is_some_and(|d| d.contains("token revoked"))),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["decision"] == "allow" && l["jti"] == delete_me.as_str()),
        "{lines:?}"
    );
    assert!(recorded(&format!("/namespaces/{}/", env.ns)).is_empty());
    assert_no_token_logged();
}

#[tokio::test]
async fn a_revocation_index_that_cannot_list_keeps_the_gateway_unready_and_fails_closed() {
    // The gateway's ServiceAccount may not list GateTokens: the watch never syncs.
    let env = Env::new(vec![], vec![]).await;
    install_crds(env.cp).await;
    let gw = env
        .gateway_with(&[&format!("--revocation-namespaces={}", env.ns)])
        .await;
    let token = mint(&env.key, &{
        let mut c = seed_claims(&env.ns, now() + 3600);
        c.jti = Some("11111111-2222-3333-4444-555555555555".into());
        c
    });
    let (status, body) = eventually("a watch error to be reported", || async {
        let (status, body) = gw.readyz().await;
        body["checks"]["revocation"]
            .as_str()
            .unwrap_or_default()
            .contains("last error")
            .then_some((status, body))
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    let (status, _, body) = gw
        .get(&Env::vmi_path(&env.ns, "testvm"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status_of(&body).1, "ServiceUnavailable");
    // /auth/session cannot describe a token it cannot check either.
    let (status, headers, body) = gw.session(Some(&token), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(status_of(&body).0.contains("not synchronised"));
    assert!(recorded(&format!("/namespaces/{}/", env.ns)).is_empty());
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("kube_gateway_revocation_watch_up 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kube_gateway_revocation_synced 0"),
        "{metrics}"
    );
    assert_no_token_logged();
}

#[tokio::test]
async fn gettoken_creates_the_gatetoken_with_the_callers_credentials_and_returns_it_signed() {
    let env = Env::new(vec![], vec![]).await;
    install_crds(env.cp).await;
    let minter = service_account(
        env.cp,
        &env.ns,
        "minter",
        vec![],
        vec![
            rule(&["ocgate.yaacov.com"], &["gatetokens"], &["create", "get"]),
            // A GateToken may grant only what its creator may do (the delegation policy):
            // the minter may open the VNC consoles it hands out.
            rule(
                &["subresources.kubevirt.io"],
                &["virtualmachineinstances", "virtualmachineinstances/vnc"],
                &["get"],
            ),
        ],
    )
    .await;
    let nobody = service_account(env.cp, &env.ns, "nobody", vec![], vec![]).await;
    wait_allowed(
        env.cp,
        &format!("system:serviceaccount:{}:minter", env.ns),
        "create",
        "ocgate.yaacov.com",
        "gatetokens",
        "",
        &env.ns,
    )
    .await;
    let gw = env.gateway_with(&["--gettoken-timeout=3s"]).await;

    // A stand-in for the operator: signs every new GateToken except those named "unsigned-*".
    let operator = {
        let api = gatetokens(env.cp.client().await, &env.ns);
        let signer = virt_gateway_auth::keys::KeyPair::from_pem(
            env.key.private_key_pem().unwrap().as_bytes(),
        )
        .unwrap();
        tokio::spawn(async move {
            loop {
                for gt in api
                    .list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    let name = gt.metadata.name.clone().unwrap();
                    let signed = gt.status.as_ref().is_some_and(|s| !s.token.is_empty());
                    if signed || name.starts_with("unsigned-") {
                        continue;
                    }
                    let uid = gt.metadata.uid.clone().unwrap();
                    let mut claims = seed_claims(&gt.spec.namespace, now() + 600);
                    claims.jti = Some(uid.clone());
                    let token = mint(&signer, &claims);
                    let _ = api
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(signed_status(
                                &gt.spec,
                                &token,
                                GateTokenPhase::Ready,
                                &uid,
                                claims.exp,
                            )),
                        )
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let post = |bearer: Option<String>, body: Value| {
        let mut req = Request::post(format!("{}/auth/gettoken", gw.url))
            .header("content-type", "application/json");
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
    };
    // Gen B's body, with Gen B's key spellings in any case.
    let body = json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
        "metadata": {"name": "from-gettoken", "namespace": env.ns},
        "Spec": {"namespace": env.ns, "APIGroups": ["subresources.kubevirt.io"], "ResourceNames": ["testvm"], "DurationSec": 600}
    });
    let (status, headers, answer) = post(Some(minter.clone()), body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(headers["content-type"], "application/json");
    let object: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(object["kind"], "GateToken");
    assert_eq!(object["metadata"]["name"], "from-gettoken");
    assert_eq!(
        object["spec"]["apiGroups"],
        json!(["subresources.kubevirt.io"])
    );
    assert_eq!(object["spec"]["durationSec"], 600);
    assert_eq!(object["status"]["phase"], "Ready");
    let token = object["status"]["token"].as_str().unwrap().to_string();
    // The returned token works through the gateway.
    assert_eq!(
        gw.get(&Env::vmi_path(&env.ns, "testvm"), Some(&token))
            .await
            .0,
        StatusCode::OK
    );

    // Refusals carry the API server's Status: the gateway's own ServiceAccount could not create
    // GateTokens either, so a success above used the caller's credentials.
    let (status, _, answer) = post(
        Some(nobody.clone()),
        json!({"metadata": {"namespace": env.ns}, "spec": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (message, reason) = status_of(&answer);
    assert_eq!(reason, "Forbidden");
    assert!(
        message.contains(&format!("system:serviceaccount:{}:nobody", env.ns))
            && message.contains("gatetokens"),
        "{message}"
    );
    let (status, _, answer) = post(None, json!({"metadata": {"namespace": env.ns}})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&answer).1, "Unauthorized");
    let (status, _, _) = post(Some(minter.clone()), json!({"spec": {}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(
        Request::get(format!("{}/auth/gettoken", gw.url))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // The delegation policy checks the caller: `spec: {}` (every VM's console in every
    // namespace) is more than the minter holds (its Role is in one namespace), refused with the
    // API server's Status naming the missing permission (security review §1, §8).
    let (status, _, answer) = post(
        Some(minter.clone()),
        json!({"metadata": {"namespace": env.ns, "name": "everywhere"}, "spec": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (message, reason) = status_of(&answer);
    assert_eq!(reason, "Forbidden");
    assert!(
        message.contains("virt-gateway-gatetoken-delegation")
            && message.contains(r#""get" on "virtualmachineinstances""#)
            && message.contains("in all namespaces"),
        "{message}"
    );
    // An operator that never signs: a bounded wait, then 504.
    let (status, _, answer) = post(
        Some(minter.clone()),
        json!({"metadata": {"namespace": env.ns, "name": "unsigned-1"}, "spec": {"namespace": env.ns}}),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(status_of(&answer).0.contains("unsigned-1"));
    operator.abort();
    assert_no_token_logged();
}

#[tokio::test]
async fn graceful_shutdown_closes_websockets_with_1001_and_ends_watches() {
    let env = Env::new(
        vec![],
        vec![rule(&[""], &["configmaps"], &["get", "list", "watch"])],
    )
    .await;
    wait_allowed(
        env.cp,
        &format!("system:serviceaccount:{}:kube-gateway", env.ns),
        "watch",
        "",
        "configmaps",
        "",
        &env.ns,
    )
    .await;
    let mut gw = env.gateway().await;
    let (mut ws, _) = ws_connect(
        &gw,
        &Env::vnc_path(&env.ns, "testvm"),
        &vnc_protocols(&env.seed_token()),
        &[],
    )
    .await
    .expect("session opens");
    assert_eq!(
        tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .into_data()
            .as_ref(),
        GREETING
    );
    let token = mint(&env.key, &configmap_claims(&env.ns, &["watch"]));
    let response = open_stream(
        &gw,
        &format!("/k8s/api/v1/namespaces/{}/configmaps?watch=true", env.ns),
        &token,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();

    gw.shutdown().await;
    let (code, reason) = wait_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "gateway shutting down")
    );
    // The watch ends cleanly (end of stream, not an error).
    loop {
        match tokio::time::timeout(TIMEOUT, body.frame())
            .await
            .expect("the watch ends")
        {
            None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("the watch ended with an error: {e}"),
        }
    }
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "the listener is closed"
    );
    assert_no_token_logged();
}
