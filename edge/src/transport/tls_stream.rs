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
    io::{BufRead, IoSlice, Read, Write},
    sync::{Arc, Mutex},
    task::Poll,
};

use bytes::BufMut;
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
    /// The TCP socket under the records (for socket options).
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.shared.tcp
    }

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
        self.try_read_with(|plaintext| plaintext.read(buf))
    }

    /// [`try_read`](Self::try_read) appending to `buf`, at most its `remaining_mut()` bytes:
    /// copied once, from rustls' plaintext straight to where the caller wants them.
    pub(crate) fn try_read_buf(&self, buf: &mut impl BufMut) -> std::io::Result<usize> {
        self.try_read_with(|plaintext| copy_plaintext(plaintext, buf))
    }

    /// Takes decrypted bytes with `take`, decrypting what the socket has when there are none.
    fn try_read_with(
        &self,
        mut take: impl FnMut(&mut rustls::Reader<'_>) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let tcp = &self.shared.tcp;
        let mut conn = lock(&self.shared.conn);
        loop {
            match take(&mut conn.reader()) {
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

/// Appends decrypted bytes to `buf` as [`Read::read`] would copy them to a slice: what there
/// is, up to the room in `buf`; the reader's errors (`WouldBlock`, an unclean end) only when
/// nothing was copied.
fn copy_plaintext(plaintext: &mut rustls::Reader<'_>, buf: &mut impl BufMut) -> std::io::Result<usize> {
    let mut copied = 0;
    while buf.has_remaining_mut() {
        let chunk = match plaintext.fill_buf() {
            Ok(chunk) => chunk,
            Err(_) if copied > 0 => break,
            Err(e) => return Err(e),
        };
        let n = chunk.len().min(buf.remaining_mut());
        if n == 0 {
            break;
        }
        buf.put_slice(&chunk[..n]);
        plaintext.consume(n);
        copied += n;
    }
    Ok(copied)
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

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use rustls::{
        DigitallySignedStruct, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        crypto::CryptoProvider,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    };
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        time::timeout,
    };

    use super::*;
    use crate::transport::tls;

    /// The client side trusts whatever the test server shows.
    #[derive(Debug)]
    struct AnyCertificate(CryptoProvider);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// A loopback TLS connection: the server side split as the edge splits it, and the client.
    async fn connected() -> (TlsReader, TlsSink, tokio_rustls::client::TlsStream<TcpStream>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let certified = rustls::sign::CertifiedKey::from_der(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            &tls::provider(),
        )
        .unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(tls::server_config(tls::CertStore::new(Arc::new(certified))).unwrap());
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(tls::provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(tls::provider())))
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = async {
            let socket = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(client_config)).connect(name, socket).await.unwrap()
        };
        let accept = async {
            let (socket, _) = listener.accept().await.unwrap();
            acceptor.accept(socket).await.unwrap()
        };
        let (client, server) = tokio::join!(connect, accept);
        let (socket, conn) = server.into_inner();
        let (reader, sink) = split(socket, conn);
        (reader, sink, client)
    }

    /// The contract the fan-out relies on, over TLS: writes never wait; once the socket is full
    /// the sink has a backlog and takes nothing new; `poll_write_ready` pushes the backlog as
    /// the peer reads; every byte arrives once and in order. And the read side decrypts what
    /// the peer sends, and sees its close.
    #[tokio::test]
    async fn a_full_socket_leaves_a_backlog_that_is_pushed_when_the_peer_reads() {
        let (reader, sink, mut client) = connected().await;
        let mut sent = Vec::new();
        let mut writes = 0u32;
        loop {
            let payload: Vec<u8> = (0..20_000u32).map(|j| ((writes * 7 + j) % 251) as u8).collect();
            match sink.try_write_vectored(&[IoSlice::new(&payload[..9_000]), IoSlice::new(&payload[9_000..])]) {
                Ok(n) => {
                    assert!(n > 0, "a sink without a backlog takes something");
                    sent.extend_from_slice(&payload[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write failed: {e}"),
            }
            writes += 1;
            assert!(writes < 10_000, "the socket never filled");
        }
        assert!(sink.has_backlog(), "a full socket leaves encrypted records in the sink");
        assert!(sent.len() > 64 * 1024, "only {} bytes taken before the socket was full", sent.len());

        let total = sent.len();
        let reading = tokio::spawn(async move {
            let mut got = vec![0u8; total];
            client.read_exact(&mut got).await.map(|_| (got, client))
        });
        timeout(Duration::from_secs(10), std::future::poll_fn(|cx| sink.poll_write_ready(cx)))
            .await
            .expect("the backlog is pushed once the peer reads")
            .expect("push the backlog");
        assert!(!sink.has_backlog());
        let (got, mut client) = timeout(Duration::from_secs(10), reading).await.unwrap().unwrap().unwrap();
        assert!(got == sent, "the {total} bytes arrived changed or out of order");

        client.write_all(b"from the peer").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 64];
        let n = read_some(&reader, &mut buf).await;
        assert_eq!(&buf[..n], b"from the peer");
        client.shutdown().await.unwrap();
        let n = read_some(&reader, &mut buf).await;
        assert_eq!(n, 0, "the peer's close_notify is the end of the stream");
    }

    /// Reads appending to a buffer take what was decrypted across TLS records, up to the room
    /// given, in order; the peer's close is the end of the stream.
    #[tokio::test]
    async fn reads_appending_to_a_buffer_take_up_to_the_room_given() {
        let (reader, _sink, mut client) = connected().await;
        // Larger than a TLS record (16 KiB): the plaintext arrives as several chunks.
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        client.flush().await.unwrap();
        let mut got = bytes::BytesMut::new();
        while got.len() < sent.len() {
            let before = got.len();
            let n = read_appending(&reader, &mut got, 10_000).await;
            assert!(n > 0 && n <= 10_000, "{n}");
            assert_eq!(got.len(), before + n);
        }
        assert!(got[..] == sent[..], "the bytes arrived changed or out of order");
        client.shutdown().await.unwrap();
        assert_eq!(read_appending(&reader, &mut got, 10_000).await, 0);
    }

    /// One read appending at most `room` bytes to `buf`, waiting for readability (5 s at most).
    async fn read_appending(reader: &TlsReader, buf: &mut bytes::BytesMut, room: usize) -> usize {
        timeout(Duration::from_secs(5), async {
            loop {
                reader.readable().await.unwrap();
                match reader.try_read_buf(&mut (&mut *buf).limit(room)) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return other.unwrap(),
                }
            }
        })
        .await
        .unwrap()
    }

    /// One read from the TLS reader, waiting for readability (5 s at most).
    async fn read_some(reader: &TlsReader, buf: &mut [u8]) -> usize {
        timeout(Duration::from_secs(5), async {
            loop {
                reader.readable().await.unwrap();
                match reader.try_read(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return other.unwrap(),
                }
            }
        })
        .await
        .unwrap()
    }
}
