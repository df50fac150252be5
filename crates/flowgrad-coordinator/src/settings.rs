//! The `[coordinator]` configuration section.

use std::time::Duration;

use serde::Deserialize;

/// Coordinator settings (`[coordinator]`, `FLOWGRAD__COORDINATOR__...`).
#[derive(Debug, Clone, Deserialize)]
pub struct CoordinatorSettings {
    /// Name in logs and job leases (defaults to host name and process id).
    #[serde(default = "flowgrad_service::instance_id")]
    pub id: String,
    /// Milliseconds between status refreshes of active jobs.
    pub status_interval_ms: u64,
    /// Jobs handled concurrently (prefetch of the jobs queue).
    pub job_prefetch: u16,
    /// Seconds without renewal after which another coordinator adopts a job (each coordinator
    /// renews its jobs' leases on every status refresh; keep it well above the interval).
    pub lease_seconds: f64,
}

/// The coordinator's own sections of the fleet configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct CoordinatorSection {
    /// `[coordinator]`.
    pub coordinator: CoordinatorSettings,
    /// `[models]`: which optional models the workers serve (jobs are validated against it).
    #[serde(default)]
    pub models: flowgrad_catalog::ModelCatalog,
}

/// TOML defaults of `[coordinator]`.
pub const DEFAULTS: &str = r#"
[coordinator]
status_interval_ms = 1000
job_prefetch = 4
lease_seconds = 30.0
"#;

impl CoordinatorSettings {
    /// The refresh interval.
    pub fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms)
    }
}
