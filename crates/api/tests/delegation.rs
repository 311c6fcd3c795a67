//! The delegation rule (`deploy/crds/virt-gateway-delegation-policy.yaml`) against the real
//! kube-apiserver: a GateToken may grant only what its creator may do, and a GateServer may give
//! its gateway only what its author may do. Each attack of the security review's §1 is made as a
//! user whose only permission is to create GateTokens, and refused with a message naming the
//! permission it lacks; the same user, granted one VM's console, may hand out exactly that.
//!
//! Users are impersonated by the admin (`ControlPlane::client_as`): the API server authorizes
//! and admits their requests as them, exactly as for a user with their own credentials.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use virt_gateway_api::admission::{self, GATESERVER_POLICY, GATETOKEN_POLICY};
use virt_gateway_api::{GateServer, GateToken};
use virt_gateway_testenv::{ControlPlane, helpers};

const KUBEVIRT: &str = "subresources.kubevirt.io";

async fn setup() -> (&'static ControlPlane, Client, String) {
    let cp = ControlPlane::shared().await;
    cp.apply_crds(&virt_gateway_api::crd::crds(), "virt-gateway-api-tests")
        .await;
    let ns = cp.fresh_namespace().await;
    (cp, cp.client().await, ns)
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        non_resource_urls: None,
    }
}

fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

/// Grants `who` the `rules` in `ns` (a Role and RoleBinding named `name`).
async fn grant(admin: &Client, ns: &str, name: &str, who: &str, rules: Vec<PolicyRule>) {
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
                role_ref: role_ref("Role", name),
                subjects: Some(vec![user(who)]),
            },
        )
        .await
        .unwrap();
}

/// Waits until RBAC (an informer cache) lets `who` do `verb` on `resource` in `ns`.
async fn wait_allowed(
    admin: &Client,
    who: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    ns: &str,
) {
    let access = helpers::resource_access(verb, group, resource, name, ns);
    helpers::wait_allowed(admin, who, &["system:authenticated"], access).await;
}

fn resource(kind: &str) -> ApiResource {
    match kind {
        "GateToken" => ApiResource::erase::<GateToken>(&()),
        _ => ApiResource::erase::<GateServer>(&()),
    }
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": kind,
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// Creates `kind` `name` with `spec` in `ns` as `client`; `Err(message)` when refused.
async fn create(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    spec: Value,
) -> Result<(), (u16, String)> {
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource(kind))
        .create(&PostParams::default(), &object(kind, name, spec))
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(s) => (s.code, s.message),
            e => panic!("{e}"),
        })
}

/// Asserts the delegation policy of `kind` refused with 403 and a message containing `names`.
fn refused(result: Result<(), (u16, String)>, kind: &str, names: &str) {
    let (code, message) = result.expect_err("the delegation policy refuses it");
    let policy = if kind == "GateToken" {
        GATETOKEN_POLICY
    } else {
        GATESERVER_POLICY
    };
    assert_eq!(code, 403, "{message}");
    assert!(message.contains(policy), "{message}");
    assert!(message.contains(names), "expected {names:?} in: {message}");
    assert!(
        message.contains("which you may not do yourself"),
        "{message}"
    );
}

/// A user who may only create, read and update GateTokens in `ns`.
async fn token_creator(cp: &ControlPlane, admin: &Client, ns: &str, who: &str) -> Client {
    grant(
        admin,
        ns,
        &format!("{who}-gatetokens"),
        who,
        vec![rule(
            &["ocgate.yaacov.com"],
            &["gatetokens", "gateservers"],
            &["create", "get", "update", "patch"],
            &[],
        )],
    )
    .await;
    wait_allowed(
        admin,
        who,
        "create",
        "ocgate.yaacov.com",
        "gatetokens",
        "",
        ns,
    )
    .await;
    cp.client_as(who, &[]).await
}

/// The review's §1 attacks, made by a user whose only permission is to create GateTokens: each
/// is refused, naming the first permission the user lacks; nothing is stored, so no credential
/// can appear in any status.
#[tokio::test]
async fn a_gatetoken_creator_cannot_grant_what_they_do_not_hold() {
    let (cp, admin, ns) = setup().await;
    let who = format!("mallory-{ns}");
    let mallory = token_creator(cp, &admin, &ns, &who).await;
    let g = "GateToken";

    // The review's §1 list (ServiceAccount mode for Secrets and the kubelet, JWT mode for all).
    for attack in helpers::delegation_attacks() {
        refused(
            create(&mallory, &ns, g, attack.name, attack.spec).await,
            g,
            attack.refusal,
        );
    }
    // `spec: {}`: every VM's console in every namespace (review §8).
    refused(
        create(&mallory, &ns, g, "empty", json!({})).await,
        g,
        r#""get" on "virtualmachineinstances" (API group "subresources.kubevirt.io", every name) in all namespaces"#,
    );
    // Non-resource URLs need them too (the public-info paths every user has are fine).
    refused(
        create(
            &mallory,
            &ns,
            g,
            "metrics",
            json!({"namespace": "*", "nonResourceURLs": ["/metrics"]}),
        )
        .await,
        g,
        r#"grants "get" on the non-resource URL "/metrics""#,
    );
    create(
        &mallory,
        &ns,
        g,
        "healthz",
        json!({"namespace": "*", "nonResourceURLs": ["/healthz"]}),
    )
    .await
    .expect("every authenticated user may get /healthz (system:public-info-viewer)");
    // A GateServer's gateway gets only what its author holds.
    refused(
        create(&mallory, &ns, "GateServer", "gw", json!({})).await,
        "GateServer",
        r#"this GateServer grants "get" on "virtualmachineinstances""#,
    );

    // Nothing refused was stored.
    let tokens = Api::<GateToken>::namespaced(admin.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    let names: Vec<_> = tokens
        .items
        .iter()
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    assert_eq!(names, ["healthz"]);
}

/// Granted one VM's console, the same kind of user may hand out exactly that: that VM, in that
/// namespace; not another VM, not every VM, not another namespace.
#[tokio::test]
async fn one_vm_may_be_delegated_by_whoever_may_open_it() {
    let (cp, admin, ns) = setup().await;
    let vms = cp.fresh_namespace().await;
    let who = format!("alice-{ns}");
    let alice = token_creator(cp, &admin, &ns, &who).await;
    grant(
        &admin,
        &vms,
        "console-vm1",
        &who,
        vec![rule(
            &[KUBEVIRT],
            &["virtualmachineinstances", "virtualmachineinstances/vnc"],
            &["get"],
            &["vm1"],
        )],
    )
    .await;
    wait_allowed(
        &admin,
        &who,
        "get",
        KUBEVIRT,
        "virtualmachineinstances/vnc",
        "vm1",
        &vms,
    )
    .await;
    let g = "GateToken";
    create(
        &alice,
        &ns,
        g,
        "vm1",
        json!({"namespace": vms, "resourceNames": ["vm1"]}),
    )
    .await
    .expect("alice may open vm1's console, so she may hand it out");
    refused(
        create(
            &alice,
            &ns,
            g,
            "vm2",
            json!({"namespace": vms, "resourceNames": ["vm2"]}),
        )
        .await,
        g,
        &format!(
            r#"grants "get" on "virtualmachineinstances" (API group "subresources.kubevirt.io", name "vm2") in namespace "{vms}""#
        ),
    );
    refused(
        create(&alice, &ns, g, "every-vm", json!({"namespace": vms})).await,
        g,
        "every name",
    );
    refused(
        create(
            &alice,
            &ns,
            g,
            "other-ns",
            json!({"namespace": ns, "resourceNames": ["vm1"]}),
        )
        .await,
        g,
        &format!(r#"in namespace "{ns}""#),
    );
    refused(
        create(
            &alice,
            &ns,
            g,
            "all-ns",
            json!({"namespace": "*", "resourceNames": ["vm1"]}),
        )
        .await,
        g,
        "in all namespaces",
    );
    refused(
        create(&alice, &ns, g, "console", json!({"namespace": vms, "resourceNames": ["vm1"], "resources": ["virtualmachineinstances/console"]})).await,
        g,
        r#""virtualmachineinstances/console""#,
    );
    refused(
        create(
            &alice,
            &ns,
            g,
            "write",
            json!({"namespace": vms, "resourceNames": ["vm1"], "verbs": ["get", "update"]}),
        )
        .await,
        g,
        r#""update""#,
    );
    // `[]` grants nothing, so it needs nothing.
    create(
        &alice,
        &ns,
        g,
        "nothing",
        json!({"namespace": "*", "resourceNames": []}),
    )
    .await
    .expect("resourceNames: [] grants nothing");

    // Updates that change the grant are checked; revoking is not a grant.
    let tokens = Api::<DynamicObject>::namespaced_with(alice.clone(), &ns, &resource(g));
    let patch = |spec: Value| Patch::Merge(json!({"spec": spec}));
    let err = tokens
        .patch(
            "vm1",
            &PatchParams::default(),
            &patch(json!({"resourceNames": ["vm2"]})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains(GATETOKEN_POLICY), "{err}");
    let err = tokens
        .patch(
            "nothing",
            &PatchParams::default(),
            &patch(json!({"resourceNames": null})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("every name"), "{err}");
    // Someone who may update GateTokens but holds nothing else may still revoke.
    let revoker = format!("revoker-{ns}");
    grant(
        &admin,
        &ns,
        "revoker",
        &revoker,
        vec![rule(
            &["ocgate.yaacov.com"],
            &["gatetokens"],
            &["get", "patch"],
            &[],
        )],
    )
    .await;
    wait_allowed(
        &admin,
        &revoker,
        "patch",
        "ocgate.yaacov.com",
        "gatetokens",
        "vm1",
        &ns,
    )
    .await;
    let as_revoker = cp.client_as(&revoker, &[]).await;
    Api::<DynamicObject>::namespaced_with(as_revoker, &ns, &resource(g))
        .patch(
            "vm1",
            &PatchParams::default(),
            &patch(json!({"revoked": true})),
        )
        .await
        .expect("revoking is always possible");
    // And metadata (labels, finalizers) changes are not grants either.
    tokens
        .patch(
            "vm1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
}

/// Wildcards need the wildcard: holding `get` on every core resource grants `resources: ["*"]`
/// with `get`, but not `verbs: ["*"]` nor `apiGroups: ["*"]`; the GateServer rule is the same.
#[tokio::test]
async fn wildcards_need_the_wildcard() {
    let (cp, admin, ns) = setup().await;
    let target = cp.fresh_namespace().await;
    let who = format!("bob-{ns}");
    let bob = token_creator(cp, &admin, &ns, &who).await;
    grant(
        &admin,
        &target,
        "read-core",
        &who,
        vec![rule(&[""], &["*"], &["get", "list"], &[])],
    )
    .await;
    wait_allowed(&admin, &who, "list", "", "configmaps", "", &target).await;
    let g = "GateToken";
    create(&bob, &ns, g, "read", json!({"namespace": target, "apiGroups": [""], "resources": ["*"], "verbs": ["get", "list"]}))
        .await
        .expect("bob holds get/list on every core resource there");
    create(
        &bob,
        &ns,
        g,
        "sub",
        json!({"namespace": target, "apiGroups": [""], "resources": ["*/log", "pods/exec"]}),
    )
    .await
    .expect("`*` also holds every subresource");
    refused(
        create(
            &bob,
            &ns,
            g,
            "verbs",
            json!({"namespace": target, "apiGroups": [""], "resources": ["*"], "verbs": ["*"]}),
        )
        .await,
        g,
        r#"grants "*" on "*" (API group "", every name)"#,
    );
    refused(
        create(
            &bob,
            &ns,
            g,
            "groups",
            json!({"namespace": target, "apiGroups": ["*"], "resources": ["configmaps"]}),
        )
        .await,
        g,
        r#"(API group "*", every name)"#,
    );
    refused(
        create(&bob, &ns, "GateServer", "gw", json!({"serviceAccountNamespace": target, "serviceAccountVerbs": ["get", "delete"], "serviceAccountAPIGroups": [""], "serviceAccountResources": ["configmaps"]})).await,
        "GateServer",
        r#""delete" on "configmaps""#,
    );
    create(&bob, &ns, "GateServer", "reader", json!({"serviceAccountNamespace": target, "serviceAccountAPIGroups": [""], "serviceAccountResources": ["configmaps"]}))
        .await
        .expect("a gateway that may read what bob may read");
}

/// The API server charges every authorization check: a rule naming more permissions than the
/// policy can check is refused with how to fix it, the largest checked rule is admitted, and a
/// cluster admin (who holds everything, one check) may create any.
#[tokio::test]
async fn big_rules_stay_within_the_cost_budget() {
    let (cp, admin, ns) = setup().await;
    let target = cp.fresh_namespace().await;
    let who = format!("carol-{ns}");
    let carol = token_creator(cp, &admin, &ns, &who).await;
    let verbs = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    let resources = ["configmaps", "services", "endpoints"];
    grant(
        &admin,
        &target,
        "many",
        &who,
        vec![rule(&[""], &resources, &verbs, &[])],
    )
    .await;
    wait_allowed(
        &admin,
        &who,
        "deletecollection",
        "",
        "endpoints",
        "",
        &target,
    )
    .await;
    assert_eq!(
        verbs.len() * resources.len(),
        admission::MAX_CHECKED_PERMISSIONS
    );
    let g = "GateToken";
    create(
        &carol,
        &ns,
        g,
        "largest",
        json!({"namespace": target, "apiGroups": [""], "resources": resources, "verbs": verbs}),
    )
    .await
    .expect("24 permissions, each checked, within the budget");
    let (code, message) = create(&carol, &ns, g, "too-big", json!({"namespace": target, "apiGroups": [""], "resources": ["configmaps", "services", "endpoints", "pods"], "verbs": verbs}))
        .await
        .unwrap_err();
    assert_eq!(code, 422, "{message}");
    assert!(
        message.contains("more than 24 permissions") && message.contains("split"),
        "{message}"
    );
    // The last permission of the largest rule is checked too: without it, refused.
    let mut fewer = verbs.to_vec();
    fewer.push("escalate");
    let (code, message) = create(&carol, &ns, g, "one-more-verb", json!({"namespace": target, "apiGroups": [""], "resources": ["configmaps", "services"], "verbs": fewer}))
        .await
        .unwrap_err();
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(r#""escalate" on "configmaps""#),
        "{message}"
    );
    // The cluster admin holds everything: any size, one check.
    let names: Vec<String> = (0..200).map(|i| format!("vm{i}")).collect();
    create(
        &admin,
        &ns,
        g,
        "admin-big",
        json!({"namespace": "*", "resourceNames": names, "verbs": verbs}),
    )
    .await
    .expect("an admin may grant anything");
}

/// What the API server stores is what the operator expects (it compares before signing), and
/// changed policies do not pass.
#[tokio::test]
async fn the_stored_policy_is_the_expected_one() {
    let (_cp, admin, _ns) = setup().await;
    let policies = admission::policies();
    let bindings = admission::bindings();
    for (p, b) in policies.iter().zip(bindings.iter()) {
        let name = p.metadata.name.clone().unwrap();
        let stored = Api::<ValidatingAdmissionPolicy>::all(admin.clone())
            .get(&name)
            .await
            .unwrap();
        admission::verify_policy(p, &stored).unwrap();
        let stored_binding = Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone())
            .get(&name)
            .await
            .unwrap();
        admission::verify_binding(b, &stored_binding).unwrap();
        // The API server compiled every expression without a warning.
        let warnings = stored
            .status
            .and_then(|s| s.type_checking)
            .and_then(|t| t.expression_warnings)
            .unwrap_or_default();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
    }
}
