//! No signing without the delegation rule. While the delegation policy or its binding is
//! missing or changed, the operator signs no new GateToken (condition and Event say why), tokens
//! it signed before keep working, tokens created in that window stay unsigned after the policy is
//! back (nothing checked their creator), and `--allow-unchecked-delegation` is the explicit way
//! to run without it.
//!
//! This binary has one test: it removes the cluster-wide policy, so it must not share its
//! control plane with tests that rely on it.

mod common;

use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use virt_gateway_api::GateToken;
use virt_gateway_api::admission::GATETOKEN_POLICY;
use virt_gateway_operator::delegation::VERDICT_TTL;
use virt_gateway_testenv::ControlPlane;
use virt_gateway_testenv::helpers::DELEGATION_POLICY_FILE;

async fn reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits until the token shows the `DelegationUnchecked` error with a message containing `text`.
async fn wait_unchecked(client: &Client, ns: &str, name: &str, text: &str) -> GateToken {
    let tokens: Api<GateToken> = Api::namespaced(client.clone(), ns);
    wait_for(&tokens, name, text, |t| {
        t.status
            .as_ref()
            .and_then(|st| condition(&st.conditions, "Error"))
            .is_some_and(|(s, r, m)| s == "True" && r == "DelegationUnchecked" && m.contains(text))
    })
    .await
}

async fn restore_policy(cp: &ControlPlane) {
    let yaml = std::fs::read_to_string(repo_root().join(DELEGATION_POLICY_FILE)).unwrap();
    cp.install_admission_yaml(&yaml).await;
    settle().await;
}

/// Lets the operator's cached verdict on the policy expire.
async fn settle() {
    tokio::time::sleep(VERDICT_TTL + std::time::Duration::from_secs(1)).await;
}

#[tokio::test]
async fn no_signing_without_the_delegation_rule() {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await;
    install_crds(cp).await;
    let ns = cp.fresh_namespace().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    create(&client, &seed_server(&ns)).await;
    create(&client, &seed_token(&ns)).await;
    let signed = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    let issued = signed.status.unwrap().token;

    // The binding goes: nothing new is signed, and the reason is shown.
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone());
    bindings
        .delete(GATETOKEN_POLICY, &DeleteParams::default())
        .await
        .unwrap();
    settle().await;
    create(
        &client,
        &token(
            &ns,
            "while-missing",
            json!({"namespace": "default", "resourceNames": ["testvm"]}),
        ),
    )
    .await;
    let refused = wait_unchecked(&client, &ns, "while-missing", "is not installed").await;
    let st = refused.status.unwrap();
    assert!(st.token.is_empty(), "no token while the rule is missing");
    let (_, _, message) = condition(&st.conditions, "Error").unwrap();
    assert!(
        message.contains("--allow-unchecked-delegation"),
        "{message}"
    );
    assert!(
        message.contains("virt-gateway-delegation-policy.yaml"),
        "{message}"
    );
    assert!(
        reasons(&client, &ns, "while-missing")
            .await
            .contains(&"DelegationUnchecked".to_owned())
    );
    // The token signed before keeps working: untouched.
    let before = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    assert_eq!(before.status.unwrap().token, issued);

    // Back: a new token is signed; the one created meanwhile is not (its creator was never
    // checked), with a message saying to create it again. The API server's times have whole
    // seconds, and a token created in the second the policy is written counts as checked: let
    // that second pass first, or the restored binding may share it (seen once under load).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    restore_policy(cp).await;
    create(
        &client,
        &token(
            &ns,
            "after",
            json!({"namespace": "default", "resourceNames": ["testvm"]}),
        ),
    )
    .await;
    wait_token_phase(&client, &ns, "after", "Ready").await;
    let stale = wait_unchecked(&client, &ns, "while-missing", "create it again").await;
    assert!(stale.status.unwrap().token.is_empty());

    // A weakened policy counts as missing.
    let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone());
    policies
        .patch(
            GATETOKEN_POLICY,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"failurePolicy": "Ignore"}})),
        )
        .await
        .unwrap();
    settle().await;
    create(
        &client,
        &token(
            &ns,
            "weakened",
            json!({"namespace": "default", "resourceNames": ["testvm"]}),
        ),
    )
    .await;
    wait_unchecked(&client, &ns, "weakened", "failurePolicy").await;
    restore_policy(cp).await;

    // The explicit opt-out signs without the rule.
    let other = cp.fresh_namespace().await;
    bindings
        .delete(GATETOKEN_POLICY, &DeleteParams::default())
        .await
        .unwrap();
    let mut unchecked = config(&other);
    unchecked.allow_unchecked_delegation = true;
    let _unchecked = Operator::start(client.clone(), unchecked);
    create(&client, &seed_server(&other)).await;
    create(&client, &seed_token(&other)).await;
    wait_token_phase(&client, &other, "gatetoken-sample", "Ready").await;
    restore_policy(cp).await;
}
