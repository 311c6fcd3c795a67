//! virt-gateway-operator: keeps GateServers (a kube-gateway deployment and everything around it)
//! and GateTokens (signed, time-limited JWTs) continuously reconciled.
//!
//! * [`run`] runs the operator in-process until a shutdown future completes (tests and the
//!   demo); the `virt-gateway-operator` binary wraps it with flags, signals and logging.
//! * [`builders`] are the pure functions that turn a GateServer or GateToken into the objects the
//!   operator applies; [`builders::gateway_deployment`] is the gateway Deployment exactly as the
//!   operator writes it.
//! * [`rbac`] is the operator's own least-privilege RBAC, and [`manifests`] the install YAML.
//!
//! See `crates/operator/README.md` for the design and the decisions.

#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod builders;
pub mod cli;
pub mod config;
pub mod context;
pub mod delegation;
pub mod discovery;
pub mod error;
pub mod gateserver;
pub mod gatetoken;
pub mod http;
pub mod keysecret;
pub mod manifests;
pub mod metrics;
pub mod names;
pub mod rbac;
pub mod runner;
pub mod signer;
pub mod telemetry;
pub mod uninstall;

pub use builders::{GatewayDefaults, GatewayOptions, gateway_deployment};
pub use config::{LeaderElection, OperatorConfig};
pub use error::{Error, Result};
pub use runner::run;
