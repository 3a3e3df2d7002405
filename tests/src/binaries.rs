//! Where the `streamfleet-edge` and `streamfleet-operator` executables come from.
//!
//! `CARGO_BIN_EXE_*` only exists inside the package that owns a binary, and `nextest` builds
//! test targets only, so this crate builds the two binaries itself, once per test process:
//! `cargo build -p streamfleet-edge -p streamfleet-operator --bins` into the same target
//! directory and profile as the running test. When the workspace was built already (the
//! usual `cargo nextest run --workspace`) that is a no-op of well under a second; on a clean
//! clone it compiles them. Concurrent test processes simply queue on cargo's build lock.
//!
//! `STREAMFLEET_EDGE_BIN` and `STREAMFLEET_OPERATOR_BIN` point the tests at prebuilt binaries
//! instead (for example the ones in a release image); then nothing is built.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// Paths of the binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub edge: PathBuf,
    pub operator: PathBuf,
}

/// The binaries, built on first use. Blocking: call it from `spawn_blocking` in async code, or
/// through [`binaries_async`].
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        match (std::env::var_os("STREAMFLEET_EDGE_BIN"), std::env::var_os("STREAMFLEET_OPERATOR_BIN")) {
            (Some(edge), Some(operator)) => Binaries { edge: edge.into(), operator: operator.into() },
            _ => build(),
        }
    })
}

/// [`binaries`] without blocking the async runtime while cargo runs.
pub async fn binaries_async() -> &'static Binaries {
    tokio::task::spawn_blocking(binaries).await.unwrap_or_else(|e| panic!("building the binaries panicked: {e}"))
}

/// The target directory and profile of the running test executable
/// (`<target>/<profile dir>/deps/<test>`), if it has that layout.
fn target_layout() -> Option<(PathBuf, String)> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    let profile_dir = deps.parent()?;
    let target = profile_dir.parent()?;
    let profile = match profile_dir.file_name()?.to_str()? {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    Some((target.to_path_buf(), profile))
}

fn build() -> Binaries {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or_else(|| Path::new(".."));
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["-p", "streamfleet-edge", "-p", "streamfleet-operator", "--bins"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The variables cargo sets for the running test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, …)
    // must not leak into the nested build: build scripts that track them (ring's does) would
    // see a change, rebuild, and make the next ordinary build rebuild again.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if is_per_package_cargo_var(name) {
            cmd.env_remove(name);
        }
    }
    if let Some((target, profile)) = target_layout() {
        cmd.arg("--target-dir").arg(target).args(["--profile", &profile]);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo to build the binaries under test: {e}"));
    assert!(out.status.success(), "cargo build -p streamfleet-edge -p streamfleet-operator failed ({})", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let find = |name: &str| -> PathBuf {
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| panic!("cargo build reported no executable for {name}"))
    };
    Binaries { edge: pin(&find("streamfleet-edge")), operator: pin(&find("streamfleet-operator")) }
}

/// A hard link to `exe` that no later build replaces: other cargo runs in the same target
/// directory re-link `target/debug/<bin>` while tests are running, and a test must not find
/// the file missing or changed under it. Named by the build's size and mtime, so one link
/// serves every test process of a build; links older than a day are pruned.
fn pin(exe: &Path) -> PathBuf {
    let (Some(dir), Some(name), Ok(meta)) = (exe.parent(), exe.file_name(), std::fs::metadata(exe)) else {
        return exe.to_path_buf();
    };
    let stamp = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let pinned_dir = dir.join("fleet-test-bins");
    let _ = std::fs::create_dir_all(&pinned_dir);
    let pinned = pinned_dir.join(format!("{}-{}-{stamp}", name.to_string_lossy(), meta.len()));
    if pinned.exists() || std::fs::hard_link(exe, &pinned).is_ok() || pinned.exists() {
        prune(&pinned_dir, &pinned);
        return pinned;
    }
    exe.to_path_buf()
}

fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let day = std::time::Duration::from_secs(86_400);
    for e in entries.flatten() {
        let old =
            e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|m| m.elapsed().ok()).is_some_and(|a| a > day);
        if old && e.path() != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Environment variables cargo sets when it runs a package's test, as opposed to the ones a
/// user sets to configure cargo (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_BUILD_*`, …).
fn is_per_package_cargo_var(name: &str) -> bool {
    const EXACT: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
}
