//! `streamfleet-operator run`: the HTTP endpoints on every replica, leader election, and the
//! controller on the leader, all stopped together by SIGTERM or Ctrl-C.

use std::sync::Arc;

use futures::FutureExt;
use kube::{Client, api::ListParams};
use streamfleet_registry::api::LiveStream;

use crate::{
    config::RunArgs,
    controller::{self, ControllerOptions, Settings},
    error::StartError,
    http::{self, HttpState},
    leader::{self, LeaderConfig},
    metrics::Metrics,
    registry_client,
    scope::Scope,
};

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

pub async fn run(args: RunArgs) -> Result<(), StartError> {
    let client = Client::try_default().await.map_err(StartError::KubeConfig)?;
    let registry = registry_client::connect(&args.registry).await?;
    let key_hasher = {
        let registry_args = args.registry.clone();
        tokio::task::spawn_blocking(move || registry_client::key_hasher(&registry_args))
            .await
            .map_err(|e| registry_client::ConnectError::KeyHashSecret(e.to_string()))??
    };
    let metrics = Metrics::new();
    let shutdown = shutdown_signal().boxed().shared();

    let listener = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .map_err(|source| StartError::Bind { addr: args.http_listen, source })?;
    tracing::info!(addr = %args.http_listen, "serving /metrics, /healthz, /readyz");
    let state = HttpState { metrics: metrics.clone(), registry: Some(registry.clone()) };
    let http = tokio::spawn(http::serve(listener, state, shutdown.clone()));

    let scope = Scope::from_list(&args.watch_namespaces);
    match &scope {
        Scope::Cluster => tracing::info!("watching LiveStreams and Secrets in every namespace"),
        Scope::Namespaces(list) => {
            tracing::info!(namespaces = ?list, "watching LiveStreams and Secrets in these namespaces only")
        }
    }
    // Checked the way the controller will list: a namespace-scoped install has no cluster-wide
    // list permission, and each of its namespaces must be readable.
    for api in scope.apis::<LiveStream>(&client) {
        api.list(&ListParams::default().limit(1)).await.map_err(StartError::Crd)?;
    }

    let identity = args
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "streamfleet-operator".to_string());
    let opts = ControllerOptions {
        settings: Settings {
            live_requeue: args.live_requeue,
            idle_requeue: args.idle_requeue,
            status_min_interval: args.status_min_interval,
            key_hasher,
            require_strong_keys: args.require_strong_publish_keys,
            scope: scope.clone(),
            live_patch_rate: args.live_patch_rate,
        },
        identity: identity.clone(),
        gc_interval: args.gc_interval,
        epoch_poll: args.epoch_poll,
        concurrency: args.reconcile_concurrency,
    };
    let work = {
        let (client, registry, metrics, shutdown) =
            (client.clone(), registry.clone(), metrics.clone(), shutdown.clone());
        move || {
            controller::controller(client.clone(), registry.clone(), metrics.clone(), opts.clone(), shutdown.clone())
        }
    };
    let result = if args.leader_election {
        let cfg = LeaderConfig {
            lease_name: args.lease_name.clone(),
            namespace: args.pod_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string()),
            identity,
            duration: args.lease_duration,
        };
        leader::lead(client, cfg, Arc::clone(&metrics), shutdown.clone(), work).await.map_err(StartError::from)
    } else {
        tracing::info!("leader election disabled: this replica reconciles");
        metrics.is_leader.set(1);
        work().await;
        Ok(())
    };
    // The controller stopped (shutdown or a leadership failure): stop serving too.
    drop(shutdown);
    if result.is_ok() {
        let _ = http.await;
    }
    result
}
