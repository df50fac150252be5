//! `/healthz` (process up), `/readyz` (dependencies reachable), `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use flowgrad_queue::{Queue, SharedBroker};
use flowgrad_storage::SharedStore;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// What `/readyz` reports: ready while the service consumes ([`Readiness::set`]) and its broker
/// and storage answered the last dependency check ([`watch_dependencies`]). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    serving: Arc<AtomicBool>,
    broker: Arc<AtomicBool>,
    storage: Arc<AtomicBool>,
}

impl Readiness {
    /// Marks the service as consuming (or stopping).
    pub fn set(&self, ready: bool) {
        self.serving.store(ready, Ordering::SeqCst);
    }

    /// Why the service is not ready (empty when it is).
    fn problems(&self) -> Vec<&'static str> {
        [(&self.serving, "not consuming"), (&self.broker, "broker unreachable"), (&self.storage, "storage unreachable")]
            .into_iter()
            .filter(|(flag, _)| !flag.load(Ordering::SeqCst))
            .map(|(_, problem)| problem)
            .collect()
    }
}

/// Object key a readiness check reads (it need not exist: any answer proves storage reachable).
const PROBE_KEY: &str = "flowgrad-readiness-probe";

/// Checks the broker (the tasks queue's depth) and storage (a read) now and every `interval`
/// until `shutdown`, each check bounded by `interval` (at least a second), and caches the
/// answers `/readyz` reports; changes are logged. Liveness (`/healthz`) does not depend on them.
pub fn watch_dependencies(
    readiness: Readiness,
    store: SharedStore,
    broker: SharedBroker,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let limit = interval.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let (broker_ok, storage_ok) = tokio::join!(
                tokio::time::timeout(limit, broker.depth(Queue::Tasks)),
                tokio::time::timeout(limit, store.get(PROBE_KEY)),
            );
            record(&readiness.broker, "broker", matches!(broker_ok, Ok(Ok(_))));
            record(&readiness.storage, "storage", matches!(storage_ok, Ok(Ok(_))));
        }
    });
}

fn record(flag: &AtomicBool, dependency: &str, reachable: bool) {
    let was = flag.swap(reachable, Ordering::SeqCst);
    match (was, reachable) {
        (true, false) => tracing::warn!(dependency, "dependency unreachable: not ready"),
        (false, true) => tracing::info!(dependency, "dependency reachable"),
        _ => {}
    }
}

/// Binds `listen` and serves the probes and `registry`'s metrics until `shutdown`; returns the
/// bound address (useful with port 0).
pub async fn serve(
    listen: &str,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let problems = readiness.problems();
                async move {
                    if problems.is_empty() {
                        (StatusCode::OK, "ready".to_string())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}", problems.join(", ")))
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = Vec::new();
                    TextEncoder::new()
                        .encode(&registry.gather(), &mut body)
                        .map(|_| body)
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                }
            }),
        );
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(err) = served {
            tracing::error!(%err, "http server stopped");
        }
    });
    tracing::info!(%address, "serving /healthz /readyz /metrics");
    Ok(address)
}
