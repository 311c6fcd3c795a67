//! The `virt-gateway-operator` binary.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use virt_gateway_operator::cli::{Cli, Command, RunArgs};
use virt_gateway_operator::{manifests, telemetry, uninstall};

/// mimalloc instead of glibc's malloc: at 10,000 GateTokens the freed watch events, GET and
/// patch answers between long-lived cache entries left glibc's heap several MiB larger than
/// the live data (bench/operator/RESULTS.md, issue 15).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn print(text: &str) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virt-gateway-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crds) => match virt_gateway_api::crd::all_yaml() {
            Ok(yaml) => print(&yaml),
            Err(e) => {
                eprintln!("virt-gateway-operator: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Manifests { write: None }) => match manifests::operator_yaml() {
            Ok(yaml) => print(&yaml),
            Err(e) => {
                eprintln!("virt-gateway-operator: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Manifests { write: Some(dir) }) => write_manifests(&dir),
        Some(Command::PrepareUninstall { timeout_seconds }) => {
            prepare_uninstall(&cli.run, std::time::Duration::from_secs(timeout_seconds))
        }
        None => run(cli),
    }
}

/// Writes every generated file under `dir`, replacing the directories written whole.
fn write_manifests(dir: &std::path::Path) -> ExitCode {
    let files = match manifests::files() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("virt-gateway-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    for generated in manifests::GENERATED_DIRS {
        let path = dir.join(generated);
        if let Err(e) = std::fs::remove_dir_all(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "virt-gateway-operator: cannot clear {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    for (name, contents) in files {
        let path = dir.join(&name);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, contents));
        if let Err(e) = written {
            eprintln!(
                "virt-gateway-operator: cannot write {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

fn prepare_uninstall(args: &RunArgs, timeout: std::time::Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("virt-gateway-operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match make_client(args.kubeconfig.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("virt-gateway-operator: cannot build a Kubernetes client: {e}");
                return ExitCode::FAILURE;
            }
        };
        let namespace = args.namespace.as_deref().filter(|n| !n.is_empty());
        match uninstall::prepare_uninstall(client, namespace, timeout, |line| {
            eprintln!("prepare-uninstall: {line}");
        })
        .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("prepare-uninstall: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn run(cli: Cli) -> ExitCode {
    telemetry::init(cli.run.log_format, &cli.run.log_level);
    let config = match cli.run.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virt-gateway-operator: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("virt-gateway-operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let client = match make_client(cli.run.kubeconfig.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a Kubernetes client");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            namespace = config.namespace.as_deref().unwrap_or("*"),
            "virt-gateway-operator starting"
        );
        match virt_gateway_operator::run(client, config, shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}

async fn make_client(kubeconfig: Option<&std::path::Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("cannot use {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
