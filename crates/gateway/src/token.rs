//! Finding the caller's token: `Authorization: Bearer`, then the session cookie, then a WebSocket
//! subprotocol `base64url.bearer.authorization.k8s.io.<token>`. Never the query string.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderMap, header};

use crate::error::GatewayError;

/// The session cookie under Gen B's name: set over plain HTTP, read always (upstream gateways
/// and scripts set it).
pub const SESSION_COOKIE: &str = "ocgate-session-token";

/// The session cookie over HTTPS. Browsers accept a `__Host-` cookie only with `Secure`,
/// `Path=/` and no `Domain`, from this very host over HTTPS: no sibling subdomain and no
/// plain-HTTP page can set or overwrite it (review §15, cookie tossing).
pub const HOST_SESSION_COOKIE: &str = "__Host-ocgate-session-token";

/// Every name the session cookie is read under.
pub const SESSION_COOKIES: [&str; 2] = [HOST_SESSION_COOKIE, SESSION_COOKIE];

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

/// The session cookie, under either name ([`SESSION_COOKIES`]). Review §15: a sibling subdomain
/// can toss a second `ocgate-session-token` (with a longer Path, so browsers send it first): the
/// first cookie must not win, so two different values, under one name or the two, are refused.
fn session_cookie(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let mut values = SESSION_COOKIES
        .iter()
        .flat_map(|name| cookie_values(headers, name))
        .filter(|t| !t.is_empty());
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|other| other != first) {
        return Err(GatewayError::BadCredentials(
            "several different session cookies (one may have been set by another site); sign in again",
        ));
    }
    Ok(Some(first))
}

/// Every value of cookie `name` from every `Cookie` header, in order, with one pair of
/// surrounding quotes removed and sanitised as upstream users' links require (§11 item 3). No
/// "first value" helper: the first cookie is the one an attacker can put first.
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

    /// Issue 14 point 5: the `__Host-` cookie and Gen B's name are one session; a second value
    /// under either name, in any order, is refused rather than one of them winning.
    #[test]
    fn both_cookie_names_are_read_and_a_different_second_value_is_refused() {
        let one = |cookie: &str| extract(&headers(&[("cookie", cookie)]));
        let host = one("__Host-ocgate-session-token=victim.x.y")
            .unwrap()
            .unwrap();
        assert_eq!(
            (host.token.as_str(), host.source),
            ("victim.x.y", TokenSource::Cookie)
        );
        assert_eq!(
            one("ocgate-session-token=genb.x.y").unwrap().unwrap().token,
            "genb.x.y",
            "the Gen B name still works (upstream)"
        );
        assert_eq!(
            one("__Host-ocgate-session-token=same.x.y; ocgate-session-token=same.x.y")
                .unwrap()
                .unwrap()
                .token,
            "same.x.y"
        );
        for tossed in [
            "ocgate-session-token=attacker.x.y; __Host-ocgate-session-token=victim.x.y",
            "__Host-ocgate-session-token=victim.x.y; ocgate-session-token=attacker.x.y",
            "__Host-ocgate-session-token=victim.x.y; __Host-ocgate-session-token=attacker.x.y",
            "ocgate-session-token=attacker.x.y; a=b; __Host-ocgate-session-token=\"victim.x.y\"",
        ] {
            assert!(
                matches!(one(tossed), Err(GatewayError::BadCredentials(_))),
                "{tossed}"
            );
        }
        // Two Cookie headers (HTTP/2 splits them) are one jar.
        let h = headers(&[
            ("cookie", "__Host-ocgate-session-token=victim.x.y"),
            ("cookie", "ocgate-session-token=attacker.x.y"),
        ]);
        assert!(extract(&h).is_err());
        // An empty value (a cleared cookie) is no second session; other names are not ours.
        assert_eq!(
            one("ocgate-session-token=; __Host-ocgate-session-token=v.x.y; __host-ocgate-session-token=z; x-ocgate-session-token=z")
                .unwrap()
                .unwrap()
                .token,
            "v.x.y"
        );
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
        assert_eq!(
            cookie_values(&h, SESSION_COOKIE).collect::<Vec<_>>(),
            ["a.b.c"]
        );
        let h = headers(&[
            ("cookie", "x=1"),
            ("cookie", " ocgate-session-token = a.b\\.c "),
        ]);
        assert_eq!(
            cookie_values(&h, SESSION_COOKIE).collect::<Vec<_>>(),
            ["a.b.c"]
        );
        assert_eq!(sanitize_token("\"a.b;c\\ é\u{7f}\""), "a.bc");
    }
}
