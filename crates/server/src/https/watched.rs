//! `Watched`: a socket whose writes time out when the peer takes nothing for the write timeout.
//!
//! hyper never times a write, and over TLS the lean path's watch on the kernel's send queue is
//! out of reach (rustls sits between). What is left to watch is the socket itself: once a write
//! finds it full, a timer starts; any byte it then takes stops the timer, and if none is taken
//! for `timeout` the write fails (`TimedOut`), which ends the connection. A stalled peer thus
//! holds its socket at most the write timeout after its buffers filled. The timer exists only
//! while a write waits, so an idle stream carries none.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io` with its writes timed out on no progress.
pub(crate) struct Watched<T> {
    io: T,
    timeout: Duration,
    /// Armed while a write waits for room; boxed so that an idle connection pays a pointer.
    stall: Option<Pin<Box<Sleep>>>,
}

impl<T> Watched<T> {
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stall: None,
        }
    }

    /// After a write found no room: the stall's timer, started now if it was not running.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stall.as_mut().poll(cx));
        self.stall = None;
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the peer took nothing for {timeout:?} (the write timeout)"),
        ))
    }

    fn progress<R>(
        &mut self,
        result: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending => self.check_stall(cx).map(Err),
            ready => {
                self.stall = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(result, cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: the writer fails after the timeout, not before.
    #[tokio::test(start_paused = true)]
    async fn a_write_with_no_progress_fails_after_the_timeout() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut watched = Watched::new(near, Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        let error = watched.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    /// A peer that reads slowly but steadily keeps the writer going well past the timeout.
    #[tokio::test(start_paused = true)]
    async fn progress_restarts_the_timer() {
        let (near, mut far) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 64 * 1024 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += tokio::io::AsyncReadExt::read(&mut far, &mut buf)
                    .await
                    .unwrap();
            }
        });
        let mut watched = Watched::new(near, Duration::from_secs(30));
        watched.write_all(&[0u8; 64 * 1024]).await.unwrap();
        assert!(
            watched.stall.is_none(),
            "no timer once the write went through"
        );
        reader.await.unwrap();
    }
}
