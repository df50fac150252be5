//! `flowgrad-coordinator`: the fleet's job coordinator process.

use std::sync::Arc;

use flowgrad_coordinator::settings::{CoordinatorSection, DEFAULTS};
use flowgrad_coordinator::{Coordinator, CoordinatorMetrics};
use flowgrad_engine::ModelRegistry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let metrics = CoordinatorMetrics::new();
    let started = flowgrad_service::start::<CoordinatorSection>(DEFAULTS, metrics.registry.clone()).await?;
    // validation only: the coordinator never loads weights
    let models = Arc::new(ModelRegistry::with_catalog(flowgrad_engine::Assets::Embedded, started.config.service.models.clone()));
    let coordinator = Coordinator::new(started.store, started.broker, models, started.config.service.coordinator.clone(), metrics);
    started.readiness.set(true);
    coordinator.run(started.shutdown).await
}
