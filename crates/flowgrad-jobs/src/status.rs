//! Job progress and the final report.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::task::{Failure, TaskResult};

/// Life cycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Validated and recorded; tasks being published.
    Accepted,
    /// Tasks published, results arriving.
    Running,
    /// Every task has a result and all succeeded.
    Completed,
    /// Every task has a result and some failed.
    CompletedWithFailures,
    /// The job itself was invalid.
    Rejected,
    /// Stopped on request before every task finished.
    Cancelled,
}

impl std::fmt::Display for JobState {
    /// The state as status.json spells it (`completed_with_failures`): its serde name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => unreachable!("a unit variant serialises as its name"),
        }
    }
}

impl JobState {
    /// True for states that never change again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::CompletedWithFailures | Self::Rejected | Self::Cancelled)
    }
}

/// `jobs/{job}/status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStatus {
    /// Schema version.
    pub schema: u32,
    /// The job.
    pub job_id: Uuid,
    /// Where it is.
    pub state: JobState,
    /// Why it was rejected, when it was.
    pub rejection: Option<String>,
    /// Why it was cancelled, when it was.
    #[serde(default)]
    pub cancellation: Option<String>,
    /// Tasks published.
    pub total_tasks: usize,
    /// Tasks with a successful result.
    pub succeeded: usize,
    /// Tasks with a failed result.
    pub failed: usize,
    /// Tasks stopped by a cancellation.
    #[serde(default)]
    pub cancelled: usize,
    /// Images across all tasks.
    pub total_images: usize,
    /// Failures with reasons.
    pub failures: Vec<Failure>,
    /// Unix seconds when accepted.
    pub accepted_at: f64,
    /// Unix seconds of this update.
    pub updated_at: f64,
    /// Finished tasks per second since acceptance.
    pub tasks_per_second: f64,
    /// Estimated seconds to completion at that rate.
    pub eta_seconds: Option<f64>,
}

impl JobStatus {
    /// Tasks still without a result.
    pub fn remaining(&self) -> usize {
        self.total_tasks.saturating_sub(self.succeeded + self.failed + self.cancelled)
    }
}

/// `jobs/{job}/cancel.json`: who asked to stop a job, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    /// Schema version.
    pub schema: u32,
    /// Free-text reason shown in the status.
    pub reason: String,
    /// Unix seconds of the request.
    pub requested_at: f64,
}

/// `active/{job}`: which coordinator tracks a job, renewed on every status refresh. Another
/// coordinator adopts the job once the lease is older than its lease duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// Schema version.
    pub schema: u32,
    /// The owning coordinator's id.
    pub coordinator: String,
    /// Unix seconds of the last renewal.
    pub renewed_at: f64,
}

impl Lease {
    /// True when `coordinator` may take the job at `now`: it owns the lease already, or the
    /// owner has not renewed it for `ttl_seconds`.
    pub fn available_to(&self, coordinator: &str, now: f64, ttl_seconds: f64) -> bool {
        self.coordinator == coordinator || now - self.renewed_at > ttl_seconds
    }
}

/// `jobs/{job}/report.json`: the final status and every task's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobReport {
    /// Final status.
    pub status: JobStatus,
    /// Results in task order.
    pub results: Vec<TaskResult>,
    /// Tasks that resumed from a checkpoint.
    pub resumed_tasks: usize,
    /// Sum of editor seconds over tasks.
    pub edit_seconds: f64,
    /// Sum of task seconds (editor + storage + checkpoints).
    pub task_seconds: f64,
}
