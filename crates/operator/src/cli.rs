//! Command line of the `virt-gateway-operator` binary: flags with environment-variable
//! equivalents (clap), and the `crds` and `manifests` subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::builders::GatewayDefaults;
use crate::config::{
    DEFAULT_LEASE_NAME, LeaderElection, OperatorConfig, default_identity, own_namespace,
};

/// The operator for GateServer and GateToken (ocgate.yaacov.com/v1beta1).
#[derive(Debug, Parser)]
#[command(name = "virt-gateway-operator", version, about, long_about = None)]
pub struct Cli {
    /// What to do; without a subcommand the operator runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the operator.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the GateServer and GateToken CRDs (YAML).
    Crds,
    /// Print deploy/virt-gateway-operator.yaml, or write every install manifest into a directory.
    Manifests {
        /// Write every generated file of deploy/ (the manifests, the kustomize base's copy, the
        /// Helm chart, the OLM bundle) into this directory.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
    },
    /// Delete every GateServer and GateToken in scope (--namespace, else all namespaces) and wait
    /// until the running operator's finalizers have removed their cluster-scoped objects: the
    /// first step of an uninstall (the Helm chart's pre-delete hook runs it).
    PrepareUninstall {
        /// Give up (exit 1, naming what is left) after this many seconds.
        #[arg(long, default_value_t = 240)]
        timeout_seconds: u64,
    },
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of the running operator.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Gateway image for GateServers that do not set spec.image (point it at a mirror in
    /// disconnected clusters).
    #[arg(long, env = "VIRT_GATEWAY_DEFAULT_GATEWAY_IMAGE", default_value_t = GatewayDefaults::default().gateway_image)]
    pub default_gateway_image: String,

    /// Web-app image for GateServers that do not set spec.webAppImage; "" means no web app.
    #[arg(long, env = "VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE", default_value_t = GatewayDefaults::default().web_app_image.unwrap_or_default())]
    pub default_web_app_image: String,

    /// Where to serve /metrics; "0" disables it. ":8080" means all interfaces.
    #[arg(
        long,
        env = "VIRT_GATEWAY_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_bind_address: String,

    /// Where to serve /healthz and /readyz; "0" disables them.
    #[arg(
        long,
        env = "VIRT_GATEWAY_HEALTH_PROBE_BIND_ADDRESS",
        default_value = ":8081"
    )]
    pub health_probe_bind_address: String,

    /// Elect a leader on a coordination.k8s.io Lease, so that several replicas can run.
    #[arg(long, env = "VIRT_GATEWAY_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Name of the leader-election Lease (Gen B's leader-election ID by default, so an old Go
    /// operator and this one exclude each other).
    #[arg(long, env = "VIRT_GATEWAY_LEADER_ELECTION_ID", default_value = DEFAULT_LEASE_NAME)]
    pub leader_election_id: String,

    /// Namespace of the Lease (default: the operator's own namespace).
    #[arg(long, env = "VIRT_GATEWAY_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Seconds a Lease stays valid after its last renewal: a standby takes over at most this long
    /// after the leader stops.
    #[arg(
        long,
        env = "VIRT_GATEWAY_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    pub lease_duration_seconds: u64,

    /// Seconds before expiry at which the leader renews the Lease.
    #[arg(
        long,
        env = "VIRT_GATEWAY_LEASE_RENEW_GRACE_SECONDS",
        default_value_t = 5
    )]
    pub lease_renew_grace_seconds: u64,

    /// This replica's identity (Lease holder, Event reporting instance). Default: POD_NAME, else
    /// the hostname.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Signatures running at once (0: one per CPU).
    #[arg(long, env = "VIRT_GATEWAY_SIGNING_THREADS", default_value_t = 0)]
    pub signing_threads: usize,

    /// GateTokens reconciled at once.
    #[arg(long, env = "VIRT_GATEWAY_TOKEN_CONCURRENCY", default_value_t = 32)]
    pub token_concurrency: u16,

    /// GateServers reconciled at once.
    #[arg(long, env = "VIRT_GATEWAY_SERVER_CONCURRENCY", default_value_t = 4)]
    pub server_concurrency: u16,

    /// Log format.
    #[arg(long, env = "VIRT_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (RUST_LOG syntax), used when RUST_LOG is unset.
    #[arg(long, env = "VIRT_GATEWAY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Issue generateServiceAccount GateTokens: a ServiceAccount, its RBAC and a TokenRequest
    /// token per GateToken. Off by default; also apply
    /// deploy/virt-gateway-operator-serviceaccount-tokens.yaml, and read "Security model" in the
    /// operator README first.
    #[arg(long, env = "VIRT_GATEWAY_ENABLE_SERVICE_ACCOUNT_TOKENS")]
    pub enable_service_account_tokens: bool,

    /// Sign GateTokens even when the delegation policy (deploy/crds/
    /// virt-gateway-delegation-policy.yaml) is missing or changed. Then anyone who may create a
    /// GateToken can grant whatever the gateway's ServiceAccount may do. Off by default.
    #[arg(long, env = "VIRT_GATEWAY_ALLOW_UNCHECKED_DELEGATION")]
    pub allow_unchecked_delegation: bool,
}

/// Parses a bind address: `host:port`, Go's `:port` (all interfaces), or `0`/empty (disabled).
pub fn parse_bind(value: &str) -> Result<Option<SocketAddr>, String> {
    let value = value.trim();
    if value.is_empty() || value == "0" {
        return Ok(None);
    }
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_owned()
    };
    full.parse()
        .map(Some)
        .map_err(|e| format!("invalid bind address {value:?}: {e}"))
}

impl RunArgs {
    /// The operator configuration these options describe.
    pub fn config(&self) -> Result<OperatorConfig, String> {
        let identity = self
            .identity
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(default_identity);
        if self.lease_renew_grace_seconds >= self.lease_duration_seconds {
            return Err(format!(
                "--lease-renew-grace-seconds ({}) must be shorter than --lease-duration-seconds ({})",
                self.lease_renew_grace_seconds, self.lease_duration_seconds
            ));
        }
        let mut config = OperatorConfig::new();
        config.namespace = self.namespace.clone().filter(|n| !n.is_empty());
        config.gateway_defaults = GatewayDefaults {
            gateway_image: self.default_gateway_image.clone(),
            web_app_image: Some(self.default_web_app_image.clone()).filter(|i| !i.is_empty()),
        };
        if self.default_gateway_image.is_empty() {
            return Err("--default-gateway-image must not be empty".to_owned());
        }
        config.metrics_address = parse_bind(&self.metrics_bind_address)?;
        config.health_address = parse_bind(&self.health_probe_bind_address)?;
        config.leader_election = self.leader_elect.then(|| LeaderElection {
            lease_name: self.leader_election_id.clone(),
            lease_namespace: self
                .leader_election_namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(own_namespace),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_grace: Duration::from_secs(self.lease_renew_grace_seconds),
        });
        if self.signing_threads > 0 {
            config.signing_threads = self.signing_threads;
        }
        config.token_concurrency = self.token_concurrency.max(1);
        config.server_concurrency = self.server_concurrency.max(1);
        config.instance = identity;
        config.service_account_tokens = self.enable_service_account_tokens;
        config.allow_unchecked_delegation = self.allow_unchecked_delegation;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(
            parse_bind(":8081"),
            Ok(Some("0.0.0.0:8081".parse().unwrap()))
        );
        assert_eq!(
            parse_bind("127.0.0.1:9"),
            Ok(Some("127.0.0.1:9".parse().unwrap()))
        );
        assert_eq!(parse_bind("0"), Ok(None));
        assert!(parse_bind("nonsense").is_err());
    }

    #[test]
    fn flags_make_a_config() {
        let cli = Cli::try_parse_from([
            "virt-gateway-operator",
            "--namespace=ns",
            "--leader-elect",
            "--leader-election-namespace=le",
            "--lease-duration-seconds=4",
            "--lease-renew-grace-seconds=1",
            "--identity=a",
            "--default-gateway-image=mirror/kube-gateway:1",
            "--default-web-app-image=",
            "--metrics-bind-address=0",
            "--enable-service-account-tokens",
        ])
        .unwrap();
        let c = cli.run.config().unwrap();
        assert!(c.service_account_tokens);
        assert!(!c.allow_unchecked_delegation);
        assert_eq!(c.namespace.as_deref(), Some("ns"));
        assert_eq!(c.gateway_defaults.gateway_image, "mirror/kube-gateway:1");
        assert_eq!(c.gateway_defaults.web_app_image, None);
        assert_eq!(c.metrics_address, None);
        assert_eq!(c.health_address, Some("0.0.0.0:8081".parse().unwrap()));
        let le = c.leader_election.unwrap();
        assert_eq!(le.lease_name, DEFAULT_LEASE_NAME);
        assert_eq!(le.lease_namespace, "le");
        assert_eq!(le.identity, "a");
        assert_eq!(le.lease_duration, Duration::from_secs(4));
        let bad = Cli::try_parse_from([
            "virt-gateway-operator",
            "--lease-duration-seconds=2",
            "--lease-renew-grace-seconds=2",
        ])
        .unwrap();
        assert!(bad.run.config().is_err());
        let sub =
            Cli::try_parse_from(["virt-gateway-operator", "manifests", "--write", "d"]).unwrap();
        assert!(matches!(
            sub.command,
            Some(Command::Manifests { write: Some(_) })
        ));
    }
}
