//! The PROXY protocol behind a real HAProxy (Debian's package, `send-proxy` and
//! `send-proxy-v2`, its outgoing connections from 127.0.0.5): the edge sees the clients'
//! addresses (127.0.0.2, 127.0.0.3, ...), limits each of them rather than HAProxy, and refuses
//! headers from anyone but the trusted balancer.

mod common;

use std::{net::SocketAddr, process::Stdio, time::Duration};

use common::{
    Edge, RawClient, TempFile, ffmpeg_publish, finish, socket_closed_within,
    tls::{connect_from, rtmps_url, start_tls_edge},
};
use streamfleet_testkit::{free_port, rtmp_client, wait::wait_until};
use tokio::{
    io::AsyncWriteExt,
    process::{Child, Command},
    time::Instant,
};

/// HAProxy's address towards the edge: the only trusted peer.
const BALANCER: &str = "127.0.0.5";

/// A running HAProxy, killed on drop.
struct Haproxy {
    _child: Child,
    _config: TempFile,
    /// Frontends: `send-proxy` (v1) and `send-proxy-v2` to the RTMP port, `send-proxy-v2` to
    /// the RTMPS port (TLS passes through untouched).
    v1: SocketAddr,
    v2: SocketAddr,
    tls_v2: Option<SocketAddr>,
}

/// Whether something listens on 127.0.0.1:`port` (from /proc, without connecting: a probe
/// connection would reach the edge through HAProxy).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()) && l.split_whitespace().nth(3) == Some("0A"))
}

async fn start_haproxy(rtmp: SocketAddr, rtmps: Option<SocketAddr>) -> Haproxy {
    let bin = streamfleet_testkit::require_tool("haproxy");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let mut config = format!(
        "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         frontend v1\n  bind 127.0.0.1:{p1}\n  default_backend edge_v1\n\
         backend edge_v1\n  server edge {rtmp} send-proxy source {BALANCER}\n\
         frontend v2\n  bind 127.0.0.1:{p2}\n  default_backend edge_v2\n\
         backend edge_v2\n  server edge {rtmp} send-proxy-v2 source {BALANCER}\n"
    );
    if let Some(rtmps) = rtmps {
        config.push_str(&format!(
            "frontend tls\n  bind 127.0.0.1:{p3}\n  default_backend edge_tls\n\
             backend edge_tls\n  server edge {rtmps} send-proxy-v2 source {BALANCER}\n"
        ));
    }
    let file = TempFile::new("haproxy.cfg", &config);
    let child = Command::new(bin)
        .args(["-db", "-f"])
        .arg(&file.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn haproxy");
    let ports: Vec<u16> = if rtmps.is_some() { vec![p1, p2, p3] } else { vec![p1, p2] };
    wait_until("haproxy listening", Duration::from_secs(10), || async {
        ports.iter().all(|p| listening(*p)).then_some(())
    })
    .await;
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    Haproxy { _child: child, _config: file, v1: addr(p1), v2: addr(p2), tls_v2: rtmps.map(|_| addr(p3)) }
}

/// An RTMP client (handshake and connect done) through `via`, from the loopback address `ip`.
async fn client_from(via: SocketAddr, ip: &str) -> RawClient {
    RawClient::connect_socket(connect_from(via, Some(ip)).await.expect("connect through haproxy")).await
}

async fn session_addrs(edge: &Edge) -> Vec<String> {
    edge.sessions().await.iter().filter_map(|s| s["remote_addr"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn haproxy_send_proxy_v1_and_v2_give_the_edge_the_client_addresses_and_limits() {
    let trusted = format!("{BALANCER}/32");
    let edge =
        Edge::start(&["--proxy-protocol", "any", "--proxy-trusted-cidrs", &trusted, "--max-connections-per-ip", "1"])
            .await;
    let haproxy = start_haproxy(edge.rtmp, None).await;

    let a = client_from(haproxy.v1, "127.0.0.2").await;
    let b = client_from(haproxy.v2, "127.0.0.3").await;
    let want: Vec<String> =
        [&a, &b].iter().map(|c| c.socket.local_addr().expect("client address").to_string()).collect();
    let mut seen = session_addrs(&edge).await;
    seen.sort();
    assert_eq!(seen, want, "the edge shows the clients' own addresses and ports, not HAProxy's");

    // One connection per client address: a second one from 127.0.0.2 is refused ...
    let second = connect_from(haproxy.v2, Some("127.0.0.2")).await.expect("connect through haproxy");
    let refused = rtmp_client::handshake(second, Instant::now() + Duration::from_secs(5)).await;
    assert!(refused.is_err(), "a second connection from 127.0.0.2 must be refused");
    assert_eq!(edge.metric("streamfleet_edge_connections_refused_total{reason=\"max_connections_per_ip\"}").await, 1.0);
    // ... while HAProxy, which carries all of them, is not limited as one address.
    let c = client_from(haproxy.v1, "127.0.0.4").await;
    assert_eq!(session_addrs(&edge).await.len(), 3);

    // A publisher through HAProxy is recorded with its own address, in the stream's status too.
    let publisher = ffmpeg_publish(&format!("rtmp://{}/live/demo-publish-key", haproxy.v2), 4, 30);
    let stream = edge.wait_live("demo", 10, Duration::from_secs(20)).await;
    let publisher_addr = stream["publisher_remote_addr"].as_str().unwrap_or_default().to_string();
    assert!(publisher_addr.starts_with("127.0.0.1:"), "publisher_remote_addr {publisher_addr:?}");
    let (ok, err) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "ffmpeg through haproxy: {err}");
    assert!(!session_addrs(&edge).await.iter().any(|a| a.starts_with(BALANCER)));
    assert_eq!(edge.metric("streamfleet_edge_proxy_header_failures_total{reason=\"untrusted\"}").await, 0.0);
    drop((a, b, c));
}

#[tokio::test]
async fn rtmps_behind_haproxy_send_proxy_v2() {
    let trusted = format!("{BALANCER}/32");
    let (edge, rtmps, _files, _) =
        start_tls_edge(&["--rtmps-proxy-protocol", "v2", "--proxy-trusted-cidrs", &trusted]).await;
    let haproxy = start_haproxy(edge.rtmp, Some(rtmps)).await;
    let via = haproxy.tls_v2.expect("the TLS frontend");
    let publisher = ffmpeg_publish(&rtmps_url(via, "demo-publish-key"), 4, 30);
    edge.wait_live("demo", 10, Duration::from_secs(20)).await;
    let sessions = edge.sessions().await;
    let s = sessions.iter().find(|s| s["role"] == "publisher").expect("publisher session");
    assert_eq!(s["transport"], "rtmps");
    assert!(s["remote_addr"].as_str().unwrap_or_default().starts_with("127.0.0.1:"), "{sessions:?}");
    let (ok, err) = finish(publisher, Duration::from_secs(30)).await;
    assert!(ok, "ffmpeg rtmps through haproxy: {err}");
    // The plain port has no PROXY protocol here (--rtmps-proxy-protocol only): direct clients work.
    let direct = RawClient::connect(edge.rtmp).await;
    drop(direct);
}

#[tokio::test]
async fn headers_from_untrusted_peers_missing_headers_and_slow_headers_are_refused() {
    let trusted = format!("{BALANCER}/32");
    let edge =
        Edge::start(&["--proxy-protocol", "v1", "--proxy-trusted-cidrs", &trusted, "--proxy-header-timeout", "500ms"])
            .await;
    let metric = |reason: &str| format!("streamfleet_edge_proxy_header_failures_total{{reason=\"{reason}\"}}");

    // A well-formed header from a peer that is not the balancer: refused unread.
    let mut spoof = connect_from(edge.rtmp, Some("127.0.0.1")).await.unwrap();
    spoof.write_all(b"PROXY TCP4 203.0.113.5 127.0.0.1 40000 1935\r\n").await.unwrap();
    assert!(socket_closed_within(&mut spoof, Duration::from_secs(3)).await);
    assert_eq!(edge.metric(&metric("untrusted")).await, 1.0);

    // From the balancer's address without a header (a plain RTMP handshake): refused.
    let plain = connect_from(edge.rtmp, Some(BALANCER)).await.unwrap();
    assert!(rtmp_client::handshake(plain, Instant::now() + Duration::from_secs(5)).await.is_err());
    assert_eq!(edge.metric(&metric("missing")).await, 1.0);

    // A v2 header where v1 is configured: refused.
    let mut v2 = connect_from(edge.rtmp, Some(BALANCER)).await.unwrap();
    v2.write_all(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x05\x7f\x00\x00\x01\x9c\x40\x07\x8f")
        .await
        .unwrap();
    assert!(socket_closed_within(&mut v2, Duration::from_secs(3)).await);
    assert_eq!(edge.metric(&metric("wrong_version")).await, 1.0);

    // Half a header, then nothing: closed after --proxy-header-timeout.
    let mut slow = connect_from(edge.rtmp, Some(BALANCER)).await.unwrap();
    slow.write_all(b"PROXY TCP4 203.0").await.unwrap();
    let started = Instant::now();
    assert!(socket_closed_within(&mut slow, Duration::from_secs(5)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "closed after {took:?}");
    assert_eq!(edge.metric(&metric("timeout")).await, 1.0);

    // A header with no line end within 107 bytes: refused at the limit, not buffered on.
    let mut long = connect_from(edge.rtmp, Some(BALANCER)).await.unwrap();
    long.write_all(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 300]].concat()).await.unwrap();
    assert!(socket_closed_within(&mut long, Duration::from_secs(3)).await);
    assert_eq!(edge.metric(&metric("too_large")).await, 1.0);

    // And a good header from the balancer still works, with the header's address.
    let mut good = connect_from(edge.rtmp, Some(BALANCER)).await.unwrap();
    good.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 1935\r\n").await.unwrap();
    let client = RawClient::connect_socket(good).await;
    let addrs = session_addrs(&edge).await;
    assert_eq!(addrs, vec!["198.51.100.7:40000".to_string()]);
    assert!(!edge.logs().contains("203.0.113.5"), "the spoofed address never shows");
    drop(client);
}
