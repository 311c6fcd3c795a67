//! A real Kubernetes control plane for tests and the demo: etcd, kube-apiserver and
//! kube-controller-manager built from the Go module proxy (see `testenv/build-binaries.sh`) and
//! started as local processes on loopback ports, the way controller-runtime's envtest does.
//!
//! ```no_run
//! # async fn demo() {
//! use virt_gateway_testenv::ControlPlane;
//! let cp = ControlPlane::shared().await; // one per test binary
//! let ns = cp.fresh_namespace().await; // one per test
//! let client = cp.client().await;
//! # let _ = (ns, client);
//! # }
//! ```
//!
//! Only loopback addresses are used: every port is bound on 127.0.0.1 and the Service IP range
//! is inside 127.0.0.0/8, so even addresses the API server allocates stay on this machine.

pub mod aggregated;
pub mod binaries;
pub mod certs;
pub mod control_plane;
pub mod helpers;
pub mod identity_provider;
pub mod leftovers;
pub mod process;
pub mod shutdown;
pub mod websocket;

pub use aggregated::AggregatedApi;
pub use binaries::Binaries;
pub use control_plane::{ControlPlane, Options};
pub use identity_provider::{IdentityProvider, Login, ProviderSettings};

/// Why the control plane could not be built, started or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binaries are missing and could not be built.
    #[error("control-plane binaries: {0}")]
    Binaries(String),
    /// Certificate generation failed.
    #[error("certificates: {0}")]
    Certificates(String),
    /// A file or directory operation failed.
    #[error("i/o: {0}")]
    Io(String),
    /// Invalid options.
    #[error("configuration: {0}")]
    Config(String),
    /// A component did not start or become ready; the message has each component's log tail.
    #[error("start: {0}")]
    Start(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}
