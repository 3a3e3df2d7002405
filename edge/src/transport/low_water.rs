//! A TCP socket's receive low-water mark (`SO_RCVLOWAT`): how many bytes must be queued before
//! the kernel reports the socket readable and wakes the edge. The only `unsafe` code of the read
//! path, one `setsockopt` call.
//!
//! **The rule** the `unsafe` below relies on: the option value is a `c_int` on this function's
//! stack, passed with its exact size and read by the kernel only during the call; the descriptor
//! is borrowed from a live `TcpStream` for the call, so it cannot be closed or reused meanwhile.
//!
//! What Linux does with the mark (socket(7), tcp(7)), which is what makes it safe to use on a
//! live connection: it only delays the readiness report. A non-blocking read still returns
//! whatever is queued, however little; setting the mark checks the queue again at once (a
//! waiter is woken if that much is already there); and the socket is reported readable below
//! the mark when the peer closed or the receive buffer is under memory pressure. So a mark can
//! delay a wake-up but never loses bytes or stalls a full socket.

use std::os::fd::{AsFd, AsRawFd};

use tokio::net::TcpStream;

/// Sets the socket's receive low-water mark to `bytes` (1 is the kernel's default: wake on any
/// byte). The kernel caps it at half the largest receive buffer it would grow the socket to.
pub(crate) fn set(socket: &TcpStream, bytes: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    let fd = socket.as_fd();
    // SAFETY: see the module docs: a valid descriptor borrowed for the call, and a pointer to a
    // live `c_int` with its exact length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::AsyncWriteExt,
        net::{TcpListener, TcpStream},
        time::timeout,
    };

    use super::*;

    /// A connected pair; the server side's readiness is known to be "nothing to read" (tokio
    /// may report a new socket readable before it has read from it once).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.try_read(&mut buf).map_err(|e| e.kind()), Err(std::io::ErrorKind::WouldBlock));
        (server, client)
    }

    /// Below the mark the socket is not reported readable; reaching it wakes the reader, and
    /// one read takes everything queued.
    #[tokio::test]
    async fn the_reader_wakes_once_the_mark_is_reached() {
        let (server, mut client) = pair().await;
        set(&server, 1000).unwrap();
        client.write_all(&[1; 400]).await.unwrap();
        // Bounded wait for something that must not happen: 400 bytes are below the mark.
        assert!(timeout(Duration::from_millis(200), server.readable()).await.is_err(), "woke below the mark");
        client.write_all(&[2; 700]).await.unwrap();
        timeout(Duration::from_secs(5), server.readable()).await.expect("no wake-up at the mark").unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(server.try_read(&mut buf).unwrap(), 1100);
    }

    /// Lowering the mark wakes a reader at once for what is already queued (the publisher's
    /// fallback when its encoder goes quiet).
    #[tokio::test]
    async fn lowering_the_mark_reports_what_is_queued() {
        let (server, mut client) = pair().await;
        set(&server, 1000).unwrap();
        client.write_all(b"deleteStream").await.unwrap();
        assert!(timeout(Duration::from_millis(200), server.readable()).await.is_err(), "woke below the mark");
        set(&server, 1).unwrap();
        timeout(Duration::from_secs(5), server.readable()).await.expect("lowering the mark woke nobody").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.try_read(&mut buf).unwrap(), 12);
    }

    /// The peer's close is reported whatever the mark, and a read takes the few bytes before it.
    #[tokio::test]
    async fn a_close_is_reported_below_the_mark() {
        let (server, mut client) = pair().await;
        set(&server, 1000).unwrap();
        client.write_all(&[1; 10]).await.unwrap();
        client.shutdown().await.unwrap();
        timeout(Duration::from_secs(5), server.readable()).await.expect("close not reported").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.try_read(&mut buf).unwrap(), 10);
        assert_eq!(server.try_read(&mut buf).unwrap(), 0);
    }
}
