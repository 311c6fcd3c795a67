//! The OpenShift branch (Route, OAuthClient, the SCC-friendly gateway pod) against a real API
//! server that serves stand-ins for `route.openshift.io/v1` Routes, `oauth.openshift.io/v1`
//! OAuthClients and `security.openshift.io/v1` SecurityContextConstraints (CRDs with the same
//! group, version, kind, plural and scope). Discovery is cluster-wide, so this binary has its own
//! control plane; the plain-Kubernetes behaviour (no Route API) is covered in tests/operator.rs.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;
use virt_gateway_api::GateServer;
use virt_gateway_operator::discovery::{oauth_client_resource, route_resource};
use virt_gateway_testenv::ControlPlane;

fn stand_in(group: &str, kind: &str, plural: &str, scope: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group, "scope": scope,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn route_and_oauth_client_when_the_apis_exist() {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await;
    install_crds(cp).await;
    cp.apply_crds(
        &[
            stand_in("route.openshift.io", "Route", "routes", "Namespaced"),
            stand_in(
                "oauth.openshift.io",
                "OAuthClient",
                "oauthclients",
                "Cluster",
            ),
            stand_in(
                "security.openshift.io",
                "SecurityContextConstraints",
                "securitycontextconstraints",
                "Cluster",
            ),
        ],
        "tests",
    )
    .await;
    while !virt_gateway_operator::discovery::discover(&client)
        .await
        .is_ok_and(|a| a.route && a.oauth_client && a.security_context_constraints)
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let ns = cp.fresh_namespace().await;
    let _operator = Operator::in_namespace(client.clone(), &ns);
    create(
        &client,
        &server(
            &ns,
            "console",
            json!({
                "route": "console.apps.example.com",
                "generateRoute": true,
                "generateOauthClient": true
            }),
        ),
    )
    .await;
    let gs = wait_server_phase(&client, &ns, "console", "Ready").await;
    let st = gs.status.unwrap();
    assert_eq!(
        condition(&st.conditions, "Exposed").unwrap().1,
        "RouteCreated"
    );
    assert_eq!(condition(&st.conditions, "OAuthClient").unwrap().0, "True");

    let routes: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &route_resource());
    let route = routes.get("console").await.unwrap();
    assert_eq!(route.data["spec"]["host"], "console.apps.example.com");
    assert_eq!(route.data["spec"]["tls"]["termination"], "reencrypt");
    assert_eq!(
        route.metadata.owner_references.as_ref().unwrap()[0].kind,
        "GateServer"
    );
    let clients: Api<DynamicObject> = Api::all_with(client.clone(), &oauth_client_resource());
    let oauth_name = format!("virt-gateway.{ns}.console");
    let oauth = clients.get(&oauth_name).await.unwrap();
    assert_eq!(
        oauth.data["redirectURIs"],
        json!(["https://console.apps.example.com/auth/callback"])
    );
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("console-oauth-client")
        .await
        .unwrap();
    let value = String::from_utf8(secret.data.unwrap()["clientSecret"].0.clone()).unwrap();
    assert_eq!(oauth.data["secret"], json!(value));
    assert!(value.len() >= 43, "32 random bytes, not a predictable name");
    let deploy = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("console")
        .await
        .unwrap();
    let cmd = deploy.spec.template.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert!(
        cmd.contains(&format!("-oauth-client-id={oauth_name}")),
        "{cmd:?}"
    );
    assert!(cmd.contains(&"-listen=https://0.0.0.0:8080".to_owned()));
    assert!(!cmd.contains(&"-oauth-server-disable".to_owned()));

    // OpenShift: no fixed user or group anywhere in the pod (restricted-v2 assigns them), the rest
    // of the restricted profile in place, and Pod Security admission accepts the pod at
    // `restricted`. The check is not a formality: without the seccomp profile it refuses it.
    let pod = deploy.spec.template.spec.clone().unwrap();
    assert!(pod.security_context.as_ref().unwrap().run_as_user.is_none());
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c.security_context.as_ref().unwrap();
        assert!(
            sc.run_as_user.is_none() && sc.run_as_group.is_none(),
            "{}",
            c.name
        );
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
    }
    dry_run_pod_under_restricted(&client, &deploy)
        .await
        .expect("the gateway pod meets Pod Security restricted on OpenShift");
    let mut lax = deploy.clone();
    let lax_pod = lax.spec.template.spec.as_mut().unwrap();
    lax_pod.security_context.as_mut().unwrap().seccomp_profile = None;
    for c in lax_pod
        .containers
        .iter_mut()
        .chain(lax_pod.init_containers.iter_mut().flatten())
    {
        c.security_context.as_mut().unwrap().seccomp_profile = None;
    }
    let refused = dry_run_pod_under_restricted(&client, &lax)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("restricted"), "{refused}");

    // Back to an Ingress: the Route and the OAuthClient go, a condition says why no OAuth.
    let servers: Api<GateServer> = Api::namespaced(client.clone(), &ns);
    servers
        .patch(
            "console",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"generateRoute": false}})),
        )
        .await
        .unwrap();
    let gs = wait_server_phase(&client, &ns, "console", "Ready").await;
    assert_eq!(
        condition(&gs.status.unwrap().conditions, "OAuthClient")
            .unwrap()
            .1,
        "OAuthNeedsRoute"
    );
    wait_gone(&routes, "console").await;
    wait_gone(&clients, &oauth_name).await;
    Api::<Ingress>::namespaced(client.clone(), &ns)
        .get("console")
        .await
        .unwrap();

    // And back: the same client secret (created once).
    servers
        .patch(
            "console",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"generateRoute": true}})),
        )
        .await
        .unwrap();
    wait_server_phase(&client, &ns, "console", "Ready").await;
    let oauth = wait_for(&clients, &oauth_name, "recreated", |_| true).await;
    assert_eq!(oauth.data["secret"], json!(value));
    wait_gone(&Api::<Ingress>::namespaced(client.clone(), &ns), "console").await;

    // Deletion: the finalizer removes the cluster-scoped OAuthClient.
    servers
        .delete("console", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&servers, "console").await;
    wait_gone(&clients, &oauth_name).await;
}
