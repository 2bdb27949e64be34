//! An IO wrapper that replays bytes already read from a socket before reading it again.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `io`, read as if the bytes in `prefix` had not been taken out of it yet.
///
/// The server reads the start of every request itself to see whether it is an event stream; any
/// other request goes to hyper, which must see those bytes first (the head, and whatever was
/// pipelined behind it). `ssehub serve`'s HTTPS path does the same over TLS.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use tokio::io::AsyncReadExt;
/// let mut io = ssehub_hub::server::Prefixed::new(b"GET ".to_vec(), &b"/ HTTP/1.1"[..]);
/// let mut read = String::new();
/// io.read_to_string(&mut read).await?;
/// assert_eq!(read, "GET / HTTP/1.1");
/// # Ok(()) }
/// ```
pub struct Prefixed<IO> {
    prefix: Vec<u8>,
    /// How much of `prefix` was replayed.
    read: usize,
    io: IO,
}

impl<IO> Prefixed<IO> {
    /// `io`, with `prefix` to be read first.
    pub fn new(prefix: Vec<u8>, io: IO) -> Self {
        Self {
            prefix,
            read: 0,
            io,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let rest = &this.prefix[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                // Replayed: give the memory back, the connection may live for hours.
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::Prefixed;

    #[tokio::test]
    async fn replays_the_prefix_then_reads_the_io() {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(b" world").await.unwrap();
        drop(server);
        let mut io = Prefixed::new(b"hello".to_vec(), client);
        let mut small = [0u8; 3];
        assert_eq!(io.read(&mut small).await.unwrap(), 3); // a prefix larger than the buffer
        assert_eq!(&small, b"hel");
        let mut rest = String::new();
        io.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
    }
}
