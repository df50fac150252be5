//! `flowgrad-worker`: the fleet's worker process.

use std::sync::Arc;

use flowgrad_engine::{Assets, ModelRegistry};
use flowgrad_worker::settings::{DEFAULTS, WorkerSection};
use flowgrad_worker::{Worker, WorkerMetrics};
use tracing::warn;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowgrad_backend::tune_allocator();
    let metrics = WorkerMetrics::new();
    let started = flowgrad_service::start::<WorkerSection>(DEFAULTS, metrics.registry.clone()).await?;
    let settings = started.config.service.worker.clone();
    tracing::info!(backend = flowgrad_backend::name(), "worker ready");
    let models = Arc::new(
        ModelRegistry::with_catalog(
            Assets::from_option(settings.assets.clone()),
            started.config.service.models.clone(),
        )
        .with_recorded_forwards(settings.recorded_forwards),
    );
    let grace = settings.shutdown_grace();
    let worker = Worker::new(started.store, started.broker, models, settings, metrics)?;
    started.readiness.set(true);
    let shutdown = started.shutdown;
    let token = shutdown.clone();
    let mut running = tokio::spawn(async move { worker.run(token).await });
    tokio::select! {
        finished = &mut running => return finished?,
        _ = shutdown.cancelled() => {}
    }
    started.readiness.set(false);
    match tokio::time::timeout(grace, running).await {
        Ok(finished) => finished?,
        Err(_) => {
            warn!(
                ?grace,
                "grace period over: abandoning the current iteration (the last checkpoint stands; the task is redelivered)"
            );
            std::process::exit(0);
        }
    }
}
