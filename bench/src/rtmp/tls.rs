//! `rtmps://`: the TLS client of the load tool. It measures the server's cost of TLS, not trust,
//! so it accepts whatever certificate the server shows (a test certificate, typically); the
//! signatures of the handshake are still checked, so the full handshake work is done.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

fn connector() -> Result<TlsConnector, std::io::Error> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG
        .get_or_init(|| streamfleet_testkit::tls::client_config().map(|(config, _)| config).map_err(|e| e.to_string()));
    match config {
        Ok(c) => Ok(TlsConnector::from(c.clone())),
        Err(e) => Err(std::io::Error::other(e.clone())),
    }
}

/// A TLS handshake on `stream` for `host`.
pub async fn connect(host: &str, stream: TcpStream) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let name = ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    connector()?.connect(name, stream).await
}
