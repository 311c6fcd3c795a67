//! `gateway-bench`: the gateway benchmarks behind `make bench` and `make bench-quick`.
//!
//! `gateway-bench run [--quick]` starts a minimal HTTPS upstream (this binary, `upstream`
//! subcommand, as its own process), our release `kube-gateway` as a process with an RSA-4096
//! verification key, and (unless `--skip-apiserver`) the real control plane of
//! `virt-gateway-testenv`; drives them with wrk (closed loop), its own open-loop generator
//! (fixed rate) and WebSocket clients; reads CPU and memory of each process from /proc; and writes
//! the raw runs (JSON and CSV) and a Markdown report. Every address is on loopback, every loop is
//! bounded in count and time. Not a test: nothing here passes or fails on a figure.

mod consolescreen;
mod net;
mod openloop;
mod procs;
mod report;
mod run;
mod stats;
mod tokencache;
mod upstream;
mod wrk;
mod wsbench;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "virt-gateway gateway benchmarks (make bench / make bench-quick)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmarks and write the results.
    Run(run::RunArgs),
    /// Internal: the minimal HTTPS upstream (prints `LISTENING <port>`).
    Upstream {
        /// PEM certificate chain.
        #[arg(long)]
        cert: PathBuf,
        /// PEM private key.
        #[arg(long)]
        key: PathBuf,
        /// Worker threads (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// Forward every request but WebSocket upgrades to this API server (`127.0.0.1:PORT`).
        #[arg(long, requires = "api_ca")]
        api_proxy: Option<std::net::SocketAddr>,
        /// The CA of `--api-proxy` (PEM).
        #[arg(long)]
        api_ca: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run::run(args))
        }
        Command::Upstream {
            cert,
            key,
            threads,
            api_proxy,
            api_ca,
        } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(t) = threads {
                builder.worker_threads(t);
            }
            let runtime = builder.enable_all().build()?;
            let cert = std::fs::read_to_string(cert)?;
            let key = std::fs::read_to_string(key)?;
            let api = match (api_proxy, api_ca) {
                (Some(addr), Some(ca)) => Some(upstream::ApiProxy {
                    addr,
                    tls: net::tls_client(&std::fs::read_to_string(ca)?)?,
                }),
                _ => None,
            };
            runtime.block_on(upstream::serve(
                ([127, 0, 0, 1], 0).into(),
                &cert,
                &key,
                api,
            ))
        }
    }
}
