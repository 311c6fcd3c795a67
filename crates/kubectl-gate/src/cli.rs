//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::{parse_duration, parse_duration_secs};

/// kubectl gate: time-limited console links to virtual machines through virt-gateway.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-gate",
    bin_name = "kubectl gate",
    version,
    about = "Time-limited VM console links through virt-gateway (GateTokens), and their GateServers",
    long_about = "Time-limited VM console links through virt-gateway.\n\n\
        `kubectl gate token VM` creates a GateToken for the VM's VNC console, waits until the \
        operator has signed it, and prints a link that opens the console in a browser. \
        `list`, `revoke` and `servers` show and manage tokens and gateways.\n\n\
        Uses your kubeconfig and current context like kubectl (--kubeconfig, KUBECONFIG, \
        --context, -n).",
    after_help = "Examples:\n  \
        kubectl gate token testvm -n default --server-namespace kube-gateway\n  \
        kubectl gate token testvm --duration 30m --from +1h\n  \
        kubectl gate list -A\n  \
        kubectl gate revoke testvm-console-x7k2p -n kube-gateway\n  \
        kubectl gate servers -A"
)]
pub struct Cli {
    /// Connection options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every kubectl plugin honours.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Kubernetes options"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Kubernetes options"
    )]
    pub context: Option<String>,
    /// Namespace (default: the context's). For `token`: the VM's namespace. For `list`,
    /// `revoke`, `servers`: the namespace of the GateTokens or GateServers.
    #[arg(
        short = 'n',
        long,
        global = true,
        value_name = "NAMESPACE",
        help_heading = "Kubernetes options"
    )]
    pub namespace: Option<String>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a time-limited console link for a VM (a GateToken), wait until it is signed, print it.
    Token(TokenArgs),
    /// List GateTokens with their phase, target namespace, VMs and time left.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Revoke GateTokens: the gateway refuses them from then on.
    Revoke(RevokeArgs),
    /// List GateServers with their phase and route.
    Servers(ServersArgs),
}

/// What `token` prints.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutput {
    /// The console link (default).
    Link,
    /// The signed token alone.
    Token,
    /// The GateToken as JSON.
    Json,
    /// The GateToken as YAML.
    Yaml,
}

/// `kubectl gate token VM`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The VM (VirtualMachineInstance) whose VNC console the link opens; its namespace is -n.
    #[arg(value_name = "VM")]
    pub vm: String,
    /// The GateServer: NAME or NAMESPACE/NAME (default: the only one in the server namespace).
    #[arg(long, visible_alias = "gateserver", value_name = "[NAMESPACE/]NAME")]
    pub server: Option<String>,
    /// Namespace of the GateServer, where the GateToken is created (default: the context's
    /// namespace).
    #[arg(long, value_name = "NAMESPACE")]
    pub server_namespace: Option<String>,
    /// How long the link works, e.g. 30m, 1h, 2h30m, 1d.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration_secs)]
    pub duration: i64,
    /// When the link starts working: an RFC 3339 time (2026-05-01T09:00:00Z), `now`, or
    /// +DURATION (e.g. +1h). A token for later is printed at once (phase Pending).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// What to print.
    #[arg(short = 'o', long, value_enum, default_value_t = TokenOutput::Link)]
    pub output: TokenOutput,
    /// The gateway's address as users reach it (default: https://ROUTE, ROUTE being the
    /// GateServer's spec.route).
    #[arg(long, value_name = "URL")]
    pub gateway_url: Option<String>,
    /// Print the upstream link form `<gateway>/auth/token?token=…&then=…` instead of
    /// `<gateway>/login.html#token=…&then=…` (for gateways without the login page; the token
    /// then reaches server and proxy logs).
    #[arg(long)]
    pub query_link: bool,
    /// How long to wait for the operator to sign the token.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// The GateToken's name (default: the VM name, "-console-" and 5 random characters).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Keep the GateToken when it fails or times out (default: delete it).
    #[arg(long)]
    pub keep_on_failure: bool,
}

/// `kubectl gate list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// List GateTokens in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only tokens created by `kubectl gate token` for this VM.
    #[arg(long, value_name = "VM")]
    pub vm: Option<String>,
}

/// `kubectl gate revoke NAME...`.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The GateTokens to revoke (in -n's namespace).
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Delete the GateTokens instead of marking them revoked (the gateway refuses a deleted
    /// token too, but nothing records that it existed).
    #[arg(long)]
    pub delete: bool,
    /// Wait until the operator shows them as Revoked (or they are gone, with --delete).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub wait_timeout: Duration,
}

/// `kubectl gate servers`.
#[derive(Args, Debug)]
pub struct ServersArgs {
    /// List GateServers in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn token_defaults_and_flags() {
        let cli = Cli::try_parse_from(["kubectl-gate", "token", "testvm"]).unwrap();
        let Command::Token(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.duration, 3600);
        assert_eq!(t.wait_timeout, Duration::from_secs(60));
        assert_eq!(t.output, TokenOutput::Link);

        let cli = Cli::try_parse_from([
            "kubectl-gate",
            "token",
            "testvm",
            "-n",
            "vms",
            "--server",
            "gw/gs",
            "--duration",
            "30m",
            "-o",
            "token",
            "--kubeconfig",
            "/tmp/kc",
            "--context",
            "c1",
        ])
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("vms"));
        assert_eq!(cli.global.context.as_deref(), Some("c1"));
        let Command::Token(t) = cli.command else {
            panic!()
        };
        assert_eq!(t.duration, 1800);
        assert_eq!(t.server.as_deref(), Some("gw/gs"));
        assert_eq!(t.output, TokenOutput::Token);
    }

    #[test]
    fn bad_durations_are_usage_errors() {
        for d in ["0s", "-5m", "1mo", "60"] {
            let flag = format!("--duration={d}");
            let err = Cli::try_parse_from(["kubectl-gate", "token", "vm", &flag]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{d}");
        }
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["kubectl-gate", "-n", "a", "list", "-A"]).unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("a"));
        assert!(matches!(
            cli.command,
            Command::List(ListArgs {
                all_namespaces: true,
                ..
            })
        ));
    }
}
