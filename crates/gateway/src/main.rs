//! The `kube-gateway` binary.

use std::process::ExitCode;

use clap::Parser;
use kube_gateway::{Cli, Config, LogFormat, normalize_args};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: every proxied request allocates and frees a few dozen
/// small objects (header maps, URIs, boxed futures, the audit line) across two worker threads,
/// and glibc's allocator was ~12 % of the gateway's CPU under load (perf, bench/gateway/NOTES.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let unknown = kube_gateway::cli::unknown_go_flags(&args);
    if !unknown.is_empty() {
        eprintln!(
            "kube-gateway: unknown flag(s): {} (see --help)",
            unknown.join(" ")
        );
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.log_format, &cli.log_level);
    let config = match Config::from_cli(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kube-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(kube_gateway::run(config, shutdown_signal()));
    // The last audit records (of requests finished during shutdown) are written before exit.
    kube_gateway::audit_writer::close_stdout();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "kube-gateway failed");
            eprintln!("kube-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
