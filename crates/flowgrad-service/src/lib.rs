//! Shared plumbing of `flowgrad-worker` and `flowgrad-coordinator`: configuration (defaults ←
//! `flowgrad.toml` ← `FLOWGRAD__SECTION__KEY` environment), JSON logging, `/healthz` `/readyz`
//! `/metrics`, SIGTERM handling, and connecting storage and broker from configuration.

pub mod config;
pub mod connect;
pub mod http;
pub mod shutdown;
pub mod telemetry;

pub use config::{FleetConfig, HttpConfig, LogConfig, LogFormat, StorageConfig, instance_id, section_defaults};
pub use connect::{connect_broker, connect_store};
pub use http::{Readiness, serve, watch_dependencies};
pub use shutdown::shutdown_on_signals;
pub use telemetry::init_logging;

/// Command line of both service binaries.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
pub struct ServiceArgs {
    /// Configuration file (TOML); `FLOWGRAD__SECTION__KEY` variables override it.
    #[arg(long, env = "FLOWGRAD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

/// A started service: its configuration, connections, readiness flag and shutdown token.
pub struct Started<S> {
    /// The loaded configuration.
    pub config: FleetConfig<S>,
    /// Object storage (with retries).
    pub store: flowgrad_storage::SharedStore,
    /// The broker.
    pub broker: flowgrad_queue::SharedBroker,
    /// Set to true once the service consumes (`/readyz` also needs broker and storage reachable).
    pub readiness: Readiness,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Parses the command line, loads the configuration (`service_defaults` for the service's own
/// section), starts logging, the probe/metrics endpoint serving `registry`, and connects.
pub async fn start<S: serde::de::DeserializeOwned + std::fmt::Debug>(
    service_defaults: &str,
    registry: prometheus::Registry,
) -> anyhow::Result<Started<S>> {
    use clap::Parser;
    let args = ServiceArgs::parse();
    let config: FleetConfig<S> = FleetConfig::load(args.config.as_deref(), service_defaults)?;
    init_logging(&config.log);
    tracing::info!(storage = ?config.storage, broker = ?config.broker, service = ?config.service, "starting");
    let shutdown = shutdown_on_signals();
    let readiness = Readiness::default();
    serve(&config.http.listen, registry, readiness.clone(), shutdown.child_token()).await?;
    let store = connect_store(&config.storage, &config.storage_retry).await?;
    let broker = connect_broker(&config.broker).await?;
    let interval = std::time::Duration::from_millis(config.http.ready_check_ms.max(1));
    watch_dependencies(readiness.clone(), store.clone(), broker.clone(), interval, shutdown.child_token());
    Ok(Started { config, store, broker, readiness, shutdown })
}
