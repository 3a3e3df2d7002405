//! What the operator watches: every namespace (one cluster-wide watch per kind, ClusterRole), or
//! a fixed list of namespaces (one watch per namespace and kind, Roles only). A namespace-scoped
//! operator must not need a single cluster-wide permission, so nothing here lists across
//! namespaces in that mode, and it only ever collects registry records of its own namespaces.

use std::sync::Arc;

use kube::{Api, Client, Resource, runtime::reflector::Store};
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
/// namespace in a namespace-scoped install).
#[derive(Clone, Default)]
pub struct Streams {
    stores: Vec<Store<LiveStream>>,
}

impl Streams {
    pub fn new(stores: Vec<Store<LiveStream>>) -> Self {
        Streams { stores }
    }

    pub fn state(&self) -> Vec<Arc<LiveStream>> {
        self.stores.iter().flat_map(|s| s.state()).collect()
    }

    /// Resolves once every store holds its first complete listing; `false` when a store's
    /// writer is gone (the controller is stopping).
    pub async fn wait_until_ready(&self) -> bool {
        for s in &self.stores {
            if s.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
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
}
