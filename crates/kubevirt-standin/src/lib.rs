//! A stand-in for KubeVirt's VNC console, real where it counts.
//!
//! - A `VirtualMachineInstance` CRD (`kubevirt.io/v1`) is installed in a real control plane and
//!   VMIs are created (by default `testvm` and `testvm2` in `default`).
//! - Each VMI gets a real VNC server: TigerVNC's `Xvnc` on a loopback-only port, its screen
//!   painted a colour of its own with the VM's name written on it ([`xvnc`]).
//! - `subresources.kubevirt.io/v1` (and `v1alpha3`, for seed-era links) is registered as an
//!   aggregated API through the real kube-apiserver. Its
//!   `.../namespaces/{ns}/virtualmachineinstances/{name}/vnc` is a WebSocket that requires the
//!   `plain.kubevirt.io` subprotocol and carries raw RFB bytes to and from that VM's Xvnc
//!   ([`handler`]). One session per VMI, as KubeVirt: a new connection takes over the old one,
//!   and with `?preserveSession=true` a second connection gets 503 instead ([`fleet`]).
//! - Each VM remembers the keys its VNC sessions pressed ([`keys`], [`fleet::Vm::last_key`]), so
//!   tests can tell whose keystrokes reached it.
//! - [`rfb`] is a minimal RFB client (raw encoding, 32 bpp) for tests that check pixels.
//! - [`dev_gateway`] is a tiny stand-in for the gateway's browser-facing side, used to test the
//!   web app in a real browser before (and independently of) the real gateway.
//!
//! Every process started here (Xvnc, xmessage) is started with
//! [`virt_gateway_testenv::process::Process`]: it is stopped on drop and killed by the kernel if
//! its owner dies.

pub mod colour;
pub mod dev_gateway;
pub mod fleet;
pub mod handler;
pub mod keys;
pub mod register;
pub mod rfb;
pub mod standin;
pub mod status;
pub mod vmi;
pub mod xvnc;

pub use colour::Rgb;
pub use fleet::Fleet;
pub use standin::{Standin, StandinOptions};

/// The WebSocket subprotocol KubeVirt requires for `vnc` and `console`.
pub const PLAIN_PROTOCOL: &str = "plain.kubevirt.io";

/// The aggregated API group KubeVirt serves its streaming subresources in.
pub const SUBRESOURCES_GROUP: &str = "subresources.kubevirt.io";

/// The VMs a stand-in starts with unless told otherwise, and their screen colours.
pub const DEFAULT_VMS: &[(&str, Rgb)] = &[
    ("testvm", Rgb::new(0x15, 0x65, 0xc0)),  // blue
    ("testvm2", Rgb::new(0xc6, 0x28, 0x28)), // red
];

/// Why the stand-in could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program the stand-in needs is not installed.
    #[error(
        "{0} not found on PATH; install it with scripts/install-system-deps.sh (Debian package {1})"
    )]
    MissingProgram(&'static str, &'static str),
    /// A VNC server or helper did not start.
    #[error("VNC server for {vm}: {message}")]
    Vnc { vm: String, message: String },
    /// A file or socket operation failed.
    #[error("i/o: {0}")]
    Io(String),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The test environment failed (registering the aggregated API).
    #[error("test environment: {0}")]
    Testenv(#[from] virt_gateway_testenv::Error),
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
}
