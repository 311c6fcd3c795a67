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
//! Request handling is a stack of small layers (see [`proxy`]): audit → token extraction →
//! verification (cached) and revocation → parsing and authorization → forwarding.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod revocation;
pub mod server;
pub mod static_files;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod verify;
pub mod websocket;

pub use config::{AuditSink, Cli, CliError, Config, ConfigError, LogFormat, normalize_args};
pub use error::GatewayError;
pub use server::{Gateway, StartError, run};
