//! Connections need `create`: exec, attach, port-forward and every proxy subresource are allowed
//! only when the token also allows `create` on them, whatever the HTTP method and however the
//! rule names them (exact, `*/proxy`, `*`). A deliberate rule, stricter than RBAC: over a
//! WebSocket these are a `GET`, RBAC's `get`, and the kubelet runs exec behind `nodes/proxy` with
//! `get` alone (security review §5).

use virt_gateway_auth::authz::{Denied, authorize, is_connect_request};
use virt_gateway_auth::jwt::Claims;
use virt_gateway_auth::request::parse;

fn claims(namespace: &str, verbs: &[&str], groups: &[&str], resources: &[&str]) -> Claims {
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut c = Claims::new(u64::MAX);
    c.namespace = namespace.to_owned();
    c.verbs = strings(verbs);
    c.api_groups = Some(strings(groups));
    c.resources = Some(strings(resources));
    c
}

fn decide(claims: &Claims, method: &str, path: &str, query: Option<&str>) -> Result<(), Denied> {
    authorize(claims, &parse(method, path, query).expect("a valid path"))
}

const EXEC: &str = "/api/v1/namespaces/app/pods/web-0/exec";
const ATTACH: &str = "/api/v1/namespaces/app/pods/web-0/attach";
const PORT_FORWARD: &str = "/api/v1/namespaces/app/pods/web-0/portforward";
const POD_PROXY: &str = "/api/v1/namespaces/app/pods/web-0/proxy/metrics";
const SERVICE_PROXY: &str = "/api/v1/namespaces/app/services/web/proxy/index.html";
const NODE_PROXY: &str = "/api/v1/nodes/node-1/proxy/exec/kube-system/etcd/etcd";
const LEGACY_PROXY: &str = "/api/v1/proxy/namespaces/app/pods/web-0";

#[test]
fn a_get_token_does_not_open_exec_attach_port_forward_or_proxy() {
    // The review's recipe: verbs [get], resources [*] in the pod's namespace.
    let star = claims("app", &["get"], &[""], &["*"]);
    for path in [EXEC, ATTACH, PORT_FORWARD, POD_PROXY, SERVICE_PROXY] {
        for method in ["GET", "HEAD"] {
            let denied = decide(&star, method, path, Some("command=id&stdout=true"));
            assert!(
                matches!(denied, Err(Denied::ConnectNeedsCreate { .. })),
                "{method} {path}: {denied:?}"
            );
        }
    }
    // Named exactly, and through `*/sub`: still `get` only.
    for (resource, path) in [
        ("pods/exec", EXEC),
        ("pods/attach", ATTACH),
        ("pods/portforward", PORT_FORWARD),
        ("*/proxy", POD_PROXY),
        ("services/proxy", SERVICE_PROXY),
    ] {
        let exact = claims("app", &["get"], &[""], &[resource]);
        let denied = decide(&exact, "GET", path, None);
        assert!(
            matches!(denied, Err(Denied::ConnectNeedsCreate { .. })),
            "{resource}: {denied:?}"
        );
        let message = denied.unwrap_err().to_string();
        assert!(message.contains("\"create\""), "{message}");
    }
    // nodes/proxy with a cluster-wide read token: the kubelet's exec is refused.
    let nodes = claims(
        "*",
        &["get", "list", "watch"],
        &[""],
        &["nodes/proxy", "nodes"],
    );
    assert!(matches!(
        decide(&nodes, "GET", NODE_PROXY, None),
        Err(Denied::ConnectNeedsCreate { .. })
    ));
    assert!(decide(&nodes, "GET", "/api/v1/nodes/node-1", None).is_ok());
}

#[test]
fn create_opens_them_with_any_method_and_through_wildcards() {
    for verbs in [&["get", "create"][..], &["*"][..]] {
        for resources in [
            &["*"][..],
            &[
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "*/proxy",
                "services/proxy",
            ][..],
        ] {
            let c = claims("app", verbs, &[""], resources);
            for path in [EXEC, ATTACH, PORT_FORWARD, POD_PROXY, SERVICE_PROXY] {
                assert!(
                    decide(&c, "GET", path, None).is_ok(),
                    "{verbs:?} {resources:?} GET {path}"
                );
                assert!(
                    decide(&c, "POST", path, None).is_ok(),
                    "{verbs:?} {resources:?} POST {path}"
                );
            }
        }
    }
    // `create` alone is not `get`: the request's own verb is still needed, as in RBAC.
    let create_only = claims("app", &["create"], &[""], &["pods/exec"]);
    assert!(decide(&create_only, "POST", EXEC, None).is_ok());
    assert!(matches!(
        decide(&create_only, "GET", EXEC, None),
        Err(Denied::Verb { .. })
    ));
}

#[test]
fn the_legacy_proxy_verb_needs_create_too() {
    let proxy_only = claims("app", &["proxy"], &[""], &["pods"]);
    assert!(matches!(
        decide(&proxy_only, "GET", LEGACY_PROXY, None),
        Err(Denied::ConnectNeedsCreate { .. })
    ));
    let proxy_and_create = claims("app", &["proxy", "create"], &[""], &["pods"]);
    assert!(decide(&proxy_and_create, "GET", LEGACY_PROXY, None).is_ok());
}

#[test]
fn other_subresources_and_the_vnc_console_keep_rbac_semantics() {
    // The seed token: `get` on the VNC subresource of one VM (KubeVirt's own roles grant `get`).
    let mut seed = claims(
        "default",
        &["get"],
        &["subresources.kubevirt.io"],
        &["virtualmachineinstances", "virtualmachineinstances/vnc"],
    );
    seed.resource_names = Some(vec!["testvm".to_owned()]);
    let vnc =
        "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc";
    assert!(decide(&seed, "GET", vnc, None).is_ok());
    // exec/attach/portforward of another group than the core pods are not pod connections.
    let kubevirt_pf = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/portforward/22";
    let c = claims("default", &["get"], &["subresources.kubevirt.io"], &["*"]);
    let request = parse("GET", kubevirt_pf, None).unwrap();
    assert!(!is_connect_request(&request));
    assert!(authorize(&c, &request).is_ok());
    // Logs and status stay `get`.
    let read = claims("app", &["get"], &[""], &["*"]);
    assert!(decide(&read, "GET", "/api/v1/namespaces/app/pods/web-0/log", None).is_ok());
    assert!(
        decide(
            &read,
            "GET",
            "/api/v1/namespaces/app/pods/web-0/status",
            None
        )
        .is_ok()
    );
}
