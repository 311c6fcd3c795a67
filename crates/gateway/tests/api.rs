//! The gateway's HTTP behaviour against the real control plane: authorization of the seed sample,
//! every bad input (each refused with the documented status and nothing reaching the API server),
//! headers that must not be forwarded, limits, auth endpoints, key rotation, static files, TLS,
//! health and metrics, and pass-through mode. Every test ends by asserting that no token was ever
//! written to the audit log or the logs.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use http::{Request, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use virt_gateway_auth::jwt::Claims;
use virt_gateway_auth::keys::KeyAlgorithm;

fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn seed_sample_token_opens_its_vnc_console_and_nothing_else() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    // The seed GateToken: namespace "default", resourceNames [testvm], defaults for the rest.
    let token = mint(&env.key, &seed_claims("default", now() + 3600));
    let before = recorded("/namespaces/default/").len();

    // The allowed subresource: a VNC WebSocket to testvm in default.
    let (mut ws, response) = ws_connect(
        &gw,
        &Env::vnc_path("default", "testvm"),
        &vnc_protocols(&token),
        &[],
    )
    .await
    .expect("the VNC console of testvm opens");
    assert_eq!(response.headers()["sec-websocket-protocol"], VNC_PROTOCOL);
    let greeting = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(greeting.into_data().as_ref(), GREETING);
    ws.close(None).await.unwrap();
    // GET of the VMI itself is also in the token's resources.
    let (status, _, _) = gw
        .get(&Env::vmi_path("default", "testvm"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let reached = recorded("/namespaces/default/").len();
    assert_eq!(reached, before + 2);

    let vmis = format!("/k8s/apis/{KUBEVIRT_GROUP}/v1/namespaces/default/virtualmachineinstances");
    let cases: Vec<(&str, http::Method, String, &str)> = vec![
        (
            "another VM",
            http::Method::GET,
            Env::vnc_path("default", "othervm"),
            "\"virtualmachineinstances/vnc\" named \"othervm\" is not permitted",
        ),
        (
            "another namespace",
            http::Method::GET,
            Env::vnc_path(&env.ns, "testvm"),
            "namespace",
        ),
        (
            "another subresource",
            http::Method::GET,
            format!("{vmis}/testvm/console"),
            "resource \"virtualmachineinstances/console\"",
        ),
        (
            "another verb",
            http::Method::DELETE,
            format!("{vmis}/testvm"),
            "verb \"delete\" is not permitted",
        ),
        (
            "a collection GET",
            http::Method::GET,
            vmis.clone(),
            "verb \"list\" is not permitted",
        ),
        (
            "a watch",
            http::Method::GET,
            format!("{vmis}?watch=true"),
            "verb \"watch\" is not permitted",
        ),
    ];
    for (what, method, path, reason) in cases {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", gw.url))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, body) = send(req).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(headers["content-type"], "application/json", "{what}");
        let (message, k8s_reason) = status_of(&body);
        assert_eq!(k8s_reason, "Forbidden", "{what}");
        assert!(
            message.contains(reason),
            "{what}: {message:?} should contain {reason:?}"
        );
    }
    assert_eq!(
        recorded("/namespaces/default/").len(),
        reached,
        "a refused request reached the API server"
    );
    let denials = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["decision"] == "deny" && l["reason"] == "forbidden")
        .count();
    assert_eq!(denials, 6);
    assert_no_token_logged();
}

fn forge(header: Value, claims: Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    secret(&format!("{input}.{}", B64.encode(signature)))
}

/// Exec, attach, port-forward and proxy need `create` in the token whatever the HTTP method
/// (security review §5): a "read-only" token with `resources: ["*"]` does not open exec, nor the
/// kubelet's exec behind `nodes/proxy`, although the gateway's ServiceAccount could (upstream
/// only ever sees the gateway). With `create` the request is forwarded.
#[tokio::test]
async fn exec_attach_port_forward_and_proxy_need_create_whatever_the_method() {
    let connect = PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(vec![
            "pods/exec".into(),
            "pods/attach".into(),
            "pods/portforward".into(),
            "nodes/proxy".into(),
        ]),
        verbs: vec!["get".into(), "create".into()],
        ..Default::default()
    };
    let env = Env::new(vec![connect], vec![]).await;
    let gw = env.gateway().await;
    let token = |namespace: &str, verbs: &[&str], resources: &[&str]| {
        let mut c = Claims::new(now() + 3600);
        c.namespace = namespace.into();
        c.verbs = verbs.iter().map(|v| (*v).into()).collect();
        c.api_groups = Some(vec!["".into()]);
        c.resources = Some(resources.iter().map(|r| (*r).into()).collect());
        mint(&env.key, &c)
    };
    let ns = &env.ns;
    let exec = format!("/k8s/api/v1/namespaces/{ns}/pods/web-0/exec?command=id&stdout=true");
    let attach = format!("/k8s/api/v1/namespaces/{ns}/pods/web-0/attach?stdout=true");
    let forward = format!("/k8s/api/v1/namespaces/{ns}/pods/web-0/portforward?ports=80");
    let kubelet = "/k8s/api/v1/nodes/node-1/proxy/exec/kube-system/etcd/etcd?command=id".to_owned();
    let read_all = token(ns, &["get"], &["*"]);
    let read_cluster = token(
        "*",
        &["get", "list", "watch"],
        &["nodes/proxy", "pods/exec"],
    );
    for (path, t) in [
        (&exec, &read_all),
        (&attach, &read_all),
        (&forward, &read_all),
        (&kubelet, &read_cluster),
    ] {
        let (status, _, body) = gw.get(path, Some(t)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("needs the verb"), "{path}: {body}");
    }
    // With `create` too, the gateway forwards; the API server answers (no such pod).
    let with_create = token(ns, &["get", "create"], &["*"]);
    let (status, _, body) = gw.get(&exec, Some(&with_create)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_no_token_logged();
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_never_forwarded() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let path = Env::vmi_path(&env.ns, "testvm");
    let claims = seed_claims(&env.ns, now() + 3600);
    let claims_json = serde_json::to_value(&claims).unwrap();

    let hs256 = {
        let pem = std::fs::read(&env.key_file).unwrap();
        forge(
            json!({"alg": "HS256", "typ": "JWT"}),
            claims_json.clone(),
            move |input| {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &pem);
                aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
            },
        )
    };
    let none = forge(
        json!({"alg": "none", "typ": "JWT"}),
        claims_json.clone(),
        |_| Vec::new(),
    );
    let expired = mint(&env.key, &{
        let mut c = claims.clone();
        c.exp = now() - 3600;
        c.nbf = Some(now() - 7200);
        c.iat = Some(now() - 7200);
        c
    });
    let not_yet = mint(&env.key, &{
        let mut c = claims.clone();
        c.nbf = Some(now() + 3600);
        c.exp = now() + 7200;
        c.iat = None;
        c
    });
    let unknown_kid = mint(&key(KeyAlgorithm::EcdsaP256), &claims);
    let tampered = {
        let good = env.seed_token();
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut payload: Value = serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
        payload["resourceNames"] = json!(["testvm", "othervm"]);
        parts[1] = B64.encode(payload.to_string());
        secret(&parts.join("."))
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "no token"),
        ("alg none", Some(none), "unsigned tokens"),
        (
            "HS256 forged with the public key",
            Some(hs256),
            "HMAC-signed tokens",
        ),
        ("expired", Some(expired), "token expired"),
        ("not yet valid", Some(not_yet), "not valid before"),
        (
            "unknown kid",
            Some(unknown_kid),
            "no verification key with kid",
        ),
        ("tampered", Some(tampered), "signature is invalid"),
        ("garbage", Some(secret("not-a-jwt")), "malformed token"),
    ];
    for (what, token, expected) in cases {
        let (status, headers, body) = gw.get(&path, token.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(headers["content-type"], "application/json");
        let (message, reason) = status_of(&body);
        assert_eq!(reason, "Unauthorized", "{what}");
        assert!(message.contains(expected), "{what}: {message:?}");
    }
    // The same token in a cookie is refused the same way.
    let req = Request::get(format!("{}{path}", gw.url))
        .header("cookie", "ocgate-session-token=not.a.jwt")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.0, StatusCode::UNAUTHORIZED);
    assert!(
        recorded(&format!("/namespaces/{}/", env.ns)).is_empty(),
        "a refused request reached the API server"
    );

    // Control: the good token passes.
    let (status, _, _) = gw.get(&path, Some(&env.seed_token())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(recorded(&format!("/namespaces/{}/", env.ns)).len(), 1);
    assert_no_token_logged();
}

#[tokio::test]
async fn malformed_paths_get_400_and_query_tokens_are_ignored() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let token = env.seed_token();
    let ns = &env.ns;
    let base = format!("/k8s/apis/{KUBEVIRT_GROUP}/v1/namespaces/{ns}/virtualmachineinstances");
    for path in [
        format!("{base}/othervm/../testvm"),
        format!("{base}/othervm/%2e%2e/testvm"),
        format!("{base}/othervm/%2E%2E/testvm/vnc"),
        format!("/k8s/apis/{KUBEVIRT_GROUP}/v1/namespaces/{ns}//virtualmachineinstances/testvm"),
        format!("{base}/testvm%2Fvnc"),
        format!("{base}/testvm%2fconsole"),
        format!(
            "/k8s/../k8s/apis/{KUBEVIRT_GROUP}/v1/namespaces/{ns}/virtualmachineinstances/testvm"
        ),
        format!("{base}/./testvm"),
    ] {
        let (status, _, body) = gw.get(&path, Some(&token)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        let (_, reason) = status_of(&body);
        assert_eq!(reason, "BadRequest");
    }
    // A token in the query string is never accepted (and never logged).
    for param in ["access_token", "token", "bearer"] {
        let (status, _, body) = gw
            .get(&format!("{base}/testvm?{param}={token}"), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{param}");
        assert!(status_of(&body).0.contains("no token"));
    }
    assert!(
        recorded(&format!("/namespaces/{ns}/")).is_empty(),
        "a refused request reached the API server"
    );
    // The audit records carry the path without its query.
    for line in gw.audit_lines() {
        assert!(!line["path"].as_str().unwrap().contains('?'), "{line}");
    }
    assert_no_token_logged();
}

#[tokio::test]
async fn identity_credential_and_override_headers_never_reach_the_api_server() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let token = env.seed_token();
    let other = env.seed_token();
    let path = Env::vmi_path(&env.ns, "testvm");

    // Control: the API server's aggregator does pass a client's Cookie and custom headers on to
    // the aggregated API, so their absence below is the gateway's doing.
    let admin = env.cp.client().await;
    let control = http::Request::get(path.trim_start_matches("/k8s"))
        .header("cookie", "control=1")
        .header("x-control", "1")
        .body(Vec::new())
        .unwrap();
    let echoed: Value = admin.request(control).await.unwrap();
    assert_eq!(
        echoed["headers"]["cookie"],
        json!(["control=1"]),
        "{echoed}"
    );

    let req = Request::get(format!("{}{path}", gw.url))
        .header("authorization", format!("Bearer {token}"))
        .header(
            "cookie",
            format!("ocgate-session-token={other}; theme=dark"),
        )
        .header("impersonate-user", "system:admin")
        .header("impersonate-group", "system:masters")
        .header("impersonate-extra-scopes", "all")
        .header("x-remote-user", "system:admin")
        .header("x-remote-group", "system:masters")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-http-method-override", "DELETE")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let echoed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        echoed["method"], "GET",
        "the method override was not applied"
    );
    assert_eq!(
        echoed["user"],
        format!("system:serviceaccount:{}:kube-gateway", env.ns),
        "the API server saw the gateway's ServiceAccount, not an impersonated user"
    );
    let headers = echoed["headers"].as_object().unwrap();
    for gone in [
        "cookie",
        "impersonate-user",
        "impersonate-group",
        "impersonate-extra-scopes",
        "x-http-method-override",
        "authorization",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the API server: {echoed}"
        );
    }
    assert_eq!(headers["x-custom"], json!(["kept"]));
    assert!(
        !echoed["headers"].to_string().contains("203.0.113.7"),
        "a forged X-Forwarded-For was forwarded"
    );
    assert!(!echoed["headers"].to_string().contains(&token));

    // A method override cannot turn a refused verb into an allowed one.
    let req = Request::post(format!("{}{path}", gw.url))
        .header("authorization", format!("Bearer {token}"))
        .header("x-http-method-override", "GET")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(status_of(&body).0.contains("verb \"create\""));
    // The control request and the one allowed request; the refused POST never arrived.
    assert_eq!(recorded(&format!("/namespaces/{}/", env.ns)).len(), 2);
    assert_no_token_logged();
}

async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut out))
        .await
        .expect("the server answers or closes");
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn oversized_headers_get_431_and_a_slowloris_client_is_cut_off() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env
        .gateway_with(&["--max-header-bytes=16384", "--header-read-timeout=1s"])
        .await;
    let token = env.seed_token();
    let path = Env::vmi_path(&env.ns, "testvm");

    let big = "a".repeat(20 * 1024);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_exchange(gw.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");

    // Slowloris: a request head trickled one header line every 100 ms never completes; the
    // gateway closes the connection after its header-read timeout while the client is still
    // sending.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n").as_bytes())
        .await
        .unwrap();
    let (mut read, mut write) = tcp.into_split();
    let writer = tokio::spawn(async move {
        for i in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write
                .write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                return (i, true);
            }
        }
        (600, false)
    });
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(TIMEOUT, read.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    let cut_short = !writer.is_finished() || writer.await.unwrap().1;
    assert!(
        cut_short,
        "the gateway waited for the whole trickled request head"
    );
    assert!(
        buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
        "the slow request must not be served: {}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        recorded(&format!("/namespaces/{}/", env.ns)).is_empty(),
        "a refused request reached the API server"
    );

    // The gateway still serves normal clients.
    assert_eq!(gw.get(&path, Some(&token)).await.0, StatusCode::OK);
    assert_no_token_logged();
}

fn set_cookie(headers: &http::HeaderMap) -> String {
    headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn auth_endpoints_set_and_clear_the_session_cookie_only_for_verified_tokens() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let token = env.seed_token();
    let then = format!(
        "/noVNC/vnc_lite.html?path=k8s/apis/{KUBEVIRT_GROUP}/v1/namespaces/{}/virtualmachineinstances/testvm/vnc",
        env.ns
    );
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();

    // GET with a verified token: cookie and redirect.
    let (status, headers, _) = send(get(format!(
        "{}/auth/token?token={token}&then={}",
        gw.url,
        enc(&then)
    )))
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], then.as_str());
    let cookie = set_cookie(&headers);
    assert!(
        cookie.starts_with(&format!(
            "ocgate-session-token={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age="
        )),
        "{cookie}"
    );
    assert!(cookie.contains("Expires="), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: no Secure attribute"
    );
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        max_age > 3000 && max_age <= 3600,
        "the cookie expires with the token: {max_age}"
    );

    // A token quoted the way `jq` without -r produces it, in a POST form.
    let req = Request::post(format!("{}/auth/token", gw.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "token={}&then=/index.html",
            enc(&format!("\"{token}\""))
        ))))
        .unwrap();
    let (status, headers, _) = send(req).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "/index.html");
    assert!(set_cookie(&headers).starts_with(&format!("ocgate-session-token={token};")));

    // An unverifiable token gets 401 and no cookie; a non-local `then` gets 400.
    let (status, headers, body) = send(get(format!(
        "{}/auth/token?token=not.a.token&then=/",
        gw.url
    )))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(status_of(&body).1, "Unauthorized");
    let (status, headers, _) = send(get(format!("{}/auth/token?token=&then=/", gw.url))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("set-cookie").is_none());
    for bad in [
        "//evil.example.com/",
        "https://evil.example.com/",
        "/\\evil.example.com",
        "evil",
    ] {
        let (status, headers, body) = send(get(format!(
            "{}/auth/token?token={token}&then={}",
            gw.url,
            enc(bad)
        )))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(headers.get("set-cookie").is_none());
        assert_eq!(status_of(&body).1, "BadRequest");
    }

    // The cookie authenticates API requests, including quoted.
    for value in [token.clone(), format!("\"{token}\"")] {
        let req = Request::get(format!("{}{}", gw.url, Env::vmi_path(&env.ns, "testvm")))
            .header(
                "cookie",
                format!("theme=dark; ocgate-session-token={value}"),
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(req).await.0, StatusCode::OK);
    }

    // Gen C's /auth/jwt/set: token + name + namespace redirect to the noVNC page.
    let (status, headers, _) = send(get(format!(
        "{}/auth/jwt/set?token={token}&name=testvm&namespace={}",
        gw.url, env.ns
    )))
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], then.as_str());
    assert!(set_cookie(&headers).starts_with(&format!("ocgate-session-token={token};")));
    for (name, ns) in [
        ("Bad_Name", env.ns.as_str()),
        ("testvm", "../kube-system"),
        ("", "x"),
    ] {
        let (status, headers, _) = send(get(format!(
            "{}/auth/jwt/set?token={token}&name={}&namespace={}",
            gw.url,
            enc(name),
            enc(ns)
        )))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {ns}");
        assert!(headers.get("set-cookie").is_none());
    }

    // Logout clears it.
    let (status, headers, _) = send(get(format!("{}/auth/logout", gw.url))).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "/");
    let cookie = set_cookie(&headers);
    assert!(
        cookie.starts_with("ocgate-session-token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        "{cookie}"
    );

    let auth_lines: Vec<Value> = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "auth")
        .collect();
    assert!(auth_lines.len() >= 10);
    assert!(
        auth_lines
            .iter()
            .all(|l| !l["path"].as_str().unwrap().contains('?'))
    );
    assert_no_token_logged();
}

fn set_cookies(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Issue 14 point 5 (review §15, cookie tossing): behind a TLS-terminating proxy the session is
/// the `__Host-` cookie, which no sibling subdomain can set; Gen B's name still works; and two
/// different session cookies, under one name or the two and in either order, are refused
/// rather than the first one winning (a sibling's tossed cookie is sent first).
#[tokio::test]
async fn the_host_prefixed_session_cookie_and_tossed_cookies() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let victim = env.seed_token();
    let attacker = mint(&env.key, &seed_claims(&env.ns, now() + 1800));
    assert_ne!(victim, attacker);
    let sign_in = |forwarded_https: bool| {
        let mut req = Request::post(format!("{}/auth/token", gw.url))
            .header("content-type", "application/x-www-form-urlencoded");
        if forwarded_https {
            req = req.header("x-forwarded-proto", "https");
        }
        req.body(Full::new(Bytes::from(format!("token={victim}&then=/"))))
            .unwrap()
    };

    // Over HTTPS (as the route's proxy says): the __Host- cookie, and Gen B's cleared.
    let (status, headers, _) = send(sign_in(true)).await;
    assert_eq!(status, StatusCode::FOUND);
    let cookies = set_cookies(&headers);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies[0].starts_with(&format!(
            "__Host-ocgate-session-token={victim}; Path=/; HttpOnly; SameSite=Lax; Max-Age="
        )) && cookies[0].ends_with("; Secure")
            && !cookies[0].to_ascii_lowercase().contains("domain="),
        "{cookies:?}"
    );
    assert!(
        cookies[1].starts_with("ocgate-session-token=; Path=/;")
            && cookies[1].contains("Max-Age=0"),
        "{cookies:?}"
    );
    // Over plain HTTP: Gen B's name only (browsers refuse __Host- without HTTPS).
    let (_, headers, _) = send(sign_in(false)).await;
    let cookies = set_cookies(&headers);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with(&format!("ocgate-session-token={victim};")));

    let with_cookie = |cookie: String| {
        Request::get(format!("{}{}", gw.url, Env::vmi_path(&env.ns, "testvm")))
            .header("cookie", cookie)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    // Either name authenticates, and the same value under both is one session.
    for cookie in [
        format!("theme=dark; __Host-ocgate-session-token={victim}"),
        format!("ocgate-session-token={victim}"),
        format!("__Host-ocgate-session-token={victim}; ocgate-session-token={victim}"),
    ] {
        let (status, _, body) = send(with_cookie(cookie.clone())).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{cookie}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A tossed cookie, before or after ours, under either name: refused, never served as
    // whichever came first (both tokens verify and allow the request on their own).
    for cookie in [
        format!("ocgate-session-token={attacker}; __Host-ocgate-session-token={victim}"),
        format!("__Host-ocgate-session-token={victim}; ocgate-session-token={attacker}"),
        format!("ocgate-session-token={attacker}; ocgate-session-token={victim}"),
        format!("__Host-ocgate-session-token={attacker}; __Host-ocgate-session-token={victim}"),
    ] {
        let (status, _, body) = send(with_cookie(cookie)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            status_of(&body)
                .0
                .contains("several different session cookies"),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    // /auth/session reads the __Host- cookie too.
    let req = Request::get(format!("{}/auth/session", gw.url))
        .header("cookie", format!("__Host-ocgate-session-token={victim}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.0, StatusCode::OK);

    // Logout over HTTPS clears both names.
    let req = Request::get(format!("{}/auth/logout", gw.url))
        .header("x-forwarded-proto", "https")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = send(req).await;
    assert_eq!(status, StatusCode::FOUND);
    let cookies = set_cookies(&headers);
    assert!(
        cookies.len() == 2
            && cookies[0].starts_with("__Host-ocgate-session-token=; Path=/;")
            && cookies[1].starts_with("ocgate-session-token=; Path=/;")
            && cookies
                .iter()
                .all(|c| c.contains("Max-Age=0") && c.ends_with("; Secure")),
        "{cookies:?}"
    );
    assert_no_token_logged();
}

/// The part of a refusal message that does not depend on the current second ("token expired at
/// X (now N, ...)" differs in N between two requests).
fn stable(message: &str) -> &str {
    message.split(" (now ").next().unwrap_or(message)
}

#[tokio::test]
async fn auth_session_describes_a_verified_token_and_refuses_as_the_api_path_does() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let vmi = Env::vmi_path(&env.ns, "testvm");
    let claims = seed_claims(&env.ns, now() + 3600);
    let token = mint(&env.key, &claims);
    let check_ok = |answer: &(StatusCode, http::HeaderMap, Bytes), token: &str| -> Value {
        let (status, headers, body) = answer;
        let text = String::from_utf8_lossy(body);
        assert_eq!(*status, StatusCode::OK, "{text}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers.get("set-cookie").is_none());
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !text.contains(token) && !text.contains(signature),
            "the token is echoed"
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["exp", "jti", "namespace", "nbf"], "{v}");
        v
    };

    // The session cookie (also quoted as `jq` without -r leaves it): its claims, no jti.
    for value in [token.clone(), format!("\"{token}\"")] {
        let v = check_ok(&gw.session(Some(&value), None).await, &token);
        assert_eq!(
            v,
            json!({"exp": claims.exp, "nbf": claims.nbf, "namespace": env.ns, "jti": null})
        );
    }

    // A bearer header, with a jti; it wins over a cookie, as on the API path.
    let with_jti = mint(&env.key, &{
        let mut c = seed_claims(&env.ns, now() + 600);
        c.jti = Some("0b7e7c1a-5a5e-4d6c-9d7e-000000000001".into());
        c
    });
    let v = check_ok(&gw.session(None, Some(&with_jti)).await, &with_jti);
    assert_eq!(v["jti"], "0b7e7c1a-5a5e-4d6c-9d7e-000000000001");
    assert_eq!(v["namespace"], env.ns.as_str());
    let exp = v["exp"].as_u64().unwrap();
    assert!(exp > now() + 500 && exp <= now() + 600, "{v}");
    let v = check_ok(&gw.session(Some(&token), Some(&with_jti)).await, &with_jti);
    assert_eq!(v["jti"], "0b7e7c1a-5a5e-4d6c-9d7e-000000000001");

    // Refusals: the same 401 and message as an API request with the same token.
    let expired = mint(&env.key, &{
        let mut c = claims.clone();
        c.exp = now() - 60;
        c.nbf = Some(now() - 7200);
        c.iat = Some(now() - 7200);
        c
    });
    let tampered = {
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut payload: Value = serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
        payload["exp"] = json!(now() + 86_400 * 365);
        parts[1] = B64.encode(payload.to_string());
        secret(&parts.join("."))
    };
    let garbage = secret("not-a-jwt");
    for (what, bad, expected) in [
        ("expired", expired.as_str(), "token expired"),
        ("tampered", tampered.as_str(), "signature is invalid"),
        ("garbage", garbage.as_str(), "malformed token"),
    ] {
        let api = gw.get(&vmi, Some(bad)).await;
        assert_eq!(api.0, StatusCode::UNAUTHORIZED, "{what}");
        let api_message = status_of(&api.2).0;
        for answer in [
            gw.session(Some(bad), None).await,
            gw.session(None, Some(bad)).await,
        ] {
            let message = session_refusal(&answer);
            assert!(message.contains(expected), "{what}: {message:?}");
            assert_eq!(stable(&message), stable(&api_message), "{what}");
        }
    }
    let no_token = session_refusal(&gw.session(None, None).await);
    assert!(no_token.starts_with("no token"), "{no_token:?}");
    assert_eq!(no_token, status_of(&gw.get(&vmi, None).await.2).0);
    assert_eq!(session_refusal(&gw.session(Some(""), None).await), no_token);

    // Only GET (and HEAD).
    let (status, _, body) = send(
        Request::post(format!("{}/auth/session", gw.url))
            .header("cookie", format!("ocgate-session-token={token}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(status_of(&body).1, "MethodNotAllowed");

    // Nothing was forwarded; each answer was audited as an auth decision, with the jti when known.
    assert!(
        recorded(&format!("/namespaces/{}/", env.ns)).is_empty(),
        "a refused request reached the API server"
    );
    let lines: Vec<Value> = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["path"] == "/auth/session")
        .collect();
    assert!(lines.iter().all(|l| l["event"] == "auth"), "{lines:?}");
    let count = |decision: &str, reason: &str| {
        lines
            .iter()
            .filter(|l| l["decision"] == decision && l["reason"] == reason)
            .count()
    };
    assert_eq!(count("allow", "ok"), 4, "{lines:?}");
    assert_eq!(count("deny", "token_expired"), 2, "{lines:?}");
    assert_eq!(count("deny", "bad_signature"), 2, "{lines:?}");
    assert_eq!(count("deny", "invalid_token"), 2, "{lines:?}");
    assert_eq!(count("deny", "no_token"), 2, "{lines:?}");
    assert_eq!(count("deny", "method_not_allowed"), 1, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["jti"] == "0b7e7c1a-5a5e-4d6c-9d7e-000000000001" && l["status"] == 200)
    );
    assert!(
        lines
            .iter()
            .filter(|l| l["decision"] == "deny")
            .all(|l| l["detail"].is_string() && l["status"] != 200)
    );
    assert_no_token_logged();
}

#[tokio::test]
async fn key_rotation_old_and_new_keys_both_work_and_removed_keys_stop_working() {
    let env = Env::new(vec![], vec![]).await;
    let second = key(KeyAlgorithm::Ed25519);
    let second_file = write_public_key(env.dir.path(), "second.pem", &second);
    let gw = env
        .gateway_with(&[
            &format!("--jwt-key-files={}", second_file.display()),
            "--publish-jwks",
        ])
        .await;
    // Review §2: without --publish-jwks the keys are not published (an upstream gateway sharing
    // the namespace key would accept HS256 tokens signed with it).
    let default = env.gateway().await;
    let (status, _, _) = send(get(format!("{}/.well-known/jwks.json", default.url))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let path = Env::vmi_path(&env.ns, "testvm");
    let claims = seed_claims(&env.ns, now() + 3600);
    let old_token = mint(&env.key, &claims);
    let new_token = mint(&second, &claims);
    assert_eq!(gw.get(&path, Some(&old_token)).await.0, StatusCode::OK);
    assert_eq!(gw.get(&path, Some(&new_token)).await.0, StatusCode::OK);
    // Repeated requests hit the cache.
    assert_eq!(gw.get(&path, Some(&old_token)).await.0, StatusCode::OK);
    assert!(
        gw.metrics()
            .await
            .contains("kube_gateway_token_cache_lookups_total{result=\"hit\"}")
    );

    let (_, _, body) = send(get(format!("{}/.well-known/jwks.json", gw.url))).await;
    let jwks: Value = serde_json::from_slice(&body).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![env.key.kid(), second.kid()]);

    // Remove the second key file: its tokens fail after the reload, the first key's still work.
    std::fs::remove_file(&second_file).unwrap();
    eventually("the removed key to be dropped", || async {
        (gw.get(&path, Some(&new_token)).await.0 == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(gw.get(&path, Some(&old_token)).await.0, StatusCode::OK);

    // Replace the first key file's content with a third key (a rotated Secret).
    let third = key(KeyAlgorithm::EcdsaP256);
    std::fs::write(&env.key_file, third.public_key().to_pem()).unwrap();
    let third_token = mint(&third, &claims);
    eventually("the rotated key to be loaded", || async {
        (gw.get(&path, Some(&third_token)).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        gw.get(&path, Some(&old_token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("kube_gateway_key_reloads_total{result=\"success\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kube_gateway_key_reloads_total{result=\"failure\"}"),
        "{metrics}"
    );
    assert_no_token_logged();
}

#[tokio::test]
async fn static_files_are_public_typed_cached_and_confined_to_the_web_root() {
    let env = Env::new(vec![], vec![]).await;
    let public = env.dir.path().join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    std::fs::create_dir_all(public.join("noVNC")).unwrap();
    std::fs::write(public.join("index.html"), "<h1>login</h1>").unwrap();
    std::fs::write(public.join("k8sdemo.html"), "<h1>demo</h1>").unwrap();
    std::fs::write(public.join("noVNC/app.js"), "console.log(1)").unwrap();
    std::fs::write(public.join("sub/style.css"), "body{}").unwrap();
    std::fs::write(env.dir.path().join("secret.txt"), "outside the web root").unwrap();
    let gw = env.gateway().await;

    let (status, headers, body) = send(get(format!("{}/", gw.url))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_ref(), b"<h1>login</h1>");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(headers.contains_key("last-modified"));
    let (status, headers, _) = send(get(format!("{}/noVNC/app.js", gw.url))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Upstream treated /k8sdemo.html as an API path; it is a static file.
    assert_eq!(
        send(get(format!("{}/k8sdemo.html", gw.url))).await.0,
        StatusCode::OK
    );
    // No directory listing.
    assert_eq!(
        send(get(format!("{}/sub/", gw.url))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(get(format!("{}/missing.html", gw.url))).await.0,
        StatusCode::NOT_FOUND
    );
    // Traversal is impossible.
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/..%2fsecret.txt",
        "/sub/%2E%2E/%2E%2E/secret.txt",
        "//etc/passwd",
        "/sub\\..\\secret.txt",
    ] {
        let (status, _, body) = send(get(format!("{}{path}", gw.url))).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        assert!(!String::from_utf8_lossy(&body).contains("outside the web root"));
    }
    let req = Request::post(format!("{}/index.html", gw.url))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_no_token_logged();
}

#[tokio::test]
async fn health_readiness_and_bounded_metrics() {
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway().await;
    let (status, _, body) = send(get(format!("{}/healthz", gw.url))).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, b"ok".as_ref()));
    let (status, ready) = gw.readyz().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["checks"]["revocation"], "off");
    // Review §14: the public /readyz says ready or not, nothing about keys or the watch.
    let (status, _, body) = send(get(format!("{}/readyz", gw.url))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );
    let token = env.seed_token();
    gw.get(&Env::vmi_path(&env.ns, "testvm"), Some(&token))
        .await;
    gw.get(&Env::vmi_path(&env.ns, "othervm"), Some(&token))
        .await;
    gw.get(&Env::vmi_path(&env.ns, "testvm"), None).await;
    let metrics = gw.metrics().await;
    for expected in [
        "kube_gateway_requests_total{kind=\"api\",outcome=\"allowed\",reason=\"ok\"} 1",
        "kube_gateway_requests_total{kind=\"api\",outcome=\"denied\",reason=\"forbidden\"} 1",
        "kube_gateway_requests_total{kind=\"api\",outcome=\"denied\",reason=\"no_token\"} 1",
        "kube_gateway_request_duration_seconds_bucket",
        "kube_gateway_websocket_sessions 0",
        "kube_gateway_verification_keys 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert!(
        !metrics.contains(&env.ns) && !metrics.contains("testvm"),
        "paths or names used as labels"
    );
    // The metrics listener is separate from the main one.
    assert_eq!(
        send(get(format!("{}/metrics", gw.url))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_no_token_logged();
}

#[tokio::test]
async fn https_serving_sets_secure_cookies_and_reloads_its_certificate() {
    let env = Env::new(vec![], vec![]).await;
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let first = env.cp.ca().serving(&["localhost"], &[ip]).unwrap();
    let cert = env.dir.path().join("tls.crt");
    let key_file = env.dir.path().join("tls.key");
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key_file, &first.key_pem).unwrap();
    let mut args = env.args();
    args.retain(|a| !a.starts_with("-listen="));
    args.extend([
        "-listen=https://127.0.0.1:0".to_string(),
        format!("-cert-file={}", cert.display()),
        format!("-key-file={}", key_file.display()),
    ]);
    let gw = TestGateway::start(args).await;
    assert!(gw.url.starts_with("https://"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_der(env.cp.ca_pem())).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let token = env.seed_token();
    let uri = format!(
        "https://localhost:{}/auth/token?token={token}&then=/",
        gw.addr.port()
    );
    let response = client.request(get(uri)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let cookie = set_cookie(response.headers());
    assert!(
        cookie.starts_with(&format!("__Host-ocgate-session-token={token}; Path=/;"))
            && cookie.ends_with("; Secure"),
        "over HTTPS the session is the __Host- cookie: {cookie}"
    );

    let addr = gw.addr;
    let served = |tls: rustls::ClientConfig| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        stream.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    assert_eq!(served(tls.clone()).await, pem_der(&first.cert_pem).as_ref());
    let second = env.cp.ca().serving(&["localhost"], &[ip]).unwrap();
    std::fs::write(&key_file, &second.key_pem).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    let expected = pem_der(&second.cert_pem).as_ref().to_vec();
    eventually("the new certificate to be served", || {
        let tls = tls.clone();
        let expected = expected.clone();
        async move { (served(tls).await == expected).then_some(()) }
    })
    .await;
    assert_no_token_logged();
}

fn pem_der(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[tokio::test]
async fn passthrough_forwards_the_callers_token_unchecked() {
    let env = Env::new(vec![], vec![]).await;
    let cms = Api::<ConfigMap>::namespaced(env.cp.client().await, &env.ns);
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("cm1".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let reader = service_account(
        env.cp,
        &env.ns,
        "reader",
        vec![],
        vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }],
    )
    .await;
    wait_allowed(
        env.cp,
        &format!("system:serviceaccount:{}:reader", env.ns),
        "get",
        "",
        "configmaps",
        "",
        &env.ns,
    )
    .await;
    let args: Vec<String> = vec![
        "kube-gateway".into(),
        format!("-api-server={}", env.cp.api_server_url()),
        format!("-ca-file={}", env.ca_file.display()),
        "-oauth-server-disable".into(),
        "-listen=http://127.0.0.1:0".into(),
        "-k8s-bearer-token-passthrough=true".into(),
    ];
    let gw = TestGateway::start(args).await;
    let path = format!("/k8s/api/v1/namespaces/{}/configmaps/cm1", env.ns);
    let (status, _, body) = gw.get(&path, Some(&reader)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let cm: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(cm["metadata"]["name"], "cm1");
    // The API server decides with the caller's identity.
    let (status, _, body) = gw
        .get(
            &format!("/k8s/api/v1/namespaces/{}/secrets", env.ns),
            Some(&reader),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        status_of(&body)
            .0
            .contains(&format!("system:serviceaccount:{}:reader", env.ns))
    );
    let (status, _, _) = gw.get(&path, Some(&secret("not-a-valid-token"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = gw.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(status_of(&body).0.contains("no token"));
    // Paths must still be canonical.
    assert_eq!(
        gw.get(
            &format!("/k8s/api/v1/namespaces/{}/configmaps/../secrets", env.ns),
            Some(&reader)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    // Nothing is verified, so /auth/session has no session to describe (and never decodes the
    // unverified token): 404, and still 401 without a token.
    let (status, headers, body) = gw.session(Some(&reader), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(status_of(&body).1, "NotFound");
    assert!(session_refusal(&gw.session(None, None).await).contains("no token"));
    assert_no_token_logged();
}

#[tokio::test]
async fn startup_errors_are_clear() {
    init_logging();
    let missing = kube_gateway::Config::from_args([
        "kube-gateway",
        "-api-server=https://127.0.0.1:1",
        "-listen=http://127.0.0.1:0",
        "-jwt-token-key-file=/nonexistent/cert.pem",
    ])
    .unwrap();
    let err = kube_gateway::Gateway::bind(missing)
        .await
        .err()
        .expect("a missing key file is an error");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    let err = kube_gateway::Config::from_args([
        "kube-gateway",
        "-api-server=https://127.0.0.1:1",
        "-no-such-flag",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("no-such-flag"), "{err}");
}

/// Review §6: two GateServers sharing the namespace key. A token bound to server A is refused
/// by server B; tokens without `aud` (upstream operator, issued before audiences) keep working
/// unless B requires an audience.
#[tokio::test]
async fn a_token_for_one_gateway_is_refused_by_another_sharing_the_key() {
    let env = Env::new(vec![], vec![]).await;
    let aud = |name: &str| virt_gateway_api::names::gateserver_audience(&env.ns, name);
    let iss = virt_gateway_api::names::token_issuer(&env.ns);
    let gw_a = env
        .gateway_with(&[
            &format!("--audience={}", aud("a")),
            &format!("--issuer={iss}"),
        ])
        .await;
    let gw_b = env
        .gateway_with(&[
            &format!("--audience={}", aud("b")),
            &format!("--issuer={iss}"),
        ])
        .await;
    let strict_b = env
        .gateway_with(&[&format!("--audience={}", aud("b")), "--require-audience"])
        .await;
    let path = Env::vmi_path(&env.ns, "testvm");
    let mut claims = seed_claims(&env.ns, now() + 3600);
    let unbound = mint(&env.key, &claims);
    claims.aud = Some(vec![aud("a")]);
    claims.iss = Some(iss.clone());
    let for_a = mint(&env.key, &claims);
    claims.iss = Some("ocgate.yaacov.com/namespaces/elsewhere".into());
    let foreign_issuer = mint(&env.key, &claims);

    assert_eq!(gw_a.get(&path, Some(&for_a)).await.0, StatusCode::OK);
    assert_eq!(
        gw_b.get(&path, Some(&for_a)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        strict_b.get(&path, Some(&for_a)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        gw_a.get(&path, Some(&foreign_issuer)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gw_a.get(&path, Some(&unbound)).await.0, StatusCode::OK);
    assert_eq!(gw_b.get(&path, Some(&unbound)).await.0, StatusCode::OK);
    assert_eq!(
        strict_b.get(&path, Some(&unbound)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_no_token_logged();
}

/// Review §11: connections beyond --max-connections are answered 503 and closed, instead of
/// each getting a task without limit.
#[tokio::test]
async fn connections_over_the_cap_get_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new(vec![], vec![]).await;
    let gw = env.gateway_with(&["--max-connections=1"]).await;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    // The one allowed connection, held open (a request head not yet finished).
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = Vec::new();
    second.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    let line = gw.wait_audit(|l| l["event"] == "connection").await;
    assert_eq!(line["reason"], "too_many_connections");
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["status"], 503);
    // Once the first is done, a new connection is served.
    held.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = Vec::new();
    held.read_to_end(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("HTTP/1.1 200"));
    let (status, _, _) = send(get(format!("{}/healthz", gw.url))).await;
    assert_eq!(status, StatusCode::OK);
}
