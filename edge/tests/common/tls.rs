//! TLS for the edge tests: certificates made at test time (rcgen; no key is ever committed),
//! an edge with an RTMPS listener, and a TLS client that reports the certificate it was shown.

use std::{net::SocketAddr, time::Duration};

use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{Edge, TempFile};

/// A self-signed certificate for `localhost` and 127.0.0.1 with this serial number:
/// (certificate PEM, key PEM, certificate DER).
pub fn make_pair(serial: u64) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("generate a test key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("certificate params");
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let cert = params.self_signed(&key).expect("self-sign the test certificate");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// The certificate files an edge was started with (rewritten by rotation tests).
pub struct PairFiles {
    pub cert: TempFile,
    pub key: TempFile,
}

impl PairFiles {
    pub fn new(serial: u64) -> (PairFiles, Vec<u8>) {
        let (cert, key, der) = make_pair(serial);
        (PairFiles { cert: TempFile::new("cert.pem", &cert), key: TempFile::new("key.pem", &key) }, der)
    }

    /// Replaces both files the way a Secret volume does, each by a rename (a reader never sees
    /// half a file); key first, so for a moment the key does not match the certificate.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) {
        for (path, contents) in [(&self.key.0, key_pem), (&self.cert.0, cert_pem)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, contents).expect("write the new file");
            std::fs::rename(&tmp, path).expect("rename the new file into place");
        }
    }
}

/// An edge with an RTMPS listener on a free loopback port, plus `extra` flags.
pub async fn start_tls_edge(extra: &[&str]) -> (Edge, SocketAddr, PairFiles, Vec<u8>) {
    let (files, der) = PairFiles::new(1);
    let cert = files.cert.0.display().to_string();
    let key = files.key.0.display().to_string();
    let mut args = vec!["--rtmps-listen", "127.0.0.1:0", "--tls-cert-file", &cert, "--tls-key-file", &key];
    args.extend_from_slice(extra);
    let edge = Edge::start(&args).await;
    let rtmps = edge.wait_logged_addr("rtmps listening addr=").await;
    (edge, rtmps, files, der)
}

pub fn rtmps_url(addr: SocketAddr, name: &str) -> String {
    format!("rtmps://{addr}/live/{name}")
}

/// A TLS handshake with `addr` from `source` (any loopback address), within 5 s: the stream and
/// the DER of the certificate the server showed.
pub async fn tls_connect(addr: SocketAddr, source: Option<&str>) -> Result<(TlsStream<TcpStream>, Vec<u8>), String> {
    let (config, verifier) = streamfleet_testkit::tls::client_config().map_err(|e| e.to_string())?;
    let socket = connect_from(addr, source).await.map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(Duration::from_secs(5), TlsConnector::from(config).connect(name, socket))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let seen = verifier.last_seen().ok_or("no certificate seen")?;
    Ok((stream, seen))
}

/// A TCP connection to `addr` from `source` (e.g. `127.0.0.2`, to look like another client).
pub async fn connect_from(addr: SocketAddr, source: Option<&str>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        let ip: std::net::IpAddr = ip.parse().map_err(std::io::Error::other)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}
