//! Choosing the GateServer, and checking names before anything is sent to the API server.

use kube::ResourceExt;
use virt_gateway_api::GateServer;

use crate::error::Error;

/// Splits `--server`: `NAME` or `NAMESPACE/NAME`.
pub fn parse_server_arg(value: &str) -> Result<(Option<String>, String), Error> {
    let bad = || {
        Error::Usage(format!(
            "--server {value:?}: write the GateServer's NAME or NAMESPACE/NAME"
        ))
    };
    let (namespace, name) = match value.split_once('/') {
        Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
        None => (None, value.to_owned()),
    };
    if name.is_empty() || name.contains('/') || namespace.as_deref() == Some("") {
        return Err(bad());
    }
    if let Some(ns) = &namespace {
        check_namespace(ns, "--server")?;
    }
    check_object_name(&name, "--server")?;
    Ok((namespace, name))
}

/// The GateServer to use when none is named: the only one in `namespace`.
pub fn select_server(mut servers: Vec<GateServer>, namespace: &str) -> Result<GateServer, Error> {
    match servers.len() {
        0 => Err(Error::NoGateServer {
            namespace: namespace.to_owned(),
            elsewhere: Vec::new(),
        }),
        1 => Ok(servers.remove(0)),
        _ => {
            let mut names: Vec<String> = servers.iter().map(ResourceExt::name_any).collect();
            names.sort();
            Err(Error::AmbiguousGateServer {
                namespace: namespace.to_owned(),
                servers: names,
            })
        }
    }
}

/// `namespace/name` of GateServers outside `namespace`, sorted, for the "none here" hint.
pub fn elsewhere(servers: &[GateServer], namespace: &str) -> Vec<String> {
    let mut out: Vec<String> = servers
        .iter()
        .filter(|s| s.namespace().as_deref() != Some(namespace))
        .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    out.sort();
    out
}

fn dns_label_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A namespace name: an RFC 1123 DNS label (at most 63 characters).
pub fn check_namespace(value: &str, what: &str) -> Result<(), Error> {
    if value.len() <= 63 && dns_label_chars(value) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} {value:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63 characters)"
        )))
    }
}

/// An object name (a VM, a GateServer, a GateToken): an RFC 1123 DNS subdomain.
pub fn check_object_name(value: &str, what: &str) -> Result<(), Error> {
    if !value.is_empty() && value.len() <= 253 && value.split('.').all(dns_label_chars) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what} {value:?} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.')"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(ns: &str, name: &str) -> GateServer {
        let mut gs = GateServer::new(name, Default::default());
        gs.metadata.namespace = Some(ns.to_owned());
        gs
    }

    #[test]
    fn the_only_server_is_chosen() {
        let gs = select_server(vec![server("gw", "one")], "gw").unwrap();
        assert_eq!(gs.name_any(), "one");
    }

    #[test]
    fn none_or_several_are_errors_that_list_them() {
        assert!(matches!(
            select_server(vec![], "gw"),
            Err(Error::NoGateServer { namespace, .. }) if namespace == "gw"
        ));
        let err = select_server(vec![server("gw", "b"), server("gw", "a")], "gw").unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 GateServers in namespace gw: a, b; choose one with --server NAME"
        );
    }

    #[test]
    fn servers_elsewhere_are_named_with_their_namespace() {
        let all = [server("x", "b"), server("gw", "here"), server("a", "c")];
        assert_eq!(elsewhere(&all, "gw"), ["a/c", "x/b"]);
    }

    #[test]
    fn server_argument_forms() {
        assert_eq!(parse_server_arg("gs").unwrap(), (None, "gs".to_owned()));
        assert_eq!(
            parse_server_arg("kube-gateway/gs").unwrap(),
            (Some("kube-gateway".to_owned()), "gs".to_owned())
        );
        for bad in ["", "/gs", "ns/", "a/b/c", "Upper", "ns/under_score"] {
            assert!(parse_server_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_object_name("testvm", "VM").is_ok());
        assert!(check_object_name("vm.with.dots-1", "VM").is_ok());
        assert!(check_object_name(&"a".repeat(253), "VM").is_ok());
        for bad in [
            "",
            "TestVM",
            "-vm",
            "vm-",
            "vm..x",
            "vm/x",
            "vm_x",
            &"a".repeat(254),
        ] {
            let err = check_object_name(bad, "VM").unwrap_err().to_string();
            assert!(err.starts_with("VM "), "{err}");
        }
        assert!(check_namespace("kube-gateway", "-n").is_ok());
        assert!(check_namespace("a.b", "-n").is_err());
        assert!(check_namespace(&"a".repeat(64), "-n").is_err());
    }
}
