//! `kubevirt-standin`: KubeVirt's VNC console, stood in for on a test control plane.
//!
//! - `kubevirt-standin run --kubeconfig .testenv/kubeconfig` installs the VirtualMachineInstance
//!   CRD, creates the VMIs (default `testvm` and `testvm2` in `default`), starts an Xvnc for
//!   each and registers `subresources.kubevirt.io` (v1, v1alpha3) as an aggregated API, then
//!   runs until SIGINT or SIGTERM.
//! - `kubevirt-standin dev-gateway --web-root web/dist` runs the VMs' VNC servers behind a tiny
//!   stand-in for the gateway's browser-facing side (no control plane), to test the web app.
//!
//! Both print one JSON line on stdout when ready (`{"ready":true,...}`) and log to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubevirt_standin::dev_gateway::DevGateway;
use kubevirt_standin::fleet::{Fleet, Vm};
use kubevirt_standin::{DEFAULT_VMS, Rgb, Standin, StandinOptions};
use serde_json::json;

#[derive(Parser)]
#[command(
    version,
    about = "A stand-in for KubeVirt's VNC console (real Xvnc servers)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register with a control plane (CRD, VMIs, aggregated API) and serve until interrupted.
    Run {
        /// Admin kubeconfig of the control plane (its Service range must be loopback).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// Namespace of the VMIs.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// A VM and its screen colour, NAME=#RRGGBB (repeatable; default testvm and testvm2).
        #[arg(long = "vm", value_parser = parse_vm)]
        vms: Vec<(String, Rgb)>,
        /// Where Xvnc logs go (default: a temporary directory).
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
    /// Serve a web root and the VMs behind a minimal gateway stand-in (for web app tests).
    DevGateway {
        /// The web app's root (web/dist).
        #[arg(long)]
        web_root: PathBuf,
        /// Loopback address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// A VM and its screen colour, NAME=#RRGGBB (repeatable; default testvm and testvm2).
        #[arg(long = "vm", value_parser = parse_vm)]
        vms: Vec<(String, Rgb)>,
        /// Where Xvnc logs go (default: a temporary directory).
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
}

fn parse_vm(s: &str) -> Result<(String, Rgb), String> {
    let (name, colour) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=#RRGGBB"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: empty VM name"));
    }
    Ok((name.to_string(), colour.parse()?))
}

fn vms_or_default(vms: Vec<(String, Rgb)>) -> Vec<(String, Rgb)> {
    if vms.is_empty() {
        DEFAULT_VMS
            .iter()
            .map(|(n, c)| (n.to_string(), *c))
            .collect()
    } else {
        vms
    }
}

fn describe(vms: &[Arc<Vm>]) -> serde_json::Value {
    vms.iter()
        .map(|vm| {
            json!({
                "namespace": vm.namespace(),
                "name": vm.name(),
                "colour": vm.server().colour().to_string(),
                "rfb": vm.server().addr().to_string(),
                "display": vm.server().display(),
                "pid": vm.server().pid(),
            })
        })
        .collect()
}

/// Waits for SIGINT, SIGTERM or, when `stdin_eof` is set, the end of standard input (the
/// parent that started us went away).
async fn until_stopped(stdin_eof: bool) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("cannot handle SIGTERM: {e}");
            return;
        }
    };
    let stdin = async {
        if stdin_eof {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
        _ = stdin => {},
    }
}

async fn run(
    kubeconfig: PathBuf,
    namespace: String,
    vms: Vec<(String, Rgb)>,
    log_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = Kubeconfig::read_from(&kubeconfig)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let options = StandinOptions {
        namespace,
        vms: vms_or_default(vms),
        log_dir,
        ..StandinOptions::default()
    };
    eprintln!("kubevirt-standin: starting VNC servers and registering subresources.kubevirt.io");
    let standin = Standin::start_with_client(client, options).await?;
    println!(
        "{}",
        json!({
            "ready": true,
            "apiServices": standin.api_services(),
            "vms": describe(&standin.fleet().vms()),
            "logDir": standin.fleet().log_dir(),
        })
    );
    until_stopped(false).await;
    eprintln!("kubevirt-standin: stopping");
    standin.stop().await;
    Ok(())
}

async fn dev_gateway(
    web_root: PathBuf,
    listen: SocketAddr,
    vms: Vec<(String, Rgb)>,
    log_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    if !web_root.join("index.html").is_file() {
        anyhow::bail!(
            "{} has no index.html: build the web app first (cd web && npm ci && npm run build)",
            web_root.display()
        );
    }
    let fleet = Arc::new(Fleet::new(log_dir.as_deref())?);
    for (name, colour) in vms_or_default(vms) {
        fleet.add("default", &name, colour).await?;
    }
    let gateway = DevGateway::start(fleet.clone(), &web_root, listen).await?;
    println!(
        "{}",
        json!({
            "ready": true,
            "url": gateway.url(),
            "vms": describe(&fleet.vms()),
            "logDir": fleet.log_dir(),
        })
    );
    until_stopped(true).await;
    drop(gateway);
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Run {
                kubeconfig,
                namespace,
                vms,
                log_dir,
            } => run(kubeconfig, namespace, vms, log_dir).await,
            Cmd::DevGateway {
                web_root,
                listen,
                vms,
                log_dir,
            } => dev_gateway(web_root, listen, vms, log_dir).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubevirt-standin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
