//! The operator's one error type. Problems with a LiveStream itself (missing Secret, conflict,
//! invalid spec) are not errors: reconcile reports them in status and Events and succeeds. What
//! remains here is what a retry can fix (API server or registry unavailable) plus invariant
//! breaks, and `metric_label` names each for `reconcile_errors_total{reason}`.

use streamfleet_registry::RegistryError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),

    /// A registry call failed (usually Redis unreachable).
    #[error("registry: {0}")]
    Registry(#[source] Box<RegistryError>),

    /// Adding or removing the finalizer, or the apply/cleanup inside it, failed. Boxed because
    /// `finalizer::Error` wraps this very type.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// The object lacks a field the API server always sets (name, namespace).
    #[error("LiveStream has no {0}")]
    MissingObjectKey(&'static str),

    /// Building a request body failed.
    #[error("serializing: {0}")]
    Serialization(#[source] serde_json::Error),
}

impl Error {
    /// Stable label for `reconcile_errors_total{reason}`: the innermost cause, so a Redis outage
    /// during cleanup counts as `registry_unavailable`, not as a finalizer problem.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(kube::Error::Api(s)) if s.is_not_found() => "kube_not_found",
            Error::Kube(kube::Error::Api(s)) if s.is_conflict() => "kube_conflict",
            Error::Kube(kube::Error::Api(s)) if s.is_forbidden() => "kube_forbidden",
            Error::Kube(_) => "kube",
            Error::Registry(e) if matches!(**e, RegistryError::Unavailable(_)) => "registry_unavailable",
            Error::Registry(_) => "registry",
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "finalizer_patch",
                F::UnnamedObject | F::InvalidFinalizer => "finalizer",
            },
            Error::MissingObjectKey(_) => "missing_object_key",
            Error::Serialization(_) => "serialization",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::Registry(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_innermost_cause() {
        let inner = Error::from(RegistryError::Unavailable("connection refused".into()));
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(inner)));
        assert_eq!(wrapped.metric_label(), "registry_unavailable");
        assert_eq!(Error::MissingObjectKey("metadata.namespace").metric_label(), "missing_object_key");
        assert_eq!(Error::from(RegistryError::Invalid("x".into())).metric_label(), "registry");
    }
}

/// Why `streamfleet-operator run` could not start (or stopped): each names what to check.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no Kubernetes client configuration (in-cluster service account or KUBECONFIG): {0}")]
    KubeConfig(#[source] kube::Error),
    #[error(
        "cannot list LiveStreams; is the CRD installed (kubectl apply -f crds/livestream.yaml) and RBAC granted? {0}"
    )]
    Crd(#[source] kube::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry_client::ConnectError),
    #[error("binding the HTTP listener {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Leader(#[from] crate::leader::LeaderError),
}
