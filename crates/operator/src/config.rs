//! Operator configuration (what [`crate::run`] takes); the binary builds it from flags and
//! environment variables (see [`crate::cli`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::builders::GatewayDefaults;

/// Default leader-election Lease name: Gen B's leader-election ID, so that our operator and an
/// upstream Go operator left running in the same namespace during a migration exclude each other
/// instead of fighting over the same GateServers (both use a coordination.k8s.io Lease with the
/// standard holderIdentity/renewTime fields).
pub const DEFAULT_LEASE_NAME: &str = "cce4a833.yaacov.com";
/// Default namespace of the Lease when the operator's own namespace is unknown.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "virt-gateway-operator-system";

/// Leader election on a coordination.k8s.io Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// This replica's identity (holderIdentity).
    pub identity: String,
    /// How long a lease is valid after its last renewal; a standby takes over at most this long
    /// after the leader stops renewing.
    pub lease_duration: Duration,
    /// How long before expiry the leader renews.
    pub renew_grace: Duration,
}

/// Everything the operator needs besides a client.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Watch only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// The operator-wide default images for GateServers that do not set them.
    pub gateway_defaults: GatewayDefaults,
    /// Leader election (`None`: this replica always acts, for a single replica or tests).
    pub leader_election: Option<LeaderElection>,
    /// Where to serve `/metrics` (`None`: not served).
    pub metrics_address: Option<SocketAddr>,
    /// Where to serve `/healthz` and `/readyz` (`None`: not served).
    pub health_address: Option<SocketAddr>,
    /// Signatures (and key generations) running at once; default: the number of CPUs.
    pub signing_threads: usize,
    /// GateTokens reconciled at once.
    pub token_concurrency: u16,
    /// GateServers reconciled at once.
    pub server_concurrency: u16,
    /// The reporting instance of Events (the pod name, by default the hostname).
    pub instance: String,
    /// Issue `generateServiceAccount` GateTokens (`--enable-service-account-tokens`; off by
    /// default, and it needs `deploy/virt-gateway-operator-serviceaccount-tokens.yaml`).
    pub service_account_tokens: bool,
    /// Sign GateTokens even when the delegation policy is not in force
    /// (`--allow-unchecked-delegation`; see [`crate::delegation`]).
    pub allow_unchecked_delegation: bool,
}

impl OperatorConfig {
    /// Defaults for running in-process: all namespaces, our images, no leader election, no HTTP
    /// endpoints.
    pub fn new() -> Self {
        Self {
            namespace: None,
            gateway_defaults: GatewayDefaults::default(),
            leader_election: None,
            metrics_address: None,
            health_address: None,
            signing_threads: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            token_concurrency: 32,
            server_concurrency: 4,
            instance: default_identity(),
            service_account_tokens: false,
            allow_unchecked_delegation: false,
        }
    }

    /// The same configuration, scoped to one namespace.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The pod name (`POD_NAME`), else the hostname, else `virt-gateway-operator`.
pub fn default_identity() -> String {
    if let Ok(name) = std::env::var("POD_NAME")
        && !name.is_empty()
    {
        return name;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "virt-gateway-operator".to_owned())
}

/// The namespace the operator runs in: `POD_NAMESPACE`, else the ServiceAccount's namespace file,
/// else [`DEFAULT_OPERATOR_NAMESPACE`].
pub fn own_namespace() -> String {
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.is_empty()
    {
        return ns;
    }
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_OPERATOR_NAMESPACE.to_owned())
}
