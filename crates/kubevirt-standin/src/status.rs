//! Kubernetes `Status` error bodies, as KubeVirt's virt-api answers them.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

/// The reason string Kubernetes uses for a status code.
fn reason(code: StatusCode) -> &'static str {
    match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "InternalError",
    }
}

/// A `Status` response with `code` and `message`.
pub fn failure(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    with_details(code, message, serde_json::Value::Null)
}

/// A `Status` response with `details`.
pub fn with_details(
    code: StatusCode,
    message: &str,
    details: serde_json::Value,
) -> Response<Full<Bytes>> {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason(code),
        "code": code.as_u16(),
    });
    if !details.is_null() {
        body["details"] = details;
    }
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

/// The 404 KubeVirt answers for a VMI that does not exist.
pub fn vmi_not_found(name: &str) -> Response<Full<Bytes>> {
    with_details(
        StatusCode::NOT_FOUND,
        &format!("virtualmachineinstance.kubevirt.io \"{name}\" not found"),
        json!({"name": name, "group": "kubevirt.io", "kind": "virtualmachineinstance"}),
    )
}
