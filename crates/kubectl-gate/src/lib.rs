//! `kubectl gate`: a kubectl plugin for virt-gateway. It creates GateTokens for one VM's VNC
//! console and prints one-click, time-limited console links; lists, revokes and deletes tokens;
//! and lists GateServers. See `crates/kubectl-gate/README.md`.
//!
//! The binary is a thin wrapper around [`run`]; the pure parts (duration parsing, link
//! building, GateServer selection, the GateToken it creates) are public for tests.

#![deny(missing_docs)]

pub mod cli;
pub mod duration;
pub mod error;
pub mod kube_api;
pub mod link;
pub mod manage;
pub mod select;
pub mod table;
pub mod token;

pub use cli::Cli;
pub use error::Error;

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let kube = kube_api::connect(&cli.global).await?;
    match cli.command {
        cli::Command::Token(args) => token::run(&kube, args).await,
        cli::Command::List(args) => manage::list(&kube, args).await,
        cli::Command::Revoke(args) => manage::revoke(&kube, args).await,
        cli::Command::Servers(args) => manage::servers(&kube, args).await,
    }
}
