//! The `virt-gateway-operator` binary as a process: two replicas with leader election (one
//! leader does the work; kill it and the other takes over), and a crash (SIGKILL) mid-flight
//! followed by a restart that changes no key and no issued token. Each test scopes its
//! operators to its own fresh namespace (`--namespace`) and keeps its Lease there.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use virt_gateway_api::GateToken;
use virt_gateway_testenv::ControlPlane;

async fn setup() -> (&'static ControlPlane, Client, String) {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await;
    install_crds(cp).await;
    let ns = cp.fresh_namespace().await;
    (cp, client, ns)
}

struct Replica {
    process: OperatorProcess,
    metrics: String,
    health: String,
}

fn replica(cp: &ControlPlane, ns: &str, identity: &str, leader_election: bool) -> Replica {
    let metrics = free_addr();
    let health = free_addr();
    let mut args = vec![
        format!("--namespace={ns}"),
        format!("--metrics-bind-address={metrics}"),
        format!("--health-probe-bind-address={health}"),
        format!("--identity={identity}"),
    ];
    if leader_election {
        args.extend([
            "--leader-elect".to_owned(),
            format!("--leader-election-namespace={ns}"),
            "--leader-election-id=virt-gateway-operator-test".to_owned(),
            "--lease-duration-seconds=4".to_owned(),
            "--lease-renew-grace-seconds=1".to_owned(),
        ]);
    }
    Replica {
        process: OperatorProcess::spawn(cp.kubeconfig(), &args, &[]),
        metrics,
        health,
    }
}

async fn holder(client: &Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("virt-gateway-operator-test")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn wait_holder(
    client: &Client,
    ns: &str,
    want: impl Fn(Option<&str>) -> bool,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let h = holder(client, ns).await;
        if want(h.as_deref()) {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Lease holder stayed {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scrape(r: &Replica) -> String {
    wait_http_ok(&r.metrics, "/metrics").await
}

fn reconciles(text: &str) -> f64 {
    ["gateserver", "gatetoken"]
        .iter()
        .filter_map(|c| {
            metric(
                text,
                &format!("virt_gateway_operator_reconciles_total{{controller=\"{c}\"}}"),
            )
        })
        .sum()
}

/// Two replicas: exactly one holds the Lease and does the work while the other waits (ready,
/// but reconciling nothing); SIGKILL the leader and the other takes over (the Lease expires
/// after its duration) and works; SIGTERM releases the Lease at once.
#[tokio::test]
async fn two_replicas_one_leader_and_takeover() {
    let (cp, client, ns) = setup().await;
    let a = replica(cp, &ns, "replica-a", true);
    let first = wait_holder(&client, &ns, |h| h == Some("replica-a")).await;
    assert_eq!(first.as_deref(), Some("replica-a"));
    let b = replica(cp, &ns, "replica-b", true);
    wait_http_ok(&a.health, "/readyz").await;
    wait_http_ok(&b.health, "/readyz").await;

    create(&client, &seed_server(&ns)).await;
    create(&client, &seed_token(&ns)).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let tok = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    let a_text = scrape(&a).await;
    let b_text = scrape(&b).await;
    assert_eq!(metric(&a_text, "virt_gateway_operator_leader"), Some(1.0));
    assert_eq!(metric(&b_text, "virt_gateway_operator_leader"), Some(0.0));
    assert!(reconciles(&a_text) > 0.0, "{a_text}");
    assert_eq!(
        reconciles(&b_text),
        0.0,
        "the standby reconciles nothing: {b_text}"
    );
    assert_eq!(holder(&client, &ns).await.as_deref(), Some("replica-a"));

    // Kill the leader without a chance to release: the standby takes over once the Lease
    // expires, and does the work.
    let mut a = a;
    a.process.signal(libc::SIGKILL);
    a.process.wait_exit().await;
    wait_holder(&client, &ns, |h| h == Some("replica-b")).await;
    create(
        &client,
        &token(&ns, "after-takeover", json!({"namespace": "default"})),
    )
    .await;
    wait_token_phase(&client, &ns, "after-takeover", "Ready").await;
    let b_text = scrape(&b).await;
    assert_eq!(metric(&b_text, "virt_gateway_operator_leader"), Some(1.0));
    assert!(reconciles(&b_text) > 0.0);
    // The takeover re-signed nothing.
    let again = Api::<GateToken>::namespaced(client.clone(), &ns)
        .get("gatetoken-sample")
        .await
        .unwrap();
    assert_eq!(again.status.unwrap().token, tok.status.unwrap().token);

    // A graceful stop releases the Lease immediately.
    let mut b = b;
    b.process.signal(libc::SIGTERM);
    let status = b.process.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", b.process.logs());
    assert_eq!(holder(&client, &ns).await, None, "released on SIGTERM");
}

/// SIGKILL mid-flight (a token still pending), a token created while the operator is down, then
/// a restart: the key Secret and every issued token are byte for byte unchanged.
#[tokio::test]
async fn crash_and_restart_change_no_key_and_no_token() {
    let (cp, client, ns) = setup().await;
    let mut first = replica(cp, &ns, "crashing", false);
    create(&client, &seed_server(&ns)).await;
    create(&client, &seed_token(&ns)).await;
    create(
        &client,
        &token(
            &ns,
            "pending",
            json!({"namespace": "default", "from": in_seconds(20)}),
        ),
    )
    .await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let ready = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    let pending = wait_token_phase(&client, &ns, "pending", "Pending").await;
    let secret = key_secret(&client, &ns).await;
    first.process.signal(libc::SIGKILL);
    first.process.wait_exit().await;

    create(
        &client,
        &token(&ns, "while-down", json!({"namespace": "default"})),
    )
    .await;
    let second = replica(cp, &ns, "restarted", false);
    wait_http_ok(&second.health, "/readyz").await;
    wait_token_phase(&client, &ns, "while-down", "Ready").await;
    let now_ready = wait_token_phase(&client, &ns, "pending", "Ready").await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let tokens: Api<GateToken> = Api::namespaced(client.clone(), &ns);
    let sample = tokens.get("gatetoken-sample").await.unwrap();
    assert_eq!(sample.status.unwrap().token, ready.status.unwrap().token);
    assert_eq!(
        now_ready.status.unwrap().token,
        pending.status.unwrap().token
    );
    let after = key_secret(&client, &ns).await;
    assert_eq!(after.data, secret.data);
    assert_eq!(
        after.metadata.resource_version,
        secret.metadata.resource_version
    );
    let text = scrape(&second).await;
    assert_eq!(
        metric(&text, "virt_gateway_operator_keys_generated_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "virt_gateway_operator_tokens_signed_total{alg=\"RS256\"}"
        ),
        Some(1.0),
        "only the token created while down was signed: {text}"
    );
}
