//! The delegation rule end to end, with every part real (the control plane with the policy
//! installed from `deploy/crds`, the operator binary, the gateway run from the operator's
//! Deployment, the KubeVirt stand-in with real Xvnc servers), as a low-privileged user would try
//! it. The user is a ServiceAccount whose only permission is to create and read GateTokens in
//! the samples' namespace:
//!
//! 1. every attack of the security review's §1 is refused with a message naming what is
//!    missing: ServiceAccount mode for every Secret and for `nodes/proxy`, a JWT for `*`, and
//!    `/auth/gettoken` (through the gateway, with the user's own credentials) for `*`; nothing is
//!    stored, so no credential appears in any status;
//! 2. granted `get` on one VM's console, the same user gets a link that works for that VM (the
//!    RFB handshake through the gateway) and is refused for the other VM, both when creating the
//!    GateToken and when using the link;
//! 3. the seed samples, applied by the admin, are Ready as before (the stack waits for them).

mod common;

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kubevirt_standin::rfb::Client as Rfb;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use virt_gateway_api::GateToken;
use virt_gateway_api::admission::GATETOKEN_POLICY;
use virt_gateway_demo::stack::{SAMPLES_NAMESPACE, wait_token_ready};
use virt_gateway_demo::{Stack, StackOptions};
use virt_gateway_testenv::{ControlPlane, helpers};

use common::{build_prerequisites, repo, rule};

const TIMEOUT: Duration = Duration::from_secs(60);
const USER: &str = "console-delegate";
const VMS: &str = "default";

fn vnc_path(vm: &str) -> String {
    format!(
        "/k8s/apis/subresources.kubevirt.io/v1/namespaces/{VMS}/virtualmachineinstances/{vm}/vnc"
    )
}

async fn role(admin: &Client, ns: &str, name: &str, rules: Vec<PolicyRule>) {
    let meta = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..ObjectMeta::default()
    };
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta.clone(),
                rules: Some(rules),
            },
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta,
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: name.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: USER.into(),
                    namespace: Some(SAMPLES_NAMESPACE.into()),
                    api_group: None,
                }]),
            },
        )
        .await
        .unwrap();
}

/// Waits until RBAC lets the user `verb` `resource` named `name` in `ns`.
async fn wait_allowed(
    admin: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    ns: &str,
) {
    helpers::wait_allowed(
        admin,
        &format!("system:serviceaccount:{SAMPLES_NAMESPACE}:{USER}"),
        &["system:serviceaccounts", "system:authenticated"],
        helpers::resource_access(verb, group, resource, name, ns),
    )
    .await;
}

/// Creates a GateToken named `name` with `spec` as `client`: the API server's answer.
async fn create(client: &Client, name: &str, spec: Value) -> Result<(), (u16, String)> {
    let token: GateToken = serde_json::from_value(json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
        "metadata": {"name": name, "namespace": SAMPLES_NAMESPACE}, "spec": spec,
    }))
    .unwrap();
    Api::<GateToken>::namespaced(client.clone(), SAMPLES_NAMESPACE)
        .create(&PostParams::default(), &token)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(s) => (s.code, s.message),
            e => panic!("{e}"),
        })
}

fn assert_refused(result: Result<(), (u16, String)>, names: &str) {
    let (code, message) = result.expect_err("the delegation policy refuses it");
    assert_eq!(code, 403, "{message}");
    assert!(message.contains(GATETOKEN_POLICY), "{message}");
    assert!(message.contains(names), "expected {names:?} in: {message}");
}

/// A minimal HTTP/1.1 request to the gateway on loopback: status code and body.
async fn http(gateway: &str, method: &str, path: &str, bearer: &str, body: &str) -> (u16, String) {
    let authority = gateway.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("the gateway answers in time")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Opens `vm`'s VNC console through the gateway with `token`: the RFB handshake's screen width,
/// or the HTTP status the gateway refused the upgrade with.
async fn open_console(gateway: &str, token: &str, vm: &str) -> Result<u16, u16> {
    let url = format!("{}{}", gateway.replace("http://", "ws://"), vnc_path(vm));
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers.insert(
        "sec-websocket-protocol",
        "plain.kubevirt.io".parse().unwrap(),
    );
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the gateway answers in time")
    {
        Ok((ws, _)) => {
            let rfb = tokio::time::timeout(TIMEOUT, Rfb::handshake(ws))
                .await
                .expect("the VNC handshake in time")
                .expect("a VNC server answers through the gateway");
            Ok(rfb.server_init().width)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("WebSocket to {vm}: {e}"),
    }
}

async fn gatetoken_names(admin: &Client) -> Vec<String> {
    Api::<GateToken>::namespaced(admin.clone(), SAMPLES_NAMESPACE)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|t| t.metadata.name)
        .collect()
}

async fn user_token(cp: &ControlPlane, admin: &Client) -> String {
    let token = cp
        .service_account_token(SAMPLES_NAMESPACE, USER, 3600)
        .await;
    role(
        admin,
        SAMPLES_NAMESPACE,
        "gatetoken-creator",
        vec![rule(
            "ocgate.yaacov.com",
            &["gatetokens"],
            &["create", "get"],
            &[],
        )],
    )
    .await;
    wait_allowed(
        admin,
        "create",
        "ocgate.yaacov.com",
        "gatetokens",
        "",
        SAMPLES_NAMESPACE,
    )
    .await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_can_hand_out_only_the_console_they_may_open() {
    build_prerequisites();
    let repo = repo();
    let stack = Stack::start(StackOptions::from_repo(&repo), |step| {
        eprintln!("delegation e2e: {step}")
    })
    .await
    .unwrap_or_else(|e| panic!("the stack did not start: {e}"));
    let cp = stack.control_plane();
    let admin = cp.client().await;
    let gateway = stack.gateway_url().to_owned();
    let before = gatetoken_names(&admin).await;

    let bearer = user_token(cp, &admin).await;
    let user = cp.client_with_token(&bearer).await;

    // 1. The review's §1 attacks.
    for attack in helpers::delegation_attacks() {
        assert_refused(
            create(&user, attack.name, attack.spec).await,
            attack.refusal,
        );
    }
    let body = json!({
        "metadata": {"name": "gettoken-star", "namespace": SAMPLES_NAMESPACE},
        "spec": {"namespace": "*", "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    });
    let (code, answer) = http(
        &gateway,
        "POST",
        "/auth/gettoken",
        &bearer,
        &body.to_string(),
    )
    .await;
    assert_eq!(code, 403, "{answer}");
    let status: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(status["kind"], "Status", "{answer}");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains(GATETOKEN_POLICY), "{message}");
    assert!(message.contains(r#"grants "*" on "*""#), "{message}");
    // Nothing was stored, so no status holds a credential.
    assert_eq!(gatetoken_names(&admin).await, before);

    // 2. Granted one VM's console, the user hands out exactly that.
    role(
        &admin,
        VMS,
        "console-testvm",
        vec![rule(
            "subresources.kubevirt.io",
            &["virtualmachineinstances", "virtualmachineinstances/vnc"],
            &["get"],
            &["testvm"],
        )],
    )
    .await;
    wait_allowed(
        &admin,
        "get",
        "subresources.kubevirt.io",
        "virtualmachineinstances/vnc",
        "testvm",
        VMS,
    )
    .await;
    create(
        &user,
        "for-testvm",
        json!({"namespace": VMS, "resourceNames": ["testvm"], "durationSec": 600}),
    )
    .await
    .expect("the user may open testvm's console, so may hand it out");
    let token = wait_token_ready(&admin, SAMPLES_NAMESPACE, "for-testvm")
        .await
        .expect("the operator signs it");
    let width = open_console(&gateway, &token, "testvm")
        .await
        .expect("the link opens testvm");
    assert!(width > 0);
    assert_eq!(open_console(&gateway, &token, "testvm2").await, Err(403));
    assert_refused(
        create(
            &user,
            "for-testvm2",
            json!({"namespace": VMS, "resourceNames": ["testvm2"]}),
        )
        .await,
        r#"name "testvm2""#,
    );
    // /auth/gettoken, with the user's credentials, for what the user holds.
    let body = json!({
        "metadata": {"name": "gettoken-testvm", "namespace": SAMPLES_NAMESPACE},
        "spec": {"namespace": VMS, "resourceNames": ["testvm"], "durationSec": 600}
    });
    let (code, answer) = http(
        &gateway,
        "POST",
        "/auth/gettoken",
        &bearer,
        &body.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let object: Value = serde_json::from_str(&answer).unwrap();
    let minted = object["status"]["token"].as_str().unwrap().to_owned();
    assert!(open_console(&gateway, &minted, "testvm").await.is_ok());
    let body = json!({
        "metadata": {"name": "gettoken-testvm2", "namespace": SAMPLES_NAMESPACE},
        "spec": {"namespace": VMS, "resourceNames": ["testvm2"]}
    });
    let (code, answer) = http(
        &gateway,
        "POST",
        "/auth/gettoken",
        &bearer,
        &body.to_string(),
    )
    .await;
    assert_eq!(code, 403, "{answer}");
    assert!(answer.contains("testvm2"), "{answer}");

    stack.stop().await;
}
