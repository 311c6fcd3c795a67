//! Finding the caller's token: `Authorization: Bearer`, then the session cookie, then a WebSocket
//! subprotocol `base64url.bearer.authorization.k8s.io.<token>`. Never the query string.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderMap, header};

use crate::error::GatewayError;

/// The session cookie (Gen B's name).
pub const SESSION_COOKIE: &str = "ocgate-session-token";

/// Prefix of the Kubernetes bearer-token WebSocket subprotocol (kubernetes/kubernetes#47740).
pub const BEARER_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// Where a token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// The `ocgate-session-token` cookie.
    Cookie,
    /// A `base64url.bearer.authorization.k8s.io.` WebSocket subprotocol.
    Subprotocol,
    /// The sealed sign-in session cookie (the person's own Kubernetes credential).
    SignIn,
}

impl TokenSource {
    /// Name for logs and the audit record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Cookie => "cookie",
            Self::Subprotocol => "subprotocol",
            Self::SignIn => "signin",
        }
    }
}

/// A caller's token. `Debug` never shows it.
#[derive(Clone)]
pub struct Credential {
    /// The token.
    pub token: String,
    /// Where it came from.
    pub source: TokenSource,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("token", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// The token in an `Authorization: Bearer` header, if any (scheme case-insensitive).
pub fn bearer_from_headers(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Extracts the caller's token in the documented order. `Ok(None)`: no token anywhere.
pub fn extract(headers: &HeaderMap) -> Result<Option<Credential>, GatewayError> {
    if let Some(token) = bearer_from_headers(headers) {
        return Ok(Some(Credential {
            token,
            source: TokenSource::Header,
        }));
    }
    if let Some(token) = session_cookie(headers)? {
        return Ok(Some(Credential {
            token,
            source: TokenSource::Cookie,
        }));
    }
    for protocol in offered_protocols(headers) {
        if let Some(encoded) = protocol.strip_prefix(BEARER_PROTOCOL_PREFIX) {
            let bytes = URL_SAFE_NO_PAD
                .decode(encoded)
                .or_else(|_| URL_SAFE.decode(encoded))
                .map_err(|_| {
                    GatewayError::BadCredentials("the bearer subprotocol is not base64url")
                })?;
            let token = String::from_utf8(bytes).map_err(|_| {
                GatewayError::BadCredentials("the bearer subprotocol does not decode to text")
            })?;
            let token = sanitize_token(&token);
            if !token.is_empty() {
                return Ok(Some(Credential {
                    token,
                    source: TokenSource::Subprotocol,
                }));
            }
        }
    }
    Ok(None)
}

/// The session cookie. Review §15: a sibling subdomain can toss a second
/// `ocgate-session-token` (with a longer Path, so browsers send it first); the first one no
/// longer wins, two different values are refused.
fn session_cookie(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let mut values = cookie_values(headers, SESSION_COOKIE).filter(|t| !t.is_empty());
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|other| other != first) {
        return Err(GatewayError::BadCredentials(
            "several different ocgate-session-token cookies (one may have been set by another site); sign in again",
        ));
    }
    Ok(Some(first))
}

/// Every value of cookie `name`, in order (see [`cookie_value`]).
fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(k, _)| k.trim() == name)
        .map(|(_, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            sanitize_token(v)
        })
}

/// The value of cookie `name` from every `Cookie` header, with one pair of surrounding quotes
/// removed and the value sanitised as upstream users' links require (§11 item 3).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            sanitize_token(v)
        })
}

/// Drops what Go's cookie writer drops (`"`, `;`, `\`, anything outside printable ASCII) and
/// spaces, so that `"…"`-quoted tokens from `jq` without `-r` work (§11 item 3).
pub fn sanitize_token(token: &str) -> String {
    token
        .chars()
        .filter(|&c| c.is_ascii_graphic() && c != '"' && c != ';' && c != '\\')
        .collect()
}

/// The subprotocols offered in every `Sec-WebSocket-Protocol` header, in order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The offered subprotocols without the bearer-token one, joined for forwarding; `None` when
/// nothing is left.
pub fn forwarded_protocols(headers: &HeaderMap) -> Option<String> {
    let kept: Vec<String> = offered_protocols(headers)
        .into_iter()
        .filter(|p| !p.starts_with(BEARER_PROTOCOL_PREFIX))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// The bearer subprotocol carrying `token` (what clients send).
pub fn bearer_protocol(token: &str) -> String {
    format!("{BEARER_PROTOCOL_PREFIX}{}", URL_SAFE_NO_PAD.encode(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn header_wins_over_cookie_and_subprotocol() {
        let h = headers(&[
            ("authorization", "Bearer aaa.bbb.ccc"),
            ("cookie", "ocgate-session-token=ddd.eee.fff"),
            ("sec-websocket-protocol", &bearer_protocol("ggg.hhh.iii")),
        ]);
        let c = extract(&h).unwrap().unwrap();
        assert_eq!(c.token, "aaa.bbb.ccc");
        assert_eq!(c.source, TokenSource::Header);
        assert!(!format!("{c:?}").contains("aaa"));
    }

    #[test]
    fn cookie_then_subprotocol() {
        let h = headers(&[
            ("authorization", "Basic Zm9vOmJhcg=="),
            ("cookie", "a=b; ocgate-session-token=\"ddd.eee.fff\"; c=d"),
            ("sec-websocket-protocol", &bearer_protocol("ggg.hhh.iii")),
        ]);
        let c = extract(&h).unwrap().unwrap();
        assert_eq!(
            (c.token.as_str(), c.source),
            ("ddd.eee.fff", TokenSource::Cookie)
        );

        let h = headers(&[(
            "sec-websocket-protocol",
            &format!("plain.kubevirt.io, {}", bearer_protocol("ggg.hhh.iii")),
        )]);
        let c = extract(&h).unwrap().unwrap();
        assert_eq!(
            (c.token.as_str(), c.source),
            ("ggg.hhh.iii", TokenSource::Subprotocol)
        );
        assert_eq!(
            forwarded_protocols(&h).as_deref(),
            Some("plain.kubevirt.io")
        );
    }

    /// Review §15: a tossed cookie from a sibling subdomain is sent first; it must not win.
    #[test]
    fn a_tossed_second_session_cookie_is_refused() {
        let h = headers(&[(
            "cookie",
            "ocgate-session-token=attacker.x.y; ocgate-session-token=victim.x.y",
        )]);
        assert!(matches!(extract(&h), Err(GatewayError::BadCredentials(_))));
        // The same value twice (two paths) is harmless.
        let h = headers(&[
            ("cookie", "ocgate-session-token=same.x.y"),
            ("cookie", "ocgate-session-token=same.x.y"),
        ]);
        assert_eq!(extract(&h).unwrap().unwrap().token, "same.x.y");
    }

    #[test]
    fn nothing_or_garbage() {
        assert!(extract(&headers(&[])).unwrap().is_none());
        assert!(
            extract(&headers(&[("authorization", "Bearer ")]))
                .unwrap()
                .is_none()
        );
        assert!(
            extract(&headers(&[("cookie", "ocgate-session-token=")]))
                .unwrap()
                .is_none()
        );
        assert!(
            extract(&headers(&[("cookie", "other=x")]))
                .unwrap()
                .is_none()
        );
        assert!(
            extract(&headers(&[(
                "sec-websocket-protocol",
                "base64url.bearer.authorization.k8s.io.***"
            )]))
            .is_err()
        );
        let h = headers(&[("sec-websocket-protocol", &bearer_protocol("t"))]);
        assert_eq!(forwarded_protocols(&h), None);
    }

    #[test]
    fn cookie_parsing_tolerates_upstream_quoting() {
        let h = headers(&[("cookie", "ocgate-session-token=\"a.b.c\"")]);
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("a.b.c"));
        let h = headers(&[
            ("cookie", "x=1"),
            ("cookie", " ocgate-session-token = a.b\\.c "),
        ]);
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("a.b.c"));
        assert_eq!(sanitize_token("\"a.b;c\\ é\u{7f}\""), "a.bc");
    }
}
