//! A lossy UDP relay on loopback for the SRT tests: it stands between one client (the first
//! address that sends to it) and a server, and drops and reorders a set share of the datagrams in
//! both directions, with a seeded generator so a failing run can be repeated. What it did is
//! counted, so a test can check the link was really lossy.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{net::UdpSocket, task::JoinHandle};

/// How lossy the link is, in datagrams per thousand, each direction.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub drop_per_mille: u64,
    /// Held back and sent after the next datagram of the same direction.
    pub reorder_per_mille: u64,
    pub seed: u64,
}

/// Datagrams the relay dropped and reordered so far.
#[derive(Debug, Default)]
pub struct RelayCounts {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub reordered: AtomicU64,
}

/// The running relay; stops when dropped.
pub struct UdpRelay {
    pub addr: SocketAddr,
    pub counts: Arc<RelayCounts>,
    task: JoinHandle<()>,
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpRelay {
    /// Listens on 127.0.0.1 (a free port) and relays to `server`.
    pub async fn start(server: SocketAddr, impairment: Impairment) -> std::io::Result<UdpRelay> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(server).await?;
        let addr = front.local_addr()?;
        let counts = Arc::new(RelayCounts::default());
        let task = tokio::spawn(run(front, back, impairment, counts.clone()));
        Ok(UdpRelay { addr, counts, task })
    }
}

struct Direction {
    held: Option<Vec<u8>>,
}

async fn run(front: UdpSocket, back: UdpSocket, imp: Impairment, counts: Arc<RelayCounts>) {
    let mut state = imp.seed | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000
    };
    let mut client: Option<SocketAddr> = None;
    let (mut up, mut down) = (Direction { held: None }, Direction { held: None });
    let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
    loop {
        tokio::select! {
            r = front.recv_from(&mut a) => {
                let Ok((n, from)) = r else { return };
                client.get_or_insert(from);
                let verdict = (next(), next());
                let packet = a[..n].to_vec();
                forward(&mut up, packet, verdict, &imp, &counts, |p| back.try_send(p).map(|_| ()));
            }
            r = back.recv(&mut b) => {
                let Ok(n) = r else { return };
                let Some(to) = client else { continue };
                let verdict = (next(), next());
                let packet = b[..n].to_vec();
                forward(&mut down, packet, verdict, &imp, &counts, |p| front.try_send_to(p, to).map(|_| ()));
            }
        }
    }
}

fn forward(
    dir: &mut Direction,
    packet: Vec<u8>,
    (drop_roll, reorder_roll): (u64, u64),
    imp: &Impairment,
    counts: &RelayCounts,
    send: impl Fn(&[u8]) -> std::io::Result<()>,
) {
    if drop_roll < imp.drop_per_mille {
        counts.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if dir.held.is_none() && reorder_roll < imp.reorder_per_mille {
        counts.reordered.fetch_add(1, Ordering::Relaxed);
        dir.held = Some(packet);
        return;
    }
    let _ = send(&packet);
    counts.forwarded.fetch_add(1, Ordering::Relaxed);
    if let Some(held) = dir.held.take() {
        let _ = send(&held);
        counts.forwarded.fetch_add(1, Ordering::Relaxed);
    }
}
