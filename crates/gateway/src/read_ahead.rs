//! Reads the upstream's TCP stream in large chunks under rustls.
//!
//! rustls asks its transport for at most 4 KiB per read (its deframer grows its buffer 4 KiB at a
//! time), so a 16 KiB TLS record costs four `recvfrom` calls. [`ReadAhead`] sits between the TCP
//! stream and TLS: it reads up to [`CHUNK`] bytes at once and serves rustls's small reads from
//! memory (a WebSocket streaming to a client: 1.76 → 0.88 socket reads per client write, `strace
//! -c`, bench/gateway/NOTES.md). The buffer is kept while data flows and dropped whenever the
//! socket has nothing more, so an idle session keeps none.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};

/// The largest socket read.
pub const CHUNK: usize = 64 * 1024;

/// A transport whose reads go through a [`CHUNK`]-sized buffer.
pub struct ReadAhead<T> {
    inner: T,
    /// [`CHUNK`] bytes while data flows, empty while the socket has nothing.
    buf: Vec<u8>,
    /// Read but not yet handed out: `buf[pos..end]`.
    pos: usize,
    end: usize,
}

impl<T> ReadAhead<T> {
    /// Wraps `inner`; no buffer is allocated until the first read.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
            end: 0,
        }
    }
}

impl<T: Read + Unpin> Read for ReadAhead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut out: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.end {
            // Empty: refill with one large read. The buffer is kept while data flows and given
            // up when the socket has nothing (an idle session) or ends.
            if this.buf.is_empty() {
                this.buf = vec![0; CHUNK];
            }
            let mut read = ReadBuf::new(&mut this.buf);
            let polled = Pin::new(&mut this.inner).poll_read(cx, read.unfilled());
            let n = read.filled().len();
            match polled {
                Poll::Ready(Ok(())) if n > 0 => (this.pos, this.end) = (0, n),
                other => {
                    this.buf = Vec::new();
                    return other; // Pending, an error, or the end of the stream
                }
            }
        }
        let n = out.remaining().min(this.end - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<T: Write + Unpin> Write for ReadAhead<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for ReadAhead<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

/// [`HttpConnector`] whose connections read ahead.
#[derive(Clone)]
pub struct ReadAheadConnector(pub HttpConnector);

impl tower::Service<Uri> for ReadAheadConnector {
    type Response = ReadAhead<<HttpConnector as tower::Service<Uri>>::Response>;
    type Error = <HttpConnector as tower::Service<Uri>>::Error;
    type Future = futures::future::MapOk<
        <HttpConnector as tower::Service<Uri>>::Future,
        fn(<HttpConnector as tower::Service<Uri>>::Response) -> Self::Response,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        use futures::TryFutureExt;
        self.0.call(uri).map_ok(ReadAhead::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt;

    /// Reads 4 KiB at a time, as rustls does, until the end of the stream.
    async fn read_4k(read: &mut ReadAhead<TokioIo<tokio::net::TcpStream>>) -> Vec<u8> {
        let mut small = [0u8; 4096];
        let mut buf = ReadBuf::new(&mut small);
        std::future::poll_fn(|cx| Pin::new(&mut *read).poll_read(cx, buf.unfilled()))
            .await
            .unwrap();
        buf.filled().to_vec()
    }

    #[tokio::test]
    async fn small_reads_come_from_one_large_read_and_no_buffer_is_kept_when_drained() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let sent = data.clone();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tcp.write_all(&sent).await.unwrap();
            tcp.shutdown().await.unwrap();
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        writer.await.unwrap(); // all 100,000 bytes are waiting in the socket
        let mut read = ReadAhead::new(TokioIo::new(tcp));
        let mut got = read_4k(&mut read).await;
        assert_eq!(got.len(), 4096);
        // One socket read took a whole chunk; the caller got its 4 KiB of it.
        assert_eq!((read.pos, read.end), (4096, CHUNK));
        loop {
            let more = read_4k(&mut read).await;
            if more.is_empty() {
                break;
            }
            got.extend_from_slice(&more);
        }
        assert_eq!(got, data);
        assert_eq!(
            read.buf.capacity(),
            0,
            "nothing kept after the stream drained"
        );
    }
}
