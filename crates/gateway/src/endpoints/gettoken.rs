//! `/auth/gettoken` (Gen B): a Kubernetes user POSTs a GateToken with their own bearer token. The
//! GateToken is created through the API server **with the caller's credentials** (never the
//! gateway's), so RBAC on `gatetokens` decides who may mint; the operator signs it, and the answer
//! is the whole GateToken (clients read `.status.token`). Read and written through the API crate's
//! types; the caller needs `create` and `get` on `gatetokens`.

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::{Map, Value, json};
use virt_gateway_api::names::{is_dns_label, is_dns_subdomain};
use virt_gateway_api::{GateToken, GateTokenPhase};

use crate::error::{GatewayError, status_response};
use crate::exchange::Exchange;
use crate::outcome::{Decision, Outcome, Reason};
use crate::token;
use crate::upstream::KubeClients;

/// Largest JSON body accepted.
pub const MAX_GETTOKEN_BYTES: usize = 256 * 1024;

const TOP_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_KEYS: &[&str] = &["name", "generateName", "namespace", "labels", "annotations"];
const SPEC_KEYS: &[&str] = &[
    "from",
    "durationSec",
    "generateServiceAccount",
    "namespace",
    "verbs",
    "apiGroups",
    "resources",
    "resourceNames",
    "nonResourceURLs",
];

fn pick(obj: &Map<String, Value>, known: &[&'static str]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in obj {
        if let Some(canonical) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
            out.insert((*canonical).to_string(), value.clone());
        }
    }
    out
}

/// Turns a Gen B `/auth/gettoken` body into a GateToken object: keys matched case-insensitively
/// (`APIGroups` ≡ `apiGroups`, as the Go gateway's decoder did), unknown keys dropped, status never
/// taken from the caller.
pub fn normalize_gatetoken(body: &Value) -> Result<(String, Value), String> {
    let top = body
        .as_object()
        .ok_or("the body must be a JSON object (a GateToken)")?;
    let top = pick(top, TOP_KEYS);
    let metadata = match top.get("metadata") {
        Some(Value::Object(m)) => pick(m, METADATA_KEYS),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err("metadata must be an object".into()),
    };
    let spec = match top.get("spec") {
        Some(Value::Object(s)) => pick(s, SPEC_KEYS),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err("spec must be an object".into()),
    };
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .ok_or("metadata.namespace is required: the namespace of the GateServer whose key signs the token")?
        .to_string();
    if !is_dns_label(&namespace) {
        return Err(format!(
            "metadata.namespace {namespace:?} is not a namespace name"
        ));
    }
    let mut metadata = metadata;
    metadata.insert("namespace".into(), Value::String(namespace.clone()));
    match metadata.get("name") {
        Some(Value::String(name)) if !name.is_empty() => {
            if !is_dns_subdomain(name) {
                return Err(format!("metadata.name {name:?} is not a valid object name"));
            }
        }
        _ => {
            metadata.remove("name");
            if !matches!(metadata.get("generateName"), Some(Value::String(g)) if !g.is_empty()) {
                metadata.insert("generateName".into(), Value::String("gettoken-".into()));
            }
        }
    }
    let object = json!({
        "apiVersion": virt_gateway_api::API_VERSION,
        "kind": "GateToken",
        "metadata": metadata,
        "spec": spec,
    });
    Ok((namespace, object))
}

/// The endpoint and what it needs.
pub struct GetToken {
    /// Clients for the API server, with the caller's token.
    pub clients: KubeClients,
    /// How long to wait for the operator to sign.
    pub wait: Duration,
}

fn api_error(e: kube::Error) -> GatewayError {
    match e {
        kube::Error::Api(status) => GatewayError::ApiStatus {
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
        },
        other => GatewayError::Upstream(other.to_string()),
    }
}

impl GetToken {
    /// Handles one request.
    pub async fn handle(&self, exchange: Exchange<()>) -> Response {
        self.mint(exchange)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    }

    async fn mint(&self, exchange: Exchange<()>) -> Result<Response, GatewayError> {
        let request = exchange.request;
        if request.method() != Method::POST {
            return Err(GatewayError::MethodNotAllowed(request.method().to_string()));
        }
        let bearer: Arc<str> = token::bearer_from_headers(request.headers())
            .ok_or(GatewayError::NoToken)?
            .into();
        let bytes = Limited::new(request.into_body(), MAX_GETTOKEN_BYTES)
            .collect()
            .await
            .map_err(|e| GatewayError::from_body_error(e.as_ref()))?
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| GatewayError::BadRequest(format!("the body is not JSON: {e}")))?;
        let (namespace, object) = normalize_gatetoken(&body).map_err(GatewayError::BadRequest)?;
        let gatetoken: GateToken = serde_json::from_value(object)
            .map_err(|e| GatewayError::BadRequest(format!("the body is not a GateToken: {e}")))?;
        let client = self
            .clients
            .with_token(move || Some(bearer.clone()))
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let api: Api<GateToken> = Api::namespaced(client, &namespace);
        let mut current = api
            .create(&PostParams::default(), &gatetoken)
            .await
            .map_err(api_error)?;
        let name = current.name_any();
        let jti = current.uid();
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut pause = Duration::from_millis(100);
        loop {
            let status = current.status.clone().unwrap_or_default();
            if !status.token.is_empty() {
                let mut response = axum::Json(&current).into_response();
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Outcome::allowed()
                    .with_jti(jti.as_deref())
                    .attach(&mut response);
                return Ok(response);
            }
            if status.parsed_phase() == Ok(GateTokenPhase::Error) {
                let message = status
                    .conditions
                    .iter()
                    .map(|c| c.message.as_str())
                    .find(|m| !m.is_empty())
                    .unwrap_or("the operator could not sign the token");
                let mut response = status_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!("GateToken {namespace}/{name}: {message}"),
                );
                Outcome::refused(
                    Decision::Deny,
                    Reason::ApiRefused,
                    "the operator refused to sign the GateToken".into(),
                )
                .with_jti(jti.as_deref())
                .attach(&mut response);
                return Ok(response);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::Timeout(format!(
                    "GateToken {namespace}/{name} was created, but the operator did not sign it within {} s",
                    self.wait.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            current = api.get(&name).await.map_err(api_error)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gettoken_bodies_are_case_insensitive() {
        let body = json!({
            "Kind": "GateToken",
            "Metadata": {"Name": "t1", "NAMESPACE": "gw", "uid": "ignored"},
            "Spec": {"APIGroups": ["subresources.kubevirt.io"], "ResourceNames": ["vm"], "Namespace": "default", "durationsec": 60, "bogus": 1},
            "status": {"token": "forged"}
        });
        let (ns, obj) = normalize_gatetoken(&body).unwrap();
        assert_eq!(ns, "gw");
        assert_eq!(
            obj,
            json!({
                "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
                "metadata": {"name": "t1", "namespace": "gw"},
                "spec": {"apiGroups": ["subresources.kubevirt.io"], "resourceNames": ["vm"], "namespace": "default", "durationSec": 60}
            })
        );
        let (_, obj) = normalize_gatetoken(&json!({"metadata": {"namespace": "gw"}})).unwrap();
        assert_eq!(obj["metadata"]["generateName"], "gettoken-");
        assert!(normalize_gatetoken(&json!({"spec": {}})).is_err());
        assert!(normalize_gatetoken(&json!({"metadata": {"namespace": "../x"}})).is_err());
        assert!(
            normalize_gatetoken(&json!({"metadata": {"namespace": "gw", "name": "a/b"}})).is_err()
        );
        assert!(normalize_gatetoken(&json!([])).is_err());
    }

    #[test]
    fn a_normalised_body_is_a_typed_gatetoken() {
        let body = json!({"metadata": {"namespace": "gw"}, "Spec": {"ResourceNames": ["vm"], "DurationSec": 60}});
        let (_, object) = normalize_gatetoken(&body).unwrap();
        let token: GateToken = serde_json::from_value(object).unwrap();
        assert_eq!(token.spec.duration_sec, 60);
        assert_eq!(token.spec.resource_names, Some(vec!["vm".to_owned()]));
        assert_eq!(token.metadata.generate_name.as_deref(), Some("gettoken-"));
        assert!(token.status.is_none());
    }
}
