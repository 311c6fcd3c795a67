//! Errors, each with a message that says what went wrong and what to do about it.

use std::fmt;
use std::time::Duration;

/// The fully qualified resource names, as `kubectl auth can-i` and `kubectl create role` take them.
pub const GATETOKENS: &str = "gatetokens.ocgate.yaacov.com";
/// See [`GATETOKENS`].
pub const GATESERVERS: &str = "gateservers.ocgate.yaacov.com";

/// One API call, described for messages: `create gatetokens in namespace kube-gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The Kubernetes verb (`create`, `get`, `list`, `watch`, `patch`, `delete`).
    pub verb: &'static str,
    /// [`GATETOKENS`] or [`GATESERVERS`].
    pub resource: &'static str,
    /// The namespace; `None` for all namespaces.
    pub namespace: Option<String>,
    /// The object, for calls on one object.
    pub name: Option<String>,
}

impl Action {
    /// A call on the collection in `namespace` (`None`: all namespaces).
    pub fn new(verb: &'static str, resource: &'static str, namespace: Option<&str>) -> Self {
        Self {
            verb,
            resource,
            namespace: namespace.map(str::to_owned),
            name: None,
        }
    }

    /// A call on the object `name` in `namespace`.
    pub fn on(verb: &'static str, resource: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            verb,
            resource,
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
        }
    }

    fn kind(&self) -> &'static str {
        if self.resource == GATESERVERS {
            "GateServer"
        } else {
            "GateToken"
        }
    }

    fn where_(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "in all namespaces".to_owned(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} {} {name} {}", self.verb, self.kind(), self.where_()),
            None => write!(f, "{} {}s {}", self.verb, self.kind(), self.where_()),
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument.
    #[error("{0}")]
    Usage(String),

    /// The GateServer's gateway-URL annotation is not a usable URL.
    #[error("{0}; fix the annotation or pass --gateway-url")]
    BadAdvertisedUrl(String),

    /// No usable kubeconfig or context.
    #[error("cannot load the Kubernetes client configuration: {0}")]
    Kubeconfig(String),

    /// The GateServer/GateToken API is not served by the cluster.
    #[error(
        "the virt-gateway API (ocgate.yaacov.com/v1beta1: GateServer, GateToken) is not installed on this cluster ({detail}).\n\
         hint: install virt-gateway first, e.g. `kubectl apply -f deploy/virt-gateway-operator.yaml` (CRDs and operator) \
         or `kubectl apply -f deploy/crds/` (CRDs only), then create a GateServer"
    )]
    CrdsNotInstalled {
        /// What the API server answered.
        detail: String,
    },

    /// RBAC refused a call.
    #[error(
        "not allowed to {action}: {message}\n\
         hint: kubectl gate uses your own credentials. Check with `kubectl auth can-i {verb} {resource}{ns_flag}` and ask a \
         cluster admin for a Role{role_where} granting create, get, list, watch (and patch, delete to revoke) on {GATETOKENS} \
         and get, list on {GATESERVERS} (see \"Permissions\" in the kubectl-gate README)",
        verb = action.verb,
        resource = action.resource,
        ns_flag = action.namespace.as_ref().map_or_else(|| " -A".to_owned(), |ns| format!(" -n {ns}")),
        role_where = action.namespace.as_ref().map_or_else(|| " (or ClusterRole)".to_owned(), |ns| format!(" in namespace {ns}"))
    )]
    Forbidden {
        /// The refused call.
        action: Action,
        /// The API server's message.
        message: String,
    },

    /// The API server's delegation policy refused a GateToken that grants more than the user
    /// may do themselves.
    #[error(
        "not allowed to grant this console: {message}\n\
         hint: a GateToken may grant only what you may do yourself. Ask a cluster admin for get on \
         virtualmachineinstances and virtualmachineinstances/vnc (group subresources.kubevirt.io) of that VM in its \
         namespace, e.g. by binding the ClusterRole of deploy/console-role.yaml there (see \"Permissions\" in the kubectl-gate README)"
    )]
    NotDelegable {
        /// The API server's message (names the first permission missing).
        message: String,
    },

    /// No GateServer in the namespace.
    #[error("no GateServer in namespace {namespace}{}", elsewhere_hint(elsewhere))]
    NoGateServer {
        /// The namespace searched.
        namespace: String,
        /// `namespace/name` of GateServers in other namespaces, when the caller may list them.
        elsewhere: Vec<String>,
    },

    /// Several GateServers and none chosen.
    #[error(
        "{} GateServers in namespace {namespace}: {}; choose one with --server NAME",
        servers.len(),
        servers.join(", ")
    )]
    AmbiguousGateServer {
        /// The namespace searched.
        namespace: String,
        /// Their names.
        servers: Vec<String>,
    },

    /// `--server NAME` does not exist.
    #[error(
        "GateServer {name} not found in namespace {namespace}{}",
        if available.is_empty() { "; there is no GateServer in that namespace".to_owned() } else { format!("; there: {}", available.join(", ")) }
    )]
    GateServerNotFound {
        /// The namespace.
        namespace: String,
        /// The name asked for.
        name: String,
        /// The GateServers that are there.
        available: Vec<String>,
    },

    /// The link needs an address and the GateServer has no route.
    #[error(
        "GateServer {server} has no route (spec.route), so the gateway's address is unknown; pass --gateway-url https://HOST \
         (the address users open), or use --output token|json|yaml"
    )]
    NoRoute {
        /// `namespace/name`.
        server: String,
    },

    /// A named object does not exist.
    #[error("{kind} {name} not found in namespace {namespace}")]
    NotFound {
        /// `GateToken` or `GateServer`.
        kind: &'static str,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },

    /// The operator put the token into a phase from which it will not become usable.
    #[error("GateToken {token} is {phase}: {condition}{cleanup}")]
    TokenFailed {
        /// `namespace/name`.
        token: String,
        /// `Error`, `Completed` or `Revoked`, or `deleted`.
        phase: String,
        /// The condition that says why (`Ready=False Reason: message`).
        condition: String,
        /// What was done with the token (`\n...deleted`), or empty.
        cleanup: String,
    },

    /// The token did not become Ready in time.
    #[error(
        "timed out after {} waiting for GateToken {token} to become Ready: {state}{cleanup}",
        crate::duration::human_std(*after)
    )]
    Timeout {
        /// `namespace/name`.
        token: String,
        /// How long we waited.
        after: Duration,
        /// The phase and condition last seen, with a hint.
        state: String,
        /// What was done with the token, or empty.
        cleanup: String,
    },

    /// Any other API error.
    #[error("cannot {action}: {}", crate::kube_api::describe(source))]
    Api {
        /// The call.
        action: Action,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Any other failure while watching.
    #[error("cannot watch {what}: {message}")]
    Watch {
        /// What was watched.
        what: String,
        /// The watcher's error.
        message: String,
    },

    /// Several objects failed (each error on its own line).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\nerror: "))]
    Several(Vec<Error>),

    /// Printing the result failed.
    #[error("cannot print the result: {0}")]
    Output(String),
}

fn elsewhere_hint(elsewhere: &[String]) -> String {
    match elsewhere {
        [] => "; create one (a GateServer runs the gateway that serves console links), or pass --server-namespace NAMESPACE".to_owned(),
        [one] => {
            let (ns, name) = one.split_once('/').unwrap_or(("", one));
            format!("; there is one in namespace {ns}: pass --server-namespace {ns} (or --server {ns}/{name})")
        }
        many => format!(
            "; GateServers in other namespaces: {}; pass --server NAMESPACE/NAME",
            many.join(", ")
        ),
    }
}

impl Error {
    /// The process exit code: 2 for usage errors (as clap), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_well() {
        assert_eq!(
            Action::new("create", GATETOKENS, Some("kube-gateway")).to_string(),
            "create GateTokens in namespace kube-gateway"
        );
        assert_eq!(
            Action::new("list", GATESERVERS, None).to_string(),
            "list GateServers in all namespaces"
        );
        assert_eq!(
            Action::on("patch", GATETOKENS, "ns", "t1").to_string(),
            "patch GateToken t1 in namespace ns"
        );
    }

    #[test]
    fn forbidden_names_the_check_and_the_permissions() {
        let e = Error::Forbidden {
            action: Action::new("create", GATETOKENS, Some("gw")),
            message:
                "gatetokens.ocgate.yaacov.com is forbidden: User \"bob\" cannot create resource"
                    .into(),
        }
        .to_string();
        assert!(e.starts_with("not allowed to create GateTokens in namespace gw: gatetokens.ocgate.yaacov.com is forbidden: User \"bob\""), "{e}");
        assert!(
            e.contains("kubectl auth can-i create gatetokens.ocgate.yaacov.com -n gw"),
            "{e}"
        );
        assert!(e.contains("Role in namespace gw"), "{e}");
        let e = Error::Forbidden {
            action: Action::new("list", GATESERVERS, None),
            message: "m".into(),
        }
        .to_string();
        assert!(
            e.contains("can-i list gateservers.ocgate.yaacov.com -A"),
            "{e}"
        );
    }

    #[test]
    fn a_delegation_refusal_says_what_to_ask_for() {
        let e = Error::NotDelegable {
            message: "this GateToken grants \"get\" on \"virtualmachineinstances/vnc\"".into(),
        }
        .to_string();
        assert!(
            e.starts_with("not allowed to grant this console: this GateToken grants"),
            "{e}"
        );
        assert!(e.contains("only what you may do yourself"), "{e}");
        assert!(e.contains("deploy/console-role.yaml"), "{e}");
    }

    #[test]
    fn no_server_hints() {
        let e = |elsewhere: &[&str]| {
            Error::NoGateServer {
                namespace: "default".into(),
                elsewhere: elsewhere.iter().map(|s| (*s).to_owned()).collect(),
            }
            .to_string()
        };
        assert!(e(&[]).starts_with("no GateServer in namespace default; create one"));
        assert_eq!(
            e(&["kube-gateway/gs"]),
            "no GateServer in namespace default; there is one in namespace kube-gateway: pass --server-namespace kube-gateway (or --server kube-gateway/gs)"
        );
        assert!(
            e(&["a/x", "b/y"])
                .ends_with("other namespaces: a/x, b/y; pass --server NAMESPACE/NAME")
        );
    }

    #[test]
    fn timeout_shows_the_wait() {
        let e = Error::Timeout {
            token: "ns/t".into(),
            after: Duration::from_secs(90),
            state: "phase Pending".into(),
            cleanup: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "timed out after 1m30s waiting for GateToken ns/t to become Ready: phase Pending"
        );
    }
}
