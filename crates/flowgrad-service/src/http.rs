//! `/healthz` (process up), `/readyz` (dependencies reachable), `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// Shared readiness flag, set once storage and broker are connected.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the service ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Current readiness.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Binds `listen` and serves the probes and `registry`'s metrics until `shutdown`; returns the
/// bound address (useful with port 0).
pub async fn serve(listen: &str, registry: Registry, readiness: Readiness, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.get();
                async move { if ready { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") } }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = Vec::new();
                    TextEncoder::new().encode(&registry.gather(), &mut body).map(|_| body).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
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
