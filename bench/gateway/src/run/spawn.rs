//! The processes of a run: the minimal upstream, our gateway and the upstream Go gateway.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::OBJECT_PATH;
use super::closed_loop::check_ok;
use crate::net::{HttpConn, Target};
pub struct Proc {
    name: String,
    child: Child,
    _stdout: Option<ChildStdout>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[bench] {} did not stop on SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn spawn_upstream(dir: &Path, cert: &Path, key: &Path) -> Result<(Proc, SocketAddr)> {
    spawn_upstream_with(dir, "upstream", cert, key, &[])
}

/// The minimal upstream with more arguments (`--api-proxy`), logging to `<label>.log`.
pub fn spawn_upstream_with(
    dir: &Path,
    label: &str,
    cert: &Path,
    key: &Path,
    args: &[String],
) -> Result<(Proc, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(dir.join(format!("{label}.log")))?;
    let mut child = Command::new(exe)
        .arg("upstream")
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let stdout = child.stdout.take().context("upstream stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("LISTENING ")
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("upstream said {line:?}"))?;
    Ok((
        Proc {
            name: label.into(),
            child,
            _stdout: Some(reader.into_inner()),
        },
        SocketAddr::from(([127, 0, 0, 1], port)),
    ))
}

#[derive(Clone)]
pub struct GatewayFiles {
    pub key_file: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub public_dir: PathBuf,
}

/// Which gateway a process is: ours, or the upstream Go one (same flags, no /readyz, and its
/// request log on stderr instead of an audit log on stdout).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Ours,
    Go,
}

/// What a few scenarios add to a gateway's command line.
pub struct Extra<'a> {
    /// A program the gateway runs under (valgrind).
    pub wrapper: Option<&'a [String]>,
    /// More flags.
    pub args: &'a [String],
}

impl Extra<'_> {
    /// Nothing added.
    pub const NONE: Extra<'static> = Extra {
        wrapper: None,
        args: &[],
    };
}

/// Starts a gateway in front of `api_server`; waits until it answers (ours: /readyz 200).
#[allow(clippy::too_many_arguments)]
pub async fn spawn_gateway(
    kind: Kind,
    bin: &Path,
    dir: &Path,
    label: &str,
    files: &GatewayFiles,
    api_server: &str,
    ca_file: &Path,
    sa_file: &Path,
    tls_listen: Option<Arc<rustls::ClientConfig>>,
    extra: &Extra<'_>,
) -> Result<(Proc, SocketAddr)> {
    let wrapper = extra.wrapper;
    let port = free_port()?;
    let scheme = if tls_listen.is_some() {
        "https"
    } else {
        "http"
    };
    let mut args = vec![
        format!("-api-server={api_server}"),
        format!("-ca-file={}", ca_file.display()),
        format!("-listen={scheme}://127.0.0.1:{port}"),
        format!("-jwt-token-key-file={}", files.key_file.display()),
        format!("-k8s-bearer-token-file={}", sa_file.display()),
        "-k8s-bearer-token-passthrough=false".into(),
        "-oauth-server-disable".into(),
        format!("-public-dir={}", files.public_dir.display()),
    ];
    if matches!(kind, Kind::Ours) {
        // The idle-session measurement opens thousands of WebSockets with one token: lift the
        // production caps (issue 14), so that it measures memory rather than the 429s that
        // protect a real gateway.
        args.extend(
            [
                "--max-connections=1000000",
                "--max-websockets=1000000",
                "--max-websockets-per-token=1000000",
            ]
            .map(String::from),
        );
    }
    args.extend(extra.args.iter().cloned());
    if tls_listen.is_some() {
        args.push(format!("-cert-file={}", files.serving_cert.display()));
        args.push(format!("-key-file={}", files.serving_key.display()));
    }
    let log = std::fs::File::create(dir.join(format!("{label}.log")))?;
    // The Go gateway logs two lines per request to stderr (its only request log): like our
    // audit lines, they go nowhere, as cheaply as possible.
    let stderr = match kind {
        Kind::Ours => Stdio::from(log),
        Kind::Go => Stdio::null(),
    };
    let mut command = match wrapper {
        None => Command::new(bin),
        Some(w) => {
            let mut c = Command::new(&w[0]);
            c.args(&w[1..]).arg(bin);
            c
        }
    };
    let child = command
        .args(&args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        // The audit log: one JSON line per request, written as in production (to stdout).
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut proc = Proc {
        name: label.into(),
        child,
        _stdout: None,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = Target {
        name: label.into(),
        addr,
        tls: tls_listen,
        prefix: String::new(),
        authorization: None,
    };
    let ready_within = if wrapper.is_some() { 180 } else { 30 };
    let log = dir.join(format!("{label}.log"));
    wait_ready(&mut proc, &probe, kind, ready_within, &log).await?;
    Ok((proc, addr))
}

/// Polls until the gateway answers (ours: `/readyz` 200; Go: any answer); fails when it exits
/// (with its log) or after `within` seconds (stopping it).
async fn wait_ready(
    proc: &mut Proc,
    probe: &Target,
    kind: Kind,
    within: u64,
    log: &Path,
) -> Result<()> {
    let label = &probe.name;
    let deadline = Instant::now() + Duration::from_secs(within);
    loop {
        if let Ok(mut c) = HttpConn::open(probe).await
            && let Ok((status, _)) = c.get("/readyz", None).await
            && (status == 200 || kind == Kind::Go)
        {
            return Ok(());
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{label} exited ({status}): {log}");
        }
        if Instant::now() > deadline {
            proc.stop();
            bail!("{label} did not become ready within {within} s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What starting the Go peer needs (several scenarios start one).
pub struct GoSpawn {
    pub binary: Option<PathBuf>,
    pub dir: PathBuf,
    pub files: GatewayFiles,
    pub token: String,
}

impl GoSpawn {
    /// The Go gateway in front of `api_server`, checked with one GET; `None` without a binary.
    pub async fn start(
        &self,
        label: &str,
        api_server: &str,
        ca_file: &Path,
        sa_file: &Path,
    ) -> Result<Option<(Proc, Target)>> {
        let Some(bin) = &self.binary else {
            return Ok(None);
        };
        let (p, addr) = spawn_gateway(
            Kind::Go,
            bin,
            &self.dir,
            label,
            &self.files,
            api_server,
            ca_file,
            sa_file,
            None,
            &Extra::NONE,
        )
        .await?;
        let t = Target {
            name: "go".into(),
            addr,
            tls: None,
            prefix: "/k8s".into(),
            authorization: Some(format!("Bearer {}", self.token)),
        };
        check_ok(&t, OBJECT_PATH).await?;
        Ok(Some((p, t)))
    }
}
