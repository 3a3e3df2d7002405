//! The LiveStream + Secret manifests a fleet test applies with `streamfleet-operator sync`,
//! exactly as a user would write them for `kubectl apply`, and a scratch directory for them.

use std::path::{Path, PathBuf};

/// One LiveStream with its own Secret holding the publish key.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// `metadata.name`, also the playback name.
    pub name: String,
    pub publish_key: String,
    /// `spec.takeoverPolicy`: `ReplaceIdle` (the CRD's default), `Reject` or `Replace`.
    pub takeover_policy: &'static str,
    /// `spec.maxViewers` (none: no limit).
    pub max_viewers: Option<u32>,
}

impl StreamSpec {
    /// A stream named `name` with the key `<name>-publish-key` and the default policy.
    pub fn new(name: &str) -> StreamSpec {
        StreamSpec {
            name: name.into(),
            publish_key: format!("{name}-publish-key"),
            takeover_policy: "ReplaceIdle",
            max_viewers: None,
        }
    }

    pub fn max_viewers(mut self, max: u32) -> StreamSpec {
        self.max_viewers = Some(max);
        self
    }

    pub fn policy(mut self, policy: &'static str) -> StreamSpec {
        self.takeover_policy = policy;
        self
    }
}

/// Renders the streams as one multi-document YAML file (namespace `default`).
pub fn render(streams: &[StreamSpec]) -> String {
    streams
        .iter()
        .map(|s| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-key}}\nstringData: {{publishKey: {key}}}\n---\n\
                 apiVersion: streamfleet.io/v1alpha1\nkind: LiveStream\nmetadata: {{name: {name}}}\nspec:\n  \
                 publishKeySecretRef: {{name: {name}-key, key: publishKey}}\n  takeoverPolicy: {policy}\n{max}",
                name = s.name,
                max = s.max_viewers.map(|n| format!("  maxViewers: {n}\n")).unwrap_or_default(),
                key = s.publish_key,
                policy = s.takeover_policy,
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A private scratch directory for one fleet (manifests, relay secret), removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> ScratchDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sf-fleet-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        ScratchDir::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_load_into_records() {
        let yaml = render(&[StreamSpec::new("news"), StreamSpec::new("race").policy("Reject")]);
        let records = streamfleet_registry::manifest::load_manifests(&yaml, &streamfleet_registry::KeyHasher::legacy())
            .expect("valid manifests");
        assert_eq!(records.len(), 2);
        let race = records.iter().find(|r| r.playback_name == "race").expect("race");
        assert_eq!(race.takeover, streamfleet_registry::TakeoverPolicy::Reject);
        assert_eq!(race.key_hash, streamfleet_registry::KeyHash::of_key("race-publish-key"));
    }
}
