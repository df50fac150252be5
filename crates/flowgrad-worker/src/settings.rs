//! The `[worker]` configuration section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Worker settings (`[worker]` in flowgrad.toml, `FLOWGRAD__WORKER__...` in the environment).
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Name in logs, events and result records (defaults to host name and process id).
    #[serde(default = "flowgrad_service::instance_id")]
    pub id: String,
    /// Folder with the bundled models' weights; unset: the copies built into the binary.
    #[serde(default)]
    pub assets: Option<PathBuf>,
    /// Seconds to finish the current iteration after SIGTERM before exiting anyway; keep it
    /// below the pod's terminationGracePeriodSeconds and above one iteration + checkpoint.
    pub shutdown_grace_seconds: u64,
    /// Deliveries of a task after which a transient failure is final (must stay below the
    /// broker's delivery limit, which catches tasks that crash the worker itself).
    pub max_attempts: u32,
    /// First retry delay in milliseconds, doubled per attempt (at most 30 s).
    pub retry_backoff_ms: u64,
    /// Largest input image accepted, in bytes.
    pub max_image_bytes: usize,
    /// Forward passes an edit's simulation holds at most for its VJPs to reuse (each one
    /// forward's activations; 0 = the paper's memory, every VJP runs its own forward); unset:
    /// the engine's default for the model (`flowgrad_engine::BUNDLED_RECORDED_FORWARDS` for the
    /// bundled models, 0 for NCSN++).
    #[serde(default)]
    pub recorded_forwards: Option<usize>,
    /// CPU threads of this worker's own pool for the editor's kernels; unset: the process's
    /// shared pool, one thread per core (right for one worker per process, as in Kubernetes).
    #[serde(default)]
    pub kernel_threads: Option<usize>,
}

/// The worker's own sections of the fleet configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSection {
    /// `[worker]`.
    pub worker: WorkerSettings,
    /// `[models]`: optional NCSN++ and CLIP checkpoints (shared with the coordinators).
    #[serde(default)]
    pub models: flowgrad_catalog::ModelCatalog,
}

/// TOML defaults of `[worker]`.
pub const DEFAULTS: &str = r#"
[worker]
shutdown_grace_seconds = 25
max_attempts = 4
retry_backoff_ms = 500
max_image_bytes = 33554432
"#;

impl WorkerSettings {
    /// The grace period as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// Delay before requeueing after the `attempt`-th failure.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        Duration::from_millis(self.retry_backoff_ms.saturating_mul(1 << attempt.min(16))).min(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_configured_id_a_worker_is_named_by_its_host_and_process() {
        let file = std::env::temp_dir().join(format!("flowgrad-worker-id-{}.toml", std::process::id()));
        std::fs::write(&file, "[storage]\nkind = \"local\"\nroot = \"/tmp\"\n").unwrap();
        let loaded = flowgrad_service::FleetConfig::<WorkerSection>::load(Some(&file), DEFAULTS);
        std::fs::remove_file(&file).unwrap();
        let id = loaded.unwrap().service.worker.id;
        let host = id
            .strip_suffix(&format!("-{}", std::process::id()))
            .unwrap_or_else(|| panic!("`{id}` ends with the process id"));
        assert!(!host.is_empty(), "`{id}` starts with the host name");
    }
}
