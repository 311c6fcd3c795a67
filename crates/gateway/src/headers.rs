//! The header policy of forwarding, pure: what is stripped from requests and responses, what is
//! added, and which upgrades are accepted.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::error::GatewayError;
use crate::token;

/// Request headers never forwarded: hop-by-hop headers, credentials, identity and forwarding
/// headers the caller could forge, and method overrides.
pub fn is_stripped_request_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
            | "cookie"
            | "forwarded"
            | "x-real-ip"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
            | "sec-websocket-protocol"
            | "sec-websocket-extensions"
    ) || n.starts_with("impersonate-")
        || n.starts_with("x-remote-")
        || n.starts_with("x-forwarded-")
}

/// Headers named by the `Connection` header (also hop-by-hop).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The headers to send upstream for a client request.
pub fn forwarded_headers(
    incoming: &HeaderMap,
    client: Option<SocketAddr>,
    bearer: Option<&str>,
    websocket: bool,
) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 4);
    for (name, value) in incoming {
        if is_stripped_request_header(name) || listed.iter().any(|l| l == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(addr) = client
        && let Ok(v) = HeaderValue::from_str(&addr.ip().to_string())
    {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if let Some(token) = bearer
        && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        v.set_sensitive(true);
        out.insert(header::AUTHORIZATION, v);
    }
    if websocket {
        out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Some(protocols) = token::forwarded_protocols(incoming)
            && let Ok(v) = HeaderValue::from_str(&protocols)
        {
            out.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    out
}

/// Whether the request asks for a WebSocket upgrade; `Err` for other upgrade protocols.
pub fn upgrade_kind(headers: &HeaderMap) -> Result<bool, GatewayError> {
    let Some(upgrade) = headers.get(header::UPGRADE) else {
        return Ok(false);
    };
    let is_ws = upgrade
        .to_str()
        .map(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
        .unwrap_or(false);
    let connection_upgrade = connection_listed(headers).iter().any(|t| t == "upgrade");
    match (is_ws, connection_upgrade) {
        (true, true) => Ok(true),
        (false, true) => Err(GatewayError::BadRequest(
            "only WebSocket upgrades are supported".into(),
        )),
        _ => Ok(false),
    }
}

/// Strips hop-by-hop headers from an upstream response (except on a 101).
pub fn clean_response_headers(headers: &mut HeaderMap, switching: bool) {
    let listed = connection_listed(headers);
    for name in listed {
        if switching && name == "upgrade" {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    for name in [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "proxy-authenticate",
    ] {
        headers.remove(name);
    }
    if !switching {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// The `Content-Security-Policy` that keeps other sites from framing the gateway's pages
/// (clickjacking, review §15): only the gateway itself and the allowed origins may.
pub fn frame_ancestors(allowed: &[String]) -> HeaderValue {
    let mut policy = String::from("frame-ancestors 'self'");
    for origin in allowed {
        policy.push(' ');
        policy.push_str(origin);
    }
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("frame-ancestors 'self'"))
}

/// Adds the headers every response of the main listener carries: no `Referer` with a token in
/// it leaves a page (review §9), pages cannot be framed by other sites, and a response to a
/// request that carried a token (`takes_token`) is never stored by a cache or the browser.
pub fn add_security_headers(
    headers: &mut HeaderMap,
    frame_ancestors: &HeaderValue,
    takes_token: bool,
) {
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, frame_ancestors.clone());
    }
    if takes_token {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_strip_credentials_and_identity() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer caller"),
            ("cookie", "ocgate-session-token=x"),
            ("impersonate-user", "admin"),
            ("impersonate-group", "system:masters"),
            ("x-remote-user", "admin"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
            ("x-http-method-override", "DELETE"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("host", "gateway.example.com"),
            ("accept", "application/json"),
            ("user-agent", "test"),
            (
                "sec-websocket-protocol",
                "plain.kubevirt.io, base64url.bearer.authorization.k8s.io.dA",
            ),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("sec-websocket-key", "abc"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let out = forwarded_headers(&h, Some(client), Some("sa-token"), false);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(out["authorization"], "Bearer sa-token");
        assert_eq!(out["x-forwarded-for"], "10.1.2.3");
        assert_eq!(out.get_all("x-forwarded-for").iter().count(), 1);
        for gone in [
            "cookie",
            "impersonate-user",
            "impersonate-group",
            "x-remote-user",
            "x-forwarded-proto",
            "forwarded",
            "x-http-method-override",
            "connection",
            "x-custom-hop",
            "keep-alive",
            "transfer-encoding",
            "host",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
            "upgrade",
        ] {
            assert!(!names.contains(&gone), "{gone} was forwarded");
        }
        assert_eq!(out["accept"], "application/json");
        assert_eq!(out["sec-websocket-key"], "abc");

        let ws = forwarded_headers(&h, None, None, true);
        assert_eq!(ws["sec-websocket-protocol"], "plain.kubevirt.io");
        assert_eq!(ws["upgrade"], "websocket");
        assert_eq!(ws["connection"], "Upgrade");
        assert!(ws.get("authorization").is_none());
    }

    #[test]
    fn only_websocket_upgrades() {
        let mut h = HeaderMap::new();
        assert!(!upgrade_kind(&h).unwrap());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(upgrade_kind(&h).unwrap());
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(upgrade_kind(&h).is_err());
    }

    #[test]
    fn responses_leak_no_referrer_are_not_framed_and_token_responses_are_not_stored() {
        let fa = frame_ancestors(&["https://portal.example.com".into()]);
        assert_eq!(fa, "frame-ancestors 'self' https://portal.example.com");
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=600"),
        );
        add_security_headers(&mut h, &fa, true);
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], fa);
        let mut h = HeaderMap::new();
        add_security_headers(&mut h, &fa, false);
        assert!(!h.contains_key(header::CACHE_CONTROL));
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    }
}
