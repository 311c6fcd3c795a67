//! Shared VNC consoles: one upstream RFB connection to a VM's VNC server, the framebuffer it
//! shows, and an RFB server for each viewer (controllers and observers).

pub mod hub;
pub mod policy;
pub mod rfb;
pub mod screen;

pub use hub::{Hub, HubError, HubSettings, Role};
pub use policy::{ControllerPolicy, ViewerState};
