//! The install manifests, for real: the checked-in YAML is what the generator writes; applied to
//! a real control plane, the operator binary runs under the ServiceAccount they create, with
//! exactly the RBAC they grant (a TokenRequest token, not the admin), watching all namespaces
//! with leader election on, and brings the seed GateServer and GateToken (applied as written,
//! in their own namespace `kube-gateway`) to Ready. That proves the generated least-privilege
//! RBAC is sufficient. SubjectAccessReviews and real requests as the operator's ServiceAccount
//! prove it minimal: it cannot mint tokens for ServiceAccounts it did not create, read Secrets
//! other than the signing keys, reach the kubelet (`nodes/proxy`), exec into pods, bind or
//! escalate, or read anything else. A gateway rule with a write verb is refused by the RBAC
//! escalation check (condition, no crash loop) until the optional escalate role is applied;
//! ServiceAccount-mode tokens need the optional ServiceAccount-token manifest, whose admission
//! policy keeps the operator to the ServiceAccounts it creates.
//!
//! This binary has one control-plane test (an all-namespaces operator must not share a control
//! plane with tests that run their own operators).

mod common;

use std::process::Command;

use common::*;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use virt_gateway_api::{GateServer, GateToken};
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
    let code: Vec<_> = virt_gateway_operator::rbac::cluster_rules()
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

const OPERATOR_NS: &str = "virt-gateway-operator-system";

/// Whether the operator's ServiceAccount may `verb` `resource` (`res` or `res/sub`) in `group`,
/// named `name` in `ns` ("" = every name, all namespaces), by a SubjectAccessReview.
async fn operator_may(
    admin: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    ns: &str,
) -> bool {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    review(
        admin,
        Some(ResourceAttributes {
            verb: Some(verb.into()),
            group: Some(group.into()),
            resource: Some(resource.into()),
            subresource: Some(subresource.into()),
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..ResourceAttributes::default()
        }),
        None,
    )
    .await
}

async fn review(
    admin: &Client,
    resource: Option<ResourceAttributes>,
    path: Option<NonResourceAttributes>,
) -> bool {
    service_account_may(admin, OPERATOR_NS, "virt-gateway-operator", resource, path).await
}

/// Whether the ServiceAccount `ns`/`name` may do what `resource` or `path` says.
async fn service_account_may(
    admin: &Client,
    ns: &str,
    name: &str,
    resource: Option<ResourceAttributes>,
    path: Option<NonResourceAttributes>,
) -> bool {
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{ns}:{name}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: resource,
            non_resource_attributes: path,
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &sar)
        .await
        .unwrap()
        .status
        .is_some_and(|s| s.allowed)
}

/// What the default install must NOT let the operator do (each line: verb, group, resource,
/// name, namespace), and the little it must.
async fn assert_minimal(admin: &Client) {
    let cannot: &[(&str, &str, &str, &str, &str)] = &[
        // Mint tokens for ServiceAccounts it did not create (any, anywhere).
        (
            "create",
            "",
            "serviceaccounts/token",
            "clusterrole-aggregation-controller",
            "kube-system",
        ),
        ("create", "", "serviceaccounts/token", "default", "default"),
        (
            "create",
            "",
            "serviceaccounts/token",
            "gatetoken-x",
            "kube-gateway",
        ),
        // Read Secrets other than the signing keys.
        ("get", "", "secrets", "", "kube-system"),
        ("list", "", "secrets", "", ""),
        ("watch", "", "secrets", "", ""),
        ("get", "", "secrets", "other", "kube-gateway"),
        (
            "get",
            "",
            "secrets",
            "kube-gateway-server-oauth-client",
            "kube-gateway",
        ),
        (
            "update",
            "",
            "secrets",
            "kube-gateway-jwt-secret",
            "kube-gateway",
        ),
        (
            "delete",
            "",
            "secrets",
            "kube-gateway-jwt-secret",
            "kube-gateway",
        ),
        // The kubelet (exec on every node), exec/attach/port-forward into pods, pods themselves.
        ("get", "", "nodes/proxy", "", ""),
        ("create", "", "nodes/proxy", "", ""),
        ("create", "", "pods/exec", "", "kube-system"),
        ("get", "", "pods/exec", "", "kube-system"),
        ("create", "", "pods/attach", "", "kube-system"),
        ("create", "", "pods/portforward", "", "kube-system"),
        ("create", "", "pods", "", "kube-system"),
        ("get", "", "services/proxy", "", "default"),
        // Grant itself more: bind, escalate, impersonate, change the admission policies.
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "cluster-admin",
            "",
        ),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "",
        ),
        (
            "escalate",
            "rbac.authorization.k8s.io",
            "roles",
            "",
            "kube-system",
        ),
        // Bind any ClusterRole but the console-Lease one, or write Leases itself (other
        // controllers' leader election) outside its own namespace.
        ("bind", "rbac.authorization.k8s.io", "clusterroles", "", ""),
        ("update", "coordination.k8s.io", "leases", "", "kube-system"),
        (
            "create",
            "coordination.k8s.io",
            "leases",
            "",
            "kube-gateway",
        ),
        ("impersonate", "", "users", "", ""),
        ("impersonate", "", "serviceaccounts", "", "kube-system"),
        (
            "update",
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            "virt-gateway-gatetoken-delegation",
            "",
        ),
        (
            "delete",
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
            "virt-gateway-gatetoken-delegation",
            "",
        ),
        (
            "create",
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            "",
            "",
        ),
        (
            "get",
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            "other",
            "",
        ),
        // No read-everything budget; no deleting ServiceAccounts; no writing GateToken specs.
        ("get", "", "configmaps", "", "kube-system"),
        ("list", "", "pods", "", ""),
        ("get", "", "nodes", "", ""),
        ("get", "storage.k8s.io", "storageclasses", "", ""),
        ("get", "kubevirt.io", "virtualmachines", "", ""),
        ("delete", "", "serviceaccounts", "default", "default"),
        (
            "update",
            "ocgate.yaacov.com",
            "gatetokens",
            "",
            "kube-gateway",
        ),
        (
            "create",
            "ocgate.yaacov.com",
            "gatetokens",
            "",
            "kube-gateway",
        ),
    ];
    for (verb, group, resource, name, ns) in cannot {
        assert!(
            !operator_may(admin, verb, group, resource, name, ns).await,
            "the operator may {verb} {group}/{resource} {name:?} in {ns:?}"
        );
    }
    let metrics = NonResourceAttributes {
        verb: Some("get".into()),
        path: Some("/metrics".into()),
    };
    assert!(
        !review(admin, None, Some(metrics)).await,
        "the operator may get /metrics"
    );
    let can: &[(&str, &str, &str, &str, &str)] = &[
        (
            "get",
            "",
            "secrets",
            "kube-gateway-jwt-secret",
            "kube-gateway",
        ),
        ("watch", "", "secrets", "kube-gateway-jwt-secret", ""),
        // Documented: RBAC cannot limit create by name (the guard policy limits what it creates).
        ("create", "", "secrets", "", "kube-gateway"),
        (
            "get",
            "subresources.kubevirt.io",
            "virtualmachineinstances/vnc",
            "",
            "",
        ),
        (
            "get",
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            "virt-gateway-gatetoken-delegation",
            "",
        ),
        (
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "virt-gateway-console-leases",
            "",
        ),
    ];
    for (verb, group, resource, name, ns) in can {
        assert!(
            operator_may(admin, verb, group, resource, name, ns).await,
            "the operator may not {verb} {group}/{resource} {name:?} in {ns:?}"
        );
    }
}

/// Whether gateway `gateway`'s ServiceAccount (in `gs`) may `verb` Leases in `ns`.
async fn gateway_may_lease(admin: &Client, gs: &str, gateway: &str, verb: &str, ns: &str) -> bool {
    let lease = ResourceAttributes {
        verb: Some(verb.into()),
        group: Some("coordination.k8s.io".into()),
        resource: Some("leases".into()),
        namespace: Some(ns.into()),
        ..ResourceAttributes::default()
    };
    service_account_may(admin, gs, gateway, Some(lease), None).await
}

/// Several replicas sharing consoles: with only its default RBAC the operator binds the
/// console-Lease ClusterRole (the one ClusterRole it may bind) to that gateway, which may then use
/// Leases in its own namespace and nowhere else, and a drain may take one replica at a time (a
/// PodDisruptionBudget); back to one replica, the binding and the budget go.
async fn replicas_get_console_leases_in_their_namespace_only(admin: &Client, gs: &str) {
    let replicated = server(
        gs,
        "replicated",
        json!({
            "route": "replicated.apps.example.com",
            "generateRoute": true,
            "replicas": 2,
            "consoles": {"shared": true}
        }),
    );
    create(admin, &replicated).await;
    wait_server_phase(admin, gs, "replicated", "Ready").await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(admin.clone(), gs);
    let d = deployments.get("replicated").await.unwrap();
    assert_eq!(d.spec.replicas, Some(2));
    let budgets: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(admin.clone(), gs);
    let budget = budgets.get("replicated").await.unwrap().spec.unwrap();
    assert_eq!(
        budget.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    for verb in ["get", "create", "update"] {
        assert!(
            gateway_may_lease(admin, gs, "replicated", verb, gs).await,
            "{verb}"
        );
    }
    for (gateway, verb, ns) in [
        ("replicated", "list", gs),
        ("replicated", "delete", gs),
        ("replicated", "update", "kube-system"),
        ("replicated", "create", "default"),
        // The seed runs one replica: no Lease permission at all.
        ("gateserver-sample", "get", gs),
    ] {
        assert!(
            !gateway_may_lease(admin, gs, gateway, verb, ns).await,
            "{gateway} may {verb} leases in {ns}"
        );
    }
    let servers: Api<GateServer> = Api::namespaced(admin.clone(), gs);
    servers
        .patch(
            "replicated",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin.clone(), gs);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while bindings
        .get_opt("replicated-console-leases")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the console-Lease binding outlived the second replica"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!gateway_may_lease(admin, gs, "replicated", "create", gs).await);
    assert!(
        budgets.get_opt("replicated").await.unwrap().is_none(),
        "one replica needs no PodDisruptionBudget"
    );
}

/// A client with the operator's own credentials.
async fn as_operator(cp: &ControlPlane) -> Client {
    cp.client_with_token(
        &cp.token_request(OPERATOR_NS, "virt-gateway-operator", 3600)
            .await,
    )
    .await
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        e => panic!("{e}"),
    }
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
    let mut operator = OperatorProcess::spawn(
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
    // Sufficient, and minimal: what the operator's ServiceAccount cannot do.
    assert_minimal(&admin).await;
    let operator_client = as_operator(cp).await;
    // Real requests too: no token for a ServiceAccount it did not create, no other Secret, and
    // the guard policy keeps it from creating a ServiceAccount-token Secret (which would hand it
    // that ServiceAccount's token under a name it may read).
    let err = Api::<ServiceAccount>::namespaced(operator_client.clone(), "kube-system")
        .create_token_request("default", &PostParams::default(), &TokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 403);
    let err = Api::<Secret>::namespaced(operator_client.clone(), "kube-system")
        .list(&Default::default())
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 403);
    let stolen: Secret = serde_json::from_value(json!({
        "metadata": {"name": "kube-gateway-jwt-secret", "namespace": "kube-system",
                     "annotations": {"kubernetes.io/service-account.name": "clusterrole-aggregation-controller"}},
        "type": "kubernetes.io/service-account-token"
    }))
    .unwrap();
    let (code, message) = api_error(
        Api::<Secret>::namespaced(operator_client.clone(), "kube-system")
            .create(&PostParams::default(), &stolen)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("virt-gateway-operator-guard"), "{message}");

    replicas_get_console_leases_in_their_namespace_only(&admin, gs).await;

    // ServiceAccount-mode tokens are off by default: a condition says how to enable them.
    let sa_token = token(
        gs,
        "sa-console",
        json!({
            "namespace": "default", "resourceNames": ["testvm"], "generateServiceAccount": true
        }),
    );
    create(&admin, &sa_token).await;
    let tokens: Api<GateToken> = Api::namespaced(admin.clone(), gs);
    let disabled = wait_for(&tokens, "sa-console", "disabled", |t| {
        t.status
            .as_ref()
            .and_then(|st| condition(&st.conditions, "Ready"))
            .is_some_and(|c| c.1 == "ServiceAccountTokensDisabled")
    })
    .await;
    assert!(disabled.status.unwrap().token.is_empty());

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
        metric(&text, "virt_gateway_operator_gatetokens{phase=\"Ready\"}").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    // The ServiceAccount-mode token, refused while that mode is off.
    assert!(
        metric(&text, "virt_gateway_operator_gatetokens{phase=\"Error\"}").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        operator.logs().contains("\"acquired the leader Lease\"")
            || operator.logs().contains("acquired the leader Lease"),
        "{}",
        operator.logs()
    );

    // ServiceAccount mode, opted in: the flag and the manifest. The admission policy of the
    // manifest keeps the operator to ServiceAccounts named gatetoken-*, and the operator requests
    // tokens only for the ones it created for the GateToken.
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "-f",
            &file("virt-gateway-operator-serviceaccount-tokens.yaml"),
        ],
    );
    // The guard was in force before the RBAC: never a token for another ServiceAccount, first
    // refused by RBAC (until the new binding is in effect), then by the guard.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let err = Api::<ServiceAccount>::namespaced(operator_client.clone(), "kube-system")
            .create_token_request("default", &PostParams::default(), &TokenRequest::default())
            .await
            .map(|_| ())
            .expect_err("a token for kube-system/default");
        let (code, message) = api_error(err);
        assert_eq!(code, 403, "{message}");
        if message.contains("virt-gateway-operator-serviceaccount-tokens") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ServiceAccount-token RBAC is not in effect: {message}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let err = Api::<ServiceAccount>::namespaced(operator_client.clone(), "default")
        .delete("default", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(api_error(err).0, 403);
    operator.signal(libc::SIGTERM);
    operator.wait_exit().await;
    let mut with_tokens = OperatorProcess::spawn(
        &kubeconfig,
        &[
            "--leader-elect".into(),
            format!("--metrics-bind-address={}", free_addr()),
            format!("--health-probe-bind-address={health}"),
            "--log-format=json".into(),
            "--identity=least-privilege-2".into(),
            "--lease-duration-seconds=4".into(),
            "--lease-renew-grace-seconds=1".into(),
            "--enable-service-account-tokens".into(),
        ],
        &[("POD_NAMESPACE", ns)],
    );
    wait_http_ok(&health, "/readyz").await;
    let sa_console = token(
        gs,
        "sa-console-2",
        json!({
            "namespace": "default", "resourceNames": ["testvm"], "generateServiceAccount": true
        }),
    );
    create(&admin, &sa_console).await;
    let issued = wait_token_phase(&admin, gs, "sa-console-2", "Ready").await;
    assert_eq!(
        issued.status.unwrap().service_account_name,
        "gatetoken-sa-console-2"
    );
    with_tokens.signal(libc::SIGTERM);
    with_tokens.wait_exit().await;
}
