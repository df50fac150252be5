//! `flowgrad-coordinator`: the fleet's job coordinator process.

use flowgrad_coordinator::settings::{CoordinatorSection, DEFAULTS};
use flowgrad_coordinator::{Coordinator, CoordinatorMetrics};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let metrics = CoordinatorMetrics::new();
    let started = flowgrad_service::start::<CoordinatorSection>(DEFAULTS, metrics.registry.clone()).await?;
    // jobs are validated against the configured catalog: the coordinator never loads weights
    let coordinator = Coordinator::new(
        started.store,
        started.broker,
        started.config.service.models.clone(),
        started.config.service.coordinator.clone(),
        metrics,
    );
    started.readiness.set(true);
    coordinator.run(started.shutdown).await
}
