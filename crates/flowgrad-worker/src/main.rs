//! `flowgrad-worker`: the fleet's worker process.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use flowgrad_engine::ModelRegistry;
use flowgrad_service::{FleetConfig, Readiness, connect_broker, connect_store, init_logging, serve, shutdown_on_signals};
use flowgrad_worker::settings::{DEFAULTS, WorkerSection};
use flowgrad_worker::{Worker, WorkerMetrics};
use tracing::{info, warn};

/// Runs FlowGrad edit tasks from RabbitMQ on images in S3.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); `FLOWGRAD__SECTION__KEY` variables override it.
    #[arg(long, env = "FLOWGRAD_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: FleetConfig<WorkerSection> = FleetConfig::load(args.config.as_deref(), DEFAULTS)?;
    init_logging(&config.log);
    let settings = config.service.worker.clone();
    info!(worker = %settings.id, backend = flowgrad_engine::backend::name(), storage = ?config.storage, broker = ?config.broker, "starting worker");
    let shutdown = shutdown_on_signals();
    let metrics = WorkerMetrics::new();
    let readiness = Readiness::default();
    serve(&config.http.listen, metrics.registry.clone(), readiness.clone(), shutdown.child_token()).await?;
    let store = connect_store(&config.storage, &config.storage_retry).await?;
    let broker = connect_broker(&config.broker).await?;
    let models = Arc::new(ModelRegistry::new(&settings.assets));
    let grace = settings.shutdown_grace();
    let worker = Worker::new(store, broker, models, settings, metrics);
    readiness.set(true);
    let token = shutdown.clone();
    let mut running = tokio::spawn(async move { worker.run(token).await });
    tokio::select! {
        finished = &mut running => return finished?,
        _ = shutdown.cancelled() => {}
    }
    readiness.set(false);
    match tokio::time::timeout(grace, running).await {
        Ok(finished) => finished?,
        Err(_) => {
            warn!(?grace, "grace period over: abandoning the current iteration (the last checkpoint stands; the task is redelivered)");
            std::process::exit(0);
        }
    }
}
