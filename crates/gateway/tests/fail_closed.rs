//! Fail closed (issue 14 point 6, review §10): with the API server gone the gateway cannot see a
//! revocation, so after `--revocation-max-staleness` it refuses every token (503) and reports
//! unready, and it recovers when the API server returns. The API server is stopped for real, on a
//! control plane started for this test alone (the shared one serves other tests meanwhile).

mod common;

use common::*;
use http::StatusCode;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, PostParams};
use virt_gateway_api::{GateToken, GateTokenSpec};
use virt_gateway_auth::jwt::Claims;
use virt_gateway_auth::keys::KeyAlgorithm;
use virt_gateway_testenv::{ControlPlane, Options};

fn rule(group: &str, resource: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_api_server_the_gateway_refuses_every_token_after_the_grace_and_recovers() {
    init_logging();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut cp = ControlPlane::start(Options::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start this test's control plane: {e}"));
    install_crds(&cp).await;
    let ns = cp.fresh_namespace().await;
    let sa = service_account(
        &cp,
        &ns,
        "kube-gateway",
        vec![],
        vec![
            rule("ocgate.yaacov.com", "gatetokens", &["get", "list", "watch"]),
            rule("", "configmaps", &["list"]),
        ],
    )
    .await;
    let user = format!("system:serviceaccount:{ns}:kube-gateway");
    wait_allowed(
        &cp,
        &user,
        "watch",
        "ocgate.yaacov.com",
        "gatetokens",
        "",
        &ns,
    )
    .await;
    wait_allowed(&cp, &user, "list", "", "configmaps", "", &ns).await;
    let gatetoken = Api::<GateToken>::namespaced(cp.client().await, &ns)
        .create(
            &PostParams::default(),
            &GateToken::new(
                "viewer",
                GateTokenSpec {
                    namespace: ns.clone(),
                    ..GateTokenSpec::default()
                },
            ),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, cp.ca_pem()).unwrap();
    let sa_file = dir.path().join("sa-token");
    std::fs::write(&sa_file, format!("{sa}\n")).unwrap();
    let signing = key(KeyAlgorithm::EcdsaP256);
    let key_file = write_public_key(dir.path(), "cert.pem", &signing);
    let gw = TestGateway::start(vec![
        "kube-gateway".into(),
        format!("--api-server={}", cp.api_server_url()),
        format!("--ca-file={}", ca_file.display()),
        "--listen=http://127.0.0.1:0".into(),
        "--metrics-listen=127.0.0.1:0".into(),
        format!("--jwt-token-key-file={}", key_file.display()),
        format!("--k8s-bearer-token-file={}", sa_file.display()),
        format!("--public-dir={}", dir.path().join("public").display()),
        format!("--revocation-namespaces={ns}"),
        "--revocation-max-staleness=2s".into(),
        "--jwt-leeway=0s".into(),
    ])
    .await;
    let ready = || async {
        let (status, _) = gw.readyz().await;
        (status == StatusCode::OK).then_some(())
    };
    eventually("the revocation index to sync", ready).await;

    let mut claims = Claims::new(now() + 3600);
    claims.namespace = ns.clone();
    claims.api_groups = Some(vec!["".into()]);
    claims.resources = Some(vec!["configmaps".into()]);
    claims.verbs = vec!["list".into()];
    claims.jti = gatetoken.metadata.uid.clone();
    let token = mint(&signing, &claims);
    let path = format!("/k8s/api/v1/namespaces/{ns}/configmaps");
    assert_eq!(gw.get(&path, Some(&token)).await.0, StatusCode::OK);

    // The API server goes away: a revocation made now could not be seen.
    tokio::task::block_in_place(|| cp.stop_api_server());
    let (message, reason) = eventually("every token to be refused with 503", || async {
        let (status, _, body) = gw.get(&path, Some(&token)).await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then(|| status_of(&body))
    })
    .await;
    assert_eq!(reason, "ServiceUnavailable");
    assert!(message.contains("out of date"), "{message}");
    let (status, detail) = gw.readyz().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{detail}");
    let (status, _, _) = gw.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "public /readyz");
    let line = gw.wait_audit(|l| l["reason"] == "revocation_stale").await;
    assert_eq!(line["status"], 503);
    assert_eq!(line["jti"].as_str(), gatetoken.metadata.uid.as_deref());

    // It returns: the watch lists again, and the token works again.
    cp.restart_api_server()
        .await
        .unwrap_or_else(|e| panic!("cannot restart the API server: {e}"));
    eventually("the gateway to be ready again", ready).await;
    eventually("the token to be served again", || async {
        (gw.get(&path, Some(&token)).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(gw.get("/readyz", None).await.0, StatusCode::OK);
    assert_no_token_logged();
}
