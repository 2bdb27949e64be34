//! How many bytes a socket's kernel send queue still holds (written by us, not yet acknowledged
//! by the peer): the write timeout's measure of a client's progress.
//!
//! Linux grows a socket's send buffer to megabytes and reports room only once half of it is
//! free, so a client reading a few KiB at a time can leave the socket "full" to us for many
//! seconds while it steadily takes data. The queue shrinking tells the two apart from a client
//! that reads nothing.

use tokio::net::TcpStream;

/// The bytes in `socket`'s send queue, or `None` where the platform does not say.
#[cfg(target_os = "linux")]
pub(super) fn unsent_bytes(socket: &TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;

    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) on a TCP socket writes one `c_int` through the pointer,
    // which points to a live, aligned `c_int`; the descriptor is open for as long as `socket`
    // is borrowed.
    #[allow(unsafe_code)]
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &raw mut queued) };
    if result == 0 {
        usize::try_from(queued).ok()
    } else {
        None
    }
}

/// The bytes in `socket`'s send queue, or `None` where the platform does not say.
#[cfg(not(target_os = "linux"))]
pub(super) fn unsent_bytes(_socket: &TcpStream) -> Option<usize> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::unsent_bytes;

    #[tokio::test]
    async fn the_queue_holds_what_the_peer_has_not_taken() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let (client, accepted) = tokio::join!(socket.connect(addr), listener.accept());
        let (mut client, (mut server, _)) = (client.unwrap(), accepted.unwrap());
        assert_eq!(unsent_bytes(&server), Some(0));
        // More than the client's window: the rest stays queued until it reads.
        let written = server.try_write(&vec![7u8; 256 * 1024]).unwrap();
        let before = unsent_bytes(&server).unwrap();
        assert!(before > 0 && before <= written, "{before} of {written}");
        let mut buf = vec![0u8; 4096];
        let mut taken = 0;
        while taken < 16 * 1024 {
            taken += client.read(&mut buf).await.unwrap();
        }
        // The acknowledgements arrive a moment after the reads.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while unsent_bytes(&server).unwrap() >= before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the queue never shrank"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        server.shutdown().await.ok();
    }
}
