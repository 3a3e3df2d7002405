//! A connection's read side as the session handle uses it: wait until bytes may be there, then
//! read without blocking. Plain TCP reads the socket; TLS reads what rustls decrypted.

use tokio::{io::AsyncReadExt, net::tcp::OwnedReadHalf};

use super::tls_stream::TlsReader;

pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(TlsReader),
}

impl Reader {
    /// Resolves when a [`Reader::try_read`] may return bytes (it can still say `WouldBlock`).
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        match self {
            Reader::Tcp(r) => r.readable().await,
            Reader::Tls(r) => r.readable().await,
        }
    }

    /// Reads without waiting; `Ok(0)` is the end of the stream.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Reader::Tcp(r) => r.try_read(buf),
            Reader::Tls(r) => r.try_read(buf),
        }
    }

    /// Waits for and reads at least one byte (or the end of the stream). Cancel-safe.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Reader::Tcp(r) => r.read(buf).await,
            Reader::Tls(r) => loop {
                r.readable().await?;
                match r.try_read(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
        }
    }
}
