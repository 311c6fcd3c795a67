//! The install manifests, for real: the checked-in YAML is what the generator writes; applied to
//! a real control plane, the operator binary runs under the ServiceAccount they create, with
//! exactly the RBAC they grant (a TokenRequest token, not the admin), watching all namespaces
//! with leader election on, and brings the seed GateServer and GateToken (applied as written,
//! in their own namespace `kube-gateway`) to Ready. That proves the generated least-privilege
//! RBAC is sufficient. A gateway rule with a write verb is refused by the RBAC escalation check
//! (condition, no crash loop) until the optional escalate role is applied.
//!
//! This binary has one control-plane test (an all-namespaces operator must not share a control
//! plane with tests that run their own operators).

mod common;

use std::process::Command;

use common::*;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use virt_gateway_api::GateServer;
use virt_gateway_operator::manifests;
use virt_gateway_testenv::ControlPlane;

#[test]
fn checked_in_manifests_match_the_generator() {
    for (name, contents) in manifests::files().unwrap() {
        let path = repo_root().join("deploy").join(name);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == contents,
            "{} differs from the generator; regenerate with: {}",
            path.display(),
            manifests::REGENERATE_COMMAND
        );
    }
}

#[test]
fn the_cluster_role_in_the_manifest_is_the_list_in_code() {
    let yaml = manifests::operator_yaml().unwrap();
    let role = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ClusterRole")
        .unwrap();
    let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
        serde_yaml::from_value(role["rules"].clone()).unwrap();
    let code: Vec<_> = virt_gateway_operator::rbac::CLUSTER_RULES
        .iter()
        .map(|r| r.policy_rule())
        .collect();
    assert_eq!(rules, code);
}

use serde::Deserialize as _;

fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = Command::new(cp.binary("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_operator_works_with_exactly_the_generated_rbac() {
    let cp = ControlPlane::shared().await;
    let admin = cp.client().await;
    let deploy = repo_root().join("deploy");
    let file = |name: &str| deploy.join(name).to_str().unwrap().to_owned();

    // The operator manifest applied for real (namespace, CRDs, ServiceAccount, RBAC, Deployment,
    // Service: the API server accepts every object); the optional escalate role passes a
    // server-side dry run now and is applied for real below.
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "-f",
            &file("virt-gateway-operator.yaml"),
        ],
    );
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            &file("virt-gateway-operator-escalate.yaml"),
        ],
    );
    install_crds(cp).await; // waits until established and discoverable

    // A token of the operator's ServiceAccount: the operator acts with exactly that RBAC.
    let ns = "virt-gateway-operator-system";
    let sa_jwt = cp.token_request(ns, "virt-gateway-operator", 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("operator.kubeconfig");
    std::fs::write(
        &kubeconfig,
        cp.kubeconfig_for(json!({"token": sa_jwt}), &[("operator", "")]),
    )
    .unwrap();
    let metrics = free_addr();
    let health = free_addr();
    let operator = OperatorProcess::spawn(
        &kubeconfig,
        &[
            "--leader-elect".into(),
            format!("--metrics-bind-address={metrics}"),
            format!("--health-probe-bind-address={health}"),
            "--log-format=json".into(),
            "--identity=least-privilege".into(),
        ],
        &[("POD_NAMESPACE", ns)],
    );
    wait_http_ok(&health, "/readyz").await;

    // The Gen B server example and the seeds, as written, in their own namespace.
    kubectl(cp, &["apply", "-f", &file("virt-gateway-server.yaml")]);
    let samples = repo_root().join("deploy/samples");
    kubectl(
        cp,
        &[
            "create",
            "-f",
            samples.join("gateserver-sample.yaml").to_str().unwrap(),
        ],
    );
    kubectl(
        cp,
        &[
            "create",
            "-f",
            samples.join("gatetoken-sample.yaml").to_str().unwrap(),
        ],
    );
    let gs = "kube-gateway";
    wait_server_phase(&admin, gs, "kube-gateway-server", "Ready").await;
    wait_server_phase(&admin, gs, "gateserver-sample", "Ready").await;
    let tok = wait_token_phase(&admin, gs, "gatetoken-sample", "Ready").await;
    let secret = key_secret(&admin, gs).await;
    let claims = verify(&secret, &tok.status.unwrap().token, unix_now()).claims;
    assert_eq!(claims.resource_names, Some(vec!["testvm".to_owned()]));
    // A ServiceAccount token for a read-only rule works under least privilege too.
    let sa_token = token(
        gs,
        "sa-read",
        json!({
            "namespace": gs, "verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
            "generateServiceAccount": true
        }),
    );
    create(&admin, &sa_token).await;
    wait_token_phase(&admin, gs, "sa-read", "Ready").await;

    // A write verb exceeds what the operator holds: refused by the API server's escalation
    // check, reported as a condition with its message, retried slowly, the process keeps going.
    let writer = server(
        gs,
        "writer",
        json!({
            "route": "writer.apps.example.com",
            "serviceAccountVerbs": ["get", "create"],
            "serviceAccountAPIGroups": [""],
            "serviceAccountResources": ["configmaps"]
        }),
    );
    create(&admin, &writer).await;
    let servers: Api<GateServer> = Api::namespaced(admin.clone(), gs);
    let refused = wait_for(&servers, "writer", "Forbidden", |s| {
        s.status
            .as_ref()
            .and_then(|st| condition(&st.conditions, "Degraded"))
            .is_some_and(|c| c.0 == "True" && c.1 == "Forbidden")
    })
    .await;
    let message = condition(&refused.status.unwrap().conditions, "Degraded")
        .unwrap()
        .2;
    assert!(
        message.contains("apply ClusterRole virt-gateway:kube-gateway:writer"),
        "{message}"
    );
    assert!(message.contains("escalat"), "{message}");
    assert!(
        message.contains("virt-gateway-operator-escalate.yaml"),
        "{message}"
    );

    // The optional escalate role lets it through (a touch of the object triggers the retry at
    // once instead of after the slow retry interval).
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "-f",
            &file("virt-gateway-operator-escalate.yaml"),
        ],
    );
    servers
        .patch(
            "writer",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"retry": "1"}}})),
        )
        .await
        .unwrap();
    wait_server_phase(&admin, gs, "writer", "Ready").await;

    // The process stayed up, is the leader, and counted its work.
    let text = wait_http_ok(&metrics, "/metrics").await;
    assert_eq!(
        metric(&text, "virt_gateway_operator_leader"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "virt_gateway_operator_reconciles_total{controller=\"gateserver\"}"
        )
        .unwrap_or(0.0)
            > 0.0
    );
    assert!(
        metric(
            &text,
            "virt_gateway_operator_tokens_signed_total{alg=\"RS256\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(metric(&text, "virt_gateway_operator_reconcile_errors_total{controller=\"gateserver\",kind=\"forbidden\"}").unwrap_or(0.0) >= 1.0, "{text}");
    assert!(
        metric(&text, "virt_gateway_operator_gatetokens{phase=\"Ready\"}").unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    assert!(
        operator.logs().contains("\"acquired the leader Lease\"")
            || operator.logs().contains("acquired the leader Lease"),
        "{}",
        operator.logs()
    );
}
