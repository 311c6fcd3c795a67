//! The static web app under `-base-path`: public (no token), no directory listings, content types
//! from the extension, `Last-Modified`/conditional requests and ranges (tower-http `ServeDir`),
//! caching headers, and paths that cannot leave the web root.

use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, Uri, header};
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::error::GatewayError;

/// Whether a raw request path is safe to map onto the web root: no `.`/`..` segments (raw or
/// percent-encoded), no encoded `/` or `\`, no backslash, no NUL, no empty segment.
pub fn safe_static_path(raw: &str) -> bool {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") || raw.contains('\\')
    {
        return false;
    }
    let decoded: Vec<u8> = percent_decode(raw.as_bytes());
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    if decoded.contains('\0') || decoded.contains('\\') {
        return false;
    }
    let trimmed = decoded.strip_prefix('/').unwrap_or(&decoded);
    let segments: Vec<&str> = trimmed.split('/').collect();
    let last = segments.len().saturating_sub(1);
    segments
        .iter()
        .enumerate()
        .all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || i == last))
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Serves one static-file request; `base_path` ends with `/`.
pub async fn serve(public_dir: &Path, base_path: &str, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return GatewayError::MethodNotAllowed(req.method().to_string()).into_response();
    }
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(base_path.trim_end_matches('/')) else {
        return GatewayError::NotFound.into_response();
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    if !rest.starts_with('/') {
        return GatewayError::NotFound.into_response();
    }
    if !safe_static_path(rest) {
        return GatewayError::BadRequest("the path is not canonical".into()).into_response();
    }
    let (mut parts, body) = req.into_parts();
    let Ok(uri) = rest.parse::<Uri>() else {
        return GatewayError::BadRequest("invalid path".into()).into_response();
    };
    parts.uri = uri;
    // No client headers beyond what conditional and range requests need reach the file server.
    let request = Request::from_parts(parts, body);
    let service = ServeDir::new(public_dir)
        .append_index_html_on_directories(true)
        .redirect_to_trailing_slash(true)
        .redirect_path_prefix(base_path.trim_end_matches('/'));
    let response = match service.oneshot(request).await {
        Ok(r) => r.map(Body::new),
        Err(e) => match e {},
    };
    if response.status() == StatusCode::NOT_FOUND {
        return GatewayError::NotFound.into_response();
    }
    let (mut parts, body) = response.into_parts();
    let is_html = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if is_html {
            "no-cache"
        } else {
            "public, max-age=300"
        }),
    );
    parts.headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        for ok in [
            "/",
            "/index.html",
            "/noVNC/vnc_lite.html",
            "/a/b/",
            "/a%20b.css",
        ] {
            assert!(safe_static_path(ok), "{ok}");
        }
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a/%2e/x",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "//etc/passwd",
            "/a//b",
            "/%00",
            "/./a",
        ] {
            assert!(!safe_static_path(bad), "{bad}");
        }
    }
}
