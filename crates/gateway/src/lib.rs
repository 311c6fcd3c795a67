//! `kube-gateway`: the authenticating proxy of virt-gateway.
//!
//! A person without a Kubernetes account holds a JWT minted for one GateToken; the gateway lets
//! exactly what that token allows through to the Kubernetes API, including long-lived WebSocket
//! streams such as a VM's VNC console, and nothing else. See `crates/gateway/README.md` for the
//! flags, environment variables, endpoints and decisions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = kube_gateway::Config::from_args([
//!     "kube-gateway",
//!     "-api-server=https://127.0.0.1:6443",
//!     "-listen=http://127.0.0.1:0",
//!     "-jwt-token-key-file=/jwt-secret/cert.pem",
//!     "-k8s-bearer-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token",
//! ])?;
//! let gateway = kube_gateway::Gateway::bind(config).await?;
//! println!("serving on {}", gateway.url());
//! gateway.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! A request to the API proxy passes typed stages, each a small tower service that sees only the
//! state it uses and hands the next one an [`exchange::Exchange`] carrying what it established:
//! [`observe`] (audit and metrics) → [`authn`] (who) → [`authorize`] (may they) → [`proxy`]
//! (forward, [`session`] for long-lived responses). The module graph has no cycle: leaves
//! (`util`, `outcome`, `error`, `audit_writer`, `audit`, `metrics`, `token`, `headers`) ← state (`verify`,
//! `revocation`, `upstream`, `tls`) ← stages and endpoints ← `routes` ← `server`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod audit_writer;
pub mod authn;
pub mod authorize;
pub mod cli;
pub mod config;
pub mod console;
pub mod console_peers;
pub mod console_route;
pub mod endpoints;
pub mod error;
pub mod exchange;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod oidc;
pub mod origin;
pub mod outcome;
pub mod proxy;
pub mod read_ahead;
pub mod revocation;
pub mod routes;
pub mod seal;
pub mod server;
pub mod session;
pub mod signin;
pub mod static_files;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod util;
pub mod verify;
pub mod websocket;

pub use audit::AuditSink;
pub use cli::{Cli, LogFormat, normalize_args};
pub use config::{CliError, Config};
pub use error::{ConfigError, GatewayError};
pub use server::{Gateway, StartError, run};
