//! Audit lines written off the request path: workers hand each line to a channel; one writer
//! thread wakes every [`FLUSH_EVERY`], drains it into a buffered writer and flushes. A request
//! therefore pays a channel send instead of a stdout lock, a `write(2)` and a flush, and never a
//! wake-up of the writer: a writer blocked in `recv` had to be woken (a futex call and a context
//! switch) for nearly every line, which the full benchmark showed as a third of the gateway's
//! CPU. Many lines share one `write(2)`; a line reaches stdout at most [`FLUSH_EVERY`] late. Nothing is dropped: when the channel is full a sender waits
//! (back-pressure instead of loss), and [`LineWriter::close`] writes and flushes everything sent
//! before it returns (the binary calls it on shutdown through [`close_stdout`]).

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the writer drains the channel and flushes.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Lines in flight before senders wait for the writer.
const CAPACITY: usize = 16 * 1024;

/// A channel to a writer thread.
pub struct LineWriter {
    // Read-locked by senders (shared, no clone per line), write-locked once by close.
    tx: RwLock<Option<SyncSender<String>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LineWriter {
    /// Starts the writer thread on `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(CAPACITY);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || drain(rx, std::io::BufWriter::with_capacity(64 * 1024, out)))?;
        Ok(Self {
            tx: RwLock::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one line (without its newline). After [`close`](Self::close) the line is written
    /// directly, so that a late record is still not lost.
    pub fn line(&self, line: &str) {
        let unsent = match &*self.tx.read().unwrap_or_else(PoisonError::into_inner) {
            Some(tx) => tx.send(line.to_owned()).err().map(|e| e.0),
            None => Some(line.to_owned()),
        };
        if let Some(line) = unsent {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Stops accepting lines and waits until every queued line is written and flushed.
    pub fn close(&self) {
        drop(
            self.tx
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}

// Every FLUSH_EVERY: writes what has come and flushes; at the end (all senders gone) the rest.
// It sleeps instead of blocking in recv(), so that no sender ever has to wake it.
fn drain<W: Write>(rx: Receiver<String>, mut out: W) {
    loop {
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let _ = out.flush();
        std::thread::sleep(FLUSH_EVERY);
    }
}

static STDOUT: OnceLock<Option<LineWriter>> = OnceLock::new();

/// The process's stdout writer (started on first use); `None` if the thread cannot start.
pub fn stdout() -> Option<&'static LineWriter> {
    STDOUT
        .get_or_init(|| LineWriter::spawn(std::io::stdout()).ok())
        .as_ref()
}

/// Writes and flushes every audit line queued for stdout; later lines are written directly.
pub fn close_stdout() {
    if let Some(Some(w)) = STDOUT.get() {
        w.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_by_close_in_order() {
        let out = Shared::default();
        let w = Arc::new(LineWriter::spawn(out.clone()).unwrap());
        // More lines than the channel holds, so senders also wait for the writer.
        let per_thread = CAPACITY;
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        w.line(&format!("{t} {i}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        w.close();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 * per_thread);
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..per_thread).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_line_queued_just_before_close_is_flushed() {
        let out = Shared::default();
        let w = LineWriter::spawn(out.clone()).unwrap();
        w.line("last words");
        w.close();
        assert_eq!(&*out.0.lock().unwrap(), b"last words\n");
    }
}
