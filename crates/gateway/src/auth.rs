//! The auth endpoints: `/auth/token`, `/auth/jwt/set`, `/auth/logout`, `/auth/session`,
//! `/.well-known/jwks.json` and `/auth/gettoken`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value, json};
use virt_gateway_auth::jwt::Claims;

use crate::audit::AuditCtx;
use crate::config::is_dns_label;
use crate::error::{GatewayError, status_response};
use crate::proxy::{ClientAddr, authenticate};
use crate::server::AppState;
use crate::token::{self, SESSION_COOKIE};
use crate::verify::now_unix;

/// Largest form body accepted by `/auth/token`, `/auth/jwt/set` and `/auth/logout`.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// Largest JSON body accepted by `/auth/gettoken`.
pub const MAX_GETTOKEN_BYTES: usize = 256 * 1024;
/// Largest `then` accepted.
pub const MAX_THEN_LEN: usize = 4096;

/// Whether `then` is a safe local redirect target: it starts with exactly one `/`, has no `//`
/// or backslash in its path part, no control or whitespace characters, and is not too long.
pub fn valid_then(then: &str) -> bool {
    if then.len() > MAX_THEN_LEN || !then.starts_with('/') {
        return false;
    }
    if then
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return false;
    }
    let path = then.split(['?', '#']).next().unwrap_or("");
    if path.contains("//") {
        return false;
    }
    // Percent-encoded slashes or backslashes right after the first '/' can be decoded by some
    // browsers into a scheme-relative URL.
    let lower = path.to_ascii_lowercase();
    !(lower.starts_with("/%2f") || lower.starts_with("/%5c"))
}

/// Builds the session cookie. `max_age` `None`: a session cookie; `Some(0)`: clears it.
pub fn session_cookie(token: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        token::sanitize_token(token)
    );
    if let Some(age) = max_age {
        let expires = if age == 0 {
            UNIX_EPOCH
        } else {
            SystemTime::now() + Duration::from_secs(age)
        };
        cookie.push_str(&format!(
            "; Max-Age={age}; Expires={}",
            httpdate::fmt_http_date(expires)
        ));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

fn is_secure(state: &AppState, req_headers: &http::HeaderMap) -> bool {
    state.https
        || req_headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Form or query parameters of a GET/POST.
async fn params(
    req: Request,
) -> Result<(Vec<(String, String)>, http::HeaderMap, Method), GatewayError> {
    let (parts, body) = req.into_parts();
    let mut out: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if parts.method == Method::POST {
        let bytes = Limited::new(body, MAX_FORM_BYTES)
            .collect()
            .await
            .map_err(|_| GatewayError::PayloadTooLarge)?
            .to_bytes();
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            // Form fields win over query parameters (as Go's FormValue).
            let mut form: Vec<(String, String)> =
                form_urlencoded::parse(&bytes).into_owned().collect();
            form.extend(out);
            out = form;
        }
    } else if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(GatewayError::MethodNotAllowed(parts.method.to_string()));
    }
    Ok((out, parts.headers, parts.method))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn audit_ctx(req: &Request) -> AuditCtx {
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    AuditCtx::new(client, req.method().as_str(), req.uri().path())
}

fn finish(state: &AppState, ctx: &AuditCtx, result: Result<Response, GatewayError>) -> Response {
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            let decision = if e.status_code().is_client_error() {
                "deny"
            } else {
                "error"
            };
            let reason = e.reason_code();
            let detail = e.to_string();
            ctx.update(|f| {
                f.decision = decision;
                f.reason = reason;
                f.detail = Some(detail);
            });
            e.into_response()
        }
    };
    let (decision, reason) = ctx
        .fields
        .lock()
        .map(|f| (f.decision, f.reason))
        .unwrap_or(("error", "internal_error"));
    let outcome = match decision {
        "allow" => "allowed",
        "deny" => "denied",
        _ => "error",
    };
    state.metrics.request("auth", outcome, reason);
    state
        .metrics
        .latency
        .get_or_create(&[("kind", "auth")])
        .observe(ctx.start.elapsed().as_secs_f64());
    state
        .audit
        .write(&ctx.record("auth", response.status().as_u16(), 0));
    response
}

/// Verifies a token for a cookie; returns the cookie lifetime (None in pass-through mode).
async fn check_token(
    state: &AppState,
    ctx: &AuditCtx,
    raw: Option<&str>,
) -> Result<(String, Option<u64>), GatewayError> {
    let token = token::sanitize_token(raw.unwrap_or_default());
    if token.is_empty() {
        return Err(GatewayError::NoToken);
    }
    if state.config.passthrough {
        return Ok((token, None));
    }
    let verified = authenticate(state, &token, Some(ctx)).await?;
    let max_age = verified.claims.exp.saturating_sub(now_unix()).max(1);
    Ok((token, Some(max_age)))
}

/// The body of `/auth/session`: what the page may know about its session, and nothing else of
/// the token (no signature, no policy rule). `nbf` and `jti` are `null` when the token has none.
pub fn session_body(claims: &Claims) -> Value {
    json!({
        "exp": claims.exp,
        "nbf": claims.nbf,
        "namespace": claims.namespace,
        "jti": claims.jti,
    })
}

/// `GET /auth/session`: the expiry, not-before, namespace and `jti` of the caller's token (found
/// as for API requests: `Authorization: Bearer`, then the session cookie), only after it verifies
/// and passes the revocation check exactly as an API request would ([`authenticate`]); otherwise
/// the same 401 (or 503 while the revocation index is not ready). `Cache-Control: no-store`.
/// In pass-through mode tokens are not verified, so there is no session to describe: 404.
pub async fn auth_session(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ctx = audit_ctx(&req);
    let (parts, _) = req.into_parts();
    let result = async {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return Err(GatewayError::MethodNotAllowed(parts.method.to_string()));
        }
        let Some(credential) = token::extract(&parts.headers)? else {
            return Err(GatewayError::NoToken);
        };
        if state.config.passthrough {
            return Err(GatewayError::NotFound);
        }
        let verified = authenticate(&state, &credential.token, Some(&ctx)).await?;
        let mut response = axum::Json(session_body(&verified.claims)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::VARY,
            HeaderValue::from_static("Authorization, Cookie"),
        );
        Ok(response)
    }
    .await;
    finish(&state, &ctx, result)
}

fn redirect_with_cookie(location: &str, cookie: &str) -> Result<Response, GatewayError> {
    let location = HeaderValue::from_str(location)
        .map_err(|_| GatewayError::BadRequest("invalid redirect target".into()))?;
    let cookie = HeaderValue::from_str(cookie)
        .map_err(|_| GatewayError::BadRequest("invalid token characters".into()))?;
    let mut response = StatusCode::FOUND.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `/auth/token`: `token` and `then` (GET query or POST form) → the session cookie and a 302.
pub async fn auth_token(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ctx = audit_ctx(&req);
    let result = async {
        let (params, headers, _) = params(req).await?;
        let then = param(&params, "then").filter(|t| !t.is_empty()).unwrap_or("/");
        if !valid_then(then) {
            return Err(GatewayError::BadRequest(
                "'then' must be a local path starting with a single '/' (no scheme, host, '//' or backslash)".into(),
            ));
        }
        let (token, max_age) = check_token(&state, &ctx, param(&params, "token")).await?;
        redirect_with_cookie(then, &session_cookie(&token, max_age, is_secure(&state, &headers)))
    }
    .await;
    finish(&state, &ctx, result)
}

/// `/auth/jwt/set` (Gen C, 2024): `token`, `name`, `namespace` → the cookie and a 302 to the noVNC
/// page for that VM.
pub async fn auth_jwt_set(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ctx = audit_ctx(&req);
    let result = async {
        let (params, headers, _) = params(req).await?;
        let name = param(&params, "name").unwrap_or_default();
        let namespace = param(&params, "namespace").unwrap_or_default();
        if !is_dns_label(name) || !is_dns_label(namespace) {
            return Err(GatewayError::BadRequest(
                "'name' and 'namespace' must be DNS labels (lower-case letters, digits and '-', at most 63 characters)".into(),
            ));
        }
        let (token, max_age) = check_token(&state, &ctx, param(&params, "token")).await?;
        let api = state.config.api_path.trim_start_matches('/');
        let location = format!(
            "{}?path={api}apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/vnc",
            state.config.client_path
        );
        redirect_with_cookie(&location, &session_cookie(&token, max_age, is_secure(&state, &headers)))
    }
    .await;
    finish(&state, &ctx, result)
}

/// `/auth/logout`: clears the cookie and redirects to `then` (default `/`).
pub async fn auth_logout(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ctx = audit_ctx(&req);
    let result = async {
        let (params, headers, _) = params(req).await?;
        let then = param(&params, "then")
            .filter(|t| !t.is_empty())
            .unwrap_or("/");
        if !valid_then(then) {
            return Err(GatewayError::BadRequest(
                "'then' must be a local path".into(),
            ));
        }
        redirect_with_cookie(
            then,
            &session_cookie("", Some(0), is_secure(&state, &headers)),
        )
    }
    .await;
    finish(&state, &ctx, result)
}

/// `/.well-known/jwks.json`: the verification keys as a JWK set.
pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let body = virt_gateway_auth::keys::jwks(&state.verifier.keys());
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

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
/// (`APIGroups` ≡ `apiGroups`, §11 item 4), unknown keys dropped, status never taken from the caller.
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

/// RFC 1123 subdomain (object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

async fn api_call(
    state: &AppState,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), GatewayError> {
    let uri = crate::upstream::upstream_uri(&state.config.api_server, path, None)
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let mut req = http::Request::new(body.map_or_else(Body::empty, Body::from));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let mut auth = HeaderValue::from_str(&format!("Bearer {bearer}"))
        .map_err(|_| GatewayError::BadCredentials("the bearer token has invalid characters"))?;
    auth.set_sensitive(true);
    req.headers_mut().insert(header::AUTHORIZATION, auth);
    req.headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let response = tokio::time::timeout(state.config.request_timeout, state.client.request(req))
        .await
        .map_err(|_| GatewayError::UpstreamTimeout(state.config.request_timeout.as_secs()))?
        .map_err(|e| GatewayError::Upstream(e.to_string()))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), 4 * 1024 * 1024)
        .collect()
        .await
        .map_err(|e| GatewayError::Upstream(e.to_string()))?
        .to_bytes();
    Ok((status, bytes))
}

fn api_refusal(status: StatusCode, body: Bytes) -> GatewayError {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    match parsed {
        Some(v) if v.get("kind").and_then(Value::as_str) == Some("Status") => {
            GatewayError::ApiStatus {
                code: status.as_u16(),
                message: v
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                body,
            }
        }
        _ => GatewayError::Upstream(format!("the API server answered {status}")),
    }
}

/// `/auth/gettoken` (Gen B, §4.8): a Kubernetes user POSTs a GateToken with their own bearer token.
/// The GateToken is created **with the caller's credentials**, the operator signs it, and the
/// answer is the whole GateToken (clients read `.status.token`).
pub async fn auth_gettoken(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let ctx = audit_ctx(&req);
    let result = async {
        if req.method() != Method::POST {
            return Err(GatewayError::MethodNotAllowed(req.method().to_string()));
        }
        let Some(bearer) = token::bearer_from_headers(req.headers()) else {
            return Err(GatewayError::NoToken);
        };
        let bytes = Limited::new(req.into_body(), MAX_GETTOKEN_BYTES)
            .collect()
            .await
            .map_err(|_| GatewayError::PayloadTooLarge)?
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| GatewayError::BadRequest(format!("the body is not JSON: {e}")))?;
        let (namespace, object) = normalize_gatetoken(&body).map_err(GatewayError::BadRequest)?;
        let collection = format!("/apis/{}/namespaces/{namespace}/gatetokens", virt_gateway_api::API_VERSION);
        let payload = serde_json::to_vec(&object).map_err(|e| GatewayError::Internal(e.to_string()))?;
        let (status, created) = api_call(&state, Method::POST, &collection, &bearer, Some(payload)).await?;
        if !status.is_success() {
            return Err(api_refusal(status, created));
        }
        let created: Value = serde_json::from_slice(&created).map_err(|e| GatewayError::Upstream(e.to_string()))?;
        let name = created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| GatewayError::Upstream("the created GateToken has no name".into()))?
            .to_string();
        ctx.update(|f| f.jti = created.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string));
        let object_path = format!("{collection}/{name}");
        let deadline = tokio::time::Instant::now() + state.config.gettoken_timeout;
        let mut current = created;
        loop {
            let token = current.pointer("/status/token").and_then(Value::as_str).unwrap_or_default();
            if !token.is_empty() {
                let mut response = axum::Json(current).into_response();
                response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Ok(response);
            }
            if current.pointer("/status/phase").and_then(Value::as_str) == Some("Error") {
                let message = current
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find_map(|c| c.get("message").and_then(Value::as_str)))
                    .unwrap_or("the operator could not sign the token")
                    .to_string();
                return Ok(status_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!("GateToken {namespace}/{name}: {message}"),
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::Timeout(format!(
                    "GateToken {namespace}/{name} was created, but the operator did not sign it within {} s",
                    state.config.gettoken_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (status, got) = api_call(&state, Method::GET, &object_path, &bearer, None).await?;
            if !status.is_success() {
                return Err(api_refusal(status, got));
            }
            current = serde_json::from_slice(&got).map_err(|e| GatewayError::Upstream(e.to_string()))?;
        }
    }
    .await;
    finish(&state, &ctx, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn then_must_be_local() {
        for ok in [
            "/",
            "/noVNC/vnc_lite.html?path=k8s/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachineinstances/vm/vnc",
            "/a/b#frag",
            "/x?next=https://example.com",
        ] {
            assert!(valid_then(ok), "{ok}");
        }
        for bad in [
            "",
            "https://evil.example.com/",
            "//evil.example.com/",
            "/\\evil.example.com",
            "\\\\evil",
            "/a//b",
            "javascript:alert(1)",
            "/a\r\nSet-Cookie: x=y",
            "/%2F%2Fevil.example.com",
            "/%5cevil",
            "evil.example.com",
            "/a b",
        ] {
            assert!(!valid_then(bad), "{bad}");
        }
        assert!(!valid_then(&format!("/{}", "a".repeat(MAX_THEN_LEN))));
    }

    #[test]
    fn cookies() {
        let c = session_cookie("\"a.b.c\"", Some(60), true);
        assert!(
            c.starts_with(
                "ocgate-session-token=a.b.c; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Expires="
            ),
            "{c}"
        );
        assert!(c.ends_with("; Secure"));
        let c = session_cookie("", Some(0), false);
        assert!(
            c.contains("Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
            "{c}"
        );
        assert!(!c.contains("Secure"));
        assert_eq!(
            session_cookie("t", None, false),
            "ocgate-session-token=t; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn session_body_has_the_times_namespace_and_jti_and_nothing_else() {
        let mut claims = Claims::new(4_102_444_800);
        claims.nbf = Some(1_700_000_000);
        claims.namespace = "default".into();
        claims.jti = Some("0b7e7c1a-0000-4000-8000-000000000001".into());
        claims.resource_names = Some(vec!["testvm".into()]);
        assert_eq!(
            session_body(&claims),
            json!({"exp": 4_102_444_800u64, "nbf": 1_700_000_000u64, "namespace": "default",
                   "jti": "0b7e7c1a-0000-4000-8000-000000000001"})
        );
        // Gen B tokens have no jti; a token may lack nbf: both are null, never missing.
        let claims = Claims::new(4_102_444_800);
        assert_eq!(
            session_body(&claims),
            json!({"exp": 4_102_444_800u64, "nbf": null, "namespace": "*", "jti": null})
        );
    }

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
}
