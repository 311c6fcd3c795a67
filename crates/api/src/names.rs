//! Names shared by the operator, the gateway and the kubectl plugin: the Kubernetes name rules
//! (checked exactly as the API server would), and the `iss` and `aud` strings that bind a token to
//! the namespace that signed it and the GateServer it is for.

use crate::GROUP;

/// The issuer (`iss`) of the tokens signed with the key of `namespace`:
/// `ocgate.yaacov.com/namespaces/<namespace>`.
pub fn token_issuer(namespace: &str) -> String {
    format!("{GROUP}/namespaces/{namespace}")
}

/// The audience (`aud`) of GateServer `namespace/name`, which its gateway accepts:
/// `ocgate.yaacov.com/namespaces/<namespace>/gateservers/<name>`.
pub fn gateserver_audience(namespace: &str, name: &str) -> String {
    format!("{GROUP}/namespaces/{namespace}/gateservers/{name}")
}

/// The serialised origin of `text` (RFC 6454: `scheme://host[:port]`, lower case, without the
/// scheme's default port), when it is one: `http` or `https`, a host name or IP address, an
/// optional port, and nothing else (no path, query, fragment or user). `null` is not an origin.
pub fn normalize_origin(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority.as_str(), None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return None;
        }
        (host.to_owned(), port)
    };
    if authority.ends_with(':') {
        return None;
    }
    let port: Option<u16> = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    Some(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Whether `s` is an RFC 1123 DNS label: namespace names, and the names the gateway builds paths
/// from (at most 63 lower-case letters, digits and `-`, starting and ending alphanumeric).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is an RFC 1123 DNS subdomain: object names (at most 253 characters, dot-separated
/// labels of lower-case letters, digits and `-`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_and_audience_name_the_namespace_and_the_server() {
        assert_eq!(token_issuer("gw"), "ocgate.yaacov.com/namespaces/gw");
        assert_eq!(
            gateserver_audience("gw", "vnc"),
            "ocgate.yaacov.com/namespaces/gw/gateservers/vnc"
        );
        assert_ne!(
            gateserver_audience("gw", "vnc"),
            gateserver_audience("gw", "ops")
        );
    }

    #[test]
    fn origins_are_normalised_or_refused() {
        for (text, origin) in [
            ("https://gw.apps.example.com", "https://gw.apps.example.com"),
            (
                "HTTPS://GW.Apps.Example.com:443",
                "https://gw.apps.example.com",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:80/", "http://localhost"),
            ("https://[::1]:8443", "https://[::1]:8443"),
        ] {
            assert_eq!(normalize_origin(text).as_deref(), Some(origin), "{text}");
        }
        for bad in [
            "null",
            "",
            "gw.example.com",
            "ftp://gw.example.com",
            "https://",
            "https://gw.example.com/path",
            "https://user@gw.example.com",
            "https://gw.example.com?x",
            "https://gw.example.com#x",
            "https://gw.example.com:",
            "https://gw.example.com:99999",
            "https://gw.example.com:8x",
            "https://gw..example.com",
            "https://g w.example.com",
            "https://[zz]:1",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels_and_subdomains() {
        for ok in ["a", "default", "kube-gateway", "a1", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "../x", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("vm.one"));
        for bad in ["", "a..b", ".a", "a/b", "A.b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
