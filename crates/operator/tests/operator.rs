//! The operator against a real control plane (etcd, kube-apiserver, kube-controller-manager from
//! crates/testenv). One control plane for this test binary; each test takes a fresh namespace
//! and runs its own in-process operator scoped to it, so tests run in parallel without touching
//! each other's objects. Only `seeds_as_written_become_ready_with_every_child` uses the seeds'
//! own namespace `kube-gateway` (created here, once); every other test moves the seeds into its
//! fresh namespace.

mod common;

use std::process::Command;

use common::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use virt_gateway_api::{GateServer, GateToken, JWT_SECRET_NAME};
use virt_gateway_operator::builders::server::GATEWAY_PORT;
use virt_gateway_operator::{GatewayDefaults, GatewayOptions, gateway_deployment};
use virt_gateway_testenv::ControlPlane;

async fn setup() -> (&'static ControlPlane, Client, String) {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await;
    install_crds(cp).await;
    let ns = cp.fresh_namespace().await;
    (cp, client, ns)
}

async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// The events of `name` once one has `reason`: the reconciler records events after it writes
/// the status, so a test that saw the status may list the events before they exist.
async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let events = events_for(client, ns, name).await;
        if events.iter().any(|(r, _)| r == reason) || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

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

/// The seed samples applied exactly as written (kubectl create -f deploy/samples/...): the
/// GateServer becomes Ready with every child as specified, the GateToken becomes Ready and its
/// JWT verifies with the public key in the Secret, with the expected claims.
#[tokio::test]
async fn seeds_as_written_become_ready_with_every_child() {
    let (cp, client, _) = setup().await;
    let ns = "kube-gateway";
    kubectl(cp, &["create", "namespace", ns]);
    let operator = Operator::in_namespace(client.clone(), ns);
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

    let gs = wait_server_phase(&client, ns, "gateserver-sample", "Ready").await;
    let status = gs.status.clone().unwrap();
    assert_eq!(status.observed_generation, gs.metadata.generation);
    assert_eq!(condition(&status.conditions, "Ready").unwrap().0, "True");
    assert_eq!(
        condition(&status.conditions, "Degraded").unwrap().0,
        "False"
    );
    let exposed = condition(&status.conditions, "Exposed").unwrap();
    assert_eq!(
        (exposed.0.as_str(), exposed.1.as_str()),
        ("True", "IngressCreated")
    );
    assert!(
        gs.finalizers()
            .contains(&"ocgate.yaacov.com/finalizer".to_owned())
    );

    // The key: Gen B name and keys, SPKI PUBLIC KEY + PKCS#1 RSA-4096, ours, no owner.
    let secret = key_secret(&client, ns).await;
    let data = secret.data.as_ref().unwrap();
    assert!(String::from_utf8_lossy(&data["cert.pem"].0).starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(
        String::from_utf8_lossy(&data["key.pem"].0).starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    assert!(secret.metadata.owner_references.is_none());
    assert_eq!(
        secret.labels()["app.kubernetes.io/managed-by"],
        "virt-gateway-operator"
    );
    let public = public_key(&secret);
    assert_eq!(public.algorithm().jws_alg(), "RS256");

    // Every child, as specified.
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    assert_eq!(sa.owner_references()[0].uid, gs.uid().unwrap());
    let access = "virt-gateway:kube-gateway:gateserver-sample";
    let cr = Api::<ClusterRole>::all(client.clone())
        .get(access)
        .await
        .unwrap();
    let rule = &cr.rules.as_ref().unwrap()[0];
    assert_eq!(rule.verbs, ["get"]);
    assert_eq!(
        rule.api_groups.as_deref(),
        Some(&["subresources.kubevirt.io".to_owned()][..])
    );
    assert_eq!(
        rule.resources.as_deref(),
        Some(
            &[
                "virtualmachineinstances".to_owned(),
                "virtualmachineinstances/vnc".to_owned()
            ][..]
        )
    );
    assert!(cr.owner_references().is_empty());
    let crb = Api::<ClusterRoleBinding>::all(client.clone())
        .get(access)
        .await
        .unwrap();
    assert_eq!(crb.subjects.as_ref().unwrap()[0].name, "gateserver-sample");
    assert_eq!(
        crb.subjects.as_ref().unwrap()[0].namespace.as_deref(),
        Some(ns)
    );
    let reader = Api::<Role>::namespaced(client.clone(), ns)
        .get("gateserver-sample-gatetoken-reader")
        .await
        .unwrap();
    assert_eq!(
        reader.rules.as_ref().unwrap()[0].resources.as_deref(),
        Some(&["gatetokens".to_owned()][..])
    );
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .get("gateserver-sample-gatetoken-reader")
        .await
        .unwrap();
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    let svc_spec = svc.spec.unwrap();
    assert_eq!(svc_spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(svc_spec.ports.unwrap()[0].port, GATEWAY_PORT);
    let ing = Api::<Ingress>::namespaced(client.clone(), ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    let rule = &ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.host.as_deref(),
        Some("kube-gateway-proxy.apps-crc.testing")
    );
    assert!(
        ing.spec.as_ref().unwrap().tls.is_none(),
        "no bogus TLS stanza"
    );

    // The Deployment is what the pure builder says (compared on the fields we set; the API
    // server adds its defaults).
    let deploy = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    let want = gateway_deployment(
        &gs,
        Some(&secret),
        &GatewayOptions {
            defaults: GatewayDefaults::default(),
            oauth_client_id: None,
            ..GatewayOptions::default()
        },
    )
    .unwrap();
    let (got_pod, want_pod) = (
        deploy.spec.template.spec.clone().unwrap(),
        want.spec.template.spec.clone().unwrap(),
    );
    let (got_c, want_c) = (&got_pod.containers[0], &want_pod.containers[0]);
    assert_eq!(
        got_c.image.as_deref(),
        Some("quay.io/yaacov/kube-gateway"),
        "the seed's image wins"
    );
    assert_eq!(got_c.command, want_c.command);
    assert_eq!(got_c.env, want_c.env);
    assert_eq!(got_c.security_context, want_c.security_context);
    assert_eq!(got_c.resources, want_c.resources);
    assert_eq!(got_c.volume_mounts, want_c.volume_mounts);
    assert_eq!(
        got_pod.init_containers.as_ref().unwrap()[0].command,
        want_pod.init_containers.as_ref().unwrap()[0].command
    );
    assert_eq!(
        got_pod.service_account_name.as_deref(),
        Some("gateserver-sample")
    );
    let jwt_volume = got_pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "kube-gateway-jwt-secret")
        .unwrap();
    let items = jwt_volume.secret.as_ref().unwrap().items.clone().unwrap();
    assert_eq!(items.len(), 1, "only the public key is mounted");
    assert_eq!(items[0].key, "cert.pem");
    assert_eq!(
        deploy
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["ocgate.yaacov.com/jwt-kid"],
        public.kid()
    );
    // On a cluster without OpenShift's SCCs the pod runs as the fixed non-root user, and Pod
    // Security admission accepts it at `restricted`.
    assert_eq!(
        got_pod.security_context.as_ref().unwrap().run_as_user,
        Some(65532)
    );
    dry_run_pod_under_restricted(&client, &deploy)
        .await
        .expect("the gateway pod meets Pod Security restricted");
    // No kubelet here: the Deployment never becomes available, and the status says so.
    let available = condition(&status.conditions, "Available").unwrap();
    assert_ne!(available.0, "True", "{available:?}");

    // The token.
    let tok = wait_token_phase(&client, ns, "gatetoken-sample", "Ready").await;
    let st = tok.status.clone().unwrap();
    let verified = verify(&secret, &st.token, unix_now());
    let c = &verified.claims;
    assert_eq!(c.namespace, "default");
    assert_eq!(c.verbs, ["get"]);
    assert_eq!(
        c.api_groups,
        Some(vec!["subresources.kubevirt.io".to_owned()])
    );
    assert_eq!(
        c.resources,
        Some(vec![
            "virtualmachineinstances".to_owned(),
            "virtualmachineinstances/vnc".to_owned()
        ])
    );
    assert_eq!(c.resource_names, Some(vec!["testvm".to_owned()]));
    assert_eq!(c.non_resource_urls, None);
    assert_eq!(c.jti.as_deref(), Some(tok.uid().unwrap().as_str()));
    assert_eq!(c.exp - c.nbf.unwrap(), 3600);
    assert!(c.iat.is_some());
    // The seed sample names no console role, so its JWT keeps Gen B's claims.
    assert_eq!(c.console_role, None);
    assert!(verified.kid_in_header);
    assert_eq!(verified.kid, public.kid());
    assert_eq!(st.data.alg, "RS256");
    assert_eq!(st.data.kid.as_deref(), Some(public.kid()));
    assert_eq!(st.data.jti.as_deref(), Some(tok.uid().unwrap().as_str()));
    assert_eq!(
        (st.data.nbf, st.data.exp),
        (c.nbf.unwrap() as i64, c.exp as i64)
    );
    // A watch-only GateToken: the JWT says so, for the gateway to hold it to.
    let spec =
        json!({"namespace": "default", "resourceNames": ["testvm"], "consoleRole": "observe"});
    create(&client, &token(ns, "observer", spec)).await;
    let observer = wait_token_phase(&client, ns, "observer", "Ready").await;
    let claims = verify(&secret, &observer.status.unwrap().token, unix_now()).claims;
    assert_eq!(claims.console_role.as_deref(), Some("observe"));
    // Every status key the Gen B schema requires is serialised, even when empty.
    let raw = kubectl(
        cp,
        &[
            "get",
            "gatetoken",
            "gatetoken-sample",
            "-n",
            ns,
            "-o",
            "json",
        ],
    );
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["status"]["service-account-name"], json!(""));
    for key in ["conditions", "token", "data", "phase"] {
        assert!(
            raw["status"].get(key).is_some(),
            "status.{key} missing: {raw}"
        );
    }
    // Events on transitions.
    let server_events = events_for(&client, ns, "gateserver-sample").await;
    for reason in ["KeySecretCreated", "Ready", "DeprecatedField"] {
        assert!(
            server_events.iter().any(|(r, _)| r == reason),
            "{reason} in {server_events:?}"
        );
    }
    let token_events = events_for(&client, ns, "gatetoken-sample").await;
    assert!(
        token_events
            .iter()
            .any(|(r, n)| r == "Issued" && n.contains("RS256")),
        "{token_events:?}"
    );
    operator.stop().await.unwrap();
}

/// A deleted Deployment and ClusterRole come back; an edited Service is put back.
#[tokio::test]
async fn drift_is_repaired() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    create(&client, &seed_server(&ns)).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let before = deployments.get("gateserver-sample").await.unwrap();
    deployments
        .delete("gateserver-sample", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&deployments, "gateserver-sample", "recreated", |d| {
        d.uid() != before.uid()
    })
    .await;

    // Someone points the Service elsewhere: the operator puts its fields back (server-side
    // apply with force takes them over again).
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    services
        .patch(
            "gateserver-sample",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "selector": {"app": "hijacked"},
                "ports": [{"port": 8080, "targetPort": 9999, "protocol": "TCP", "name": "http"}]
            }})),
        )
        .await
        .unwrap();
    wait_for(
        &services,
        "gateserver-sample",
        "selector and targetPort restored",
        |s| {
            let spec = s.spec.as_ref().unwrap();
            let ports = spec.ports.as_ref().unwrap();
            spec.selector.as_ref().unwrap()["app"] == "gateserver-sample"
                && ports.len() == 1
                && ports[0].target_port
                    == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
        },
    )
    .await;

    let roles: Api<ClusterRole> = Api::all(client.clone());
    let name = format!("virt-gateway:{ns}:gateserver-sample");
    roles.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for(&roles, &name, "recreated", |_| true).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
}

/// Spec edits reach the children; objects the new spec no longer asks for are removed.
#[tokio::test]
async fn spec_changes_propagate_and_stale_objects_are_removed() {
    let (cp, client, ns) = setup().await;
    let other = cp.fresh_namespace().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    create(&client, &seed_server(&ns)).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let servers: Api<GateServer> = Api::namespaced(client.clone(), &ns);
    let access = format!("virt-gateway:{ns}:gateserver-sample");

    servers
        .patch(
            "gateserver-sample",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "serviceAccountVerbs": ["get", "list"],
                "serviceAccountNamespace": other,
                "route": "other.apps.example.com",
                "image": null,
                "webAppImage": "",
                "passThrough": true
            }})),
        )
        .await
        .unwrap();
    let gs = wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    assert_eq!(gs.metadata.generation, Some(2));
    let cr = Api::<ClusterRole>::all(client.clone())
        .get(&access)
        .await
        .unwrap();
    assert_eq!(cr.rules.unwrap()[0].verbs, ["get", "list"]);
    // The ClusterRoleBinding gave way to a RoleBinding in the other namespace.
    wait_gone(&Api::<ClusterRoleBinding>::all(client.clone()), &access).await;
    let rb = Api::<RoleBinding>::namespaced(client.clone(), &other)
        .get(&access)
        .await
        .unwrap();
    assert_eq!(rb.labels()["ocgate.yaacov.com/gateserver-namespace"], ns);
    let ing = Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    assert_eq!(
        ing.spec.unwrap().rules.unwrap()[0].host.as_deref(),
        Some("other.apps.example.com")
    );
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    let pod = d.spec.template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(GatewayDefaults::default().gateway_image.as_str()),
        "unset image = operator default"
    );
    assert!(
        c.command
            .as_ref()
            .unwrap()
            .contains(&"-k8s-bearer-token-passthrough=true".to_owned())
    );
    assert!(
        c.readiness_probe.as_ref().unwrap().http_get.is_some(),
        "our image: HTTP probes"
    );
    assert!(
        pod.init_containers.is_none_or(|i| i.is_empty()),
        "webAppImage \"\": no init container"
    );

    // Switch to a Route on a cluster without the Route API: the Ingress goes, a condition says
    // why there is no Route, and nothing fails.
    servers
        .patch(
            "gateserver-sample",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"generateRoute": true}})),
        )
        .await
        .unwrap();
    let gs = wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let exposed = condition(&gs.status.unwrap().conditions, "Exposed").unwrap();
    assert_eq!(
        (exposed.0.as_str(), exposed.1.as_str()),
        ("False", "RouteAPIUnavailable")
    );
    wait_gone(
        &Api::<Ingress>::namespaced(client.clone(), &ns),
        "gateserver-sample",
    )
    .await;
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    let cmd = d.spec.template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert!(cmd.contains(&"-listen=https://0.0.0.0:8080".to_owned()));
}

/// Deleting a GateServer: the finalizer removes the cluster-scoped and cross-namespace objects,
/// kube-controller-manager's garbage collector the namespaced ones; the key Secret stays, and a
/// token signed with it still verifies.
#[tokio::test]
async fn deletion_finalizes_and_garbage_collects_but_keeps_the_key() {
    let (cp, client, ns) = setup().await;
    let other = cp.fresh_namespace().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    let mut gs = seed_server(&ns);
    gs.spec.service_account_namespace = other.clone();
    create(&client, &gs).await;
    create(&client, &seed_token(&ns)).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let tok = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    let secret = key_secret(&client, &ns).await;
    let access = format!("virt-gateway:{ns}:gateserver-sample");
    Api::<RoleBinding>::namespaced(client.clone(), &other)
        .get(&access)
        .await
        .unwrap();

    let servers: Api<GateServer> = Api::namespaced(client.clone(), &ns);
    servers
        .delete("gateserver-sample", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&servers, "gateserver-sample").await;
    wait_gone(&Api::<ClusterRole>::all(client.clone()), &access).await;
    wait_gone(
        &Api::<RoleBinding>::namespaced(client.clone(), &other),
        &access,
    )
    .await;
    wait_gone(
        &Api::<Deployment>::namespaced(client.clone(), &ns),
        "gateserver-sample",
    )
    .await;
    wait_gone(
        &Api::<Service>::namespaced(client.clone(), &ns),
        "gateserver-sample",
    )
    .await;
    wait_gone(
        &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
        "gateserver-sample",
    )
    .await;
    wait_gone(
        &Api::<Ingress>::namespaced(client.clone(), &ns),
        "gateserver-sample",
    )
    .await;
    wait_gone(
        &Api::<Role>::namespaced(client.clone(), &ns),
        "gateserver-sample-gatetoken-reader",
    )
    .await;
    let kept = key_secret(&client, &ns).await;
    assert_eq!(kept.data, secret.data);
    assert_eq!(kept.uid(), secret.uid());
    verify(&kept, &tok.status.unwrap().token, unix_now());
}

/// Two GateServers in one namespace share the one key Secret instead of failing.
#[tokio::test]
async fn two_servers_share_one_key() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    let a = seed_server(&ns);
    let mut b = seed_server(&ns);
    b.metadata.name = Some("second".into());
    b.spec.route = Some("second.apps.example.com".into());
    create(&client, &a).await;
    create(&client, &b).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    wait_server_phase(&client, &ns, "second", "Ready").await;
    let secret = key_secret(&client, &ns).await;
    let kid = public_key(&secret).kid().to_owned();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for name in ["gateserver-sample", "second"] {
        let d = deployments.get(name).await.unwrap();
        assert_eq!(
            d.spec.template.metadata.unwrap().annotations.unwrap()["ocgate.yaacov.com/jwt-kid"],
            kid
        );
    }
    let roles: Api<ClusterRole> = Api::all(client.clone());
    roles
        .get(&format!("virt-gateway:{ns}:gateserver-sample"))
        .await
        .unwrap();
    roles
        .get(&format!("virt-gateway:{ns}:second"))
        .await
        .unwrap();
    // Deleting one leaves the other and the key alone.
    Api::<GateServer>::namespaced(client.clone(), &ns)
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(
        &Api::<GateServer>::namespaced(client.clone(), &ns),
        "second",
    )
    .await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    assert_eq!(key_secret(&client, &ns).await.data, secret.data);
}

/// A token whose `from` lies ahead is signed at once (Gen B), shown Pending, then Ready at `nbf`
/// with the same token; a 5-second token ends Completed, still with the same token.
#[tokio::test]
async fn token_phases_follow_nbf_and_exp() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    create(&client, &seed_server(&ns)).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let from = in_seconds(15);
    create(
        &client,
        &token(
            &ns,
            "later",
            json!({"namespace": "default", "from": from, "durationSec": 5}),
        ),
    )
    .await;
    let pending = wait_token_phase(&client, &ns, "later", "Pending").await;
    let st = pending.status.unwrap();
    assert!(!st.token.is_empty(), "signed while pending");
    assert_eq!(st.data.from, from);
    assert_eq!(
        condition(&st.conditions, "Ready").unwrap().1,
        "TokenPending"
    );
    let secret = key_secret(&client, &ns).await;
    let nbf = jiff::Timestamp::from_second(st.data.nbf).unwrap();
    assert_eq!(nbf, from.parse::<jiff::Timestamp>().unwrap());
    // Not yet valid for a verifier either.
    assert!(
        virt_gateway_auth::jwt::Verifier::new([public_key(&secret)])
            .with_leeway(std::time::Duration::ZERO)
            .verify(&st.token, unix_now())
            .is_err()
    );

    let ready = wait_token_phase(&client, &ns, "later", "Ready").await;
    assert_eq!(ready.status.as_ref().unwrap().token, st.token);
    let done = wait_token_phase(&client, &ns, "later", "Completed").await;
    let done_st = done.status.unwrap();
    assert_eq!(done_st.token, st.token);
    assert_eq!(
        condition(&done_st.conditions, "Completed").unwrap().0,
        "True"
    );
    assert_eq!(
        condition(&done_st.conditions, "Ready").unwrap().1,
        "Expired"
    );
    let events = events_for(&client, &ns, "later").await;
    for reason in ["Issued", "Ready", "Completed"] {
        assert!(
            events.iter().any(|(r, _)| r == reason),
            "{reason} in {events:?}"
        );
    }
}

/// The API server refuses, at admission, what CEL can check.
#[tokio::test]
async fn bad_specs_are_refused_at_admission() {
    let (_cp, client, ns) = setup().await;
    let api: Api<GateToken> = Api::namespaced(client.clone(), &ns);
    let cases = [
        (
            json!({"apiGroups": ["x"], "nonResourceURLs": ["/healthz"]}),
            "but not both",
        ),
        (
            json!({"APIGroups": ["x"], "nonResourceURLs": ["/healthz"]}),
            "but not both",
        ),
        (json!({"apiGroups": []}), "can't be empty"),
        (json!({"from": "tomorrow"}), "RFC 3339"),
        (json!({"durationSec": 0}), "greater than 0"),
    ];
    for (i, (spec, message)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &token(&ns, &format!("bad-{i}"), spec.clone()),
            )
            .await
            .expect_err("refused");
        let kube::Error::Api(status) = err else {
            panic!("{err}")
        };
        assert_eq!(status.code, 422, "{spec}: {status:?}");
        assert!(
            status.message.contains(message),
            "{spec}: {}",
            status.message
        );
    }
    let servers: Api<GateServer> = Api::namespaced(client.clone(), &ns);
    let err = servers
        .create(
            &PostParams::default(),
            &server(
                &ns,
                "bad",
                json!({"serviceAccountNonResourceURLs": ["/healthz"]}),
            ),
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("but not both"), "{err}");
    // Revocation is final.
    let _operator = Operator::in_namespace(client.clone(), &ns);
    create(&client, &token(&ns, "revoked", json!({"revoked": true}))).await;
    let err = api
        .patch(
            "revoked",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"revoked": false}})),
        )
        .await
        .expect_err("revoked cannot be undone");
    assert!(
        err.to_string()
            .contains("revoked cannot be set back to false"),
        "{err}"
    );
}

/// What CEL cannot catch: a missing key Secret, a corrupt key, `generateSecret: false` without a
/// Secret. Each gives the Error phase (or condition) saying exactly what to fix, nothing else
/// changes, and fixing it resumes.
#[tokio::test]
async fn missing_and_corrupt_keys_are_reported_and_recoverable() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);

    // A token in a namespace without a key: Error/PrivateKeyError, no token, no data.
    create(&client, &seed_token(&ns)).await;
    let tok = wait_token_phase(&client, &ns, "gatetoken-sample", "Error").await;
    let st = tok.status.unwrap();
    let (status, reason, message) = condition(&st.conditions, "Error").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PrivateKeyError")
    );
    assert!(
        message.contains(&format!(
            "Secret kube-gateway-jwt-secret not found in namespace {ns}"
        )),
        "{message}"
    );
    assert!(message.contains("generateSecret: true"), "{message}");
    assert!(st.token.is_empty());
    assert_eq!(st.data.exp, 0);

    // generateSecret: false and no Secret: the server says so; everything else is applied.
    let mut no_key = seed_server(&ns);
    no_key.spec.raw_gnerate_secret = None;
    no_key.spec.raw_generate_secret = Some(false);
    create(&client, &no_key).await;
    let gs = wait_server_phase(&client, &ns, "gateserver-sample", "Error").await;
    let (status, reason, message) = condition(&gs.status.unwrap().conditions, "Ready").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "KeySecretMissing")
    );
    assert!(message.contains("kube-gateway-jwt-secret"), "{message}");
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("gateserver-sample")
        .await
        .unwrap();
    assert!(
        Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(JWT_SECRET_NAME)
            .await
            .unwrap()
            .is_none()
    );

    // A corrupt key: named, with the parse error; the Secret is never overwritten.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let corrupt = Secret {
        metadata: ObjectMeta {
            name: Some(JWT_SECRET_NAME.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [
                (
                    "cert.pem".to_owned(),
                    ByteString(
                        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
                    ),
                ),
                ("key.pem".to_owned(), ByteString(b"not a key".to_vec())),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &corrupt)
        .await
        .unwrap();
    let servers: Api<GateServer> = Api::namespaced(client.clone(), &ns);
    let gs = wait_for(&servers, "gateserver-sample", "KeySecretInvalid", |gs| {
        gs.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Ready"))
            .is_some_and(|c| c.1 == "KeySecretInvalid")
    })
    .await;
    let message = condition(&gs.status.unwrap().conditions, "Ready")
        .unwrap()
        .2;
    assert!(
        message.starts_with(&format!(
            "Secret kube-gateway-jwt-secret in namespace {ns}: cert.pem is not a usable public key"
        )),
        "{message}"
    );
    let tokens: Api<GateToken> = Api::namespaced(client.clone(), &ns);
    let tok = wait_for(&tokens, "gatetoken-sample", "key.pem error", |t| {
        t.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Error"))
            .is_some_and(|c| c.2.contains("key.pem is not a usable private key"))
    })
    .await;
    assert!(tok.status.unwrap().token.is_empty());
    assert_eq!(
        secrets.get(JWT_SECRET_NAME).await.unwrap().data,
        corrupt.data,
        "never overwritten"
    );

    // Fix it with an upstream-style Secret (SPKI labelled CERTIFICATE): both recover.
    let key = virt_gateway_auth::keys::KeyPair::generate(
        virt_gateway_auth::keys::KeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    let upstream_public = key
        .public_key()
        .to_pem()
        .replace("PUBLIC KEY", "CERTIFICATE");
    secrets
        .patch(
            JWT_SECRET_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {
                "cert.pem": upstream_public, "key.pem": key.private_key_pem().unwrap()
            }})),
        )
        .await
        .unwrap();
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let tok = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    let st = tok.status.unwrap();
    assert_eq!(st.data.alg, "ES256", "the key type decides the algorithm");
    let verified = virt_gateway_auth::jwt::Verifier::new([key.public_key().clone()])
        .verify(&st.token, unix_now())
        .unwrap();
    assert_eq!(verified.kid, key.kid());
    assert!(condition(&st.conditions, "Error").is_none());
}

/// `spec.revoked: true` moves a token to Revoked (final), keeps its token, and says so.
#[tokio::test]
async fn revoked_tokens_are_final() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    create(&client, &seed_server(&ns)).await;
    create(&client, &seed_token(&ns)).await;
    let tok = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    let token = tok.status.unwrap().token;
    let api: Api<GateToken> = Api::namespaced(client.clone(), &ns);
    // A spec edit after issuance does not re-sign; a condition says so.
    api.patch(
        "gatetoken-sample",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resourceNames": ["othervm"]}})),
    )
    .await
    .unwrap();
    let edited = wait_for(&api, "gatetoken-sample", "SpecChanged", |t| {
        t.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "SpecChanged"))
            .is_some()
    })
    .await;
    let st = edited.status.unwrap();
    assert_eq!(st.token, token);
    assert!(
        condition(&st.conditions, "SpecChanged")
            .unwrap()
            .2
            .contains("resourceNames")
    );
    api.patch(
        "gatetoken-sample",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"revoked": true}})),
    )
    .await
    .unwrap();
    let revoked = wait_token_phase(&client, &ns, "gatetoken-sample", "Revoked").await;
    let st = revoked.status.unwrap();
    assert_eq!(st.token, token);
    assert_eq!(condition(&st.conditions, "Revoked").unwrap().0, "True");
    assert_eq!(condition(&st.conditions, "Ready").unwrap().0, "False");
    let events = wait_event(&client, &ns, "gatetoken-sample", "Revoked").await;
    assert!(events.iter().any(|(r, _)| r == "Revoked"), "{events:?}");
}

/// `generateServiceAccount: true`: a real ServiceAccount and RBAC for exactly the token's rule,
/// a TokenRequest token that authenticates, and everything removed at expiry (the token stops
/// working at once) and on deletion.
#[tokio::test]
async fn service_account_tokens_really_authenticate_and_are_removed() {
    let (cp, client, ns) = setup().await;
    let target = cp.fresh_namespace().await;
    let _operator = Operator::start(client.clone(), with_service_account_tokens(&ns));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &target);
    for name in ["allowed", "other"] {
        cms.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    }
    let spec = json!({
        "namespace": target, "verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
        "resourceNames": ["allowed"], "durationSec": 20, "generateServiceAccount": true
    });
    create(&client, &token(&ns, "sa", spec)).await;
    let tok = wait_token_phase(&client, &ns, "sa", "Ready").await;
    let st = tok.status.unwrap();
    assert_eq!(st.service_account_name, "gatetoken-sa");
    assert!(!st.token.is_empty());
    assert!(
        !st.data.alg.is_empty(),
        "alg read from the ServiceAccount token"
    );
    assert!(
        tok.metadata
            .finalizers
            .unwrap()
            .contains(&"ocgate.yaacov.com/finalizer".to_owned())
    );

    let as_token = cp.client_with_token(&st.token).await;
    let theirs: Api<ConfigMap> = Api::namespaced(as_token.clone(), &target);
    theirs.get("allowed").await.expect("the rule allows this");
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => s.code,
        e => panic!("{e}"),
    };
    assert_eq!(code(theirs.get("other").await.unwrap_err()), 403);
    assert_eq!(
        code(theirs.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    assert_eq!(
        code(
            Api::<ConfigMap>::namespaced(as_token.clone(), &ns)
                .get("allowed")
                .await
                .unwrap_err()
        ),
        403
    );
    assert_eq!(
        code(
            Api::<Secret>::namespaced(as_token.clone(), &target)
                .list(&ListParams::default())
                .await
                .unwrap_err()
        ),
        403
    );

    // `resourceNames: []` means nothing here too (RBAC would read it as every name): the
    // ServiceAccount's ClusterRole has no rule, and its token reads nothing.
    let spec = json!({
        "namespace": target, "verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
        "resourceNames": [], "durationSec": 600, "generateServiceAccount": true
    });
    create(&client, &token(&ns, "none", spec)).await;
    let none = wait_token_phase(&client, &ns, "none", "Ready").await;
    let role = Api::<ClusterRole>::all(client.clone())
        .get(&format!("virt-gateway-token:{ns}:none"))
        .await
        .unwrap();
    assert!(role.rules.unwrap_or_default().is_empty(), "no rule at all");
    let as_none = cp.client_with_token(&none.status.unwrap().token).await;
    assert_eq!(
        code(
            Api::<ConfigMap>::namespaced(as_none, &target)
                .get("allowed")
                .await
                .unwrap_err()
        ),
        403
    );

    // At expiry the ServiceAccount and RBAC go, and the token stops working immediately
    // (although the TokenRequest API gave it at least 10 minutes).
    let access = format!("virt-gateway-token:{ns}:sa");
    wait_token_phase(&client, &ns, "sa", "Completed").await;
    wait_gone(
        &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
        "gatetoken-sa",
    )
    .await;
    wait_gone(&Api::<ClusterRole>::all(client.clone()), &access).await;
    wait_gone(
        &Api::<RoleBinding>::namespaced(client.clone(), &target),
        &access,
    )
    .await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match theirs.get("allowed").await {
            Err(kube::Error::Api(s)) if s.code == 401 => break,
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            other => panic!("the token still works after expiry: {other:?}"),
        }
    }

    // Deleting a live ServiceAccount token removes its cluster-scoped parts (finalizer).
    let spec = json!({"namespace": "*", "verbs": ["get"], "apiGroups": [""], "resources": ["namespaces"], "generateServiceAccount": true});
    create(&client, &token(&ns, "cluster", spec)).await;
    wait_token_phase(&client, &ns, "cluster", "Ready").await;
    let access = format!("virt-gateway-token:{ns}:cluster");
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(&access)
        .await
        .unwrap();
    Api::<GateToken>::namespaced(client.clone(), &ns)
        .delete("cluster", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(
        &Api::<GateToken>::namespaced(client.clone(), &ns),
        "cluster",
    )
    .await;
    wait_gone(&Api::<ClusterRoleBinding>::all(client.clone()), &access).await;
    wait_gone(&Api::<ClusterRole>::all(client.clone()), &access).await;
    wait_gone(
        &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
        "gatetoken-cluster",
    )
    .await;
}

fn with_service_account_tokens(ns: &str) -> virt_gateway_operator::OperatorConfig {
    let mut c = config(ns);
    c.service_account_tokens = true;
    c
}

/// ServiceAccount mode is off unless the operator is started with it: the token is refused with
/// a condition and an Event saying how to enable it, and nothing is created.
#[tokio::test]
async fn service_account_tokens_are_off_by_default() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    let spec = json!({"namespace": ns, "apiGroups": [""], "resources": ["configmaps"], "generateServiceAccount": true});
    create(&client, &token(&ns, "sa", spec)).await;
    let tok = wait_token_phase(&client, &ns, "sa", "Error").await;
    let st = tok.status.unwrap();
    assert!(st.token.is_empty());
    let (status, reason, message) = condition(&st.conditions, "Error").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ServiceAccountTokensDisabled")
    );
    assert!(
        message.contains("--enable-service-account-tokens"),
        "{message}"
    );
    let events = events_for(&client, &ns, "sa").await;
    assert!(
        events
            .iter()
            .any(|(r, _)| r == "ServiceAccountTokensDisabled"),
        "{events:?}"
    );
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .get_opt("gatetoken-sa")
            .await
            .unwrap()
            .is_none()
    );
}

/// The operator never takes over a ServiceAccount it did not create for the GateToken: one that
/// already has the name gets no token and keeps its own owner.
#[tokio::test]
async fn service_account_mode_never_takes_over_an_existing_account() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::start(client.clone(), with_service_account_tokens(&ns));
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("gatetoken-taken".into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
    let spec = json!({"namespace": ns, "apiGroups": [""], "resources": ["configmaps"], "generateServiceAccount": true});
    create(&client, &token(&ns, "taken", spec)).await;
    let tok = wait_token_phase(&client, &ns, "taken", "Error").await;
    let st = tok.status.unwrap();
    assert!(st.token.is_empty());
    let (_, reason, message) = condition(&st.conditions, "Error").unwrap();
    assert_eq!(reason, "FailedSA");
    assert!(message.contains("never takes over"), "{message}");
    let sa = accounts.get("gatetoken-taken").await.unwrap();
    assert!(sa.metadata.owner_references.is_none(), "not adopted");
    assert!(sa.labels().is_empty(), "not labelled");
}

/// Stopping and restarting the operator mid-flight (a token still pending, another created
/// while it is down) changes no key and no issued token.
#[tokio::test]
async fn restart_mid_flight_changes_no_key_and_no_token() {
    let (_cp, client, ns) = setup().await;
    let first = Operator::in_namespace(client.clone(), &ns);
    create(&client, &seed_server(&ns)).await;
    create(&client, &seed_token(&ns)).await;
    create(
        &client,
        &token(
            &ns,
            "later",
            json!({"namespace": "default", "from": in_seconds(20)}),
        ),
    )
    .await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let ready = wait_token_phase(&client, &ns, "gatetoken-sample", "Ready").await;
    let pending = wait_token_phase(&client, &ns, "later", "Pending").await;
    let secret = key_secret(&client, &ns).await;
    first.stop().await.unwrap();

    create(
        &client,
        &token(&ns, "while-down", json!({"namespace": "default"})),
    )
    .await;
    let second = Operator::in_namespace(client.clone(), &ns);
    wait_token_phase(&client, &ns, "while-down", "Ready").await;
    let later = wait_token_phase(&client, &ns, "later", "Ready").await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let again = Api::<GateToken>::namespaced(client.clone(), &ns)
        .get("gatetoken-sample")
        .await
        .unwrap();
    assert_eq!(again.status.unwrap().token, ready.status.unwrap().token);
    assert_eq!(later.status.unwrap().token, pending.status.unwrap().token);
    let after = key_secret(&client, &ns).await;
    assert_eq!(after.data, secret.data);
    assert_eq!(
        after.metadata.resource_version,
        secret.metadata.resource_version
    );
    second.stop().await.unwrap();
}

/// Review §2: the seed runs the upstream Go image, which accepts HS256 tokens forged with the
/// public key; a second GateServer of ours publishing that key (publishJWKS) next to it is warned
/// about, with a condition and a Warning event, and the warning goes when publishJWKS does.
#[tokio::test]
async fn a_published_key_next_to_the_upstream_image_is_warned_about() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    let seed = seed_server(&ns);
    assert_eq!(
        seed.spec.image.as_deref(),
        Some("quay.io/yaacov/kube-gateway")
    );
    create(&client, &seed).await;
    wait_server_phase(&client, &ns, "gateserver-sample", "Ready").await;
    let mut ours = seed_server(&ns);
    ours.metadata.name = Some("ours".into());
    ours.spec.route = Some("ours.apps.example.com".into());
    ours.spec.image = None;
    ours.spec.publish_jwks = true;
    create(&client, &ours).await;
    let servers = Api::<GateServer>::namespaced(client.clone(), &ns);
    let warned = |gs: &GateServer| {
        gs.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "JWKSForgery"))
    };
    let gs = wait_for(&servers, "ours", "the JWKSForgery warning", |gs| {
        warned(gs).is_some()
    })
    .await;
    let (status, reason, message) = warned(&gs).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PublishedKeyWithForeignGateway")
    );
    assert!(
        message.contains("gateserver-sample") && message.contains("HS256"),
        "{message}"
    );
    let events = wait_event(&client, &ns, "ours", "PublishedKeyWithForeignGateway").await;
    assert!(
        events
            .iter()
            .any(|(r, _)| r == "PublishedKeyWithForeignGateway"),
        "{events:?}"
    );
    // Still rolled out: a warning, not a refusal.
    wait_server_phase(&client, &ns, "ours", "Ready").await;

    servers
        .patch(
            "ours",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"publishJWKS": false}})),
        )
        .await
        .unwrap();
    wait_for(&servers, "ours", "the warning to go", |gs| {
        warned(gs).is_none()
    })
    .await;
}

/// Issue 17: `oidc` signs people in. The sealing key is generated once and never replaced (a
/// replaced key would sign everyone out): a key already in the Secret stays through spec changes.
/// Without `route` there is no redirect URI: the spec is refused with a condition.
#[tokio::test]
async fn oidc_sign_in_gets_a_sealing_key_that_is_never_replaced() {
    let (_cp, client, ns) = setup().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    let oidc = json!({"issuerURL": "https://dex.example.com", "clientID": "virt-gateway",
                      "clientSecretName": "oidc-client"});
    create(
        &client,
        &server(
            &ns,
            "signin",
            json!({"route": "console.apps.example.com", "oidc": oidc}),
        ),
    )
    .await;
    wait_server_phase(&client, &ns, "signin", "Ready").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let key = secrets.get("signin-signin-key").await.unwrap();
    let generated = key.data.as_ref().unwrap()["key"].0.clone();
    assert!(generated.len() >= 43, "32 random bytes, base64");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let command = |d: &Deployment| {
        d.spec.template.spec.as_ref().unwrap().containers[0]
            .command
            .clone()
            .unwrap()
    };
    let cmd = command(&deployments.get("signin").await.unwrap());
    for flag in [
        "--oidc-issuer-url=https://dex.example.com",
        "--oidc-client-id=virt-gateway",
        "--signin-redirect-url=https://console.apps.example.com/auth/callback",
        "--signin-key-file=/var/run/secrets/signin-key/key",
    ] {
        assert!(cmd.contains(&flag.to_owned()), "{flag} in {cmd:?}");
    }

    // Someone's existing key (restored from a backup, say) stays through later reconciles.
    let mut mine = key.clone();
    mine.data = Some(
        [(
            "key".to_owned(),
            ByteString(b"restored-key-0123456789abcdef0123456789".to_vec()),
        )]
        .into(),
    );
    secrets
        .replace("signin-signin-key", &PostParams::default(), &mine)
        .await
        .unwrap();
    Api::<GateServer>::namespaced(client.clone(), &ns)
        .patch(
            "signin",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"oidc": {"scopes": ["openid", "email"]}}})),
        )
        .await
        .unwrap();
    wait_for(&deployments, "signin", "the new scopes", |d| {
        command(d).contains(&"--oidc-scopes=openid,email".to_owned())
    })
    .await;
    let kept = secrets.get("signin-signin-key").await.unwrap();
    assert_eq!(
        kept.data.unwrap()["key"].0,
        b"restored-key-0123456789abcdef0123456789"
    );

    // No route, no redirect URI: refused with a condition saying so.
    Api::<GateServer>::namespaced(client.clone(), &ns)
        .patch(
            "signin",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"route": null}})),
        )
        .await
        .unwrap();
    let gs = wait_server_phase(&client, &ns, "signin", "Error").await;
    let ready = condition(&gs.status.unwrap().conditions, "Ready").unwrap();
    assert!(ready.2.contains("oidc needs route"), "{ready:?}");
}
