//! Every open RTMP connection, for `/api/v1/sessions`: what the seed system recorded
//! (`RemoteAddr`, the client's `flashVer`) plus role, stream, start time and bytes in/out.
//! A [`SessionGuard`] removes its entry when the connection task ends.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::SystemTime,
};

use serde::Serialize;

use crate::{fanout::Outbox, sync::lock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SessionRole {
    /// Handshake or connect done, no publish/play yet.
    Pending,
    Publisher,
    Player,
}

impl SessionRole {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionRole::Pending => "pending",
            SessionRole::Publisher => "publisher",
            SessionRole::Player => "player",
        }
    }
}

#[derive(Debug, Default)]
struct Mutable {
    role: Option<SessionRole>,
    flash_ver: Option<String>,
    tc_url: Option<String>,
    stream: Option<String>,
    playback_name: Option<String>,
    /// `None`: RTMP (every TCP connection); `srt` for SRT callers.
    protocol: Option<&'static str>,
}

/// One connection's record.
#[derive(Debug)]
pub(crate) struct SessionInfo {
    pub(crate) id: u64,
    pub(crate) remote_addr: SocketAddr,
    /// `rtmp` or `rtmps`.
    pub(crate) transport: &'static str,
    pub(crate) started: SystemTime,
    pub(crate) bytes_received: AtomicU64,
    /// The socket's receive low-water mark (`publish/read_pacing.rs`); 0 until first set.
    pub(crate) read_low_water: AtomicU32,
    mutable: Mutex<Mutable>,
    /// The connection's outbox (bytes sent and queue depth come from it).
    pub(crate) outbox: OnceLock<Arc<Outbox>>,
}

impl SessionInfo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mutable> {
        lock(&self.mutable)
    }

    pub(crate) fn set_client(&self, flash_ver: Option<String>, tc_url: Option<String>) {
        let mut m = self.lock();
        m.flash_ver = flash_ver;
        m.tc_url = tc_url;
    }

    pub(crate) fn set_role(&self, role: SessionRole, stream: Option<String>, playback_name: Option<String>) {
        let mut m = self.lock();
        m.role = Some(role);
        m.stream = stream;
        m.playback_name = playback_name;
    }

    pub(crate) fn set_protocol(&self, protocol: &'static str) {
        self.lock().protocol = Some(protocol);
    }

    pub(crate) fn role(&self) -> SessionRole {
        self.lock().role.unwrap_or(SessionRole::Pending)
    }

    pub(crate) fn snapshot(&self) -> SessionSnapshot {
        let m = self.lock();
        let (bytes_sent, queued_bytes, dropped_messages) = match self.outbox.get() {
            Some(o) => (
                o.stats.bytes_sent.load(Ordering::Relaxed),
                o.stats.queued_bytes.load(Ordering::Relaxed),
                o.stats.dropped_messages.load(Ordering::Relaxed),
            ),
            None => (0, 0, 0),
        };
        SessionSnapshot {
            id: self.id,
            role: m.role.unwrap_or(SessionRole::Pending),
            protocol: m.protocol.unwrap_or("rtmp"),
            remote_addr: self.remote_addr.to_string(),
            transport: self.transport,
            flash_ver: m.flash_ver.clone(),
            tc_url: m.tc_url.clone(),
            stream: m.stream.clone(),
            playback_name: m.playback_name.clone(),
            started_at: humantime::format_rfc3339_millis(self.started).to_string(),
            duration_seconds: self.started.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            read_low_water_bytes: self.read_low_water.load(Ordering::Relaxed).max(1),
            bytes_sent,
            queued_bytes,
            dropped_messages,
        }
    }
}

/// JSON form of a session.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SessionSnapshot {
    pub(crate) id: u64,
    pub(crate) role: SessionRole,
    /// The application protocol: `rtmp` (over any transport) or `srt`.
    pub(crate) protocol: &'static str,
    /// The client's address: the TCP peer, or the PROXY protocol header's source.
    pub(crate) remote_addr: String,
    pub(crate) transport: &'static str,
    pub(crate) flash_ver: Option<String>,
    pub(crate) tc_url: Option<String>,
    /// `namespace/name` of the stream.
    pub(crate) stream: Option<String>,
    pub(crate) playback_name: Option<String>,
    pub(crate) started_at: String,
    pub(crate) duration_seconds: f64,
    pub(crate) bytes_received: u64,
    /// Bytes the connection's socket gathers before it wakes the edge: 1 (any byte) unless a
    /// publisher's reads are paced.
    pub(crate) read_low_water_bytes: u32,
    pub(crate) bytes_sent: u64,
    /// Bytes waiting in the send queue (players): stays under --player-queue-bytes.
    pub(crate) queued_bytes: u64,
    pub(crate) dropped_messages: u64,
}

#[derive(Default)]
pub(crate) struct SessionTable {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<SessionInfo>>>,
}

impl SessionTable {
    pub(crate) fn new() -> Arc<SessionTable> {
        Arc::new(SessionTable::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<SessionInfo>>> {
        lock(&self.map)
    }

    /// Registers a new connection; the entry lives as long as the guard.
    pub(crate) fn open(self: &Arc<Self>, remote_addr: SocketAddr, transport: &'static str) -> SessionGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(SessionInfo {
            id,
            remote_addr,
            transport,
            started: SystemTime::now(),
            bytes_received: AtomicU64::new(0),
            read_low_water: AtomicU32::new(0),
            mutable: Mutex::new(Mutable::default()),
            outbox: OnceLock::new(),
        });
        self.lock().insert(id, info.clone());
        SessionGuard { table: self.clone(), info }
    }

    pub(crate) fn snapshot(&self) -> Vec<SessionSnapshot> {
        let infos: Vec<_> = self.lock().values().cloned().collect();
        infos.iter().map(|i| i.snapshot()).collect()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Removes the session from the table on drop.
pub(crate) struct SessionGuard {
    table: Arc<SessionTable>,
    pub(crate) info: Arc<SessionInfo>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.table.lock().remove(&self.info.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_registers_and_removes() {
        let t = SessionTable::new();
        let g = t.open("127.0.0.1:5000".parse().unwrap(), "rtmp");
        g.info.set_client(Some("FMLE/3.0".into()), None);
        g.info.set_role(SessionRole::Player, Some("default/demo".into()), Some("demo".into()));
        let snap = t.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].flash_ver.as_deref(), Some("FMLE/3.0"));
        assert_eq!(snap[0].role, SessionRole::Player);
        drop(g);
        assert!(t.is_empty());
    }
}
