//! A connection's read side as the session handle uses it: wait until bytes may be there, then
//! read without blocking into a buffer on the stack, or read straight into a buffer the caller
//! keeps. Plain TCP reads the socket; TLS reads what rustls decrypted.

use bytes::BufMut;
use tokio::{io::AsyncReadExt, net::tcp::OwnedReadHalf};

use super::{low_water, tls_stream::TlsReader};

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

    /// Lets the socket gather `bytes` before it wakes a [`Reader::readable`] or a read (see
    /// [`low_water`]); 1 wakes on any byte. Over TLS the bytes are the socket's, records
    /// included.
    pub(crate) fn wake_after(&self, bytes: usize) -> std::io::Result<()> {
        match self {
            Reader::Tcp(r) => low_water::set(r.as_ref(), bytes),
            Reader::Tls(r) => low_water::set(r.tcp(), bytes),
        }
    }

    /// Waits for and reads at least one byte (or the end of the stream), appending to `buf`
    /// (at most its `remaining_mut()` bytes): a caller reads straight into a buffer of its own,
    /// uninitialised. Cancel-safe: nothing is appended unless it completes.
    pub(crate) async fn read_buf(&mut self, buf: &mut impl BufMut) -> std::io::Result<usize> {
        match self {
            // One poll of the socket per read (its own readiness slot): `readable()` and a
            // `try_read_buf` measured more instructions per read (it joins a waiter list).
            Reader::Tcp(r) => r.read_buf(buf).await,
            Reader::Tls(r) => loop {
                r.readable().await?;
                match r.try_read_buf(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
        }
    }
}
