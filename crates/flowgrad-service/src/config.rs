//! Configuration of the fleet's services, loaded with the `config` crate.

use std::path::{Path, PathBuf};

use flowgrad_queue::RabbitConfig;
use flowgrad_storage::{RetryPolicy, S3Config};
use serde::Deserialize;

/// Where objects live.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StorageConfig {
    /// An S3-compatible service.
    S3 {
        /// Endpoint, bucket and credentials (credentials are redacted in Debug).
        #[serde(flatten)]
        s3: S3Config,
    },
    /// A local directory (single machine, tests, embedded mode).
    Local {
        /// Root folder.
        root: PathBuf,
    },
}

/// The HTTP endpoint for probes and metrics.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// Listen address, e.g. "0.0.0.0:9090" (port 0 picks a free one).
    pub listen: String,
    /// Milliseconds between the readiness checks of broker and storage.
    pub ready_check_ms: u64,
}

/// Log output.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line (services).
    Json,
    /// Human-readable (local runs).
    Pretty,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// `tracing` filter, e.g. "info,flowgrad_worker=debug" (overridden by RUST_LOG).
    pub filter: String,
}

/// Everything both services read, plus each service's own section `S`.
#[derive(Debug, Clone, Deserialize)]
pub struct FleetConfig<S> {
    /// Object storage.
    pub storage: StorageConfig,
    /// Retries of storage calls (defaults: 100 ms doubling to 5 s, give up after 120 s).
    #[serde(default)]
    pub storage_retry: RetryPolicy,
    /// RabbitMQ connection and topology (defaults: `RabbitConfig::default()`).
    #[serde(default)]
    pub broker: RabbitConfig,
    /// Probe/metrics endpoint.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// The service's own settings (`[worker]` or `[coordinator]`).
    #[serde(flatten)]
    pub service: S,
}

/// The default name of a service instance in logs, events, results and leases: the host name
/// (the pod name on Kubernetes) and the process id, so two instances never share one.
pub fn instance_id() -> String {
    format!("{}-{}", gethostname::gethostname().to_string_lossy(), std::process::id())
}

/// Built-in defaults (JSON logs, port 9090; the broker's are `RabbitConfig::default()`, a local
/// RabbitMQ); storage has no default.
const DEFAULTS: &str = r#"
[http]
listen = "0.0.0.0:9090"
ready_check_ms = 1000
[log]
format = "json"
filter = "info"
"#;

impl<S: serde::de::DeserializeOwned> FleetConfig<S> {
    /// Loads defaults, then `file` (TOML, if given), then `FLOWGRAD__SECTION__KEY` variables
    /// (e.g. `FLOWGRAD__STORAGE__SECRET_ACCESS_KEY`), then checks the result.
    /// `service_defaults` is TOML for the service's own section.
    pub fn load(file: Option<&Path>, service_defaults: &str) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(service_defaults, config::FileFormat::Toml));
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml).required(true));
        }
        let settings = builder
            .add_source(
                config::Environment::with_prefix("FLOWGRAD").prefix_separator("__").separator("__").try_parsing(true),
            )
            .build()?;
        let loaded: Self = settings.try_deserialize()?;
        Ok(loaded)
    }
}

/// A service's own sections from its TOML defaults alone (no file, no environment): the
/// settings a fleet embedded in one process runs with, so they never drift from the services'.
pub fn section_defaults<S: serde::de::DeserializeOwned>(service_defaults: &str) -> anyhow::Result<S> {
    let settings = config::Config::builder()
        .add_source(config::File::from_str(service_defaults, config::FileFormat::Toml))
        .build()?;
    Ok(settings.try_deserialize()?)
}
