//! The two seed samples of the original README (`deploy/samples/`) are accepted exactly as
//! written: they are byte-for-byte the README's examples, every key they set exists in the CRD
//! schema (so the API server prunes nothing), and every value reaches the typed resource.

use std::path::PathBuf;

use serde_json::{Value, json};
use virt_gateway_api::{GateServer, GateServerSpec, GateToken, GateTokenSpec, crd};

const TOKEN_SAMPLE: &str = include_str!("../../../deploy/samples/gatetoken-sample.yaml");
const SERVER_SAMPLE: &str = include_str!("../../../deploy/samples/gateserver-sample.yaml");

fn yaml_to_json(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).unwrap()
}

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

/// Every key of `value` must be declared in `schema` with a matching JSON type. Returns the
/// problems found, each with its path. The root's `apiVersion`, `kind` and `metadata` are the
/// API server's own and are never pruned.
fn undeclared(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    let ty = schema["type"].as_str().unwrap_or("");
    match value {
        Value::Object(map) => {
            if ty != "object" {
                problems.push(format!("{path}: an object where the schema says {ty:?}"));
                return;
            }
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if matches!(child_path.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match schema["properties"].get(key) {
                    Some(child_schema) => undeclared(child, child_schema, &child_path, problems),
                    None => problems.push(format!(
                        "{child_path}: not in the schema, the API server would prune it"
                    )),
                }
            }
        }
        Value::Array(items) => {
            if ty != "array" {
                problems.push(format!("{path}: an array where the schema says {ty:?}"));
                return;
            }
            for (i, item) in items.iter().enumerate() {
                undeclared(item, &schema["items"], &format!("{path}[{i}]"), problems);
            }
        }
        Value::String(_) if ty == "string" => {}
        Value::Bool(_) if ty == "boolean" => {}
        Value::Number(n) if ty == "integer" && n.is_i64() => {}
        Value::Number(_) if ty == "number" => {}
        other => problems.push(format!(
            "{path}: {other} does not match the schema type {ty:?}"
        )),
    }
}

/// `sub` is contained in `sup`: every key of every object in `sub` is in `sup` with an equal
/// (recursively contained) value; arrays must be equal.
fn assert_contained(sub: &Value, sup: &Value, path: &str) {
    match (sub, sup) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                let other = b
                    .get(k)
                    .unwrap_or_else(|| panic!("{p} was lost by the typed round trip"));
                assert_contained(v, other, &p);
            }
        }
        _ => assert_eq!(sub, sup, "{path} changed in the typed round trip"),
    }
}

#[test]
fn samples_are_the_readme_examples_byte_for_byte() {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/original-readme.md");
    let Ok(text) = std::fs::read_to_string(&readme) else {
        eprintln!("skipped: {} is not available", readme.display());
        return;
    };
    let blocks: Vec<&str> = text
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks, [TOKEN_SAMPLE, SERVER_SAMPLE]);
}

#[test]
fn samples_keep_their_comments() {
    assert!(SERVER_SAMPLE.contains("  gnerateSecret: true\n"));
    assert!(SERVER_SAMPLE.contains("# generateSecret is used to automatically create a secret"));
    assert!(
        SERVER_SAMPLE.contains("Make sure to allow the \n"),
        "trailing space kept"
    );
}

#[test]
fn every_sample_key_is_declared_in_the_schema() {
    for (kind, sample) in [("GateToken", TOKEN_SAMPLE), ("GateServer", SERVER_SAMPLE)] {
        let mut problems = Vec::new();
        undeclared(&yaml_to_json(sample), &schema(kind), "", &mut problems);
        assert!(problems.is_empty(), "{kind} sample: {problems:#?}");
    }
}

#[test]
fn the_structural_check_catches_undeclared_keys() {
    let mut problems = Vec::new();
    let bad = json!({"spec": {"matchPath": "x", "verbs": "get", "durationSec": 1.5}});
    undeclared(&bad, &schema("GateToken"), "", &mut problems);
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn token_sample_parses_with_no_field_lost() {
    let token: GateToken = serde_yaml::from_str(TOKEN_SAMPLE).unwrap();
    assert_eq!(token.metadata.name.as_deref(), Some("gatetoken-sample"));
    assert_eq!(token.metadata.namespace.as_deref(), Some("kube-gateway"));
    assert_eq!(
        token.spec,
        GateTokenSpec {
            namespace: "default".into(),
            resource_names: Some(vec!["testvm".into()]),
            ..GateTokenSpec::default()
        }
    );
    assert_eq!(
        token.spec.api_groups(),
        Some(vec!["subresources.kubevirt.io".into()])
    );
    let rule = token.spec.effective_rule().unwrap();
    assert_eq!(rule.namespace, "default");
    assert_eq!(rule.resource_names, Some(vec!["testvm".into()]));
    assert_eq!(token.status, None);
    assert_contained(
        &yaml_to_json(TOKEN_SAMPLE),
        &serde_json::to_value(&token).unwrap(),
        "",
    );
}

#[test]
fn server_sample_parses_with_no_field_lost() {
    let server: GateServer = serde_yaml::from_str(SERVER_SAMPLE).unwrap();
    assert_eq!(server.metadata.name.as_deref(), Some("gateserver-sample"));
    assert_eq!(server.metadata.namespace.as_deref(), Some("kube-gateway"));
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        server.spec,
        GateServerSpec {
            route: Some("kube-gateway-proxy.apps-crc.testing".into()),
            service_account_verbs: strings(&["get"]),
            service_account_api_groups: strings(&["subresources.kubevirt.io"]),
            service_account_resources: strings(&[
                "virtualmachineinstances",
                "virtualmachineinstances/vnc"
            ]),
            raw_gnerate_secret: Some(true),
            pass_through: false,
            image: Some("quay.io/yaacov/kube-gateway".into()),
            web_app_image: Some("quay.io/yaacov/kube-gateway-web-app-novnc".into()),
            ..GateServerSpec::default()
        }
    );
    assert!(server.spec.generate_secret());
    assert!(server.spec.uses_deprecated_gnerate_secret());
    assert_eq!(
        server.spec.route(),
        Some("kube-gateway-proxy.apps-crc.testing")
    );
    assert_eq!(server.spec.validate(), Ok(()));
    assert_contained(
        &yaml_to_json(SERVER_SAMPLE),
        &serde_json::to_value(&server).unwrap(),
        "",
    );
}

#[test]
fn route_pattern_accepts_the_sample_route() {
    let s = schema("GateServer");
    let pattern = s["properties"]["spec"]["properties"]["route"]["pattern"]
        .as_str()
        .unwrap();
    assert_eq!(pattern, r"^([a-z0-9-_])+[.]([a-z0-9-_])+[.]([a-z0-9-._])+$");
    // The sample's route has three dot-separated parts of [a-z0-9-_], which the pattern needs.
    let route = "kube-gateway-proxy.apps-crc.testing";
    let parts: Vec<&str> = route.split('.').collect();
    assert!(parts.len() >= 3);
    assert!(route.len() <= 226);
    assert!(parts.iter().all(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    }));
}
