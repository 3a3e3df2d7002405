//! A TCP proxy on loopback that a test can partition, heal and reset: it stands between an edge
//! and Redis in the fault tests.
//!
//! - [`cut`](TcpProxy::cut) is a *partition*: every socket stays open but no byte moves in either
//!   direction, and new connections are accepted by the kernel but never answered, exactly what
//!   a client sees when the network drops packets. Only timeouts can detect it.
//! - [`heal`](TcpProxy::heal) ends the partition: held bytes flow again, like TCP retransmits
//!   delivering them late (never lost, never reordered).
//! - [`reset`](TcpProxy::reset) closes every open connection at once (a proxy or node restart:
//!   clients see EOF/RST immediately) and keeps accepting new ones.
//! - [`stall_reply_after`](TcpProxy::stall_reply_after) lets the next request containing a
//!   pattern through but never delivers anything the server sends back on that connection
//!   afterwards: a command that ran while its reply was lost or late.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::watch,
};

/// What the proxy's connections watch: the partition flag and the reset generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Control {
    cut: bool,
    /// Bumped by `reset` and on drop: every connection born in an older generation closes.
    generation: u64,
}

pub struct TcpProxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
    /// The pattern of [`stall_reply_after`](Self::stall_reply_after), until a request matches.
    stall: Arc<Mutex<Option<Vec<u8>>>>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`. Must run inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (control, control_rx) = watch::channel(Control::default());
        let stall: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let stall_pattern = stall.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                tokio::spawn(serve(client, upstream, control_rx.clone(), stall_pattern.clone()));
            }
        });
        Ok(TcpProxy { addr, control, task, stall })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Partition: open sockets stay open but forward nothing, new connections hang, until
    /// [`heal`](Self::heal).
    pub fn cut(&self) {
        self.control.send_modify(|c| c.cut = true);
    }

    /// Ends a partition: held bytes are delivered and new connections reach the upstream.
    pub fn heal(&self) {
        self.control.send_modify(|c| c.cut = false);
    }

    /// The next request (client to server bytes) containing `pattern` reaches the server, but
    /// nothing the server sends on that connection from then on reaches the client: the
    /// command runs and its reply never arrives. Once, on one connection; others are untouched.
    pub fn stall_reply_after(&self, pattern: &[u8]) {
        *self.stall.lock().unwrap_or_else(|p| p.into_inner()) = Some(pattern.to_vec());
    }

    /// Whether a request matched the pattern of [`stall_reply_after`](Self::stall_reply_after).
    pub fn stalled(&self) -> bool {
        self.stall.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// Closes every open connection now; new connections are served as usual.
    pub fn reset(&self) {
        self.control.send_modify(|c| c.generation += 1);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.control.send_modify(|c| c.generation += 1);
    }
}

/// One client connection: waits out a partition before dialling the upstream, then pumps both
/// directions until either side closes or the proxy is reset.
async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut control: watch::Receiver<Control>,
    stall: Arc<Mutex<Option<Vec<u8>>>>,
) {
    let born = control.borrow_and_update().generation;
    let reset = {
        let mut control = control.clone();
        async move {
            // Err: the proxy is gone, which also ends every connection.
            let _ = control.wait_for(|c| c.generation != born).await;
        }
    };
    let session = async {
        if control.wait_for(|c| !c.cut).await.is_err() {
            return;
        }
        let Ok(server) = TcpStream::connect(upstream).await else { return };
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let stalled = Arc::new(AtomicBool::new(false));
        let request = Watch { stall: Some(stall), stalled: stalled.clone() };
        let reply = Watch { stall: None, stalled };
        tokio::select! {
            _ = pump(cr, sw, control.clone(), request) => {},
            _ = pump(sr, cw, control.clone(), reply) => {},
        }
    };
    tokio::select! { _ = session => {}, _ = reset => {} }
}

/// Copies one direction; while the proxy is cut it holds what it read instead of writing it, so
/// a partition delays bytes but never drops or reorders them (as TCP does).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut control: watch::Receiver<Control>, watch: Watch) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if control.wait_for(|c| !c.cut).await.is_err() {
            break;
        }
        if let Some(stall) = &watch.stall {
            let mut pattern = stall.lock().unwrap_or_else(|p| p.into_inner());
            if pattern.as_ref().is_some_and(|p| buf[..n].windows(p.len()).any(|w| w == &p[..])) {
                // Set before the request is forwarded, so its reply cannot slip through.
                watch.stalled.store(true, Ordering::SeqCst);
                *pattern = None;
            }
        }
        if watch.stall.is_none() && watch.stalled.load(Ordering::SeqCst) {
            // A stalled connection's replies are swallowed (the client times out meanwhile).
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// What one direction of a connection watches for [`TcpProxy::stall_reply_after`]: the request
/// direction holds the pattern, both share whether the connection's replies are stalled.
struct Watch {
    stall: Option<Arc<Mutex<Option<Vec<u8>>>>>,
    stalled: Arc<AtomicBool>,
}
