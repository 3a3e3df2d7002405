//! Certificate rotation: the RTMPS pair is re-read every `--tls-reload-interval`, off the async
//! workers, and a changed pair that loads and matches replaces the served one for new
//! handshakes. Polling the contents (not inotify on the files) sees a Kubernetes Secret
//! volume's update, which swaps a `..data` symlink rather than writing the files, and costs two
//! small reads per interval. A changed pair that does not load is refused only when the next
//! poll finds the same files: a tool that writes the certificate and the key one after the other
//! shows a mismatched pair for a moment, and that moment is not an error.

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{
    observe::Metrics,
    transport::tls::{self, CertStore, PairFiles},
};

pub(super) struct Watched {
    pub(super) store: Arc<CertStore>,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    pub(super) interval: Duration,
    /// The files as loaded at start.
    pub(super) loaded: PairFiles,
}

pub(super) async fn run(metrics: Arc<Metrics>, w: Watched) {
    let Watched { store, cert, key, interval, loaded } = w;
    // What was last looked at, loaded or refused: the same bad files are refused (and logged)
    // once, not at every poll.
    let mut seen = loaded;
    let mut read_error: Option<String> = None;
    // Changed files that did not load, seen at one poll: refused if the next finds them again.
    let mut unsettled: Option<PairFiles> = None;
    loop {
        tokio::time::sleep(interval).await;
        let (c, k, last) = (cert.clone(), key.clone(), seen.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let files = tls::read_files(&c, &k)?;
            if files == last {
                return Ok(None);
            }
            let pair = tls::parse_pair(&files, &c, &k);
            Ok(Some((files, pair)))
        })
        .await;
        let changed = match checked {
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate check failed");
                continue;
            }
            Ok(Err(e)) => {
                let e: tls::PairError = e;
                let text = e.to_string();
                if read_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "cannot read the TLS certificate files; the loaded pair keeps serving");
                    read_error = Some(text);
                }
                continue;
            }
            Ok(Ok(None)) => {
                read_error = None;
                unsettled = None;
                continue;
            }
            Ok(Ok(Some(changed))) => changed,
        };
        read_error = None;
        let (files, pair) = changed;
        if pair.is_err() && unsettled.as_ref() != Some(&files) {
            unsettled = Some(files);
            continue;
        }
        unsettled = None;
        seen = files;
        match pair {
            Ok(pair) => {
                store.replace(pair.key);
                metrics.tls_certificate_reloads.with_label_values(&["ok"]).inc();
                metrics.tls_certificate_stale.set(0);
                tracing::info!(
                    fingerprint = %pair.fingerprint,
                    chain = pair.chain_len,
                    "TLS certificate reloaded; new handshakes use it"
                );
            }
            Err(e) => {
                metrics.tls_certificate_reloads.with_label_values(&["error"]).inc();
                metrics.tls_certificate_stale.set(1);
                tracing::error!(
                    error = %e,
                    cert_file = %cert.display(),
                    key_file = %key.display(),
                    "new TLS certificate refused; the previous one keeps serving"
                );
            }
        }
    }
}
