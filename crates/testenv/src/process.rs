//! Child processes that never outlive the process that started them, and that stop when *it*
//! decides, in the order it decides.
//!
//! Every child is the leader of a **process group of its own**. A terminal's Ctrl-C sends SIGINT
//! to its whole foreground process group; were etcd in it, etcd would die at once, and the
//! kube-apiserver that its owner then stops would hang on its dead storage. In their own groups,
//! children only get the signals their owner sends, so the owner can stop clients before servers
//! (the demo: gateway and operator, then kube-controller-manager, kube-apiserver, etcd last).
//!
//! Four layers make sure no etcd or kube-apiserver is left behind:
//! - [`Process`] stops its child on drop (SIGTERM, then SIGKILL after a grace period);
//! - every child gets `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it if we die, even by
//!   SIGKILL. That signal fires when the *thread* that forked the child exits, so all children are
//!   spawned from one supervisor thread that lives as long as the process. A child whose parent
//!   died before `prctl` took effect exits at once;
//! - an `atexit` hook kills whatever is still registered when the process exits normally (a
//!   shared control plane lives in a `static` and is never dropped) and removes registered
//!   directories;
//! - [`kill_all_now`] is the forced stop (a second Ctrl-C): SIGKILL to every registered group.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

static SUPERVISOR: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
static LIVE_PIDS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
static DIRS_TO_REMOVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static EXIT_HOOK: OnceLock<()> = OnceLock::new();

fn supervisor() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    SUPERVISOR.get_or_init(|| {
        install_exit_hook();
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-supervisor".into())
            .spawn(move || {
                // Never returns while the process lives: the receiver keeps waiting even when
                // every sender is gone, because the static sender is never dropped.
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the testenv supervisor thread");
        Mutex::new(tx)
    })
}

fn install_exit_hook() {
    EXIT_HOOK.get_or_init(|| {
        extern "C" fn on_exit() {
            kill_all_registered();
        }
        // SAFETY: registering a plain `extern "C" fn()` with the C runtime has no preconditions.
        unsafe {
            libc::atexit(on_exit);
        }
    });
}

fn take_registered() -> Vec<i32> {
    LIVE_PIDS
        .lock()
        .map(|mut live| {
            live.take()
                .map(|s| s.into_iter().collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn kill_all_registered() {
    let pids = take_registered();
    for pid in &pids {
        signal_group(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    for pid in &pids {
        while Instant::now() < deadline && pid_alive(*pid) {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(*pid, libc::SIGKILL);
    }
    if let Ok(dirs) = DIRS_TO_REMOVE.lock() {
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The forced stop: SIGKILL to every child process (and its group) still registered, without a
/// grace period, and waits (at most a few seconds) until the kernel has reaped them, so that
/// their directories can be removed next. For a second Ctrl-C, when the orderly stop takes too
/// long.
pub fn kill_all_now() {
    let pids = take_registered();
    for pid in &pids {
        signal_group(*pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in &pids {
        while Instant::now() < deadline && pid_alive(*pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Sends `signal` to the process group led by our child `pid` (every child leads one), which
/// also reaches anything the child started. The caller has not reaped `pid`, so neither the pid
/// nor the group id can have been reused.
fn signal_group(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) with the negated pid of our own unreaped child: its process group.
    unsafe {
        if libc::kill(-pid, signal) != 0 {
            // Not a group leader (cannot happen for children spawned here): the process alone.
            libc::kill(pid, signal);
        }
    }
}

/// Whether a child process has not been reaped yet (zombies count as alive, which is what we
/// want: we only use this to wait for exit before SIGKILL).
fn pid_alive(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on our own child; reaps it if it has exited.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    r == 0
}

/// Whether the process `pid` is running: it exists and is not a zombie (a zombie has exited).
/// Unlike the supervisor's own check, this works for any process, not only our children, and
/// reaps nothing; tests use it to see that processes are gone.
pub fn alive(pid: u32) -> bool {
    // /proc/<pid>/stat exists for live and zombie processes; a zombie ("Z") has exited.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits (blocking, up to `timeout`) until none of `pids` is [`alive`]; panics with the ones
/// still running if some are left (a test helper).
#[track_caller]
pub fn wait_all_gone(pids: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "processes still running: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The live processes (zombies excluded) of session `sid`, as `(pid, command name)`. Children
/// keep their session even when they change process group or lose their parent, so after a
/// program started in a session of its own (`setsid`, see [`new_session`]) has exited, whatever
/// is listed here is something it left running.
pub fn processes_in_session(sid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            // After the command name: state, ppid, pgrp, session, ...
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let session: u32 = fields.get(3)?.parse().ok()?;
            (session == sid && fields.first() != Some(&"Z")).then_some((pid, name))
        })
        .collect()
}

/// Makes `command` start in a new session and process group (`setsid`), as a terminal's shell
/// starts a job in a process group of its own: a test can then send signals to the whole group,
/// as Ctrl-C does, and see with [`processes_in_session`] what is left afterwards.
///
/// SIGINT and SIGQUIT get their default action back, as a job-control shell gives its jobs:
/// a test run in the background of a non-interactive shell (`cmd &`, nohup) inherits them
/// ignored, and a job that ignores Ctrl-C would test nothing.
pub fn new_session(command: &mut Command) -> &mut Command {
    // SAFETY: setsid and signal are async-signal-safe, the only calls made between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for signal in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// Sends `signal` to the process group `pgid`, as a terminal sends Ctrl-C's SIGINT to its
/// foreground job. Returns whether the group existed.
pub fn signal_process_group(pgid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) on a negated process group id.
    unsafe { libc::kill(-(pgid as libc::pid_t), signal) == 0 }
}

/// Removes `dir` when the process exits (for state kept in statics that are never dropped).
pub(crate) fn remove_at_exit(dir: &Path) {
    install_exit_hook();
    if let Ok(mut dirs) = DIRS_TO_REMOVE.lock() {
        dirs.push(dir.to_path_buf());
    }
}

/// A running child process whose output goes to a log file.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr written to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> io::Result<Self> {
        Self::spawn_with(name, program, args, &[], None, log)
    }

    /// Like [`Process::spawn`], with extra environment variables and a working directory.
    pub fn spawn_with(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
        log: &Path,
    ) -> io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        // A group of its own: a terminal's Ctrl-C reaches only us, and we stop it in order.
        command.process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and _exit are async-signal-safe; they are the only calls made
        // between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent died before the death signal was armed: nothing will stop us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        supervisor()
            .lock()
            .map_err(|_| io::Error::other("testenv supervisor lock poisoned"))?
            .send((command, reply_tx))
            .map_err(|_| io::Error::other("testenv supervisor thread is gone"))?;
        let child = reply_rx
            .recv()
            .map_err(|_| io::Error::other("testenv supervisor thread is gone"))??;
        if let Ok(mut live) = LIVE_PIDS.lock() {
            live.get_or_insert_with(HashSet::new)
                .insert(child.id() as i32);
        }
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The component name, e.g. `kube-apiserver`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot query status: {e}")),
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the child has not exited yet. A child someone else reaped (the forced stop,
    /// [`kill_all_now`]) counts as exited: it must never be signalled again.
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the process to stop (SIGTERM to its group) without waiting, so that several
    /// processes can wind down at the same time before [`Process::stop`] waits for each.
    pub fn terminate(&mut self) {
        if self.running() {
            signal_group(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace` (both to its process group).
    /// Returns within about `grace` whatever the process does.
    pub fn stop(&mut self, grace: Duration) {
        if self.running() {
            let pid = self.child.id() as i32;
            signal_group(pid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.running() {
                if Instant::now() >= deadline {
                    signal_group(pid, libc::SIGKILL);
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Ok(mut live) = LIVE_PIDS.lock()
            && let Some(set) = live.as_mut()
        {
            set.remove(&(self.child.id() as i32));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `lines` lines of a file (at most 64 KiB are read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
