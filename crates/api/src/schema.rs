//! Schema adjustments applied through `#[schemars(transform = ...)]`.

use schemars::Schema;
use serde_json::Value;

/// Marks `names` as required properties of an object schema and drops their `default`.
///
/// Status fields are deserialised with `#[serde(default)]` (so that a partial status never
/// breaks a watch) but must be required in the CRD, like Gen B's, and carry no default there.
pub(crate) fn require_without_default(schema: &mut Schema, names: &[&str]) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for name in names {
            if let Some(Value::Object(prop)) = props.get_mut(*name) {
                prop.remove("default");
            }
        }
    }
    let required = obj
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = required {
        for name in names {
            if !list.iter().any(|v| v == name) {
                list.push(Value::String((*name).to_owned()));
            }
        }
        list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

/// Adds the validations of the standard `metav1.Condition` CRD schema (as generated for Gen B
/// by controller-gen) to a `conditions` array, and makes it a map keyed by `type`, so that the
/// API server rejects malformed or duplicate conditions.
pub(crate) fn condition_list(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    let Some(Value::Object(props)) = obj
        .get_mut("items")
        .and_then(Value::as_object_mut)
        .and_then(|items| items.get_mut("properties"))
    else {
        return;
    };
    let mut set = |name: &str, extra: Value| {
        if let (Some(Value::Object(prop)), Value::Object(extra)) = (props.get_mut(name), extra) {
            prop.extend(extra);
        }
    };
    set(
        "type",
        serde_json::json!({
            "maxLength": 316,
            "pattern": r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        }),
    );
    set(
        "status",
        serde_json::json!({"enum": ["True", "False", "Unknown"]}),
    );
    set(
        "reason",
        serde_json::json!({
            "maxLength": 1024,
            "minLength": 1,
            "pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        }),
    );
    set("message", serde_json::json!({"maxLength": 32768}));
    set("observedGeneration", serde_json::json!({"minimum": 0}));
}
