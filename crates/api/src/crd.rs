//! The CustomResourceDefinitions, rendered as the YAML manifests checked in under
//! `deploy/crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::error::CrdError;
use crate::{GateServer, GateToken};

/// The command that regenerates the checked-in CRD manifests, run from the workspace root.
pub const REGENERATE_COMMAND: &str =
    "cargo run -p virt-gateway-api --bin crdgen -- --write deploy/crds";

/// The directory of the checked-in CRD manifests, relative to the workspace root.
pub const CRDS_DIR: &str = "deploy/crds";

/// Both CRDs: GateServer, then GateToken. Install these (not the bare
/// [`CustomResourceExt::crd`] of the types), see [`gateserver`].
pub fn crds() -> [CustomResourceDefinition; 2] {
    [gateserver(), gatetoken()]
}

/// The GateServer CRD: [`GateServer::crd`] adjusted by [`optional_spec`], [`not_nullable`] and
/// [`unwrap_descriptions`].
pub fn gateserver() -> CustomResourceDefinition {
    unwrap_descriptions(not_nullable(optional_spec(GateServer::crd())))
}

/// The GateToken CRD: [`GateToken::crd`] adjusted by [`optional_spec`], [`not_nullable`] and
/// [`unwrap_descriptions`].
pub fn gatetoken() -> CustomResourceDefinition {
    unwrap_descriptions(not_nullable(optional_spec(GateToken::crd())))
}

/// Removes every `nullable: true` that kube adds for `Option` fields, as in Gen B's schema.
///
/// The API server then drops a `null` written for an optional field before defaulting and
/// validation, so `field: null` means the same as an absent field everywhere: in CEL rules
/// (`has()`), in defaulting, and in the Rust types (`None`).
pub fn not_nullable(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for_each_schema(&mut crd, &mut |props| props.nullable = None);
    crd
}

/// Joins the hard-wrapped lines of the doc comments that became schema descriptions, so that
/// `kubectl explain` can wrap them itself; blank-line paragraph breaks stay.
pub fn unwrap_descriptions(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for_each_schema(&mut crd, &mut |props| {
        if let Some(d) = props.description.as_mut() {
            *d = d
                .split("\n\n")
                .map(|para| {
                    para.split('\n')
                        .map(str::trim)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("\n\n");
        }
    });
    crd
}

/// Calls `f` on every schema node of every version of `crd`.
fn for_each_schema(crd: &mut CustomResourceDefinition, f: &mut dyn FnMut(&mut JSONSchemaProps)) {
    fn walk(props: &mut JSONSchemaProps, f: &mut dyn FnMut(&mut JSONSchemaProps)) {
        f(props);
        for child in props.properties.iter_mut().flat_map(|p| p.values_mut()) {
            walk(child, f);
        }
        match props.items.as_mut() {
            Some(JSONSchemaPropsOrArray::Schema(items)) => walk(items, f),
            Some(JSONSchemaPropsOrArray::Schemas(items)) => {
                items.iter_mut().for_each(|i| walk(i, f))
            }
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(extra)) = props.additional_properties.as_mut() {
            walk(extra, f);
        }
    }
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            walk(schema, f);
        }
    }
}

/// Makes `spec` optional with the default `{}`, as in Gen B, where a manifest without `spec`
/// was valid and got every field default. The API server fills in `spec: {}` and then the
/// defaults of its fields, so clients (and the Rust types, whose `spec` is not optional) always
/// see a complete spec.
pub fn optional_spec(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(JSON(serde_json::json!({})));
        }
        if let Some(required) = schema.required.as_mut() {
            required.retain(|r| r != "spec");
            if required.is_empty() {
                schema.required = None;
            }
        }
    }
    crd
}

/// The manifest file name of a CRD: `<metadata.name>.yaml`, e.g.
/// `gatetokens.ocgate.yaacov.com.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default())
}

/// One CRD as a YAML document, preceded by a comment saying how it was generated.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    let body = serde_yaml::to_string(crd).map_err(|source| CrdError::Yaml {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    Ok(format!(
        "# Generated from crates/api by crdgen; do not edit.\n# Regenerate with: {REGENERATE_COMMAND}\n{body}"
    ))
}

/// Every manifest of `deploy/crds/` as `(file name, contents)`: the two CRDs, then the
/// delegation policy ([`crate::admission`]), which is installed wherever the CRDs are.
pub fn files() -> Result<Vec<(String, String)>, CrdError> {
    let mut files = crds()
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect::<Result<Vec<_>, CrdError>>()?;
    files.push((
        crate::admission::FILE_NAME.to_owned(),
        crate::admission::to_yaml()?,
    ));
    Ok(files)
}

/// Every manifest of [`files`] as one multi-document YAML stream (what `crdgen` prints).
pub fn all_yaml() -> Result<String, CrdError> {
    let mut out = String::new();
    for (_, doc) in files()? {
        if !doc.starts_with("---") && !doc.contains("\n---\n") {
            out.push_str("---\n");
        }
        out.push_str(&doc);
    }
    Ok(out)
}
