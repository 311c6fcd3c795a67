//! Client-side evaluation of the CRDs' CEL rules (`x-kubernetes-validations`) with kube's CEL
//! validator (kube-core's `cel` feature, backed by kube-cel), which applies schema defaults
//! first, as the API server does. Each case is also checked against the in-code
//! `validate()` of the spec, so that the admission rules and the operator agree.
//!
//! The same manifests against a real API server belong to the test environment's suite.

use kube::core::cel::{ValidationError, Validator};
use serde_json::{Value, json};
use virt_gateway_api::cel::*;
use virt_gateway_api::{GateServerSpec, GateTokenSpec, crd};

fn schema(kind: &str) -> Value {
    let crd = crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn object(kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "kube-gateway"},
        "spec": spec,
    })
}

/// Drops `null` object members, as the API server does for fields that are not `nullable`
/// (none of ours is) before defaulting and validation; kube-cel leaves that step out.
fn prune_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(prune_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

fn cel_errors(kind: &str, spec: &Value) -> Vec<ValidationError> {
    let mut obj = object(kind, spec.clone());
    prune_nulls(&mut obj);
    match Validator::new().validate(&schema(kind), &obj, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec(),
    }
}

/// Asserts that `spec` fails exactly the rule with `message` (or passes when `None`), and that
/// the spec's own `validate()` agrees.
fn check_token(spec: Value, message: Option<&str>) {
    let errors = cel_errors("GateToken", &spec);
    let got: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    let want: Vec<&str> = message.into_iter().collect();
    assert_eq!(got, want, "CEL on GateToken spec {spec}: {errors:?}");
    let typed: GateTokenSpec = serde_json::from_value(spec.clone()).unwrap();
    assert_eq!(
        typed.validate().is_ok(),
        message.is_none(),
        "GateTokenSpec::validate disagrees with CEL on {spec}: {:?}",
        typed.validate()
    );
}

fn check_server(spec: Value, message: Option<&str>) {
    let errors = cel_errors("GateServer", &spec);
    let got: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    let want: Vec<&str> = message.into_iter().collect();
    assert_eq!(got, want, "CEL on GateServer spec {spec}: {errors:?}");
    let typed: GateServerSpec = serde_json::from_value(spec.clone()).unwrap();
    assert_eq!(
        typed.validate().is_ok(),
        message.is_none(),
        "GateServerSpec::validate disagrees with CEL on {spec}: {:?}",
        typed.validate()
    );
}

#[test]
fn token_seed_sample_and_defaults_pass() {
    check_token(
        json!({"namespace": "default", "resourceNames": ["testvm"]}),
        None,
    );
    check_token(json!({}), None);
    check_token(
        json!({"namespace": "default", "APIGroups": ["subresources.kubevirt.io"], "resources": ["virtualmachineinstances"],
               "resourceNames": ["testvm"], "generateServiceAccount": false}),
        None,
    );
}

#[test]
fn token_groups_and_urls_exclude_each_other() {
    let not_both = Some(TOKEN_GROUPS_XOR_URLS_MESSAGE);
    check_token(
        json!({"APIGroups": ["kubevirt.io"], "nonResourceURLs": ["/healthz"]}),
        not_both,
    );
    check_token(
        json!({"apiGroups": ["kubevirt.io"], "nonResourceURLs": ["/healthz"]}),
        not_both,
    );
    check_token(
        json!({"apiGroups": ["a"], "APIGroups": [], "nonResourceURLs": ["/healthz"]}),
        not_both,
    );
    // The conventional spelling wins, so an empty apiGroups hides APIGroups.
    check_token(
        json!({"apiGroups": [], "APIGroups": ["a"], "nonResourceURLs": ["/healthz"]}),
        None,
    );
    // Deliberate fix of upstream: no default API groups for a non-resource token.
    check_token(json!({"nonResourceURLs": ["/healthz", "/metrics/*"]}), None);
    check_token(
        json!({"APIGroups": [], "nonResourceURLs": ["/healthz"]}),
        None,
    );
    check_token(
        json!({"APIGroups": null, "nonResourceURLs": ["/healthz"]}),
        None,
    );
}

#[test]
fn token_rule_cannot_be_empty() {
    let empty = Some(TOKEN_RULE_NOT_EMPTY_MESSAGE);
    check_token(json!({"apiGroups": []}), empty);
    check_token(json!({"APIGroups": []}), empty);
    check_token(json!({"APIGroups": [], "nonResourceURLs": []}), empty);
    check_token(json!({"apiGroups": [], "APIGroups": ["a"]}), empty);
    // An empty nonResourceURLs with default groups is a plain resource token.
    check_token(json!({"nonResourceURLs": []}), None);
    check_token(json!({"apiGroups": [""], "resources": ["pods"]}), None);
}

#[test]
fn token_duration_must_be_positive() {
    let msg = Some(TOKEN_DURATION_POSITIVE_MESSAGE);
    check_token(json!({"durationSec": 0}), msg);
    check_token(json!({"durationSec": -60}), msg);
    check_token(json!({"durationSec": 1}), None);
    check_token(json!({"durationSec": 86400}), None);
}

#[test]
fn token_from_must_be_rfc3339() {
    for ok in [
        "",
        "2021-04-22T10:00:00Z",
        "2021-04-22t10:00:00z",
        "2021-04-22T12:00:00+02:00",
        "2021-04-22T12:00:00.5+02:00",
        "2021-04-22T10:00:00.123456789Z",
        "2024-02-29T00:00:00Z",
        "2021-04-22T10:00:00-23:59",
    ] {
        check_token(json!({"from": ok}), None);
    }
    for bad in [
        "now",
        "tomorrow",
        "2021-04-22",
        "2021-04-22T10:00:00",
        "2021-04-22 10:00:00Z",
        "2021-04-22T25:00:00Z",
        "2021-02-30T10:00:00Z",
        "2021-04-22T10:00Z",
        "2021-04-22T10:00:00ZT",
        "2021-04-22T10:00:00,5Z",
        "2021-04-22T10:00:00+24:00",
        "2016-12-31T23:59:60Z",
        "2021-04-22T10:00:00Z\n",
    ] {
        check_token(json!({"from": bad}), Some(TOKEN_FROM_RFC3339_MESSAGE));
    }
}

#[test]
fn token_errors_point_at_the_field() {
    let errors = cel_errors("GateToken", &json!({"durationSec": 0, "from": "soon"}));
    let mut paths: Vec<&str> = errors.iter().map(|e| e.field_path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["spec.durationSec", "spec.from"], "{errors:?}");
}

#[test]
fn server_seed_sample_and_defaults_pass() {
    let sample: Value = serde_yaml::from_str(include_str!(
        "../../../deploy/samples/gateserver-sample.yaml"
    ))
    .unwrap();
    check_server(sample["spec"].clone(), None);
    check_server(json!({}), None);
}

#[test]
fn server_groups_and_urls() {
    check_server(
        json!({"serviceAccountNonResourceURLs": ["/healthz"]}),
        Some(SERVER_GROUPS_XOR_URLS_MESSAGE),
    );
    check_server(
        json!({"serviceAccountAPIGroups": ["kubevirt.io"], "serviceAccountNonResourceURLs": ["/healthz"]}),
        Some(SERVER_GROUPS_XOR_URLS_MESSAGE),
    );
    check_server(
        json!({"serviceAccountAPIGroups": [], "serviceAccountNonResourceURLs": ["/healthz"]}),
        None,
    );
    check_server(
        json!({"serviceAccountAPIGroups": []}),
        Some(SERVER_RULE_NOT_EMPTY_MESSAGE),
    );
    check_server(
        json!({"serviceAccountAPIGroups": [], "serviceAccountNonResourceURLs": []}),
        Some(SERVER_RULE_NOT_EMPTY_MESSAGE),
    );
}

#[test]
fn server_tls_secret_needs_route() {
    check_server(
        json!({"ingressTLSSecretName": "gw-tls"}),
        Some(SERVER_TLS_NEEDS_ROUTE_MESSAGE),
    );
    check_server(
        json!({"ingressTLSSecretName": "gw-tls", "route": "gw.apps.example.com"}),
        None,
    );
    check_server(
        json!({"ingressClassName": "nginx", "route": "gw.apps.example.com"}),
        None,
    );
}

#[test]
fn server_console_controllers_need_shared_consoles() {
    let refused = Some(SERVER_CONTROLLERS_NEED_SHARED_MESSAGE);
    check_server(json!({"consoles": {}}), None);
    check_server(json!({"consoles": {"shared": true}}), None);
    check_server(json!({"consoles": {"shared": false}}), None);
    for policy in ["TakeOver", "Shared"] {
        check_server(
            json!({"consoles": {"shared": true, "controllers": policy}}),
            None,
        );
        check_server(json!({"consoles": {"controllers": policy}}), refused);
        check_server(
            json!({"consoles": {"shared": false, "controllers": policy}}),
            refused,
        );
    }
}

#[test]
fn server_replicas_sharing_consoles_need_https() {
    let refused = Some(SERVER_REPLICAS_NEED_HTTPS_MESSAGE);
    let shared = json!({"shared": true});
    check_server(json!({"replicas": 3}), None);
    check_server(json!({"replicas": 1, "consoles": shared}), None);
    check_server(json!({"replicas": 3, "consoles": {"shared": false}}), None);
    check_server(json!({"replicas": 3, "consoles": {}}), None);
    check_server(
        json!({"replicas": 3, "consoles": shared, "generateRoute": true}),
        None,
    );
    check_server(json!({"replicas": 2, "consoles": shared}), refused);
    check_server(
        json!({"replicas": 2, "consoles": shared, "generateRoute": false}),
        refused,
    );
}

#[test]
fn rules_compile() {
    // A rule that does not compile would surface as an error on every object; make that
    // explicit for both CRDs.
    for kind in ["GateServer", "GateToken"] {
        let compiled = kube::core::cel::compile_schema(&schema(kind));
        assert!(
            compiled.compilation_errors().is_empty(),
            "{kind}: {:?}",
            compiled.compilation_errors()
        );
    }
}

#[test]
fn token_revocation_is_final() {
    let validate = |old: Value, new: Value| {
        let (mut old, mut new) = (object("GateToken", old), object("GateToken", new));
        prune_nulls(&mut old);
        prune_nulls(&mut new);
        Validator::new()
            .validate(&schema("GateToken"), &new, Some(&old))
            .map_err(|e| {
                e.into_vec()
                    .into_iter()
                    .map(|e| e.message)
                    .collect::<Vec<_>>()
            })
    };
    assert_eq!(validate(json!({}), json!({"revoked": true})), Ok(()));
    assert_eq!(
        validate(json!({"revoked": true}), json!({"revoked": true})),
        Ok(())
    );
    assert_eq!(validate(json!({"revoked": false}), json!({})), Ok(()));
    assert_eq!(
        validate(json!({"revoked": true}), json!({"revoked": false})),
        Err(vec![TOKEN_REVOKED_IS_FINAL_MESSAGE.to_owned()])
    );
    assert_eq!(
        validate(json!({"revoked": true}), json!({})),
        Err(vec![TOKEN_REVOKED_IS_FINAL_MESSAGE.to_owned()]),
        "dropping the field counts as false (schema default)"
    );
    // On creation, transition rules do not run.
    check_token(json!({"revoked": true}), None);
}

#[test]
fn token_observe_needs_a_jwt() {
    let refused = Some(TOKEN_OBSERVE_NEEDS_JWT_MESSAGE);
    check_token(
        json!({"consoleRole": "observe", "generateServiceAccount": true}),
        refused,
    );
    check_token(json!({"consoleRole": "observe"}), None);
    check_token(
        json!({"consoleRole": "control", "generateServiceAccount": true}),
        None,
    );
    check_token(
        json!({"consoleRole": "observe", "generateServiceAccount": false}),
        None,
    );
}
