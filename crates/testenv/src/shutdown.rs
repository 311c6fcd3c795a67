//! Stopping a program that owns child processes (the demo, `testenv serve`) when a person or a
//! supervisor asks, whatever receives the signal.
//!
//! - The first SIGINT (Ctrl-C), SIGTERM or SIGHUP starts an orderly stop. It is bounded: each
//!   process gets a grace period, then SIGKILL ([`Process::stop`](crate::process::Process::stop)).
//! - A second **SIGINT** during it forces the rest: SIGKILL to every process at once
//!   ([`process::kill_all_now`]). A repeated SIGTERM does not: `make` forwards SIGTERM to its
//!   child, so a SIGTERM to `make demo`'s process group arrives twice, and means "stop", not
//!   "kill".
//! - A signal during set-up cancels it: the half-built state is dropped (its processes stopped)
//!   on a worker thread while this task keeps listening for a second Ctrl-C.
//!
//! The children themselves never see the terminal's signals: each runs in a process group of its
//! own ([`crate::process`]).

use std::fmt;
use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

use crate::process;

/// A signal that asks the program to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: `kill`, a supervisor, `make` passing it on.
    Terminate,
    /// SIGHUP: the terminal went away.
    Hangup,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            Self::Hangup => "SIGHUP",
        })
    }
}

/// How a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every process was stopped in order.
    Orderly,
    /// A second Ctrl-C killed every process at once.
    Forced,
}

/// The stop signals, caught from the moment [`Signals::install`] returns: from then on they no
/// longer kill the program, they are delivered here.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catches SIGINT, SIGTERM and SIGHUP. Needs a Tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            Some(()) = self.interrupt.recv() => StopSignal::Interrupt,
            Some(()) = self.terminate.recv() => StopSignal::Terminate,
            Some(()) = self.hangup.recv() => StopSignal::Hangup,
            // Only if the runtime's signal driver is gone; nothing will arrive then.
            else => std::future::pending().await,
        }
    }

    /// Waits for `work` to finish; a SIGINT meanwhile kills every registered child process at
    /// once (other signals are ignored: a stop is already under way).
    pub async fn finish_or_force(&mut self, work: impl Future) -> Stopped {
        tokio::pin!(work);
        loop {
            tokio::select! {
                _ = &mut work => return Stopped::Orderly,
                signal = self.recv() => {
                    if signal == StopSignal::Interrupt {
                        tokio::task::spawn_blocking(process::kill_all_now).await.ok();
                        return Stopped::Forced;
                    }
                }
            }
        }
    }

    /// Runs the blocking, bounded `stop` on a blocking thread; a SIGINT meanwhile forces.
    pub async fn stop_or_force(&mut self, stop: impl FnOnce() + Send + 'static) -> Stopped {
        self.finish_or_force(tokio::task::spawn_blocking(stop))
            .await
    }

    /// Runs `start` as a task until it finishes, or until a stop signal arrives: then the task
    /// is cancelled, which drops everything it had started (stopping those processes), and a
    /// second SIGINT meanwhile forces. `Err` says which signal and how the stop ended.
    pub async fn start_or_cancel<T: Send + 'static>(
        &mut self,
        start: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, (StopSignal, Stopped)> {
        let mut task = tokio::spawn(start);
        let signal = tokio::select! {
            done = &mut task => match done {
                Ok(value) => return Ok(value),
                // The task panicked: let the panic go on as if it had happened here.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            },
            signal = self.recv() => signal,
        };
        task.abort();
        let stopped = self.finish_or_force(task).await;
        Err((signal, stopped))
    }
}
