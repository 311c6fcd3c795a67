//! `kubectl-gate` as users run it: the built binary against the real test control plane
//! (kube-apiserver, etcd, kube-controller-manager), with the operator running in-process so that
//! tokens are really signed, and once through kubectl's own plugin discovery.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use virt_gateway_api::{GateServer, GateToken};
use virt_gateway_auth::authz::authorize;
use virt_gateway_auth::jwt::{TokenError, Verifier};
use virt_gateway_auth::request;

const ROUTE: &str = "gw.apps.example.com";

fn vnc(ns: &str, vm: &str) -> String {
    format!("/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{vm}/vnc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_a_link_that_opens_only_this_vms_console() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;

    let before = unix_now();
    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "-n",
            "vms",
            "--server-namespace",
            &gw,
            "--duration",
            "30m",
        ],
    )
    .await;
    let stdout = out.ok();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the link on stdout: {out:#?}"
    );
    let (base, token, then) = parse_link(stdout.trim_end());
    assert_eq!(base, format!("https://{ROUTE}"));
    assert_eq!(
        then,
        "/noVNC/vnc_lite.html?path=k8s/apis/subresources.kubevirt.io/v1/namespaces/vms/virtualmachineinstances/testvm/vnc"
    );
    assert!(
        out.stderr
            .contains("is Ready: console of VM vms/testvm, valid until"),
        "{out:#?}"
    );

    // The GateToken it created and waited for.
    let all = tokens(&client, &gw).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    let tok = &all[0];
    let suffix = tok
        .name_any()
        .strip_prefix("testvm-console-")
        .map(str::to_owned);
    assert!(
        suffix.as_deref().is_some_and(|s| s.len() == 5
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())),
        "name <vm>-console-<random5>: {}",
        tok.name_any()
    );
    assert_eq!(tok.labels()["ocgate.yaacov.com/vm"], "testvm");
    assert_eq!(tok.labels()["app.kubernetes.io/created-by"], "kubectl-gate");
    assert_eq!(phase(tok), "Ready");
    assert_eq!(tok.status.as_ref().unwrap().token, token);

    // The token verifies with the GateServer's public key and grants exactly one console.
    let claims = verify(&client, &gw, &token, unix_now()).await.claims;
    assert_eq!(claims.namespace, "vms");
    assert_eq!(claims.verbs, ["get"]);
    assert_eq!(
        claims.api_groups,
        Some(vec!["subresources.kubevirt.io".to_owned()])
    );
    assert_eq!(
        claims.resources,
        Some(vec!["virtualmachineinstances/vnc".to_owned()])
    );
    assert_eq!(claims.resource_names, Some(vec!["testvm".to_owned()]));
    assert_eq!(claims.non_resource_urls, None);
    let nbf = claims.nbf.expect("nbf");
    assert!(nbf + 5 >= before && nbf <= unix_now(), "nbf {nbf} is now");
    assert_eq!(claims.exp - nbf, 1800, "--duration 30m");
    assert_eq!(
        claims.jti.as_deref(),
        tok.uid().as_deref(),
        "jti is the GateToken's UID"
    );
    let allowed = request::parse("GET", &vnc("vms", "testvm"), None).unwrap();
    authorize(&claims, &allowed).unwrap();
    for (what, path) in [
        ("another VM", vnc("vms", "othervm")),
        ("another namespace", vnc("default", "testvm")),
        (
            "the serial console",
            "/apis/subresources.kubevirt.io/v1/namespaces/vms/virtualmachineinstances/testvm/console".to_owned(),
        ),
        (
            "the VMI object",
            "/apis/kubevirt.io/v1/namespaces/vms/virtualmachineinstances/testvm".to_owned(),
        ),
    ] {
        let req = request::parse("GET", &path, None).unwrap();
        assert!(authorize(&claims, &req).is_err(), "{what} must be refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_outputs_token_json_yaml_and_a_later_start() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    let base = ["--server-namespace", gw.as_str(), "-n", "vms"];

    let args = |extra: &[&'static str]| {
        let mut a = vec!["token", "testvm"];
        a.extend(base);
        a.extend_from_slice(extra);
        a
    };
    let out = gate(cp, &args(&["-o", "token", "--name", "t-raw"])).await;
    let raw = out.ok().trim_end().to_owned();
    let tok = get_token(&client, &gw, "t-raw").await.unwrap();
    assert_eq!(raw, tok.status.unwrap().token);
    verify(&client, &gw, &raw, unix_now()).await;

    let out = gate(cp, &args(&["-o", "json", "--name", "t-json"])).await;
    let printed: GateToken = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(printed.name_any(), "t-json");
    assert_eq!(printed.metadata.managed_fields, None);
    let status = printed.status.unwrap();
    assert_eq!(status.phase, "Ready");
    verify(&client, &gw, &status.token, unix_now()).await;

    let out = gate(
        cp,
        &args(&["-o", "yaml", "--name", "t-yaml", "--duration", "2h"]),
    )
    .await;
    let printed: GateToken = serde_yaml::from_str(out.ok()).unwrap();
    assert_eq!(printed.spec.duration_sec, 7200);
    assert_eq!(printed.status.unwrap().phase, "Ready");

    // A link for later is printed at once, while the token is Pending.
    let started = Instant::now();
    let out = gate(
        cp,
        &args(&["-o", "json", "--name", "t-later", "--from", "+1h"]),
    )
    .await;
    let printed: GateToken = serde_json::from_str(out.ok()).unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    let status = printed.status.unwrap();
    assert_eq!(status.phase, "Pending");
    assert!(
        out.stderr
            .contains("is Pending: console of VM vms/testvm, valid from"),
        "{out:#?}"
    );
    let now = unix_now();
    assert!(
        status.data.nbf >= i64::try_from(now).unwrap() + 3500,
        "{:?}",
        status.data
    );
    let claims = verify(
        &client,
        &gw,
        &status.token,
        u64::try_from(status.data.nbf).unwrap(),
    )
    .await
    .claims;
    assert_eq!(claims.exp - claims.nbf.unwrap(), 3600);
    // ... and is not valid yet.
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &gw)
        .get(virt_gateway_api::JWT_SECRET_NAME)
        .await
        .unwrap();
    let pem = &secret.data.unwrap()[virt_gateway_api::JWT_SECRET_PUBLIC_KEY].0;
    let verifier = Verifier::new([virt_gateway_auth::keys::PublicKey::from_pem(pem).unwrap()]);
    assert!(matches!(
        verifier.verify(&status.token, now),
        Err(TokenError::NotYetValid { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_env_context_and_namespace_are_honoured() {
    let (cp, client, gw) = setup().await;
    let empty = cp.fresh_namespace().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "only", json!({"route": ROUTE})).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "config",
        &cp.kubeconfig_for(admin_user(cp), &[("in-gw", &gw), ("in-empty", &empty)]),
    );
    let env = [("KUBECONFIG", path.to_str().unwrap())];

    // $KUBECONFIG, its current context's namespace: the only GateServer there is used, and
    // without -n the VM is in that namespace too.
    let out = run(
        &binary(),
        &["token", "testvm", "-o", "json", "--name", "from-env"],
        &env,
    )
    .await;
    let printed: GateToken = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(printed.namespace().as_deref(), Some(gw.as_str()));
    assert_eq!(
        printed.spec.namespace, gw,
        "the VM namespace defaults to the context's"
    );
    let out = run(
        &binary(),
        &[
            "token", "testvm", "-n", "vms", "-o", "json", "--name", "with-n",
        ],
        &env,
    )
    .await;
    let printed: GateToken = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(
        printed.namespace().as_deref(),
        Some(gw.as_str()),
        "-n does not move the token"
    );
    assert_eq!(printed.spec.namespace, "vms");

    // --context: another namespace, with no GateServer; the error says where one is.
    let out = run(
        &binary(),
        &["token", "testvm", "--context", "in-empty"],
        &env,
    )
    .await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!("no GateServer in namespace {empty}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{gw}/only")),
        "names the GateServer elsewhere: {err}"
    );
    assert!(err.contains("--server"), "{err}");

    // servers and list use the context's namespace as well.
    let out = run(&binary(), &["servers"], &env).await;
    assert!(out.ok().lines().any(|l| l.starts_with("only ")), "{out:#?}");
    let out = run(&binary(), &["list"], &env).await;
    assert!(out.ok().contains("from-env"), "{out:#?}");
    let out = run(&binary(), &["servers", "--context", "in-empty"], &env).await;
    assert_eq!(out.ok(), "");
    assert!(
        out.stderr
            .contains(&format!("No GateServers found in namespace {empty}.")),
        "{out:#?}"
    );

    // --kubeconfig wins over $KUBECONFIG; broken configurations are named.
    let out = run(
        &binary(),
        &["servers", "--kubeconfig", "/nonexistent/config"],
        &env,
    )
    .await;
    let err = out.fails(1);
    assert!(err.contains("--kubeconfig /nonexistent/config"), "{err}");
    let out = run(&binary(), &["servers", "--context", "nope"], &env).await;
    let err = out.fails(1);
    assert!(
        err.contains("cannot load the Kubernetes client configuration") && err.contains("nope"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_gateservers_need_a_choice() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "b", json!({"route": "b.apps.example.com"})).await;
    ready_server(&client, &gw, "a", json!({"route": "a.apps.example.com"})).await;

    let out = gate(cp, &["token", "testvm", "--server-namespace", &gw]).await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!(
            "2 GateServers in namespace {gw}: a, b; choose one with --server NAME"
        )),
        "{err}"
    );
    assert!(tokens(&client, &gw).await.is_empty(), "nothing created");

    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "--server-namespace",
            &gw,
            "--server",
            "b",
        ],
    )
    .await;
    assert_eq!(
        parse_link(out.ok().trim_end()).0,
        "https://b.apps.example.com"
    );
    let qualified = format!("{gw}/a");
    let out = gate(cp, &["token", "testvm", "--server", &qualified]).await;
    assert_eq!(
        parse_link(out.ok().trim_end()).0,
        "https://a.apps.example.com"
    );

    let missing = format!("{gw}/c");
    let out = gate(cp, &["token", "testvm", "--server", &missing]).await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!(
            "GateServer c not found in namespace {gw}; there: a, b"
        )),
        "{err}"
    );
    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "--server",
            &missing,
            "--server-namespace",
            "other",
        ],
    )
    .await;
    let err = out.fails(2);
    assert!(err.contains("but --server-namespace is other"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateserver_without_route_needs_a_gateway_url() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "noroute", json!({})).await;

    let out = gate(cp, &["token", "testvm", "--server-namespace", &gw]).await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!("GateServer {gw}/noroute has no route")),
        "{err}"
    );
    assert!(err.contains("--gateway-url"), "{err}");
    assert!(
        tokens(&client, &gw).await.is_empty(),
        "checked before creating anything"
    );

    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "--server-namespace",
            &gw,
            "--gateway-url",
            "http://127.0.0.1:8080/",
        ],
    )
    .await;
    let (base, token, _) = parse_link(out.ok().trim_end());
    assert_eq!(base, "http://127.0.0.1:8080");
    verify(&client, &gw, &token, unix_now()).await;

    // The upstream form on request: the same token, in the query of /auth/token.
    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "--server-namespace",
            &gw,
            "--gateway-url",
            "http://127.0.0.1:8080/",
            "--query-link",
        ],
    )
    .await;
    let (base, token, then) = parse_query_link(out.ok().trim_end());
    assert_eq!(base, "http://127.0.0.1:8080");
    assert!(then.starts_with("/noVNC/vnc_lite.html?path=k8s/"), "{then}");
    verify(&client, &gw, &token, unix_now()).await;

    let out = gate(
        cp,
        &["token", "testvm", "--server-namespace", &gw, "-o", "token"],
    )
    .await;
    verify(&client, &gw, out.ok().trim_end(), unix_now()).await;
}

/// The gateway's reachable URL comes from the GateServer itself, so `kubectl gate token` needs
/// no flag where the route is not what users open (`make demo`'s loopback port, a load balancer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_url_annotation_is_where_links_point() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    let servers: Api<GateServer> = Api::namespaced(client.clone(), &gw);
    let annotate = |url: &str| {
        let patch = json!({"metadata": {"annotations": {
            virt_gateway_api::gateserver::GATEWAY_URL_ANNOTATION: url
        }}});
        let servers = servers.clone();
        async move {
            servers
                .patch("gs", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    let token = ["token", "testvm", "--server-namespace", &gw];

    annotate("http://127.0.0.1:43121/").await;
    let out = gate(cp, &token).await;
    let (base, jwt, _) = parse_link(out.ok().trim_end());
    assert_eq!(
        base, "http://127.0.0.1:43121",
        "the annotation wins over the route"
    );
    assert!(
        !out.stderr.contains("warning"),
        "loopback http: {}",
        out.stderr
    );
    verify(&client, &gw, &jwt, unix_now()).await;

    let mut with_flag = token.to_vec();
    with_flag.extend(["--gateway-url", "https://elsewhere.example.com"]);
    let (base, _, _) = parse_link(gate(cp, &with_flag).await.ok().trim_end());
    assert_eq!(base, "https://elsewhere.example.com", "the flag still wins");

    annotate("http://gw.example.com:8080").await;
    let out = gate(cp, &token).await;
    let (base, _, _) = parse_link(out.ok().trim_end());
    assert_eq!(base, "http://gw.example.com:8080");
    assert!(
        out.stderr
            .contains("warning: the gateway URL http://gw.example.com:8080 is plain http"),
        "{}",
        out.stderr
    );

    let before = tokens(&client, &gw).await.len();
    annotate("gw.example.com").await;
    let err = gate(cp, &token).await.fails(1).to_owned();
    assert!(
        err.contains(&format!(
            "GateServer {gw}/gs's annotation ocgate.yaacov.com/gateway-url \"gw.example.com\""
        )) && err.contains("--gateway-url"),
        "{err}"
    );
    assert_eq!(
        tokens(&client, &gw).await.len(),
        before,
        "a bad annotation is refused before anything is created"
    );
    let mut as_token = token.to_vec();
    as_token.extend(["-o", "token"]);
    verify(
        &client,
        &gw,
        gate(cp, &as_token).await.ok().trim_end(),
        unix_now(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_calls_print_the_api_servers_message_and_an_rbac_hint() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    let token = cp.service_account_token(&gw, "nobody", 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "sa",
        &cp.kubeconfig_for(json!({"token": token}), &[("sa", &gw)]),
    );
    let kc = path.to_str().unwrap();
    let user = format!("system:serviceaccount:{gw}:nobody");

    // No RBAC at all: reading GateServers is refused.
    let out = run(&binary(), &["token", "testvm", "--kubeconfig", kc], &[]).await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!(
            "not allowed to list GateServers in namespace {gw}: "
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "User \"{user}\" cannot list resource \"gateservers\""
        )),
        "the API server's message: {err}"
    );
    assert!(
        err.contains(&format!(
            "kubectl auth can-i list gateservers.ocgate.yaacov.com -n {gw}"
        )),
        "{err}"
    );
    assert!(err.contains("create, get, list, watch"), "{err}");

    // With the namespace given and no link to build, the plugin goes on without the GateServer
    // and the create is refused.
    let out = run(
        &binary(),
        &[
            "token",
            "testvm",
            "--kubeconfig",
            kc,
            "--server-namespace",
            &gw,
            "-o",
            "token",
        ],
        &[],
    )
    .await;
    let err = out.fails(1);
    assert!(err.contains("warning: cannot read GateServers"), "{err}");
    assert!(
        err.contains(&format!(
            "not allowed to create GateTokens in namespace {gw}"
        )),
        "{err}"
    );

    let out = run(&binary(), &["list", "--kubeconfig", kc], &[]).await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!("not allowed to list GateTokens in namespace {gw}")),
        "{err}"
    );
    let out = run(&binary(), &["revoke", "t1", "--kubeconfig", kc], &[]).await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!(
            "not allowed to patch GateToken t1 in namespace {gw}"
        )),
        "{err}"
    );
    assert!(
        err.contains("cannot patch resource \"gatetokens\""),
        "{err}"
    );

    // Allowed to read GateServers but not to create GateTokens.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-gateservers", "namespace": gw},
        "rules": [{"apiGroups": ["ocgate.yaacov.com"], "resources": ["gateservers"], "verbs": ["get", "list"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), &gw)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    cp.bind_role_to_service_account(
        &gw,
        "nobody-reads-gateservers",
        "read-gateservers",
        "nobody",
    )
    .await;
    // The RBAC authorizer sees the binding a moment later.
    let deadline = Instant::now() + TIMEOUT;
    let err = loop {
        let out = run(&binary(), &["token", "testvm", "--kubeconfig", kc], &[]).await;
        let err = out.fails(1).to_owned();
        if !err.contains("not allowed to list GateServers") || Instant::now() > deadline {
            break err;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        err.contains(&format!(
            "not allowed to create GateTokens in namespace {gw}: "
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "User \"{user}\" cannot create resource \"gatetokens\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "kubectl auth can-i create gatetokens.ocgate.yaacov.com -n {gw}"
        )),
        "{err}"
    );
    assert!(tokens(&client, &gw).await.is_empty(), "nothing was created");

    // Allowed to create GateTokens but not to watch them: the wait says so, and the token that
    // cannot be deleted either is named.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "create-gatetokens", "namespace": gw},
        "rules": [
            {"apiGroups": ["ocgate.yaacov.com"], "resources": ["gatetokens"], "verbs": ["create"]},
            // The console it hands out (the delegation policy checks the creator).
            {"apiGroups": ["subresources.kubevirt.io"], "resources": ["virtualmachineinstances", "virtualmachineinstances/vnc"], "verbs": ["get"]}
        ]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), &gw)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    cp.bind_role_to_service_account(
        &gw,
        "nobody-creates-gatetokens",
        "create-gatetokens",
        "nobody",
    )
    .await;
    let deadline = Instant::now() + TIMEOUT;
    let err = loop {
        let args = ["token", "testvm", "--kubeconfig", kc, "--name", "unwatched"];
        let err = run(&binary(), &args, &[]).await.fails(1).to_owned();
        let waiting = err.contains("not allowed to create GateTokens")
            || err.contains("not allowed to grant this console");
        if !waiting || Instant::now() > deadline {
            break err;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        err.contains(&format!(
            "gatetoken.ocgate.yaacov.com/unwatched created in namespace {gw}"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "not allowed to list GateTokens in namespace {gw}: "
        )),
        "{err}"
    );
    assert!(err.contains("cannot list resource \"gatetokens\""), "{err}");
    assert!(
        err.contains("warning: could not delete the GateToken (")
            && err.contains(&format!("kubectl delete gatetoken unwatched -n {gw}")),
        "{err}"
    );
    assert!(!err.contains("Status {"), "no debug dumps: {err}");
    assert!(get_token(&client, &gw, "unwatched").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_names_the_phase_and_the_condition() {
    // No operator for this namespace: nothing signs the token.
    let (cp, client, gw) = setup().await;
    create_server(&client, &gw, "gs", json!({"route": ROUTE})).await;

    let started = Instant::now();
    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "--server-namespace",
            &gw,
            "--wait-timeout",
            "3s",
            "--name",
            "t1",
        ],
    )
    .await;
    let err = out.fails(1);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        err.contains(&format!(
            "warning: GateServer {gw}/gs is not Ready (not handled by the operator yet)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("timed out after 3s waiting for GateToken {gw}/t1 to become Ready: its phase is still empty")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "Is virt-gateway-operator running, and does it watch namespace {gw}?"
        )),
        "{err}"
    );
    assert!(err.contains("the GateToken was deleted"), "{err}");
    assert!(get_token(&client, &gw, "t1").await.is_none());

    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "--server-namespace",
            &gw,
            "--wait-timeout",
            "1s",
            "--name",
            "t2",
            "--keep-on-failure",
        ],
    )
    .await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!(
            "the GateToken was kept: kubectl get gatetoken t2 -n {gw} -o yaml"
        )),
        "{err}"
    );
    assert!(get_token(&client, &gw, "t2").await.is_some());

    // A phase and a condition (written here the way the operator writes them) are quoted.
    let args = [
        "token",
        "testvm",
        "--server-namespace",
        &gw,
        "--wait-timeout",
        "8s",
        "--name",
        "t3",
    ];
    let cli = gate(cp, &args);
    let pend = async {
        let api: Api<GateToken> = Api::namespaced(client.clone(), &gw);
        wait_for(&api, "t3", "created", |_| true).await;
        let status = json!({"status": {
            "phase": "Pending", "token": "", "service-account-name": "",
            "data": {"from": "2099-01-01T00:00:00Z", "until": "2099-01-01T01:00:00Z", "duration-sec": 3600,
                     "nbf": 4_070_908_800_i64, "exp": 4_070_912_400_i64, "alg": "RS256"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "TokenPending",
                            "message": "Token pending: valid from 2099-01-01T00:00:00Z until 2099-01-01T01:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }});
        api.patch_status("t3", &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    };
    let (out, ()) = tokio::join!(cli, pend);
    let err = out.fails(1);
    assert!(
        err.contains(&format!(
            "timed out after 8s waiting for GateToken {gw}/t3 to become Ready: phase Pending, Ready=False (TokenPending): Token pending: valid from 2099-01-01T00:00:00Z"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_phase_fails_at_once_with_the_operators_condition() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    // No key Secret, and the GateServer may not generate one.
    create_server(
        &client,
        &gw,
        "gs",
        json!({"route": ROUTE, "generateSecret": false}),
    )
    .await;
    let api: Api<GateServer> = Api::namespaced(client.clone(), &gw);
    wait_for(&api, "gs", "phase Error", |gs| {
        gs.status.as_ref().is_some_and(|s| s.phase == "Error")
    })
    .await;

    let started = Instant::now();
    let out = gate(
        cp,
        &[
            "token",
            "testvm",
            "--server-namespace",
            &gw,
            "--wait-timeout",
            "100s",
            "--name",
            "bad",
        ],
    )
    .await;
    let err = out.fails(1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "did not wait for the timeout"
    );
    assert!(
        err.contains(&format!(
            "warning: GateServer {gw}/gs is not Ready (phase Error)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: GateToken {gw}/bad is Error: Error=True (PrivateKeyError): "
        )),
        "{err}"
    );
    assert!(
        err.contains("kube-gateway-jwt-secret"),
        "the operator's message names the Secret: {err}"
    );
    assert!(err.contains("the GateToken was deleted"), "{err}");
    let api: Api<GateToken> = Api::namespaced(client.clone(), &gw);
    let deadline = Instant::now() + TIMEOUT;
    while api.get_opt("bad").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the failed token goes away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.contains(&name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_revoke() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    for (vm, name) in [("testvm", "t-a"), ("othervm", "t-b")] {
        gate(
            cp,
            &[
                "token",
                vm,
                "-n",
                "vms",
                "--server-namespace",
                &gw,
                "--name",
                name,
                "--duration",
                "30m",
            ],
        )
        .await
        .ok();
    }

    let out = gate(cp, &["list", "-n", &gw]).await;
    let table = out.ok();
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "NAME",
            "PHASE",
            "TARGET-NAMESPACE",
            "RESOURCE-NAMES",
            "TIME-LEFT"
        ]
    );
    let a = row(table, "t-a");
    assert_eq!(a[..4], ["t-a", "Ready", "vms", "testvm"]);
    assert!(
        a[4].starts_with("29m") || a[4] == "30m",
        "time left: {}",
        a[4]
    );
    let out = gate(cp, &["list", "-n", &gw, "--vm", "othervm"]).await;
    assert_eq!(out.ok().lines().count(), 2, "{out:#?}");
    assert_eq!(
        row(out.ok(), "t-b")[..4],
        ["t-b", "Ready", "vms", "othervm"]
    );
    let out = gate(cp, &["list", "-A"]).await;
    let table = out.ok();
    assert!(table.starts_with("NAMESPACE "), "{table}");
    assert_eq!(row(table, "t-a")[..3], [gw.as_str(), "t-a", "Ready"]);

    // revoke: spec.revoked, and the operator's phase Revoked.
    let out = gate(cp, &["revoke", "t-a", "-n", &gw, "--wait"]).await;
    assert_eq!(
        out.ok(),
        "gatetoken.ocgate.yaacov.com/t-a revoked\ngatetoken.ocgate.yaacov.com/t-a is Revoked\n"
    );
    let tok = get_token(&client, &gw, "t-a").await.unwrap();
    assert!(tok.spec.revoked);
    assert_eq!(phase(&tok), "Revoked");
    let out = gate(cp, &["list", "-n", &gw]).await;
    assert_eq!(
        row(out.ok(), "t-a"),
        ["t-a", "Revoked", "vms", "testvm", "revoked"]
    );
    gate(cp, &["revoke", "t-a", "-n", &gw]).await.ok();

    // --delete.
    let out = gate(cp, &["revoke", "t-b", "-n", &gw, "--delete", "--wait"]).await;
    assert_eq!(
        out.ok(),
        "gatetoken.ocgate.yaacov.com/t-b deleted\ngatetoken.ocgate.yaacov.com/t-b is gone\n"
    );
    assert!(get_token(&client, &gw, "t-b").await.is_none());

    // Unknown names; one failure does not stop the others.
    let out = gate(cp, &["revoke", "missing", "-n", &gw]).await;
    let err = out.fails(1);
    assert!(
        err.contains(&format!("GateToken missing not found in namespace {gw}")),
        "{err}"
    );
    gate(
        cp,
        &[
            "token",
            "testvm",
            "-n",
            "vms",
            "--server-namespace",
            &gw,
            "--name",
            "t-c",
        ],
    )
    .await
    .ok();
    let out = gate(cp, &["revoke", "missing", "t-c", "-n", &gw]).await;
    assert!(out.stdout.contains("t-c revoked"), "{out:#?}");
    out.fails(1);
    assert!(get_token(&client, &gw, "t-c").await.unwrap().spec.revoked);

    let empty = cp.fresh_namespace().await;
    let out = gate(cp, &["list", "-n", &empty]).await;
    assert_eq!(out.ok(), "");
    assert_eq!(
        out.stderr,
        format!("No GateTokens found in namespace {empty}.\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_show_phase_and_route() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    ready_server(&client, &gw, "plain", json!({})).await;

    let out = gate(cp, &["servers", "-n", &gw]).await;
    let table = out.ok();
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAME", "PHASE", "ROUTE", "AGE"]
    );
    assert_eq!(row(table, "gs")[..3], ["gs", "Ready", ROUTE]);
    assert_eq!(row(table, "plain")[..3], ["plain", "Ready", "<none>"]);
    let out = gate(cp, &["servers", "-A"]).await;
    assert_eq!(row(out.ok(), "plain")[..3], [gw.as_str(), "plain", "Ready"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_finds_the_plugin_on_the_path() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    let bin = binary();
    let dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = cp.binary("kubectl");
    let env = [
        ("PATH", path.as_str()),
        ("KUBECONFIG", cp.kubeconfig().to_str().unwrap()),
    ];

    let out = run(&kubectl, &["gate", "servers", "-n", &gw], &env).await;
    assert_eq!(row(out.ok(), "gs")[..3], ["gs", "Ready", ROUTE]);
    let out = run(
        &kubectl,
        &[
            "gate",
            "token",
            "testvm",
            "-n",
            "vms",
            "--server-namespace",
            &gw,
        ],
        &env,
    )
    .await;
    let (_, token, _) = parse_link(out.ok().trim_end());
    verify(&client, &gw, &token, unix_now()).await;
    let out = run(&kubectl, &["gate", "--help"], &env).await;
    assert!(out.ok().contains("kubectl gate token"), "{out:#?}");
    let out = run(&kubectl, &["plugin", "list"], &env).await;
    assert!(
        out.stdout.contains(&bin.display().to_string()),
        "kubectl plugin list shows it: {out:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_before_anything_is_created() {
    let (cp, client, gw) = setup().await;
    create_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    for (args, says) in [
        (
            vec!["token", "Test_VM"],
            "VM \"Test_VM\" is not a valid Kubernetes name",
        ),
        (
            vec!["token", "testvm", "--duration", "0s"],
            "greater than zero",
        ),
        (
            vec!["token", "testvm", "--duration", "1mo"],
            "months and years",
        ),
        (vec!["token", "testvm", "--duration", "90"], "no unit"),
        (vec!["token", "testvm", "--from", "yesterday"], "RFC 3339"),
        (
            vec!["token", "testvm", "--from", "2020-01-01T00:00:00Z"],
            "would already have expired (at 2020-01-01T01:00:00Z)",
        ),
        (
            vec!["token", "testvm", "--gateway-url", "gw.example.com"],
            "must start with https://",
        ),
        (
            vec!["token", "testvm", "-n", "Bad_NS"],
            "not a valid namespace name",
        ),
        (
            vec!["token", "testvm", "--server", "a/b/c"],
            "--server \"a/b/c\"",
        ),
        (vec!["token", "testvm", "-o", "xml"], "invalid value 'xml'"),
        (vec!["revoke"], "required"),
    ] {
        let mut all = args.clone();
        if args[0] == "token" {
            all.extend(["--server-namespace", gw.as_str()]);
        }
        let out = gate(cp, &all).await;
        let err = out.fails(2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(tokens(&client, &gw).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_role_is_all_a_user_needs() {
    let (cp, client, gw) = setup().await;
    let _operator = Operator::start(client.clone(), &gw);
    ready_server(&client, &gw, "gs", json!({"route": ROUTE})).await;
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/role.yaml")).unwrap();
    let mut role: Role = serde_yaml::from_str(&text).unwrap();
    role.metadata.namespace = Some(gw.clone());
    Api::<Role>::namespaced(client.clone(), &gw)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let token = cp.service_account_token(&gw, "support", 3600).await;
    cp.bind_role_to_service_account(&gw, "support-links", "kubectl-gate-user", "support")
        .await;
    // The consoles the user hands out, in the VMs' namespace (bound further down).
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/console-role.yaml"
    ))
    .unwrap();
    let console: ClusterRole = serde_yaml::from_str(&text).unwrap();
    let console_name = format!("kubectl-gate-console-{gw}");
    let console = ClusterRole {
        metadata: ObjectMeta {
            name: Some(console_name.clone()),
            ..ObjectMeta::default()
        },
        ..console
    };
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &console)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "support",
        &cp.kubeconfig_for(json!({"token": token}), &[("support", &gw)]),
    );
    let env = [("KUBECONFIG", path.to_str().unwrap())];

    // The binding reaches the RBAC authorizer a moment later.
    let deadline = Instant::now() + TIMEOUT;
    let out = loop {
        let out = run(&binary(), &["servers"], &env).await;
        if out.code == 0 || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row(out.ok(), "gs")[..3], ["gs", "Ready", ROUTE]);
    // Without the console: the delegation policy refuses, and the hint says what to ask for.
    let refused = run(
        &binary(),
        &["token", "testvm", "-n", "vms", "--name", "s0"],
        &env,
    )
    .await;
    let err = refused.fails(1);
    assert!(err.contains("not allowed to grant this console"), "{err}");
    assert!(
        err.contains(r#""get" on "virtualmachineinstances"#),
        "{err}"
    );
    assert!(err.contains("console-role.yaml"), "{err}");
    assert!(tokens(&client, &gw).await.is_empty(), "nothing was created");
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "vms"}})).unwrap();
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("namespace vms: {e}"),
    }
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("support-consoles-{gw}"), "namespace": "vms"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": console_name},
        "subjects": [{"kind": "ServiceAccount", "name": "support", "namespace": gw}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), "vms")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    // The binding reaches the authorizer a moment later.
    let deadline = Instant::now() + TIMEOUT;
    let out = loop {
        let out = run(
            &binary(),
            &["token", "testvm", "-n", "vms", "--name", "s1"],
            &env,
        )
        .await;
        if out.code == 0 || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, jwt, _) = parse_link(out.ok().trim_end());
    verify(&client, &gw, &jwt, unix_now()).await;
    let out = run(&binary(), &["list"], &env).await;
    assert_eq!(row(out.ok(), "s1")[..4], ["s1", "Ready", "vms", "testvm"]);
    run(&binary(), &["revoke", "s1", "--wait"], &env).await.ok();
    assert_eq!(
        phase(&get_token(&client, &gw, "s1").await.unwrap()),
        "Revoked"
    );
    run(&binary(), &["revoke", "s1", "--delete", "--wait"], &env)
        .await
        .ok();
    assert!(get_token(&client, &gw, "s1").await.is_none());
}
