//! Each test proves that a real Kubernetes behaviour is present in the test control plane: the
//! things a fake API server would get wrong and that our operator and gateway depend on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Response, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleRef, Subject,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::core::ObjectMeta;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use virt_gateway_testenv::aggregated::{AggregatedApiSpec, Handler, remote_user};
use virt_gateway_testenv::{AggregatedApi, ControlPlane, websocket};

const TIMEOUT: Duration = Duration::from_secs(60);

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn structural_schema_prunes_unknown_fields_and_applies_defaults() {
    let cp = ControlPlane::shared().await;
    let client = cp.client().await;
    let ns = cp.fresh_namespace().await;
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.testenv.example.com"},
        "spec": {
            "group": "testenv.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "size": {"type": "integer", "default": 3}
                        }
                    }}
                }}
            }]
        }
    }))
    .unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    tokio::time::timeout(
        TIMEOUT,
        await_condition(
            crds,
            "widgets.testenv.example.com",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .unwrap();

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "testenv.example.com",
        "v1",
        "Widget",
    ));
    let widgets = Api::<DynamicObject>::namespaced_with(client, &ns, &resource);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "testenv.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"name": "one", "unknownField": "dropped"}
    }))
    .unwrap();
    let stored = widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    assert_eq!(stored.data["spec"], json!({"name": "one", "size": 3}));
}

#[tokio::test]
async fn server_side_apply_reports_conflicts_and_force_takes_ownership() {
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let cms = Api::<ConfigMap>::namespaced(cp.client().await, &ns);
    let apply = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"key": value}});
    cms.patch(
        "shared",
        &PatchParams::apply("manager-a"),
        &Patch::Apply(apply("a")),
    )
    .await
    .unwrap();

    let err = cms
        .patch(
            "shared",
            &PatchParams::apply("manager-b"),
            &Patch::Apply(apply("b")),
        )
        .await
        .expect_err("a second manager changing an owned field must conflict");
    assert_eq!(status_code(&err), Some(409), "{err}");

    let forced = cms
        .patch(
            "shared",
            &PatchParams::apply("manager-b").force(),
            &Patch::Apply(apply("b")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["key"], "b");
    let owners: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.to_string().contains("f:key"))
        })
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(owners, vec!["manager-b".to_string()]);
}

#[tokio::test]
async fn rbac_allows_and_forbids_a_service_account_token() {
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let admin = cp.client().await;
    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-configmaps".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    cp.bind_role_to_service_account(&ns, "reader", "read-configmaps", "reader")
        .await;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("visible".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(admin, &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let token = cp.service_account_token(&ns, "reader", 600).await;
    let as_reader = cp.client_with_token(&token).await;
    let got = Api::<ConfigMap>::namespaced(as_reader.clone(), &ns)
        .get("visible")
        .await
        .expect("get configmaps is allowed");
    assert_eq!(got.metadata.name.as_deref(), Some("visible"));

    let err = Api::<Secret>::namespaced(as_reader.clone(), &ns)
        .list(&Default::default())
        .await
        .expect_err("listing secrets is not allowed");
    assert_eq!(status_code(&err), Some(403), "{err}");
    let err = Api::<ConfigMap>::namespaced(as_reader, &ns)
        .list(&Default::default())
        .await
        .expect_err("list is a different verb from get");
    assert_eq!(status_code(&err), Some(403), "{err}");

    let bogus = cp.client_with_token("not-a-token").await;
    let err = Api::<ConfigMap>::namespaced(bogus, &ns)
        .get("visible")
        .await
        .expect_err("an invalid token is not authenticated");
    assert_eq!(status_code(&err), Some(401), "{err}");
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependent() {
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let client = cp.client().await;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(client, &ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("dependent".into()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        name: "owner".into(),
                        uid: owner.metadata.uid.clone().unwrap(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();

    let deadline = Instant::now() + TIMEOUT;
    loop {
        match secrets.get_opt("dependent").await.unwrap() {
            None => break,
            Some(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Some(_) => panic!(
                "the garbage collector did not delete the dependent\n{}",
                cp.logs(20)
            ),
        }
    }
}

#[tokio::test]
async fn creating_a_cluster_role_that_grants_more_than_the_creator_holds_is_refused() {
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let admin = cp.client().await;
    let sa_name = "role-writer";
    let creator_role = format!("{ns}-clusterrole-writer");
    Api::<ClusterRole>::all(admin.clone())
        .create(
            &PostParams::default(),
            &ClusterRole {
                metadata: ObjectMeta {
                    name: Some(creator_role.clone()),
                    ..Default::default()
                },
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
                    resources: Some(vec!["clusterroles".into()]),
                    verbs: vec!["create".into()],
                    ..Default::default()
                }]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin)
        .create(
            &PostParams::default(),
            &ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some(creator_role.clone()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: creator_role.clone(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: sa_name.into(),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                }]),
            },
        )
        .await
        .unwrap();
    let token = cp.service_account_token(&ns, sa_name, 600).await;
    let as_writer = Api::<ClusterRole>::all(cp.client_with_token(&token).await);
    let role = |name: &str, rule: PolicyRule| ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(vec![rule]),
        ..Default::default()
    };

    // Granting what the creator does not hold is an escalation.
    let escalation = role(
        &format!("{ns}-secrets-reader"),
        PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        },
    );
    let err = as_writer
        .create(&PostParams::default(), &escalation)
        .await
        .expect_err("escalation must be refused");
    assert_eq!(status_code(&err), Some(403), "{err}");
    assert!(
        err.to_string()
            .contains("attempting to grant RBAC permissions not currently held"),
        "{err}"
    );

    // Granting exactly what it holds is allowed: the refusal above is the escalation check.
    let same = role(
        &format!("{ns}-same"),
        PolicyRule {
            api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
            resources: Some(vec!["clusterroles".into()]),
            verbs: vec!["create".into()],
            ..Default::default()
        },
    );
    as_writer
        .create(&PostParams::default(), &same)
        .await
        .expect("a ClusterRole within the creator's own permissions is allowed");
}

const ECHO_GROUP: &str = "echo.testenv.example.com";
const ECHO_PROTOCOL: &str = "echo.testenv.example.com";

/// A tiny aggregated API: GET of a "thing" answers who the API server said the caller is; its
/// `echo` subresource is a WebSocket that greets, then answers each message reversed.
fn echo_handler() -> Handler {
    Arc::new(|mut req| {
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match segments.as_slice() {
                ["apis", ECHO_GROUP, "v1", "namespaces", _, "things", name] => {
                    let body = json!({"name": name, "user": remote_user(&req)});
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap()
                }
                [
                    "apis",
                    ECHO_GROUP,
                    "v1",
                    "namespaces",
                    _,
                    "things",
                    name,
                    "echo",
                ] => {
                    let greeting = format!("hello {name}");
                    match websocket::accept(&mut req, ECHO_PROTOCOL) {
                        Err(refusal) => refusal,
                        Ok((response, pending)) => {
                            tokio::spawn(async move {
                                let Ok(mut ws) = pending.socket().await else {
                                    return;
                                };
                                let _ = ws.send(Message::binary(greeting.into_bytes())).await;
                                while let Some(Ok(msg)) = ws.next().await {
                                    if let Message::Binary(data) = msg {
                                        let reversed: Vec<u8> =
                                            data.iter().rev().copied().collect();
                                        let _ = ws.send(Message::binary(reversed)).await;
                                    }
                                }
                            });
                            response
                        }
                    }
                }
                _ => Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            }
        })
    })
}

#[tokio::test]
async fn an_aggregated_api_is_reachable_through_the_api_server_with_get_and_websocket() {
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let resource = |name: &str| APIResource {
        name: name.into(),
        namespaced: true,
        kind: "Thing".into(),
        singular_name: String::new(),
        verbs: vec!["get".into()],
        ..Default::default()
    };
    let api = AggregatedApi::start(
        cp,
        AggregatedApiSpec {
            group: ECHO_GROUP.into(),
            version: "v1".into(),
            resources: vec![resource("things"), resource("things/echo")],
            namespace: ns.clone(),
            handler: echo_handler(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cp.logs(20)));
    assert!(api.addr().ip().is_loopback());

    // A plain GET, forwarded with the caller's identity in the front-proxy headers.
    let client = cp.client().await;
    let request = http::Request::get(format!("/apis/{ECHO_GROUP}/v1/namespaces/{ns}/things/t1"))
        .body(Vec::new())
        .unwrap();
    let body: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(body, json!({"name": "t1", "user": "testenv-admin"}));

    // A WebSocket upgrade with a subprotocol, bytes flowing both ways.
    let url = format!(
        "{}/apis/{ECHO_GROUP}/v1/namespaces/{ns}/things/t1/echo",
        cp.api_server_url().replace("https://", "wss://")
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("{ECHO_PROTOCOL}, unused.example.com")
            .parse()
            .unwrap(),
    );
    let host = cp
        .api_server_url()
        .trim_start_matches("https://")
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cp.admin_tls_config()))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        ECHO_PROTOCOL,
        "the selected subprotocol reaches the client"
    );
    let greeting = ws.next().await.unwrap().unwrap();
    assert_eq!(greeting.into_data(), Bytes::from_static(b"hello t1"));
    ws.send(Message::binary(b"abc\x00\xff".to_vec()))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.into_data(), Bytes::from_static(b"\xff\x00cba"));
    ws.close(None).await.unwrap();

    // Without the required subprotocol the stand-in refuses, as KubeVirt does.
    let mut request = format!(
        "{}/apis/{ECHO_GROUP}/v1/namespaces/{ns}/things/t1/echo",
        cp.api_server_url().replace("https://", "wss://")
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "other".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cp.admin_tls_config()))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let err = tokio_tungstenite::client_async(request, tls)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    api.stop().await;
}
