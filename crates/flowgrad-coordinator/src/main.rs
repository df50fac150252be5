//! `flowgrad-coordinator`: the fleet's job coordinator process.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use flowgrad_coordinator::settings::{CoordinatorSection, DEFAULTS};
use flowgrad_coordinator::{Coordinator, CoordinatorMetrics};
use flowgrad_engine::ModelRegistry;
use flowgrad_service::{FleetConfig, Readiness, connect_broker, connect_store, init_logging, serve, shutdown_on_signals};
use tracing::info;

/// Accepts FlowGrad edit jobs from RabbitMQ, publishes tasks and reports progress in S3.
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
    let config: FleetConfig<CoordinatorSection> = FleetConfig::load(args.config.as_deref(), DEFAULTS)?;
    init_logging(&config.log);
    let settings = config.service.coordinator.clone();
    info!(coordinator = %settings.id, storage = ?config.storage, broker = ?config.broker, "starting coordinator");
    let shutdown = shutdown_on_signals();
    let metrics = CoordinatorMetrics::new();
    let readiness = Readiness::default();
    serve(&config.http.listen, metrics.registry.clone(), readiness.clone(), shutdown.child_token()).await?;
    let store = connect_store(&config.storage, &config.storage_retry).await?;
    let broker = connect_broker(&config.broker).await?;
    // validation only: weights are never loaded by the coordinator
    let models = Arc::new(ModelRegistry::new(ModelRegistry::bundled_assets()));
    let coordinator = Coordinator::new(store, broker, models, settings, metrics);
    readiness.set(true);
    coordinator.run(shutdown).await
}
