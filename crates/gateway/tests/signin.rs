//! Signing in with the identity provider, against a real Dex and the real kube-apiserver that
//! trusts it, driven as a browser and as an attacker would: Dex's own login form, the gateway's
//! cookies kept by a small cookie jar, and every answer an attacker could tamper with or replay.
//!
//! Dex redirects to `GATEWAY_CALLBACK` (the gateway's public URL behind a route); the test's
//! "browser" takes that redirect's path and query to the gateway's real loopback address.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::{TestGateway, init_logging, key, send, service_account, write_public_key};
use http::{Request, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube_gateway::oidc::{Protocol, Provider, SignInConfig};
use kube_gateway::seal::Sealer;
use kube_gateway::signin::{SESSION_COOKIE, Session};
use serde_json::{Value, json};
use url::Url;
use virt_gateway_auth::keys::KeyAlgorithm;
use virt_gateway_testenv::identity_provider::{CLIENT_ID, SECOND_USER_EMAIL, USER_EMAIL};
use virt_gateway_testenv::{ControlPlane, IdentityProvider, Login, Options, ProviderSettings};

const GATEWAY_CALLBACK: &str = "https://gateway.virt-gateway.test/auth/callback";
const SSR_PATH: &str = "/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews";

async fn cp() -> &'static ControlPlane {
    let settings = |name: &str, lifetime: &str| ProviderSettings {
        id_token_lifetime: lifetime.to_string(),
        redirect_uris: vec![GATEWAY_CALLBACK.to_string()],
        ..ProviderSettings::new(name)
    };
    ControlPlane::shared_with(Options {
        identity_providers: vec![settings("dex", "1h"), settings("expired", "-1h")],
        ..Options::default()
    })
    .await
}

fn alice(idp: &IdentityProvider) -> Login<'_> {
    Login::Password {
        email: USER_EMAIL,
        password: idp.user_password(),
    }
}

/// A gateway signing in with one provider, its files, and a namespace whose configmaps the
/// gateway's own ServiceAccount may list (so a request forwarded with the gateway's token
/// instead of the person's would succeed where the person must be refused).
struct Setup {
    cp: &'static ControlPlane,
    ns: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(provider: &str) -> Self {
        init_logging();
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cp = cp().await;
        let idp = cp.identity_provider(provider).expect("provider started");
        let ns = cp.fresh_namespace().await;
        let dir = tempfile::tempdir().unwrap();
        let list_configmaps = PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        };
        let sa = service_account(cp, &ns, "kube-gateway", vec![], vec![list_configmaps]).await;
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path.display().to_string()
        };
        write("sa-token", &sa);
        write("ca.crt", cp.ca_pem());
        write("idp-ca.crt", idp.ca_pem());
        write("client-secret", &idp.client().secret);
        write("signin-key", "test-sealing-key-0123456789abcdef0123456789");
        write_public_key(dir.path(), "jwt.pem", &key(KeyAlgorithm::EcdsaP256));
        Self { cp, ns, dir }
    }

    async fn gateway(&self, provider: &str) -> TestGateway {
        TestGateway::start(self.args(provider)).await
    }

    fn args(&self, provider: &str) -> Vec<String> {
        let idp = self.cp.identity_provider(provider).unwrap();
        let p = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "kube-gateway".into(),
            format!("-api-server={}", self.cp.api_server_url()),
            format!("-ca-file={}", p("ca.crt")),
            "-oauth-server-disable".into(),
            "-listen=http://127.0.0.1:0".into(),
            format!("-jwt-token-key-file={}", p("jwt.pem")),
            format!("-k8s-bearer-token-file={}", p("sa-token")),
            format!("--public-dir={}", p("public")),
            format!("--oidc-issuer-url={}", idp.issuer()),
            format!("--oidc-client-id={CLIENT_ID}"),
            format!("--oidc-client-secret-file={}", p("client-secret")),
            "--oidc-scopes=openid,email,profile,groups,offline_access".into(),
            format!("--signin-redirect-url={GATEWAY_CALLBACK}"),
            format!("--signin-ca-file={}", p("idp-ca.crt")),
            format!("--signin-key-file={}", p("signin-key")),
        ]
    }

    fn sealer(&self) -> Sealer {
        Sealer::load(&self.dir.path().join("signin-key")).unwrap()
    }
}

/// A browser's view of the gateway: a cookie jar and plain HTTP to its loopback address.
#[derive(Clone)]
struct Browser {
    base: String,
    jar: HashMap<String, String>,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
}

impl Browser {
    fn new(gateway: &TestGateway) -> Self {
        Self {
            base: gateway.url.clone(),
            jar: HashMap::new(),
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", cookies.join("; "));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let (status, headers, body) = send(req.body(Full::new(body)).unwrap()).await;
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_string(), value.to_string());
            }
        }
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.request("GET", path, None, &[]).await
    }

    /// `/auth/login`, then Dex's pages up to its redirect back (not yet delivered).
    async fn start_sign_in(&mut self, idp: &IdentityProvider, login: Login<'_>) -> Url {
        let authorization = self.authorization_url().await;
        idp.authorize(authorization.as_str(), login, GATEWAY_CALLBACK)
            .await
            .expect("Dex's login form lets alice through")
    }

    async fn authorization_url(&mut self) -> Url {
        let answer = self.get("/auth/login?then=/vms.html").await;
        assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
        Url::parse(answer.location()).unwrap()
    }

    /// Delivers the provider's redirect to the gateway.
    async fn deliver(&mut self, callback: &Url) -> Answer {
        let path = format!(
            "{}?{}",
            callback.path(),
            callback.query().unwrap_or_default()
        );
        self.get(&path).await
    }

    async fn sign_in(&mut self, idp: &IdentityProvider, login: Login<'_>) {
        let callback = self.start_sign_in(idp, login).await;
        let answer = self.deliver(&callback).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
        assert_eq!(answer.location(), "/vms.html");
        assert!(
            self.jar.contains_key(SESSION_COOKIE),
            "{:?}",
            answer.headers
        );
    }

    /// Who the API server says the request acts as, through the gateway.
    async fn who_am_i(&mut self) -> Answer {
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        self.request("POST", SSR_PATH, Some(review), &[]).await
    }
}

fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

fn username(review: &Value) -> &str {
    review["status"]["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_person_signs_in_and_kubernetes_sees_the_person_not_the_gateway() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    // A gateway-token cookie left by an earlier share link would win over the session.
    browser
        .jar
        .insert("ocgate-session-token".into(), "stale.share.link".into());
    browser.sign_in(idp, alice(idp)).await;
    assert!(!browser.jar.contains_key("ocgate-session-token"));

    let answer = browser.who_am_i().await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(username(&answer.json()), idp.kubernetes_username());

    // The gateway's ServiceAccount may list configmaps here; the person may not, and
    // Kubernetes refuses the person.
    let answer = browser
        .get(&format!("/k8s/api/v1/namespaces/{}/configmaps", s.ns))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert!(
        answer.text().contains(&idp.kubernetes_username()),
        "{}",
        answer.text()
    );
    // The audit names the person for their sign-in and for each request made with the session.
    let signed_in = gw
        .wait_audit(|l| l["path"] == "/auth/callback" && l["decision"] == "allow")
        .await;
    assert_eq!(signed_in["user"], USER_EMAIL);
    let configmaps = format!("/k8s/api/v1/namespaces/{}/configmaps", s.ns);
    let request = gw.wait_audit(|l| l["path"] == configmaps.as_str()).await;
    assert_eq!(request["user"], USER_EMAIL, "{request}");
    assert_eq!(request["upstream_status"], 403, "{request}");
    assert!(request.get("jti").is_none(), "{request}");

    // The page learns who is signed in, never a token.
    let me = browser.get("/auth/me").await;
    assert_eq!(me.status, StatusCode::OK);
    let body = me.json();
    assert_eq!(body["signedIn"], true);
    assert_eq!(body["mode"], "oidc");
    assert_eq!(body["username"], USER_EMAIL);
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "groups",
            "mode",
            "sessionEnds",
            "signInAvailable",
            "signedIn",
            "username"
        ]
    );

    // Signing out ends it.
    let out = browser.get("/auth/logout").await;
    assert_eq!(out.status, StatusCode::FOUND);
    let signed_out = gw.wait_audit(|l| l["path"] == "/auth/logout").await;
    assert_eq!(
        signed_out["user"], USER_EMAIL,
        "the audit says who signed out"
    );
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert_eq!(browser.who_am_i().await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.get("/auth/me").await.json()["signedIn"], false);
}

#[tokio::test]
async fn the_session_survives_a_restart_and_works_on_another_replica() {
    let s = Setup::new("dex").await;
    let mut gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    browser.sign_in(idp, alice(idp)).await;
    gw.shutdown().await;
    // Another process with the same key file: no shared store needed.
    let replica = TestGateway::start(s.args("dex")).await;
    browser.base = replica.url.clone();
    let answer = browser.who_am_i().await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(username(&answer.json()), idp.kubernetes_username());
}

#[tokio::test]
async fn a_tampered_state_is_refused() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    let callback = browser.start_sign_in(idp, alice(idp)).await;
    let answer = browser
        .deliver(&with_param(&callback, "state", "attacker-state"))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert!(answer.text().contains("state"), "{}", answer.text());
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert_eq!(browser.who_am_i().await.status, StatusCode::UNAUTHORIZED);
}

/// Login CSRF: the attacker's own (valid) callback delivered to the victim's browser, which
/// never started that sign-in.
#[tokio::test]
async fn an_answer_for_another_browser_is_refused() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut attacker = Browser::new(&gw);
    let callback = attacker.start_sign_in(idp, alice(idp)).await;
    let mut victim = Browser::new(&gw);
    let answer = victim.deliver(&callback).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert!(!victim.jar.contains_key(SESSION_COOKIE));
    // The victim's own sign-in in progress does not help the attacker either.
    victim.authorization_url().await;
    let answer = victim.deliver(&callback).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    assert!(!victim.jar.contains_key(SESSION_COOKIE));
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    let callback = browser.start_sign_in(idp, alice(idp)).await;
    // Someone who captured the browser's cookies and the callback URL replays both.
    let mut replayer = browser.clone();
    let first = browser.deliver(&callback).await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.text());
    let replay = replayer.deliver(&callback).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.text());
    assert!(!replayer.jar.contains_key(SESSION_COOKIE));
}

/// The attacker saw the victim's authorization URL (state, PKCE challenge) and signs in at the
/// provider with it but another nonce; state and PKCE then match, the nonce does not.
#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    let authorization = browser.authorization_url().await;
    let forged = with_param(&authorization, "nonce", "attacker-nonce");
    let callback = idp
        .authorize(forged.as_str(), alice(idp), GATEWAY_CALLBACK)
        .await
        .unwrap();
    let answer = browser.deliver(&callback).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    assert!(answer.text().contains("nonce"), "{}", answer.text());
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
}

/// A code issued to another client cannot be redeemed, and an ID token issued to another
/// client (a real Dex token for `another-app`) is refused by the gateway's own check.
#[tokio::test]
async fn tokens_of_another_client_are_refused() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    let authorization = browser.authorization_url().await;
    let other = with_param(&authorization, "client_id", &idp.other_client().id);
    let callback = idp
        .authorize(other.as_str(), alice(idp), GATEWAY_CALLBACK)
        .await
        .unwrap();
    let answer = browser.deliver(&callback).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    assert!(!browser.jar.contains_key(SESSION_COOKIE));

    let config = SignInConfig {
        protocol: Protocol::Oidc {
            issuer: idp.issuer().to_string(),
        },
        client_id: CLIENT_ID.to_string(),
        client_secret: kube_gateway::oidc::ClientSecret::File(s.dir.path().join("client-secret")),
        scopes: vec!["openid".into()],
        username_claim: "email".into(),
        groups_claim: "groups".into(),
        redirect_url: GATEWAY_CALLBACK.into(),
        ca_file: Some(s.dir.path().join("idp-ca.crt")),
        session_key_file: s.dir.path().join("signin-key"),
        session_max_age: std::time::Duration::from_secs(3600),
    };
    let provider = Provider::new(config, None).unwrap();
    let ours = idp
        .sign_in(idp.client(), alice(idp))
        .await
        .unwrap()
        .id_token;
    let who = provider
        .verify_id_token(&ours, None, std::time::Duration::ZERO)
        .await
        .expect("our client's token verifies");
    assert_eq!(who.username, USER_EMAIL);
    let theirs = idp
        .sign_in(idp.other_client(), alice(idp))
        .await
        .unwrap()
        .id_token;
    let refused = provider
        .verify_id_token(&theirs, None, std::time::Duration::ZERO)
        .await
        .expect_err("another client's token");
    assert!(refused.to_string().contains("another client"), "{refused}");
    // The right token with a nonce the sign-in did not send.
    let refused = provider
        .verify_id_token(&ours, Some("not-this-one"), std::time::Duration::ZERO)
        .await
        .expect_err("wrong nonce");
    assert!(refused.to_string().contains("nonce"), "{refused}");
}

#[tokio::test]
async fn forged_and_tampered_session_cookies_are_refused() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    browser.sign_in(idp, alice(idp)).await;
    let genuine = browser.jar[SESSION_COOKIE].clone();
    let session: Session = s.sealer().open(SESSION_COOKIE, &genuine).unwrap();

    let mut flipped = genuine.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let other_key = Sealer::new(b"an attacker's key, thirty-two bytes or more").unwrap();
    let forgeries = [
        String::from_utf8(flipped).unwrap(),
        // The person's real session, sealed with another key.
        other_key.seal(SESSION_COOKIE, &session).unwrap(),
        // The bare ID token in the cookie.
        session.bearer.clone(),
        "garbage".to_string(),
    ];
    for forged in forgeries {
        let mut attacker = Browser::new(&gw);
        attacker.jar.insert(SESSION_COOKIE.into(), forged);
        let answer = attacker.who_am_i().await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
        assert!(answer.text().contains("sign in again"), "{}", answer.text());
        // Nor can a forgery make the audit name the person as signing out.
        assert_eq!(attacker.get("/auth/logout").await.status, StatusCode::FOUND);
    }
    // A line is written when its response ends, which may be just after the client has it.
    let logouts = || -> Vec<Value> {
        gw.audit_lines()
            .into_iter()
            .filter(|l| l["path"] == "/auth/logout")
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logouts().len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logouts = logouts();
    assert_eq!(logouts.len(), 4);
    assert!(
        logouts.iter().all(|l| l.get("user").is_none()),
        "{logouts:?}"
    );
    // A second, different session cookie tossed in next to the genuine one.
    let mut tossed = browser.clone();
    let answer = tossed
        .request(
            "POST",
            SSR_PATH,
            Some(json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1"})),
            &[(
                "cookie",
                &format!(
                    "{SESSION_COOKIE}={}",
                    other_key.seal(SESSION_COOKIE, &session).unwrap()
                ),
            )],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    // A page of another site using the person's cookie.
    let answer = browser
        .request(
            "POST",
            SSR_PATH,
            Some(json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1"})),
            &[("origin", "https://evil.example.com")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    // The genuine cookie still works.
    assert_eq!(browser.who_am_i().await.status, StatusCode::CREATED);
    assert_no_secret_logged(&[
        &session.bearer,
        session.refresh.as_deref().unwrap_or("refresh"),
        &idp.client().secret,
        idp.user_password(),
        &genuine,
    ]);
}

/// Neither the gateways' logs nor their audit lines hold any of `secrets`.
fn assert_no_secret_logged(secrets: &[&str]) {
    let logs = String::from_utf8_lossy(&common::LOGS.lock().unwrap()).into_owned();
    let audit = common::AUDIT.lock().unwrap().join("\n");
    for secret in secrets {
        assert!(secret.len() > 8);
        assert!(!logs.contains(secret), "a secret reached the log");
        assert!(!audit.contains(secret), "a secret reached the audit log");
    }
}

#[tokio::test]
async fn expired_sessions_are_refused_and_live_ones_are_refreshed() {
    let s = Setup::new("dex").await;
    let gw = s.gateway("dex").await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    // Not alice: another test's sign-in as alice would delete this session's refresh token at
    // Dex (one per user and client) before the refresh below.
    let bob = Login::Password {
        email: SECOND_USER_EMAIL,
        password: idp.user_password(),
    };
    browser.sign_in(idp, bob).await;
    let sealer = s.sealer();
    let session: Session = sealer
        .open(SESSION_COOKIE, &browser.jar[SESSION_COOKIE])
        .unwrap();
    assert!(
        session.refresh.is_some(),
        "offline_access gives a refresh token"
    );
    let now = common::now();
    let with = |f: &dyn Fn(&mut Session)| {
        let mut s = session.clone();
        f(&mut s);
        sealer.seal(SESSION_COOKIE, &s).unwrap()
    };
    // Past the session's end: refused whatever the tokens.
    let ended = with(&|s| s.ends = now - 1);
    // The ID token expired and there is no refresh token: refused.
    let stale = with(&|s| {
        s.bearer_exp = now - 1;
        s.refresh = None;
    });
    for cookie in [ended, stale] {
        let mut b = Browser::new(&gw);
        b.jar.insert(SESSION_COOKIE.into(), cookie);
        let answer = b.who_am_i().await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    }
    // About to expire with a refresh token: refreshed at Dex, a new cookie comes back.
    let due = with(&|s| s.bearer_exp = now + 5);
    let mut b = Browser::new(&gw);
    b.jar.insert(SESSION_COOKIE.into(), due.clone());
    let answer = b.who_am_i().await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let renewed: Session = sealer.open(SESSION_COOKIE, &b.jar[SESSION_COOKIE]).unwrap();
    // Dex rotates the refresh token on every refresh (the ID token may be byte-identical when
    // the refresh falls in the second of the sign-in: same claims, deterministic signature).
    assert_ne!(
        renewed.refresh, session.refresh,
        "refreshed at the provider"
    );
    assert!(renewed.bearer_exp > now + 60);
    assert_eq!(
        renewed.ends, session.ends,
        "refreshing does not lengthen the session"
    );

    // A provider whose ID tokens are expired when issued: the sign-in itself is refused.
    let expired = cp().await.identity_provider("expired").unwrap();
    let mut args = s.args("expired");
    let secret = s.dir.path().join("expired-secret");
    std::fs::write(&secret, &expired.client().secret).unwrap();
    args.retain(|a| !a.starts_with("--oidc-client-secret-file"));
    args.push(format!("--oidc-client-secret-file={}", secret.display()));
    let gateway = TestGateway::start(args).await;
    let mut browser = Browser::new(&gateway);
    let callback = browser.start_sign_in(expired, alice(expired)).await;
    let answer = browser.deliver(&callback).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    assert!(answer.text().contains("expired"), "{}", answer.text());
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
}

/// The upstream (Gen B) OpenShift OAuth flags, against a real OAuth 2.0 server (Dex): the
/// access token is the person's credential, checked by the API server, which names the person.
fn oauth_args(s: &Setup, discovered: bool) -> Vec<String> {
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut args: Vec<String> = s
        .args("dex")
        .into_iter()
        .filter(|a| !a.starts_with("--oidc-") && a != "-oauth-server-disable")
        .collect();
    if !discovered {
        args.push(format!("-oauth-server-auth-url={}/auth", idp.issuer()));
        args.push(format!("-oauth-server-token-url={}/token", idp.issuer()));
    }
    args.push(format!("-oauth-client-id={CLIENT_ID}"));
    args.push(format!("-oauth-client-secret={}", idp.client().secret));
    // Dex refuses OpenShift's user:full; it is the default for the OpenShift OAuth server.
    args.push("--oauth-scopes=openid,email,profile".into());
    args
}

#[tokio::test]
async fn openshift_oauth_sign_in_with_the_upstream_flags() {
    let s = Setup::new("dex").await;
    let gw = TestGateway::start(oauth_args(&s, false)).await;
    let idp = s.cp.identity_provider("dex").unwrap();
    let mut browser = Browser::new(&gw);
    // A random state and PKCE, unlike upstream's constant "sessionID".
    let first = browser.clone().authorization_url().await;
    let second = browser.clone().authorization_url().await;
    let param = |u: &Url, k: &str| {
        u.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_ne!(param(&first, "state"), param(&second, "state"));
    assert_eq!(
        param(&first, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(param(&first, "nonce"), None);

    browser.sign_in(idp, alice(idp)).await;
    let answer = browser.who_am_i().await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(username(&answer.json()), idp.kubernetes_username());
    let me = browser.get("/auth/me").await.json();
    assert_eq!(me["mode"], "oauth");
    assert_eq!(me["username"], idp.kubernetes_username().as_str());

    // The same attacks as with OIDC: another state, another browser.
    let mut victim = Browser::new(&gw);
    let callback = victim.start_sign_in(idp, alice(idp)).await;
    let answer = victim
        .deliver(&with_param(&callback, "state", "sessionID"))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
    let answer = Browser::new(&gw).deliver(&callback).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text());
}

/// Without the endpoint flags they are discovered from the API server's
/// /.well-known/oauth-authorization-server; a plain Kubernetes API server has none, and the
/// person gets a page saying so (upstream answered 401 with a Location browsers do not follow).
#[tokio::test]
async fn openshift_oauth_endpoints_come_from_the_api_server() {
    let s = Setup::new("dex").await;
    let gw = TestGateway::start(oauth_args(&s, true)).await;
    let answer = Browser::new(&gw).get("/auth/login").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("/.well-known/oauth-authorization-server"),
        "{}",
        answer.text()
    );
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}
