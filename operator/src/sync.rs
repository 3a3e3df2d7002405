//! `streamfleet-operator sync`: the reconcile core without Kubernetes. Applies a file of
//! LiveStream and Secret manifests to the registry (VM and compose deployments, fleet tests),
//! prints one line per stream, and with `--watch` re-applies when the file changes, removing
//! streams that left the file.
//!
//! A file with any error is applied not at all: the registry keeps its previous state and every
//! problem is printed with its document number and field.

use std::{
    collections::BTreeSet,
    fmt,
    path::Path,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use streamfleet_registry::{
    KeyHasher, KeyScheme, OperatorRegistry, StreamId, StreamRecord,
    manifest::{ManifestError, ManifestStream, load_manifest_streams},
};

use crate::{
    config::SyncArgs,
    error::Error,
    reconcile::{self, ApplyOutcome},
    registry_client,
    status::{self, Observed, Problem},
};

/// Exit code when the file has errors (nothing applied).
pub const EXIT_BAD_MANIFEST: u8 = 2;
/// Exit code when some streams could not be applied (conflicts, registry errors).
pub const EXIT_APPLY_FAILED: u8 = 1;

/// The result of applying one stream.
#[derive(Debug)]
pub struct StreamReport {
    pub document: usize,
    pub id: StreamId,
    pub outcome: ApplyOutcome,
    pub enabled: bool,
    pub playback_name: String,
    pub key_short: String,
    pub key_scheme: KeyScheme,
}

impl StreamReport {
    /// A problem that the file (not the registry) must fix, named like a manifest error.
    pub fn failure(&self) -> Option<ManifestError> {
        let Observed::Blocked(p) = &self.outcome.observed else { return None };
        let field = match p {
            Problem::PlaybackNameConflict { .. } => "spec.playbackName",
            Problem::PublishKeyConflict { .. } => "spec.publishKeySecretRef",
            Problem::InvalidSpec { field, .. } => field.as_str(),
            _ => "spec",
        };
        Some(ManifestError {
            document: self.document,
            object: Some(format!("LiveStream {}", self.id)),
            field: field.to_string(),
            message: p.message(),
        })
    }
}

impl fmt::Display for StreamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = status::phase(self.enabled, &self.outcome.observed);
        write!(f, "{}  playback={}  phase={:?}  key={}…", self.id, self.playback_name, phase, self.key_short)?;
        if let Observed::Registered { live } = &self.outcome.observed {
            if let Some(h) = &live.holder {
                write!(f, "  publisher={}", h.edge)?;
            }
            write!(f, "  viewers={}", live.viewers)?;
        }
        let a = &self.outcome.applied;
        if a.previous.is_none() && matches!(self.outcome.observed, Observed::Registered { .. }) {
            write!(f, "  (created)")?;
        }
        if a.key_rotated {
            write!(f, "  (key rotated{})", if a.revoked { ", publisher disconnected" } else { "" })?;
        } else if a.revoked {
            write!(f, "  (publisher disconnected)")?;
        }
        if a.rehashed {
            write!(f, "  (key hash upgraded to {})", self.key_scheme)?;
        }
        for e in &a.evicted {
            write!(f, "  (evicted {e})")?;
        }
        if let Some(e) = self.failure() {
            write!(f, "  FAILED: {}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// What one pass over the file did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub streams: Vec<StreamReport>,
    /// Records removed: left the file (watch mode) or not in it (`--prune`).
    pub removed: Vec<StreamId>,
}

impl SyncReport {
    pub fn failures(&self) -> Vec<ManifestError> {
        self.streams.iter().filter_map(StreamReport::failure).collect()
    }

    pub fn applied_ids(&self) -> BTreeSet<StreamId> {
        self.streams.iter().filter(|s| s.failure().is_none()).map(|s| s.id.clone()).collect()
    }
}

/// Why a pass failed before or while touching the registry.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Manifest(Vec<ManifestError>),
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Apply(#[from] Error),
}

/// Applies a manifest file's content. `previous` holds the streams applied by the last pass
/// (watch mode): those no longer in the file are removed, and their records may be evicted to
/// free a playback name. With `prune`, every record the file does not define is removed.
pub async fn apply_manifests(
    registry: &dyn OperatorRegistry,
    yaml: &str,
    hasher: &KeyHasher,
    previous: &BTreeSet<StreamId>,
    prune: bool,
) -> Result<SyncReport, SyncError> {
    let streams = load_manifest_streams(yaml, hasher).map_err(SyncError::Manifest)?;
    let in_file: BTreeSet<StreamId> = streams.iter().map(|s| s.record.id.clone()).collect();
    let may_evict = |owner: &StreamId| !in_file.contains(owner) && (prune || previous.contains(owner));

    let mut report = SyncReport::default();
    // Streams whose name or key is held by another stream of the file are retried once after
    // everything else: within one valid file, renames and swaps then settle.
    let mut retry = Vec::new();
    for s in &streams {
        let r = apply_one(registry, s, &may_evict).await?;
        if blocked_by_file(&r, &in_file) {
            retry.push(s);
        } else {
            report.streams.push(r);
        }
    }
    for s in retry {
        report.streams.push(apply_one(registry, s, &may_evict).await?);
    }
    report.streams.sort_by_key(|s| s.document);

    let stale: Vec<StreamId> = if prune {
        registry.list_streams().await.map_err(Error::from)?.into_iter().map(|r| r.id).collect()
    } else {
        previous.iter().cloned().collect()
    };
    for id in stale.into_iter().filter(|id| !in_file.contains(id)) {
        if reconcile::remove_record(registry, &id).await? {
            report.removed.push(id);
        }
    }
    Ok(report)
}

fn blocked_by_file(r: &StreamReport, in_file: &BTreeSet<StreamId>) -> bool {
    let owner = match &r.outcome.observed {
        Observed::Blocked(Problem::PlaybackNameConflict { owner, .. } | Problem::PublishKeyConflict { owner }) => owner,
        _ => return false,
    };
    StreamId::parse(owner).is_some_and(|o| in_file.contains(&o))
}

async fn apply_one(
    registry: &dyn OperatorRegistry,
    s: &ManifestStream,
    may_evict: &(dyn Fn(&StreamId) -> bool + Send + Sync),
) -> Result<StreamReport, Error> {
    let same_key = |previous: &StreamRecord| s.key_digests.matches(previous.key_scheme, &previous.key_hash);
    let outcome = reconcile::apply_stream(registry, &s.record.id, Ok(s.record.clone()), &same_key, may_evict).await?;
    Ok(StreamReport {
        document: s.document,
        id: s.record.id.clone(),
        outcome,
        enabled: s.record.enabled,
        playback_name: s.record.playback_name.clone(),
        key_short: s.record.key_hash.short(),
        key_scheme: s.record.key_scheme,
    })
}

fn print_report(path: &Path, report: &SyncReport) {
    for s in &report.streams {
        println!("{s}");
    }
    for id in &report.removed {
        println!("{id}  removed (no longer in {})", path.display());
    }
    let failed = report.failures().len();
    println!("{} applied, {} failed, {} removed", report.streams.len() - failed, failed, report.removed.len());
}

/// A cheap change detector: modification time and length. File I/O runs off the async
/// workers (tokio::fs), so a slow file system never stalls other tasks.
async fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = tokio::fs::metadata(path).await.ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// One pass: read, apply, print. Returns the streams now applied, or `None` on failure (the
/// reason already printed).
async fn pass(
    registry: &dyn OperatorRegistry,
    hasher: &KeyHasher,
    path: &Path,
    previous: &BTreeSet<StreamId>,
    prune: bool,
) -> (Option<BTreeSet<StreamId>>, u8) {
    let yaml = match tokio::fs::read_to_string(path).await {
        Ok(y) => y,
        Err(source) => {
            eprintln!("error: {}", SyncError::Read { path: path.display().to_string(), source });
            return (None, EXIT_BAD_MANIFEST);
        }
    };
    match apply_manifests(registry, &yaml, hasher, previous, prune).await {
        Ok(report) => {
            print_report(path, &report);
            let failures = report.failures();
            for e in &failures {
                eprintln!("error: {}: {e}", path.display());
            }
            // Failed streams stay "previous" so a later pass may still clean them up.
            let mut applied = report.applied_ids();
            applied.extend(failures.iter().filter_map(|f| {
                f.object.as_deref().and_then(|o| o.strip_prefix("LiveStream ")).and_then(StreamId::parse)
            }));
            (Some(applied), if failures.is_empty() { 0 } else { EXIT_APPLY_FAILED })
        }
        Err(SyncError::Manifest(errors)) => {
            for e in &errors {
                eprintln!("error: {}: {e}", path.display());
            }
            eprintln!("nothing applied: fix the errors above");
            (None, EXIT_BAD_MANIFEST)
        }
        Err(e) => {
            eprintln!("error: {e}");
            (None, EXIT_APPLY_FAILED)
        }
    }
}

/// Runs the `sync` subcommand.
pub async fn run(args: SyncArgs, shutdown: impl std::future::Future<Output = ()>) -> ExitCode {
    let registry = match registry_client::connect_redis(&args.registry).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_APPLY_FAILED);
        }
    };
    let registry_args = args.registry.clone();
    let hasher = match tokio::task::spawn_blocking(move || registry_client::key_hasher(&registry_args)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_APPLY_FAILED);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_APPLY_FAILED);
        }
    };
    if args.end_quarantine {
        if let Err(e) = registry.end_quarantine().await {
            eprintln!("error: could not end the quarantine: {e}");
            return ExitCode::from(EXIT_APPLY_FAILED);
        }
        tracing::info!("quarantine ended: this Redis is declared never to have served edges");
    }
    let registry: streamfleet_registry::SharedOperatorRegistry = std::sync::Arc::new(registry);
    let path = args.manifests.as_path();
    let mut seen = stamp(path).await;
    let (applied, code) = pass(registry.as_ref(), &hasher, path, &BTreeSet::new(), args.prune).await;
    if !args.watch {
        return ExitCode::from(code);
    }
    let mut applied = applied.unwrap_or_default();
    let mut epoch = registry.epoch().await.ok();
    tracing::info!(file = %path.display(), "watching for changes");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = tokio::time::sleep(args.poll_interval.max(MIN_POLL)) => {}
            () = &mut shutdown => return ExitCode::SUCCESS,
        }
        let now = stamp(path).await;
        let new_epoch = registry.epoch().await.ok();
        let restarted = matches!((epoch, new_epoch), (Some(a), Some(b)) if a != b);
        if now == seen && !restarted {
            continue;
        }
        if restarted {
            tracing::warn!("registry restarted empty: re-applying every stream");
        }
        seen = now;
        epoch = new_epoch.or(epoch);
        if let (Some(now_applied), _) = pass(registry.as_ref(), &hasher, path, &applied, args.prune).await {
            applied = now_applied;
        }
    }
}

/// Poll interval floor, so a zero `--poll-interval` cannot spin.
pub const MIN_POLL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_registry::{EdgeRegistry, KeyHash, MemoryRegistry};

    const TWO: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: media}
stringData: {news: news-key, sport: sport-key}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: news, namespace: media}
spec: {publishKeySecretRef: {name: keys, key: news}}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: sport, namespace: media}
spec: {publishKeySecretRef: {name: keys, key: sport}, enabled: false}
"#;

    #[tokio::test]
    async fn reading_the_manifest_file_does_not_stall_the_runtime() {
        // A FIFO whose writer comes only after 3 s: reading it waits. On this single-threaded
        // runtime a blocking read would stall every task, the 100 ms timer below included,
        // until then; read off the runtime, the timer fires on time.
        let dir = std::env::temp_dir().join(format!("sf-sync-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let fifo = dir.join("manifests.yaml");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                std::fs::write(&fifo, TWO).expect("write the FIFO");
            })
        };
        let reg = MemoryRegistry::new();
        let started = std::time::Instant::now();
        let none = BTreeSet::new();
        let hasher = KeyHasher::legacy();
        let reading = pass(&reg, &hasher, &fifo, &none, false);
        let timer = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            started.elapsed()
        };
        let ((applied, code), timer_fired) = tokio::join!(reading, timer);
        writer.join().expect("writer");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(code, 0);
        assert_eq!(applied.map(|a| a.len()), Some(2));
        assert!(
            timer_fired < Duration::from_secs(1),
            "the runtime stalled for {timer_fired:?} while the file was read"
        );
    }

    #[tokio::test]
    async fn applies_a_file_and_removes_what_left_it() {
        let reg = MemoryRegistry::new();
        let report = apply_manifests(&reg, TWO, &KeyHasher::legacy(), &BTreeSet::new(), false).await.expect("applied");
        assert!(report.failures().is_empty());
        assert_eq!(report.streams.len(), 2);
        let news = reg.get_stream(&StreamId::new("media", "news")).await.expect("get").expect("news");
        assert_eq!(news.key_hash, KeyHash::of_key("news-key"));
        let sport = reg.get_stream(&StreamId::new("media", "sport")).await.expect("get").expect("sport");
        assert!(!sport.enabled);
        let line = report.streams[1].to_string();
        assert!(line.contains("phase=Disabled") && line.contains("(created)"), "{line}");
        assert!(!line.contains("sport-key"), "never print a key: {line}");

        let only_news = TWO.split("---").take(2).collect::<Vec<_>>().join("---");
        let report2 = apply_manifests(&reg, &only_news, &KeyHasher::legacy(), &report.applied_ids(), false)
            .await
            .expect("applied");
        assert_eq!(report2.removed, vec![StreamId::new("media", "sport")]);
        assert_eq!(reg.list_streams().await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn bad_files_change_nothing() {
        let reg = MemoryRegistry::new();
        apply_manifests(&reg, TWO, &KeyHasher::legacy(), &BTreeSet::new(), false).await.expect("applied");
        let bad = TWO.replace(
            "spec: {publishKeySecretRef: {name: keys, key: news}}",
            "spec: {publishKeySecretRef: {name: keys, key: news}, maxViewers: 0}",
        );
        let Err(SyncError::Manifest(errors)) =
            apply_manifests(&reg, &bad, &KeyHasher::legacy(), &BTreeSet::new(), true).await
        else {
            panic!("expected manifest errors")
        };
        assert_eq!((errors[0].document, errors[0].field.as_str()), (2, "spec.maxViewers"));
        assert_eq!(reg.list_streams().await.expect("list").len(), 2, "registry untouched");
    }

    #[tokio::test]
    async fn swapped_playback_names_settle_in_one_pass() {
        let reg = MemoryRegistry::new();
        apply_manifests(&reg, TWO, &KeyHasher::legacy(), &BTreeSet::new(), false).await.expect("applied");
        // news takes "sport" and sport takes "news": each first collides with the other.
        let swapped = TWO
            .replace("key: news}}", "key: news}, playbackName: sport}")
            .replace("key: sport}, enabled: false}", "key: sport}, playbackName: news}");
        let report =
            apply_manifests(&reg, &swapped, &KeyHasher::legacy(), &BTreeSet::new(), false).await.expect("applied");
        assert!(report.failures().is_empty(), "{:?}", report.failures());
        assert_eq!(reg.lookup_playback("sport").await.expect("owner").id, StreamId::new("media", "news"));
    }

    #[tokio::test]
    async fn records_outside_the_file_are_not_evicted_unless_pruning() {
        let reg = MemoryRegistry::new();
        let other = "apiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: elsewhere}\nstringData: {publishKey: x}\n---\napiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {name: squatter, namespace: elsewhere}\nspec: {publishKeySecretRef: {name: k}, playbackName: news}\n";
        apply_manifests(&reg, other, &KeyHasher::legacy(), &BTreeSet::new(), false).await.expect("applied");
        let report = apply_manifests(&reg, TWO, &KeyHasher::legacy(), &BTreeSet::new(), false).await.expect("applied");
        let failures = report.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!((failures[0].document, failures[0].field.as_str()), (2, "spec.playbackName"));
        assert!(failures[0].message.contains("elsewhere/squatter"), "{}", failures[0].message);

        let report = apply_manifests(&reg, TWO, &KeyHasher::legacy(), &BTreeSet::new(), true).await.expect("applied");
        assert!(report.failures().is_empty());
        assert_eq!(reg.list_streams().await.expect("list").len(), 2);
    }
}
