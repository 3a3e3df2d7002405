//! The TLS certificate pair and the server configuration built on it.
//!
//! One [`ServerConfig`] serves every handshake; its certificate comes from a [`CertStore`] that a
//! reload swaps, so a rotated pair is used by the next handshake and connections already up keep
//! the session keys they have. A pair is swapped in only after it parsed and its key matched its
//! certificate: a half-written rotation (the certificate file replaced, the key not yet) is
//! refused and retried at the next poll, while the previous pair keeps serving.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};

/// Why a certificate pair was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PairError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key does not belong to the certificate, or is not supported: {0}")]
    Mismatch(String),
}

/// The bytes of both files as last read, to see whether they changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PairFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// Reads both files (blocking: call it off the async workers).
pub(crate) fn read_files(cert: &Path, key: &Path) -> Result<PairFiles, PairError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| PairError::Read { path: p.to_path_buf(), source });
    Ok(PairFiles { cert: read(cert)?, key: read(key)? })
}

/// A checked pair: the chain, the key loaded by the provider and matched to the leaf.
pub(crate) struct Pair {
    pub(crate) key: Arc<CertifiedKey>,
    /// First 16 hex digits of the leaf certificate's SHA-256 (what logs show of it).
    pub(crate) fingerprint: String,
    pub(crate) chain_len: usize,
}

/// Parses and checks a pair read by [`read_files`].
pub(crate) fn parse_pair(files: &PairFiles, cert_path: &Path, key_path: &Path) -> Result<Pair, PairError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| PairError::BadCertificate { path: cert_path.to_path_buf(), reason: e.to_string() })?;
    let Some(leaf) = chain.first() else {
        return Err(PairError::NoCertificate { path: cert_path.to_path_buf() });
    };
    let fingerprint = hex::encode(&Sha256::digest(leaf.as_ref())[..8]);
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|e| PairError::BadKey { path: key_path.to_path_buf(), reason: e.to_string() })?;
    let chain_len = chain.len();
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| PairError::Mismatch(e.to_string()))?;
    Ok(Pair { key: Arc::new(certified), fingerprint, chain_len })
}

/// The crypto provider: ring, the one already in the tree (kube, the Redis TLS client).
pub(crate) fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificate every new handshake gets; a reload replaces it.
#[derive(Debug)]
pub(crate) struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub(crate) fn new(key: Arc<CertifiedKey>) -> Arc<CertStore> {
        Arc::new(CertStore { current: RwLock::new(key) })
    }

    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// TLS 1.3 and 1.2 with ring's default suites (AEAD with ECDHE only: no CBC, no RSA key
/// exchange), no client certificates.
pub(crate) fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(Arc::new(config))
}

/// Why a TLS handshake failed, as `tls_handshake_failures_total{reason}` counts it.
pub(crate) fn failure_reason(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return "eof";
    }
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        // Not TLS at all (a plain RTMP client on the TLS port, a scanner's garbage).
        Some(rustls::Error::InvalidMessage(_)) => "not_tls",
        // TLS, but nothing in common (an old protocol version, no shared cipher suite).
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        // The client refused us (it does not trust the certificate, typically).
        Some(rustls::Error::AlertReceived(_)) => "client_alert",
        Some(_) => "protocol",
        None => "io",
    }
}
