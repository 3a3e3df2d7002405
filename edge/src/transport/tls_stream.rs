//! An established TLS connection, split like a TCP socket into a read side ([`TlsReader`]) and a
//! write side ([`TlsSink`], a [`Sink`] for the fan-out), both over one `rustls` state.
//!
//! Why not `tokio_rustls::TlsStream` and `tokio::io::split`: the fan-out writes a player's queue
//! from whichever task has a frame for it, with one non-blocking call and no waker (see
//! `fanout/writer.rs`); a split async stream only writes from a task that can be woken. Here a
//! write encrypts into rustls' buffer and pushes what the socket takes now; what it does not take
//! stays in that buffer as a backlog ([`Sink::has_backlog`]) that the connection's writer task
//! flushes when the socket has room, exactly as it does with a full TCP socket.
//!
//! The rustls state sits behind a mutex that is held only for a non-blocking socket call and the
//! record work around it, never across an await.

use std::{
    io::{IoSlice, Read, Write},
    sync::{Arc, Mutex},
    task::Poll,
};

use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::{fanout::Sink, sync::lock};

/// Unsent TLS records a connection may hold; a write that would go over it takes less plaintext
/// (a partial write), so a slow player is bounded by its outbox as over TCP.
const TLS_BUFFER_LIMIT: usize = 256 * 1024;

struct Shared {
    tcp: TcpStream,
    conn: Mutex<ServerConnection>,
}

/// Splits a finished handshake's socket and rustls state into its read and write sides.
pub(crate) fn split(tcp: TcpStream, mut conn: ServerConnection) -> (TlsReader, TlsSink) {
    conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    let shared = Arc::new(Shared { tcp, conn: Mutex::new(conn) });
    (TlsReader { shared: shared.clone() }, TlsSink { shared })
}

/// The socket as rustls' blocking-style `Read`/`Write`: tokio's non-blocking calls, so a full
/// or empty socket is a `WouldBlock` and tokio's readiness is cleared for the next wait.
struct SyncIo<'a>(&'a TcpStream);

impl Read for SyncIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SyncIo<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Pushes buffered records to the socket until it is empty or the socket is full
/// (`WouldBlock`).
fn push_records(conn: &mut ServerConnection, tcp: &TcpStream) -> std::io::Result<()> {
    while conn.wants_write() {
        if conn.write_tls(&mut SyncIo(tcp))? == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// The read side: decrypted bytes.
pub(crate) struct TlsReader {
    shared: Arc<Shared>,
}

impl TlsReader {
    /// Resolves when decrypted bytes (or the peer's close) are waiting, or the socket is readable.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        let waiting = {
            let mut conn = lock(&self.shared.conn);
            // With no new input this only reports the state (and a stored error as an error).
            conn.process_new_packets().map_or(true, |s| s.plaintext_bytes_to_read() > 0 || s.peer_has_closed())
        };
        if waiting {
            return Ok(());
        }
        self.shared.tcp.readable().await
    }

    /// Reads decrypted bytes without waiting; `Ok(0)` is the end of the stream (with or without
    /// the peer's close_notify: an encoder that drops the TCP connection is just gone).
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let tcp = &self.shared.tcp;
        let mut conn = lock(&self.shared.conn);
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if conn.read_tls(&mut SyncIo(tcp))? == 0 {
                return Ok(0);
            }
            if let Err(e) = conn.process_new_packets() {
                // rustls queued an alert saying why; the peer gets it if the socket has room.
                let _ = push_records(&mut conn, tcp);
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
            // Replies to post-handshake messages (a key update): the writer side pushes
            // whatever the socket does not take now with its next write.
            match push_records(&mut conn, tcp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The write side, for the connection's outbox.
pub(crate) struct TlsSink {
    shared: Arc<Shared>,
}

impl Sink for TlsSink {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let tcp = &self.shared.tcp;
        let mut conn = lock(&self.shared.conn);
        // Older records go first; while they do not fit, nothing new is taken.
        push_records(&mut conn, tcp)?;
        let n = conn.writer().write_vectored(bufs)?;
        match push_records(&mut conn, tcp) {
            Ok(()) => Ok(n),
            // Taken, and left as a backlog the writer task flushes (`has_backlog`).
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }

    fn poll_write_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            {
                let mut conn = lock(&self.shared.conn);
                match push_records(&mut conn, &self.shared.tcp) {
                    Ok(()) => return Poll::Ready(Ok(())),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            // The WouldBlock cleared tokio's readiness: this registers for the next room.
            match self.shared.tcp.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => continue,
                other => return other,
            }
        }
    }

    fn has_backlog(&self) -> bool {
        lock(&self.shared.conn).wants_write()
    }
}

impl Drop for TlsSink {
    fn drop(&mut self) {
        // The writer is done (the goodbye was flushed): tell the peer the stream ends here, if
        // the socket takes it now; the socket closes when the connection task ends.
        let mut conn = lock(&self.shared.conn);
        conn.send_close_notify();
        let _ = push_records(&mut conn, &self.shared.tcp);
    }
}
