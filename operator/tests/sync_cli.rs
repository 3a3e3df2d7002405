//! `streamfleet-operator sync` end to end: the real binary against a private redis-server,
//! checked through the registry API.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use streamfleet_registry::{
    EdgeRegistry, KeyHash, OperatorRegistry, StreamId,
    redis::{RedisConfig, RedisRegistry},
};
use streamfleet_testkit::RedisServer;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: keys, namespace: media}
stringData: {news: news-key-1, sport: sport-key-1}
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: news, namespace: media}
spec:
  publishKeySecretRef: {name: keys, key: news}
  maxViewers: 50
---
apiVersion: streamfleet.io/v1alpha1
kind: LiveStream
metadata: {name: sport, namespace: media}
spec:
  publishKeySecretRef: {name: keys, key: sport}
  playbackName: sport-hd
"#;

/// A manifest file removed when the test ends.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, content: &str) -> Self {
        let path = std::env::temp_dir().join(format!("sf-sync-{tag}-{}.yaml", std::process::id()));
        std::fs::write(&path, content).expect("write manifest");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn sync(file: &TempFile, server: &RedisServer) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamfleet-operator"));
    cmd.arg("sync")
        .arg("--manifests")
        .arg(&file.0)
        .args(["--redis-url", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn registry(server: &RedisServer) -> RedisRegistry {
    RedisRegistry::connect(RedisConfig::new(server.url())).await.expect("connects")
}

async fn output(mut cmd: Command) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(30), cmd.output()).await.expect("sync finishes").expect("runs")
}

/// Polls `check` until it holds or 15 s pass.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn applies_a_manifest_file_and_prints_a_summary() {
    let server = RedisServer::start();
    let file = TempFile::new("apply", MANIFEST);
    let out = output(sync(&file, &server)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("media/news  playback=news  phase=Ready"), "{stdout}");
    assert!(stdout.contains("media/sport  playback=sport-hd  phase=Ready"), "{stdout}");
    assert!(stdout.contains("2 applied, 0 failed, 0 removed"), "{stdout}");
    assert!(!stdout.contains("news-key-1"), "keys are never printed: {stdout}");

    let reg = registry(&server).await;
    let news = reg.get_stream(&StreamId::new("media", "news")).await.expect("get").expect("news written");
    assert_eq!(news.key_hash, KeyHash::of_key("news-key-1"));
    assert_eq!(news.max_viewers, Some(50));
    assert_eq!(reg.lookup_playback("sport-hd").await.expect("sport").id, StreamId::new("media", "sport"));
}

/// A fresh Redis starts in the restart quarantine (one lease TTL without new publishers);
/// `--end-quarantine` declares it never served edges, so the first publisher gets in at once.
#[tokio::test]
async fn end_quarantine_lets_the_first_publisher_in_on_a_fresh_redis() {
    use streamfleet_registry::{AcquireOptions, LeaseTiming, PublisherInfo, RegistryError};
    let file = TempFile::new("quarantine", MANIFEST);
    let who = PublisherInfo { edge: "e1".into(), remote_addr: None, relay_addr: None, protocol: None };
    let opts = AcquireOptions::new(&LeaseTiming::from_ttl(Duration::from_secs(15)));

    let fresh = RedisServer::start();
    let out = output(sync(&file, &fresh)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refused = registry(&fresh).await.acquire(&KeyHash::of_key("news-key-1"), &who, &opts).await;
    assert!(matches!(refused, Err(RegistryError::Quarantined { .. })), "{refused:?}");

    let declared = RedisServer::start();
    let mut cmd = sync(&file, &declared);
    cmd.arg("--end-quarantine");
    let out = output(cmd).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lease = registry(&declared).await.acquire(&KeyHash::of_key("news-key-1"), &who, &opts).await;
    assert!(lease.is_ok(), "{lease:?}");
}

#[tokio::test]
async fn a_bad_manifest_exits_non_zero_naming_document_and_field_and_applies_nothing() {
    let server = RedisServer::start();
    let bad =
        MANIFEST.replace("maxViewers: 50", "maxViewers: 0").replace("playbackName: sport-hd", "playbackName: Sport_HD");
    let file = TempFile::new("bad", &bad);
    let out = output(sync(&file, &server)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("document 2 (LiveStream media/news): spec.maxViewers"), "{stderr}");
    assert!(stderr.contains("document 3 (LiveStream media/sport): spec.playbackName"), "{stderr}");
    assert!(stderr.contains("nothing applied"), "{stderr}");
    assert!(registry(&server).await.list_streams().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_missing_file_is_a_clear_error() {
    let server = RedisServer::start();
    let file = TempFile(std::env::temp_dir().join("sf-sync-does-not-exist.yaml"));
    let out = output(sync(&file, &server)).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sf-sync-does-not-exist.yaml"));
}

#[tokio::test]
async fn watch_reapplies_changes_and_removes_streams_that_left_the_file() {
    let server = RedisServer::start();
    let file = TempFile::new("watch", MANIFEST);
    let mut cmd = sync(&file, &server);
    cmd.args(["--watch", "--poll-interval", "100ms"]).stdout(Stdio::null());
    let mut child = cmd.spawn().expect("spawns");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let reg = registry(&server).await;
    let news = StreamId::new("media", "news");
    let sport = StreamId::new("media", "sport");
    eventually("both streams are registered", || async {
        reg.list_streams().await.map(|l| l.len() == 2).unwrap_or(false)
    })
    .await;

    // Rotate news's key and drop sport from the file.
    let changed: String =
        MANIFEST.replace("news-key-1", "news-key-2").split("---").take(2).collect::<Vec<_>>().join("---");
    std::fs::write(&file.0, changed).expect("rewrite");
    eventually("sport is removed and news has its new key", || async {
        let news_key = reg.get_stream(&news).await.ok().flatten().map(|r| r.key_hash);
        let sport_gone = matches!(reg.get_stream(&sport).await, Ok(None));
        sport_gone && news_key == Some(KeyHash::of_key("news-key-2"))
    })
    .await;

    // A broken edit changes nothing; the process reports it and keeps running.
    std::fs::write(&file.0, "apiVersion: v1\nkind: [broken\n").expect("rewrite");
    let reported = async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("nothing applied") {
                return true;
            }
        }
        false
    };
    assert!(tokio::time::timeout(Duration::from_secs(15), reported).await.unwrap_or(false), "the bad edit is reported");
    assert!(child.try_wait().expect("status").is_none(), "sync --watch survives a bad edit");
    assert!(reg.get_stream(&news).await.expect("get").is_some(), "a bad edit loses nothing");
    child.kill().await.expect("killed");
}

/// An operator given the key-hash secret rewrites the records an operator without one wrote:
/// the same keys, hashed with HMAC; a publisher admitted on a legacy record keeps its lease.
#[tokio::test]
async fn a_key_hash_secret_rehashes_legacy_records_without_dropping_their_publishers() {
    use streamfleet_registry::{AcquireOptions, KeyHashSecret, KeyHasher, LeaseTiming, PublisherInfo, RenewOutcome};
    const SECRET: &str = "sync-cli-test-key-hash-secret";
    let server = RedisServer::start();
    let file = TempFile::new("keyed", MANIFEST);
    let out = output(sync(&file, &server)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key-hash secret"), "the legacy mode is loud");
    let reg = registry(&server).await;
    reg.end_quarantine().await.expect("end quarantine");
    let who = PublisherInfo { edge: "e1".into(), remote_addr: None, relay_addr: None, protocol: None };
    let timing = LeaseTiming::from_ttl(Duration::from_secs(15));
    let lease =
        reg.acquire(&KeyHash::of_key("news-key-1"), &who, &AcquireOptions::new(&timing)).await.expect("admitted");

    let mut cmd = sync(&file, &server);
    cmd.env("STREAMFLEET_KEY_HASH_SECRET", SECRET);
    let out = output(cmd).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let hasher = KeyHasher::new(Some(KeyHashSecret::new(SECRET).expect("secret")));
    let scheme = hasher.record_hash("news-key-1").scheme;
    assert_eq!(stdout.matches(&format!("(key hash upgraded to {scheme})")).count(), 2, "{stdout}");
    assert!(!stdout.contains("key rotated") && !stdout.contains("disconnected"), "{stdout}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret is never printed");
    let news = reg.get_stream(&StreamId::new("media", "news")).await.expect("get").expect("news");
    assert_eq!((news.key_hash, news.key_scheme), (hasher.record_hash("news-key-1").hash, scheme));
    assert_eq!(reg.renew(&lease, timing.ttl).await.expect("renew"), RenewOutcome::Renewed, "publisher kept");

    // A second pass with the secret changes nothing.
    let mut cmd = sync(&file, &server);
    cmd.env("STREAMFLEET_KEY_HASH_SECRET", SECRET);
    let out = output(cmd).await;
    assert!(!String::from_utf8_lossy(&out.stdout).contains("upgraded"));

    // A secret too short to be one is refused, naming its source and never its value.
    let mut cmd = sync(&file, &server);
    cmd.env("STREAMFLEET_KEY_HASH_SECRET", "tinysecret");
    let out = output(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("STREAMFLEET_KEY_HASH_SECRET") && stderr.contains("at least 16"), "{stderr}");
    assert!(!stderr.contains("tinysecret"), "{stderr}");
}
