//! One real VNC server per VM: TigerVNC's `Xvnc` (Debian `tigervnc-standalone-server`).
//!
//! Each server runs on a display number of its own, accepts RFB connections on a loopback port
//! only (`-localhost -interface 127.0.0.1`, no X11 over TCP), offers the security type `None`,
//! and shows a 640x480 screen at depth 24. Its root window is painted the VM's colour with
//! `xsetroot -solid`, and, when `xmessage` is installed, a small window at (16, 16) shows
//! `VM <name>`. The RFB desktop name is the VM name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use virt_gateway_testenv::process::Process;

use crate::{Error, Rgb};

/// Screen size of every stand-in VM.
pub const WIDTH: u16 = 640;
/// Screen size of every stand-in VM.
pub const HEIGHT: u16 = 480;

/// Where the `VM <name>` label is drawn (top-left corner of the xmessage window), so that tests
/// sampling the background colour stay clear of it. The window is about 140x40 pixels.
pub const LABEL_AT: (u16, u16) = (16, 16);

const START_ATTEMPTS: usize = 8;
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running Xvnc with its screen painted.
pub struct VncServer {
    vm: String,
    display: u32,
    addr: SocketAddr,
    colour: Rgb,
    // Field order: the label client goes before the server it draws on.
    _label: Option<Process>,
    server: Process,
}

impl std::fmt::Debug for VncServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VncServer")
            .field("vm", &self.vm)
            .field("display", &self.display)
            .field("addr", &self.addr)
            .field("colour", &self.colour)
            .finish()
    }
}

/// Finds `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file())
                .unwrap_or(false)
        })
}

/// Display numbers are handed out from a per-process starting point, so that parallel test
/// binaries rarely collide; a collision is detected and the next number tried.
fn next_display() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        200 + (std::process::id() % 2000) * 16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let taken = Path::new(&format!("/tmp/.X{n}-lock")).exists()
            || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists();
        if !taken {
            return n;
        }
    }
}

impl VncServer {
    /// Starts Xvnc for `vm`, paints its screen and waits until it accepts RFB connections.
    /// Logs go to `log_dir`.
    pub async fn start(vm: &str, colour: Rgb, log_dir: &Path) -> Result<Self, Error> {
        let xvnc =
            which("Xvnc").ok_or(Error::MissingProgram("Xvnc", "tigervnc-standalone-server"))?;
        let xsetroot =
            which("xsetroot").ok_or(Error::MissingProgram("xsetroot", "x11-xserver-utils"))?;
        let vnc_err = |message: String| Error::Vnc {
            vm: vm.to_string(),
            message,
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let display = next_display();
            let port = virt_gateway_testenv::control_plane::free_port()?;
            let log = log_dir.join(format!("xvnc-{vm}-{display}.log"));
            let args: Vec<String> = vec![
                format!(":{display}"),
                "-localhost".into(),
                "-interface".into(),
                "127.0.0.1".into(),
                "-rfbport".into(),
                port.to_string(),
                "-SecurityTypes".into(),
                "None".into(),
                "-geometry".into(),
                format!("{WIDTH}x{HEIGHT}"),
                "-depth".into(),
                "24".into(),
                "-desktop".into(),
                vm.to_string(),
                "-nolisten".into(),
                "tcp".into(),
            ];
            let mut server = Process::spawn(&format!("Xvnc {vm}"), &xvnc, &args, &log)
                .map_err(|e| vnc_err(format!("cannot start {}: {e}", xvnc.display())))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_ready(&mut server, addr).await {
                Ok(()) => {}
                Err(why) => {
                    failures.push(format!(":{display} port {port}: {why}"));
                    continue;
                }
            }
            paint(&xsetroot, display, colour)
                .await
                .map_err(|e| vnc_err(format!("xsetroot failed: {e}")))?;
            let label = match which("xmessage") {
                Some(xmessage) => Some(label(&xmessage, display, vm, log_dir).await?),
                None => {
                    tracing::warn!("xmessage not installed: VM {vm} shows its colour only");
                    None
                }
            };
            return Ok(Self {
                vm: vm.to_string(),
                display,
                addr,
                colour,
                _label: label,
                server,
            });
        }
        Err(vnc_err(format!(
            "Xvnc did not start after {START_ATTEMPTS} attempts: {}",
            failures.join("; ")
        )))
    }

    /// The RFB address (loopback).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The X display number.
    pub fn display(&self) -> u32 {
        self.display
    }

    /// The background colour.
    pub fn colour(&self) -> Rgb {
        self.colour
    }

    /// Paints the whole screen `colour` (the root window, as at start; the `VM <name>` label
    /// stays): a screen change every viewer must see.
    pub async fn repaint(&self, colour: Rgb) -> Result<(), Error> {
        let xsetroot =
            which("xsetroot").ok_or(Error::MissingProgram("xsetroot", "x11-xserver-utils"))?;
        paint(&xsetroot, self.display, colour)
            .await
            .map_err(|message| Error::Vnc {
                vm: self.vm.clone(),
                message: format!("xsetroot failed: {message}"),
            })
    }

    /// The Xvnc process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The last lines of Xvnc's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }
}

/// Waits until Xvnc answers with an RFB version on `addr`, or fails when it exits.
async fn wait_ready(server: &mut Process, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = server.exited() {
            return Err(format!("exited ({status}): {}", server.log_tail(5)));
        }
        if let Ok(Ok(mut tcp)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
        {
            let mut version = [0u8; 12];
            let read =
                tokio::time::timeout(Duration::from_secs(2), tcp.read_exact(&mut version)).await;
            if matches!(read, Ok(Ok(_))) && version.starts_with(b"RFB ") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            server.stop(Duration::from_secs(2));
            return Err(format!(
                "no RFB greeting within {START_TIMEOUT:?}: {}",
                server.log_tail(5)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn paint(xsetroot: &Path, display: u32, colour: Rgb) -> Result<(), String> {
    let output = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::process::Command::new(xsetroot)
            .arg("-display")
            .arg(format!(":{display}"))
            .arg("-solid")
            .arg(colour.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

async fn label(xmessage: &Path, display: u32, vm: &str, log_dir: &Path) -> Result<Process, Error> {
    let args: Vec<String> = vec![
        "-display".into(),
        format!(":{display}"),
        "-geometry".into(),
        format!("+{}+{}", LABEL_AT.0, LABEL_AT.1),
        "-buttons".into(),
        String::new(),
        "-fn".into(),
        "12x24".into(),
        "-bg".into(),
        "#ffffff".into(),
        "-fg".into(),
        "#000000".into(),
        format!("VM {vm}"),
    ];
    let log = log_dir.join(format!("xmessage-{vm}-{display}.log"));
    let mut process = Process::spawn(&format!("xmessage {vm}"), xmessage, &args, &log)
        .map_err(|e| Error::Io(format!("cannot start xmessage: {e}")))?;
    // A missing font makes xmessage exit at once; say so rather than show a bare screen.
    tokio::time::sleep(Duration::from_millis(150)).await;
    if let Some(status) = process.exited() {
        return Err(Error::Vnc {
            vm: vm.to_string(),
            message: format!("xmessage exited ({status}): {}", process.log_tail(5)),
        });
    }
    Ok(process)
}
