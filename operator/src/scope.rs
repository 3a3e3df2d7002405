//! What the operator watches: every namespace (one cluster-wide watch per kind, ClusterRole), or
//! a fixed list of namespaces (one watch per namespace and kind, Roles only). A namespace-scoped
//! operator must not need a single cluster-wide permission, so nothing here lists across
//! namespaces in that mode, and it only ever collects registry records of its own namespaces.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use kube::{
    Api, Client, Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use streamfleet_registry::{StreamId, api::LiveStream};

/// The namespaces one operator reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    Cluster,
    /// Only these (non-empty, sorted, without duplicates).
    Namespaces(Vec<String>),
}

impl Scope {
    /// An empty list means every namespace: the default install stays cluster-wide.
    pub fn from_list(namespaces: &[String]) -> Scope {
        let mut list: Vec<String> = namespaces.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
        list.sort();
        list.dedup();
        if list.is_empty() { Scope::Cluster } else { Scope::Namespaces(list) }
    }

    /// One `Api` per watch this scope needs.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match self {
            Scope::Cluster => vec![Api::all(client.clone())],
            Scope::Namespaces(list) => list.iter().map(|ns| Api::namespaced(client.clone(), ns)).collect(),
        }
    }

    /// Whether a stream in `namespace` is this operator's to manage.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespaces(list) => list.iter().any(|n| n == namespace),
        }
    }

    /// Whether `id` is this operator's: a record of a namespace outside the scope may belong to
    /// another operator sharing the registry and is never collected or touched.
    pub fn owns(&self, id: &StreamId) -> bool {
        self.contains(&id.namespace)
    }
}

/// Every LiveStream the controller knows, over the reflector stores of its watches (one per
/// namespace in a namespace-scoped install), each with an [`Index`] by playback name and by
/// key Secret kept from the same watch events.
#[derive(Clone, Default)]
pub struct Streams {
    parts: Vec<(Store<LiveStream>, Index)>,
}

impl Streams {
    pub fn new(parts: Vec<(Store<LiveStream>, Index)>) -> Self {
        Streams { parts }
    }

    /// Every cached LiveStream: O(N), for the orphan collector only (never per reconcile).
    pub fn state(&self) -> Vec<Arc<LiveStream>> {
        self.parts.iter().flat_map(|(s, _)| s.state()).collect()
    }

    /// The cached LiveStreams whose effective playback name is `name` (deleting ones
    /// included: callers judge claims). O(claimants), from the index; each candidate is checked
    /// against the store, so an index entry a missed event left behind never counts.
    pub fn claiming(&self, name: &str) -> Vec<Arc<LiveStream>> {
        let mut out = Vec::new();
        for (store, index) in &self.parts {
            for obj in index.lock().by_playback.get(name).into_iter().flatten() {
                if let Some(ls) = store.get(obj)
                    && playback_key(&ls).as_deref() == Some(name)
                {
                    out.push(ls);
                }
            }
        }
        out
    }

    /// The LiveStreams that keep their publish key in Secret `namespace/name` (by reference, or
    /// as their generated Secret), from the index: every Secret event asks this.
    pub fn using_secret(&self, namespace: &str, name: &str) -> Vec<ObjectRef<LiveStream>> {
        let key = (namespace.to_string(), name.to_string());
        let mut out = Vec::new();
        for (store, index) in &self.parts {
            for obj in index.lock().by_secret.get(&key).into_iter().flatten() {
                if store.get(obj).is_some_and(|ls| secret_key(&ls).as_ref() == Some(&key)) {
                    out.push(obj.clone());
                }
            }
        }
        out
    }

    /// Resolves once every store holds its first complete listing; `false` when a store's
    /// writer is gone (the controller is stopping).
    pub async fn wait_until_ready(&self) -> bool {
        for (s, _) in &self.parts {
            if s.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
    }
}

/// What a LiveStream is found by.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Keys {
    playback: Option<String>,
    secret: Option<(String, String)>,
}

/// The playback name a LiveStream claims (or would, were it not deleting).
fn playback_key(ls: &LiveStream) -> Option<String> {
    ls.effective_playback_name()
}

/// `(namespace, Secret name)` of the Secret holding a LiveStream's publish key.
fn secret_key(ls: &LiveStream) -> Option<(String, String)> {
    let ns = ls.metadata.namespace.clone()?;
    ls.metadata.name.as_ref()?;
    Some((ns, crate::secrets::key_location(ls).0))
}

/// LiveStreams of one watch by playback name and by key Secret, kept from that watch's events
/// ([`Index::observe`]), so a reconcile finds the claims on its name, and a Secret event the
/// streams using it, without walking every cached object (at 10,000 LiveStreams that walk was
/// most of the operator's CPU). Holds object references only; the objects stay in the store.
#[derive(Clone, Default)]
pub struct Index {
    inner: Arc<Mutex<IndexMaps>>,
}

#[derive(Default)]
struct IndexMaps {
    keys: HashMap<ObjectRef<LiveStream>, Keys>,
    by_playback: HashMap<String, HashSet<ObjectRef<LiveStream>>>,
    by_secret: HashMap<(String, String), HashSet<ObjectRef<LiveStream>>>,
    /// Objects listed since the watch restarted (`Init`), until `InitDone` drops the others.
    relisted: Option<HashSet<ObjectRef<LiveStream>>>,
}

impl Index {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexMaps> {
        // Each update leaves the maps consistent before the next call can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one event of the watch that feeds this index's store.
    pub fn observe(&self, event: &watcher::Event<LiveStream>) {
        let mut maps = self.lock();
        match event {
            watcher::Event::Apply(ls) => maps.insert(ls),
            watcher::Event::Delete(ls) => maps.remove(&ObjectRef::from_obj(ls)),
            watcher::Event::Init => maps.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(ls) => {
                maps.insert(ls);
                let obj = ObjectRef::from_obj(ls);
                if let Some(seen) = maps.relisted.as_mut() {
                    seen.insert(obj);
                }
            }
            watcher::Event::InitDone => {
                // Objects deleted while the watch was down got no Delete event.
                if let Some(seen) = maps.relisted.take() {
                    let gone: Vec<ObjectRef<LiveStream>> =
                        maps.keys.keys().filter(|o| !seen.contains(*o)).cloned().collect();
                    for obj in gone {
                        maps.remove(&obj);
                    }
                }
            }
        }
    }

    /// How many objects are indexed.
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IndexMaps {
    fn insert(&mut self, ls: &LiveStream) {
        let obj = ObjectRef::from_obj(ls);
        let keys = Keys { playback: playback_key(ls), secret: secret_key(ls) };
        if self.keys.get(&obj) == Some(&keys) {
            return;
        }
        self.remove(&obj);
        if let Some(p) = &keys.playback {
            self.by_playback.entry(p.clone()).or_default().insert(obj.clone());
        }
        if let Some(s) = &keys.secret {
            self.by_secret.entry(s.clone()).or_default().insert(obj.clone());
        }
        self.keys.insert(obj, keys);
    }

    fn remove(&mut self, obj: &ObjectRef<LiveStream>) {
        let Some(keys) = self.keys.remove(obj) else { return };
        if let Some(p) = keys.playback
            && let Some(set) = self.by_playback.get_mut(&p)
        {
            set.remove(obj);
            if set.is_empty() {
                self.by_playback.remove(&p);
            }
        }
        if let Some(s) = keys.secret
            && let Some(set) = self.by_secret.get_mut(&s)
        {
            set.remove(obj);
            if set.is_empty() {
                self.by_secret.remove(&s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_is_the_whole_cluster() {
        assert_eq!(Scope::from_list(&[]), Scope::Cluster);
        assert_eq!(Scope::from_list(&[" ".into(), String::new()]), Scope::Cluster);
        let s = Scope::from_list(&["b".into(), "a".into(), "b".into()]);
        assert_eq!(s, Scope::Namespaces(vec!["a".into(), "b".into()]));
        assert!(s.contains("a") && !s.contains("c"));
        assert!(Scope::Cluster.contains("anything"));
        assert!(!s.owns(&StreamId::new("c", "x")));
        assert!(s.owns(&StreamId::new("b", "x")));
    }

    fn stream(ns: &str, name: &str, playback: Option<&str>, secret_ref: Option<&str>) -> LiveStream {
        use streamfleet_registry::api::{LiveStreamSpec, SecretKeyRef};
        let mut ls = LiveStream::new(
            name,
            LiveStreamSpec {
                playback_name: playback.map(str::to_string),
                publish_key_secret_ref: secret_ref
                    .map(|s| SecretKeyRef { name: s.to_string(), key: crate::secrets::PUBLISH_KEY.to_string() }),
                ..LiveStreamSpec::default()
            },
        );
        ls.metadata.namespace = Some(ns.into());
        ls
    }

    /// A store and its index fed the same events, as the controller's watch feeds them.
    fn watched(
        events: &[watcher::Event<LiveStream>],
    ) -> (Streams, kube::runtime::reflector::store::Writer<LiveStream>, Index) {
        let (store, mut writer) = kube::runtime::reflector::store::<LiveStream>();
        let index = Index::default();
        for e in events {
            writer.apply_watcher_event(e);
            index.observe(e);
        }
        (Streams::new(vec![(store, index.clone())]), writer, index)
    }

    fn names(v: Vec<Arc<LiveStream>>) -> Vec<String> {
        let mut n: Vec<String> = v.iter().filter_map(|ls| ls.stream_id()).map(|id| id.to_string()).collect();
        n.sort();
        n
    }

    #[test]
    fn claims_are_found_by_playback_name_and_follow_renames_and_deletes() {
        use watcher::Event::{Apply, Delete};
        let news = stream("a", "news", None, None);
        let renamed = stream("b", "feed", Some("news"), None);
        let (streams, mut writer, index) = watched(&[Apply(news.clone()), Apply(renamed.clone())]);
        assert_eq!(names(streams.claiming("news")), ["a/news", "b/feed"]);
        assert!(streams.claiming("feed").is_empty(), "b/feed plays as news");

        // b/feed renames its playback name; a/news is deleted.
        let moved = stream("b", "feed", Some("sport"), None);
        for e in [Apply(moved), Delete(news)] {
            writer.apply_watcher_event(&e);
            index.observe(&e);
        }
        assert!(streams.claiming("news").is_empty());
        assert_eq!(names(streams.claiming("sport")), ["b/feed"]);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_relist_drops_what_was_deleted_while_the_watch_was_down() {
        use watcher::Event::{Apply, Init, InitApply, InitDone};
        let (a, b) = (stream("x", "a", None, None), stream("x", "b", None, None));
        let (streams, mut writer, index) = watched(&[Apply(a.clone()), Apply(b)]);
        for e in [Init, InitApply(a), InitDone] {
            writer.apply_watcher_event(&e);
            index.observe(&e);
        }
        assert_eq!(index.len(), 1);
        assert!(streams.claiming("b").is_empty());
        assert_eq!(names(streams.claiming("a")), ["x/a"]);
    }

    #[test]
    fn secrets_map_to_the_streams_using_them() {
        use watcher::Event::Apply;
        let (streams, _writer, _index) = watched(&[
            Apply(stream("media", "news", None, Some("shared-key"))),
            Apply(stream("media", "sport", None, None)),
            Apply(stream("other", "news", None, Some("shared-key"))),
        ]);
        assert_eq!(streams.using_secret("media", "shared-key"), vec![ObjectRef::new("news").within("media")]);
        assert_eq!(streams.using_secret("media", "sport-publish-key"), vec![ObjectRef::new("sport").within("media")]);
        assert!(streams.using_secret("media", "unrelated").is_empty());
        assert!(streams.using_secret("media", "news-publish-key").is_empty(), "news has a ref");
        assert!(streams.using_secret("media", "-publish-key").is_empty());
    }
}
