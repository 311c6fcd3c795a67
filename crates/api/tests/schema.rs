//! The generated CRDs carry the Gen B contract (names, fields, defaults, validations, required
//! status fields) plus exactly our documented additions.

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use virt_gateway_api::{cel, crd};

fn crd_of(kind: &str) -> CustomResourceDefinition {
    crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap()
}

fn schema(kind: &str) -> Value {
    let crd = crd_of(kind);
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

fn spec_props(kind: &str) -> serde_json::Map<String, Value> {
    schema(kind)["properties"]["spec"]["properties"]
        .as_object()
        .unwrap()
        .clone()
}

fn keys(map: &serde_json::Map<String, Value>) -> BTreeSet<&str> {
    map.keys().map(String::as_str).collect()
}

/// Every `x-kubernetes-validations` rule in the schema as (path, rule, message).
fn rules_in(value: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
    if let Some(rules) = value
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in rules {
            out.push((
                path.to_owned(),
                r["rule"].as_str().unwrap().to_owned(),
                r["message"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    if let Some(props) = value.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            rules_in(v, &p, out);
        }
    }
    if let Some(items) = value.get("items") {
        rules_in(items, &format!("{path}[]"), out);
    }
}

fn assert_rules(kind: &str, want: &[(&str, &str, &str)]) {
    let mut got = Vec::new();
    rules_in(&schema(kind), "", &mut got);
    let mut want: Vec<(String, String, String)> = want
        .iter()
        .map(|(p, r, m)| ((*p).to_owned(), (*r).to_owned(), (*m).to_owned()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "{kind}: the schema holds exactly the documented rules"
    );
    for (_, rule, message) in &got {
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{rule}: needs a one-line message"
        );
    }
}

fn any_key(value: &Value, key: &str) -> bool {
    match value {
        Value::Object(map) => map.contains_key(key) || map.values().any(|v| any_key(v, key)),
        Value::Array(items) => items.iter().any(|v| any_key(v, key)),
        _ => false,
    }
}

#[test]
fn names_scope_and_versions() {
    for (kind, plural, short) in [
        ("GateServer", "gateservers", "gs"),
        ("GateToken", "gatetokens", "gt"),
    ] {
        let crd = crd_of(kind);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.ocgate.yaacov.com").as_str())
        );
        assert_eq!(crd.spec.group, "ocgate.yaacov.com");
        assert_eq!(crd.spec.scope, "Namespaced");
        let names = &crd.spec.names;
        assert_eq!(names.plural, plural);
        assert_eq!(
            names.singular.as_deref(),
            Some(kind.to_lowercase().as_str())
        );
        assert_eq!(names.short_names.as_deref(), Some(&[short.to_owned()][..]));
        assert_eq!(
            names.categories.as_deref(),
            Some(&["ocgate".to_owned()][..])
        );
        assert_eq!(crd.spec.versions.len(), 1);
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1beta1");
        assert!(v.served && v.storage);
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        assert!(v.subresources.as_ref().unwrap().scale.is_none());
    }
}

#[test]
fn printer_columns() {
    let cols = |kind| {
        crd_of(kind).spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.json_path, c.type_))
            .collect::<Vec<_>>()
    };
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        cols("GateToken"),
        [
            s("Phase", ".status.phase", "string"),
            s("Target-Namespace", ".spec.namespace", "string"),
            s("Expires", ".status.data.until", "string"),
            s("Age", ".metadata.creationTimestamp", "date"),
        ]
    );
    assert_eq!(
        cols("GateServer"),
        [
            s("Phase", ".status.phase", "string"),
            s("Route", ".spec.route", "string"),
            s("Age", ".metadata.creationTimestamp", "date"),
        ]
    );
}

#[test]
fn spec_is_optional_with_an_empty_default() {
    for kind in ["GateServer", "GateToken"] {
        let s = schema(kind);
        assert_eq!(s["properties"]["spec"]["default"], json!({}), "{kind}");
        assert!(
            !s.get("required")
                .is_some_and(|r| r.as_array().unwrap().contains(&json!("spec")))
        );
        assert!(
            !any_key(&s, "nullable"),
            "{kind}: no nullable fields, nulls are dropped"
        );
    }
}

#[test]
fn gatetoken_spec_fields_defaults_and_validation() {
    let p = spec_props("GateToken");
    assert_eq!(
        keys(&p),
        BTreeSet::from([
            // Gen B
            "from",
            "durationSec",
            "generateServiceAccount",
            "namespace",
            "verbs",
            "APIGroups",
            "resources",
            "resourceNames",
            "nonResourceURLs",
            // conventional alias, and our extensions
            "apiGroups",
            "revoked",
            "server",
            "consoleRole",
        ])
    );
    // Absent means control (no default, so the seed sample's object and JWT are unchanged).
    assert!(p["consoleRole"].get("default").is_none());
    assert_eq!(p["consoleRole"]["enum"], json!(["control", "observe"]));
    assert_eq!(p["durationSec"]["default"], json!(3600));
    assert_eq!(p["durationSec"]["type"], "integer");
    assert_eq!(p["durationSec"]["format"], "int64");
    assert_eq!(p["namespace"]["default"], "*");
    assert_eq!(p["verbs"]["default"], json!(["get"]));
    assert_eq!(
        p["resources"]["default"],
        json!(["virtualmachineinstances", "virtualmachineinstances/vnc"])
    );
    assert_eq!(p["generateServiceAccount"]["default"], json!(false));
    assert_eq!(p["revoked"]["default"], json!(false));
    for no_default in [
        "from",
        "APIGroups",
        "apiGroups",
        "resourceNames",
        "nonResourceURLs",
    ] {
        assert!(
            p[no_default].get("default").is_none(),
            "{no_default} must have no schema default"
        );
    }
    for list in [
        "verbs",
        "APIGroups",
        "apiGroups",
        "resources",
        "resourceNames",
        "nonResourceURLs",
    ] {
        assert_eq!(p[list]["type"], "array", "{list}");
        assert_eq!(p[list]["items"]["type"], "string", "{list}");
    }
    assert_eq!(p["from"]["type"], "string");
    assert_eq!(p["from"]["maxLength"], 64);
    assert!(
        p["from"].get("format").is_none(),
        "a date-time format would make self a CEL timestamp"
    );
}

#[test]
fn gateserver_spec_fields_defaults_and_validation() {
    let p = spec_props("GateServer");
    assert_eq!(
        keys(&p),
        BTreeSet::from([
            // Gen B
            "apiURL",
            "route",
            "serviceAccountNamespace",
            "serviceAccountVerbs",
            "serviceAccountAPIGroups",
            "serviceAccountResources",
            "serviceAccountResourceNames",
            "serviceAccountNonResourceURLs",
            "passThrough",
            "image",
            "webAppImage",
            "generateSecret",
            "generateOauthClient",
            "generateRoute",
            // deprecated alias of the seed sample, and our extensions
            "gnerateSecret",
            "ingressClassName",
            "ingressTLSSecretName",
            "allowedOrigins",
            "requireAudience",
            "publishJWKS",
            "limits",
            "oidc",
            "consoles",
            "replicas",
        ])
    );
    // Replicas: absent means one (no schema default, so stored seed objects stay as written);
    // the schema bounds what the operator would refuse.
    assert!(p["replicas"].get("default").is_none());
    assert_eq!(p["replicas"]["type"], "integer");
    assert_eq!(p["replicas"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(
        p["replicas"]["maximum"].as_f64(),
        Some(f64::from(virt_gateway_api::gateserver::MAX_REPLICAS))
    );
    // Issue 16: shared consoles, off unless written; the controllers policy is an enum without
    // a default (absent: the gateway's own default, take-over), refused without shared: true.
    assert!(p["consoles"].get("default").is_none());
    let consoles = &p["consoles"]["properties"];
    assert_eq!(consoles["shared"]["default"], false);
    assert_eq!(consoles["shared"]["type"], "boolean");
    assert!(consoles["controllers"].get("default").is_none());
    assert_eq!(
        consoles["controllers"]["enum"],
        json!(["TakeOver", "Shared"])
    );
    assert_eq!(
        p["consoles"]["x-kubernetes-validations"][0]["message"],
        virt_gateway_api::cel::SERVER_CONTROLLERS_NEED_SHARED_MESSAGE
    );
    // Issue 17: OIDC sign-in, off unless written; the issuer must be https.
    assert!(p["oidc"].get("default").is_none());
    let oidc = &p["oidc"]["properties"];
    assert_eq!(oidc["issuerURL"]["pattern"], "^https://");
    assert_eq!(
        p["oidc"]["required"],
        json!(["clientID", "clientSecretName", "issuerURL"])
    );
    assert_eq!(oidc["scopes"]["maxItems"], 32);
    // make demo: an explicit callback, plain HTTP only on a loopback IP (GateServerSpec::validate
    // checks the same, with the attacker cases, in the api's unit tests).
    assert_eq!(
        oidc["redirectURL"]["pattern"],
        r"^(https://[^/?#@]+|http://(127\.[0-9.]+|\[::1\])(:[0-9]+)?)/auth/callback$"
    );
    // Issue 14: defaults keep today's behaviour, except that keys are not published.
    assert_eq!(p["requireAudience"]["default"], false);
    assert_eq!(p["publishJWKS"]["default"], false);
    assert_eq!(p["allowedOrigins"]["maxItems"], 32);
    assert_eq!(p["apiURL"]["default"], "https://kubernetes.default.svc");
    assert_eq!(p["apiURL"]["pattern"], "^(http|https)://.*");
    assert_eq!(p["apiURL"]["maxLength"], 1024);
    assert_eq!(
        p["route"]["pattern"],
        r"^([a-z0-9-_])+[.]([a-z0-9-_])+[.]([a-z0-9-._])+$"
    );
    assert_eq!(p["route"]["maxLength"], 226);
    assert_eq!(p["serviceAccountNamespace"]["default"], "*");
    assert_eq!(p["serviceAccountVerbs"]["default"], json!(["get"]));
    assert_eq!(
        p["serviceAccountAPIGroups"]["default"],
        json!(["subresources.kubevirt.io"])
    );
    assert_eq!(
        p["serviceAccountResources"]["default"],
        json!(["virtualmachineinstances", "virtualmachineinstances/vnc"])
    );
    assert_eq!(p["passThrough"]["default"], json!(false));
    assert_eq!(p["image"]["maxLength"], 1024);
    assert_eq!(p["webAppImage"]["maxLength"], 1024);
    assert_eq!(p["generateOauthClient"]["default"], json!(false));
    assert_eq!(p["generateRoute"]["default"], json!(false));
    for no_default in [
        "route",
        "generateSecret",
        "gnerateSecret",
        "serviceAccountResourceNames",
        "serviceAccountNonResourceURLs",
        "ingressClassName",
        "ingressTLSSecretName",
        // Gen B defaulted these to the upstream images; an unset image now means the
        // operator-wide default (so a mirror set on the operator applies).
        "image",
        "webAppImage",
    ] {
        assert!(
            p[no_default].get("default").is_none(),
            "{no_default} must have no schema default"
        );
    }
    assert_eq!(p["generateSecret"]["type"], "boolean");
    assert_eq!(p["gnerateSecret"]["type"], "boolean");
}

#[test]
fn status_required_fields_and_no_defaults() {
    let token = schema("GateToken")["properties"]["status"].clone();
    assert_eq!(
        token["required"],
        json!([
            "conditions",
            "data",
            "phase",
            "service-account-name",
            "token"
        ])
    );
    assert_eq!(
        token["properties"]["data"]["required"],
        json!(["alg", "duration-sec", "exp", "from", "nbf", "until"])
    );
    assert_eq!(
        keys(
            token["properties"]["data"]["properties"]
                .as_object()
                .unwrap()
        ),
        BTreeSet::from([
            "from",
            "until",
            "duration-sec",
            "nbf",
            "exp",
            "alg",
            "namespace",
            "verbs",
            "APIGroups",
            "resources",
            "resourceNames",
            "nonResourceURLs",
            "jti",
            "kid",
        ])
    );
    assert_eq!(
        keys(token["properties"].as_object().unwrap()),
        BTreeSet::from([
            "conditions",
            "token",
            "service-account-name",
            "data",
            "phase",
            "observedGeneration"
        ])
    );
    let server = schema("GateServer")["properties"]["status"].clone();
    assert_eq!(server["required"], json!(["conditions", "phase"]));
    assert_eq!(
        keys(server["properties"].as_object().unwrap()),
        BTreeSet::from(["conditions", "phase", "observedGeneration"])
    );
    for status in [&token, &server] {
        assert!(
            !any_key(status, "default"),
            "status fields carry no schema default"
        );
    }
}

#[test]
fn conditions_are_standard_metav1_conditions() {
    for kind in ["GateServer", "GateToken"] {
        let c = schema(kind)["properties"]["status"]["properties"]["conditions"].clone();
        assert_eq!(c["x-kubernetes-list-type"], "map");
        assert_eq!(c["x-kubernetes-list-map-keys"], json!(["type"]));
        let item = &c["items"];
        assert_eq!(
            item["required"],
            json!(["lastTransitionTime", "message", "reason", "status", "type"])
        );
        let p = &item["properties"];
        assert_eq!(p["status"]["enum"], json!(["True", "False", "Unknown"]));
        assert_eq!(
            p["reason"]["pattern"],
            "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        );
        assert_eq!(p["reason"]["minLength"], 1);
        assert_eq!(p["reason"]["maxLength"], 1024);
        assert_eq!(p["message"]["maxLength"], 32768);
        assert_eq!(p["type"]["maxLength"], 316);
        assert_eq!(p["lastTransitionTime"]["format"], "date-time");
        assert_eq!(p["observedGeneration"]["minimum"].as_f64(), Some(0.0));
    }
}

#[test]
fn descriptions_are_unwrapped() {
    let p = spec_props("GateToken");
    let d = p["apiGroups"]["description"].as_str().unwrap();
    assert!(!d.contains('\n'), "{d}");
    assert!(
        d.contains("Conventional spelling of APIGroups; when both are written, apiGroups wins.")
    );
    let status = schema("GateToken")["properties"]["status"]["description"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(status.contains("\n\n"), "paragraphs stay apart: {status}");
}

#[test]
fn cel_rules_are_exactly_the_documented_ones() {
    assert_rules("GateToken", cel::GATETOKEN_RULES);
    assert_rules("GateServer", cel::GATESERVER_RULES);
}

#[test]
fn derived_crd_differs_only_by_the_documented_adjustments() {
    use kube::CustomResourceExt;
    let adjusted = |crd| crd::unwrap_descriptions(crd::not_nullable(crd::optional_spec(crd)));
    assert_eq!(
        adjusted(virt_gateway_api::GateToken::crd()),
        crd::gatetoken()
    );
    assert_eq!(
        adjusted(virt_gateway_api::GateServer::crd()),
        crd::gateserver()
    );
}
