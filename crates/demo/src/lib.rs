//! The whole product on one machine, for `make demo` and the end-to-end browser test: a real
//! control plane, the CRDs, the operator (its real binary), the seed samples applied as written,
//! a KubeVirt stand-in with real VNC servers, and the gateway run locally with exactly the
//! command line and mounts the operator wrote into the GateServer's Deployment ([`kubelet`]).

pub mod kubelet;
pub mod stack;

pub use stack::{Stack, StackOptions};

/// Why the demo stack could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control plane failed.
    #[error("control plane: {0}")]
    Testenv(#[from] virt_gateway_testenv::Error),
    /// The KubeVirt stand-in failed.
    #[error("KubeVirt stand-in: {0}")]
    Standin(#[from] kubevirt_standin::Error),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The pod spec asks for something the local kubelet does not play.
    #[error("gateway pod: {0}")]
    Pod(String),
    /// A step did not finish in time or failed; the message says which and why.
    #[error("{0}")]
    Step(String),
    /// A file operation failed.
    #[error("i/o: {0}")]
    Io(String),
}
