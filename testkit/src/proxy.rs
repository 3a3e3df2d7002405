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

use std::net::SocketAddr;

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
}

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`. Must run inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (control, control_rx) = watch::channel(Control::default());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                tokio::spawn(serve(client, upstream, control_rx.clone()));
            }
        });
        Ok(TcpProxy { addr, control, task })
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
async fn serve(client: TcpStream, upstream: SocketAddr, mut control: watch::Receiver<Control>) {
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
        tokio::select! {
            _ = pump(cr, sw, control.clone()) => {},
            _ = pump(sr, cw, control.clone()) => {},
        }
    };
    tokio::select! { _ = session => {}, _ = reset => {} }
}

/// Copies one direction; while the proxy is cut it holds what it read instead of writing it, so
/// a partition delays bytes but never drops or reorders them (as TCP does).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut control: watch::Receiver<Control>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if control.wait_for(|c| !c.cut).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
