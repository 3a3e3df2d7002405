//! The partition proxy in front of a loopback echo server: a cut holds bytes (sockets stay open,
//! new connections hang), a heal delivers what was held, a reset closes every connection.

use std::time::Duration;

use streamfleet_testkit::TcpProxy;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};

/// How long "nothing arrives" is watched for: a partition has no event to await.
const QUIET: Duration = Duration::from_millis(300);
const WITHIN: Duration = Duration::from_secs(5);

async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    timeout(WITHIN, s.read_exact(&mut buf)).await.expect("echo within the deadline").unwrap();
    buf
}

#[tokio::test]
async fn a_cut_holds_bytes_and_a_heal_delivers_them() {
    let proxy = TcpProxy::start(echo_server().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut open, b"before").await, b"before");

    proxy.cut();
    open.write_all(b"during").await.unwrap();
    let mut buf = [0u8; 6];
    assert!(timeout(QUIET, open.read_exact(&mut buf)).await.is_err(), "nothing may cross a partition");
    // A new connection is accepted but never answered, like a dropped SYN-ACK path.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    fresh.write_all(b"hello!").await.unwrap();
    assert!(timeout(QUIET, fresh.read_exact(&mut buf)).await.is_err());

    proxy.heal();
    timeout(WITHIN, open.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"during", "held bytes arrive late, intact");
    timeout(WITHIN, fresh.read_exact(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf, b"hello!");
    assert_eq!(round_trip(&mut open, b"after").await, b"after");
}

#[tokio::test]
async fn a_reset_closes_open_connections_and_keeps_serving() {
    let proxy = TcpProxy::start(echo_server().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut open, b"x").await, b"x");
    proxy.reset();
    let mut buf = [0u8; 1];
    let n = timeout(WITHIN, open.read(&mut buf)).await.expect("reset closes the socket");
    assert!(matches!(n, Ok(0) | Err(_)), "expected EOF or reset, got {n:?}");
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut fresh, b"again").await, b"again");
}
