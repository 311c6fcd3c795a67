//! The console link. By default (the link contract, shared with the web app's share feature):
//!
//! ```text
//! <gateway_url>/login.html#token=<jwt>&then=<percent-encoded console page>
//! ```
//!
//! The token is in the fragment, which a browser never sends to a server: it stays out of the
//! gateway's, proxies' and ingress logs and out of `Referer`. The login page reads it, removes
//! it from the address bar, shows what the link opens and POSTs it to `/auth/token` only when
//! the person clicks (so a link on another site cannot sign anyone in).
//!
//! `--query-link` prints the upstream form instead,
//! `<gateway_url>/auth/token?token=<jwt>&then=<…>`, a GET that sets the session cookie and
//! redirects at once (for upstream gateways that have no such login page).

use http::Uri;
use virt_gateway_api::gateserver::GATEWAY_URL_ANNOTATION;

use crate::error::Error;

/// The console page (the web app serves it at upstream's noVNC path).
pub const CONSOLE_PAGE: &str = "/noVNC/vnc_lite.html";

/// The VNC WebSocket path of a VM under the gateway's API prefix (no leading slash, as the
/// console page's `path` parameter expects), e.g.
/// `k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc`.
pub fn vnc_path(namespace: &str, vm: &str) -> String {
    format!(
        "k8s/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{vm}/vnc"
    )
}

/// The local address the link opens after signing in: the console page for the VM.
pub fn console_then(namespace: &str, vm: &str) -> String {
    format!("{CONSOLE_PAGE}?path={}", vnc_path(namespace, vm))
}

/// The two forms of console link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkForm {
    /// `<gateway>/login.html#token=…&then=…` (default): the token never reaches a server's log.
    Fragment,
    /// `<gateway>/auth/token?token=…&then=…` (upstream's): a GET that signs in at once.
    Query,
}

/// The login page the fragment link opens.
pub const LOGIN_PAGE: &str = "/login.html";

/// The console link of `form`: see the module documentation. `gateway_url` comes from
/// [`gateway_url`] (no trailing slash, no query, no fragment).
pub fn console_link(
    form: LinkForm,
    gateway_url: &str,
    token: &str,
    namespace: &str,
    vm: &str,
) -> String {
    let token = percent_encode(token);
    let then = percent_encode(&console_then(namespace, vm));
    match form {
        LinkForm::Fragment => format!("{gateway_url}{LOGIN_PAGE}#token={token}&then={then}"),
        LinkForm::Query => format!("{gateway_url}/auth/token?token={token}&then={then}"),
    }
}

/// Percent-encodes a query value: every byte except RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`). A JWT (base64url and dots) stays as it is.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The gateway's base URL: `--gateway-url` when given (checked and without a trailing slash),
/// else the GateServer `server`'s [`GATEWAY_URL_ANNOTATION`] (`advertised`), else
/// `https://<route>`, else an error.
pub fn gateway_url(
    explicit: Option<&str>,
    advertised: Option<&str>,
    route: Option<&str>,
    server: &str,
) -> Result<String, Error> {
    if let Some(url) = explicit {
        return check_gateway_url(url, "--gateway-url");
    }
    if let Some(url) = advertised {
        return check_gateway_url(
            url,
            &format!("GateServer {server}'s annotation {GATEWAY_URL_ANNOTATION}"),
        )
        .map_err(|e| Error::BadAdvertisedUrl(e.to_string()));
    }
    match route.map(str::trim).filter(|r| !r.is_empty()) {
        Some(route) => check_gateway_url(&format!("https://{route}"), "--gateway-url"),
        None => Err(Error::NoRoute {
            server: server.to_owned(),
        }),
    }
}

fn check_gateway_url(url: &str, what: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::Usage(format!("{what} {url:?}: {why}"));
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| bad(&format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(bad("must start with https:// (or http://)")),
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(bad("has no host"));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query (?...)"));
    }
    // `https://gw.example.com@elsewhere.example` opens `elsewhere.example`: a link that reads
    // as one host and goes to another must not be printed.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("must not have a user name (…@)"));
    }
    // The link's own `#token=…` must be the only fragment: a `#` in the base would swallow it.
    if url.contains('#') {
        return Err(bad("must not have a fragment (#...)"));
    }
    Ok(url.trim().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const THEN_ENCODED: &str = "%2FnoVNC%2Fvnc_lite.html%3Fpath%3Dk8s%2Fapis%2Fsubresources.kubevirt.io%2Fv1%2Fnamespaces%2Fdefault%2Fvirtualmachineinstances%2Ftestvm%2Fvnc";

    /// The link contract (README): the token only in the fragment, which browsers never send.
    #[test]
    fn the_default_link_keeps_the_token_in_the_fragment() {
        let link = console_link(
            LinkForm::Fragment,
            "https://gw.apps.example.com",
            "aaa.bbb-_.ccc",
            "default",
            "testvm",
        );
        assert_eq!(
            link,
            format!(
                "https://gw.apps.example.com/login.html#token=aaa.bbb-_.ccc&then={THEN_ENCODED}"
            )
        );
        // What a server (or its log, or a Referer) can see of it: no token.
        let (sent, fragment) = link.split_once('#').unwrap();
        assert!(!sent.contains("aaa.bbb"), "{sent}");
        assert!(!sent.contains(['?', '&', '=']), "{sent}");
        assert!(fragment.starts_with("token=aaa.bbb-_.ccc&then="));
        // A token with characters outside base64url cannot end the fragment parameter early.
        let odd = console_link(LinkForm::Fragment, "http://h", "a&then=/evil#x", "n", "v");
        assert!(odd.contains("#token=a%26then%3D%2Fevil%23x&then="), "{odd}");
        assert_eq!(odd.matches('#').count(), 1, "{odd}");
    }

    #[test]
    fn the_upstream_query_link() {
        let link = console_link(
            LinkForm::Query,
            "https://gw.apps.example.com",
            "aaa.bbb-_.ccc",
            "default",
            "testvm",
        );
        assert_eq!(
            link,
            format!(
                "https://gw.apps.example.com/auth/token?token=aaa.bbb-_.ccc&then={THEN_ENCODED}"
            )
        );
        assert_eq!(
            console_then("ns1", "vm.one"),
            "/noVNC/vnc_lite.html?path=k8s/apis/subresources.kubevirt.io/v1/namespaces/ns1/virtualmachineinstances/vm.one/vnc"
        );
    }

    #[test]
    fn the_then_parameter_decodes_back() {
        let then = console_then("my-ns", "my-vm");
        let encoded = percent_encode(&then);
        assert!(!encoded.contains(['/', '?', '=', '&']), "{encoded}");
        assert_eq!(percent_decode(&encoded), then);
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(
            percent_encode("a b&c=d/e?f#g+h%"),
            "a%20b%26c%3Dd%2Fe%3Ff%23g%2Bh%25"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn gateway_url_from_route_or_flag() {
        assert_eq!(
            gateway_url(None, None, Some("gw.apps.example.com"), "gs").unwrap(),
            "https://gw.apps.example.com"
        );
        assert_eq!(
            gateway_url(
                Some("http://127.0.0.1:8080/"),
                Some("http://127.0.0.1:9090"),
                Some("ignored.example.com"),
                "gs"
            )
            .unwrap(),
            "http://127.0.0.1:8080",
            "the flag wins, trailing slash dropped"
        );
        let err = gateway_url(None, None, None, "kube-gateway/gs")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GateServer kube-gateway/gs has no route")
                && err.contains("--gateway-url"),
            "{err}"
        );
        assert!(matches!(
            gateway_url(None, None, Some(" "), "gs"),
            Err(Error::NoRoute { .. })
        ));
        for bad in [
            "gw.example.com",
            "ftp://gw.example.com",
            "https://gw.example.com/?a=b",
            "https://",
            "https://gw.example.com@elsewhere.example",
            "https://user:pass@gw.example.com",
            "https://gw.example.com/#x",
            "javascript:alert(1)",
            "file:///etc/passwd",
        ] {
            let err = gateway_url(Some(bad), None, None, "gs")
                .unwrap_err()
                .to_string();
            assert!(err.contains("--gateway-url"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_annotated_url_wins_over_the_route() {
        assert_eq!(
            gateway_url(
                None,
                Some("http://127.0.0.1:43121/"),
                Some("gw.apps-crc.testing"),
                "gs"
            )
            .unwrap(),
            "http://127.0.0.1:43121"
        );
        assert_eq!(
            gateway_url(None, Some("https://gw.example.com:8443"), None, "gs").unwrap(),
            "https://gw.example.com:8443",
            "no route needed"
        );
        let err = gateway_url(None, Some("gw.example.com"), Some("r"), "kube-gateway/gs")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "GateServer kube-gateway/gs's annotation ocgate.yaacov.com/gateway-url \"gw.example.com\""
            ) && err.contains("--gateway-url"),
            "a bad annotation is an error that names it, not a silent fallback: {err}"
        );
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
