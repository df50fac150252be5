//! Shared plumbing of `flowgrad-worker` and `flowgrad-coordinator`: configuration (defaults ←
//! `flowgrad.toml` ← `FLOWGRAD__SECTION__KEY` environment), JSON logging, `/healthz` `/readyz`
//! `/metrics`, SIGTERM handling, and connecting storage and broker from configuration.

pub mod config;
pub mod connect;
pub mod http;
pub mod shutdown;
pub mod telemetry;

pub use config::{FleetConfig, HttpConfig, LogConfig, LogFormat, StorageConfig};
pub use connect::{connect_broker, connect_store};
pub use http::{Readiness, serve};
pub use shutdown::shutdown_on_signals;
pub use telemetry::init_logging;
