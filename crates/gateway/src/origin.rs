//! Cross-site request refusal for the session cookie (review §3, §15). A browser attaches the
//! cookie to requests that *other* pages start: a WebSocket opened by a sibling subdomain
//! (same-site, so `SameSite=Lax` does not help) takes over the victim's console, and a form
//! posted from anywhere acts with the victim's token. Such requests carry an `Origin`; the
//! gateway serves a cookie-authenticated WebSocket upgrade or unsafe method only when that
//! `Origin` is the gateway's own (the `Host` it was reached at) or on the allow-list.
//! Requests without a cookie (bearer header, subprotocol) carry no ambient credential and are
//! not checked; a request without `Origin` comes from no browser page (browsers always send it
//! on WebSocket handshakes and cross-origin POSTs).

use http::{HeaderMap, Method, header};
use virt_gateway_api::names::normalize_origin;

use crate::error::GatewayError;

/// The origins allowed besides the gateway's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// A policy allowing `allowed` (already normalised) besides the gateway's own origin.
    pub fn new(allowed: Vec<String>) -> Self {
        Self { allowed }
    }

    /// Whether a request with `method` and `headers` can change state or open a session: an
    /// unsafe method, or a WebSocket upgrade.
    pub fn needs_check(method: &Method, headers: &HeaderMap) -> bool {
        let upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"));
        upgrade || !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
    }

    /// Whether `origin` (the header's text) is the gateway's own for `headers`' `Host`, or allowed.
    pub fn allows(&self, origin: &str, headers: &HeaderMap) -> bool {
        let Some(origin) = normalize_origin(origin.trim()) else {
            return false; // `null`, garbage
        };
        if self.allowed.contains(&origin) {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        // The scheme the browser used may differ from ours behind a TLS-terminating proxy.
        ["https", "http"]
            .iter()
            .filter_map(|scheme| normalize_origin(&format!("{scheme}://{}", host.trim())))
            .any(|own| own == origin)
    }

    /// Whether `origin` is ours or allowed, for this request. Our own pages send `Referrer-Policy:
    /// no-referrer`, under which a browser sends `Origin: null` on their form posts and same-origin
    /// fetches; the browser-set `Sec-Fetch-Site: same-origin` (no page script can set it) tells those
    /// apart from the opaque origins of sandboxed frames and `data:` URLs, which are `cross-site`.
    fn origin_is_ours(&self, origin: &str, headers: &HeaderMap) -> bool {
        self.allows(origin, headers)
            || (origin.trim() == "null" && fetch_site(headers) == Some("same-origin"))
    }

    /// Refuses a cross-site request that would use the cookie (see the module documentation).
    pub fn check_cookie_request(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(), GatewayError> {
        if !Self::needs_check(method, headers) {
            return Ok(());
        }
        match headers.get(header::ORIGIN) {
            None => Ok(()),
            Some(v) if v.to_str().is_ok_and(|o| self.origin_is_ours(o, headers)) => Ok(()),
            Some(_) => Err(GatewayError::ForeignOrigin),
        }
    }

    /// Whether a sign-in request (`/auth/token`, `/auth/jwt/set`) comes from another site:
    /// `Sec-Fetch-Site` other than `same-origin`/`none`, or a foreign `Origin`. Such a request
    /// must not set the session (login CSRF).
    pub fn is_cross_site_sign_in(&self, headers: &HeaderMap) -> bool {
        let fetch_site = fetch_site(headers);
        let origin_foreign = headers
            .get(header::ORIGIN)
            .is_some_and(|v| !v.to_str().is_ok_and(|o| self.origin_is_ours(o, headers)));
        let site_foreign = matches!(fetch_site, Some(s) if s != "same-origin" && s != "none");
        // An allowed portal posting to us is "cross-site" for the browser but on our list.
        let portal = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(normalize_origin)
            .is_some_and(|o| self.allowed.contains(&o));
        origin_foreign || (site_foreign && !portal)
    }
}

/// The browser's `Sec-Fetch-Site` (`same-origin`, `same-site`, `cross-site` or `none`), if sent.
fn fetch_site(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

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

    const WS: (&str, &str) = ("upgrade", "websocket");
    const HOST: (&str, &str) = ("host", "gw.apps.example.com");

    #[test]
    fn cookie_websockets_from_other_sites_are_refused() {
        let p = OriginPolicy::new(vec!["https://portal.example.com".into()]);
        let check = |origin: &str| {
            p.check_cookie_request(&Method::GET, &headers(&[WS, HOST, ("origin", origin)]))
        };
        // The review's attacks: a sibling subdomain (same-site), another site, `null`.
        for foreign in [
            "https://evil.apps.example.com",
            "https://attacker.test",
            "null",
            "https://gw.apps.example.com.evil.test",
            "https://gw.apps.example.com:8443",
            "file://",
        ] {
            assert!(
                matches!(check(foreign), Err(GatewayError::ForeignOrigin)),
                "{foreign}"
            );
        }
        // Our own origin (either scheme, any case) and the allow-list.
        for own in [
            "https://gw.apps.example.com",
            "HTTPS://GW.apps.example.com:443",
            "http://gw.apps.example.com",
            "https://portal.example.com",
        ] {
            assert!(check(own).is_ok(), "{own}");
        }
        // No Origin: not a browser page.
        assert!(
            p.check_cookie_request(&Method::GET, &headers(&[WS, HOST]))
                .is_ok()
        );
        // Plain GETs (no upgrade) are not checked; unsafe methods are.
        let get = headers(&[HOST, ("origin", "https://attacker.test")]);
        assert!(p.check_cookie_request(&Method::GET, &get).is_ok());
        assert!(p.check_cookie_request(&Method::POST, &get).is_err());
        assert!(p.check_cookie_request(&Method::DELETE, &get).is_err());
        // `null` is ours only when the browser says the request is same-origin (our own pages
        // under `no-referrer`); sandboxed frames and `data:` URLs are cross-site, and a `null`
        // without `Sec-Fetch-Site` stays foreign.
        let null_from =
            |site: &str| headers(&[WS, HOST, ("origin", "null"), ("sec-fetch-site", site)]);
        assert!(
            p.check_cookie_request(&Method::GET, &null_from("same-origin"))
                .is_ok()
        );
        assert!(
            p.check_cookie_request(&Method::POST, &null_from("same-origin"))
                .is_ok()
        );
        for site in ["cross-site", "same-site", "none", "same-origin, cross-site"] {
            assert!(
                matches!(
                    p.check_cookie_request(&Method::POST, &null_from(site)),
                    Err(GatewayError::ForeignOrigin)
                ),
                "null from {site}"
            );
        }
        // Without a Host nothing but the allow-list matches.
        let no_host = headers(&[WS, ("origin", "https://gw.apps.example.com")]);
        assert!(p.check_cookie_request(&Method::GET, &no_host).is_err());
    }

    #[test]
    fn sign_in_from_another_site_is_recognised() {
        let p = OriginPolicy::new(vec!["https://portal.example.com".into()]);
        let cross = |pairs: &[(&str, &str)]| p.is_cross_site_sign_in(&headers(pairs));
        // A link typed or opened from a terminal, and our own login page.
        assert!(!cross(&[HOST]));
        assert!(!cross(&[HOST, ("sec-fetch-site", "none")]));
        assert!(!cross(&[
            HOST,
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://gw.apps.example.com")
        ]));
        // Our login page auto-submitting its form under `no-referrer`.
        assert!(!cross(&[
            HOST,
            ("sec-fetch-site", "same-origin"),
            ("origin", "null")
        ]));
        // Another site navigating or posting, a sibling subdomain, `null` from anywhere else.
        assert!(cross(&[
            HOST,
            ("sec-fetch-site", "cross-site"),
            ("origin", "null")
        ]));
        assert!(cross(&[
            HOST,
            ("sec-fetch-site", "same-site"),
            ("origin", "null")
        ]));
        assert!(cross(&[HOST, ("sec-fetch-site", "cross-site")]));
        assert!(cross(&[HOST, ("sec-fetch-site", "same-site")]));
        assert!(cross(&[HOST, ("origin", "https://evil.apps.example.com")]));
        assert!(cross(&[HOST, ("origin", "null")]));
        // The allowed portal may post the token.
        assert!(!cross(&[
            HOST,
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://portal.example.com")
        ]));
    }
}
