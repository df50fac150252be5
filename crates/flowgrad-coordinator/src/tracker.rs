//! In-memory view of one job, always derivable from storage.

use std::collections::{BTreeMap, HashMap};

use flowgrad_jobs::{Failure, JobReport, JobSpec, JobState, JobStatus, TaskOutcome, TaskResult, TaskSpec};
use uuid::Uuid;

/// A tracked job: its tasks, the results seen so far and live progress from events.
#[derive(Debug, Clone)]
pub struct JobTracker {
    /// The accepted job.
    pub spec: JobSpec,
    /// Task id → number of images.
    pub tasks: BTreeMap<String, usize>,
    /// Results read from storage, by task id.
    pub results: HashMap<String, TaskResult>,
    /// Unix seconds of acceptance.
    pub accepted_at: f64,
}

impl JobTracker {
    /// A tracker for `spec` with its published `tasks`.
    pub fn new(spec: JobSpec, tasks: &[TaskSpec], accepted_at: f64) -> Self {
        Self { spec, tasks: tasks.iter().map(|t| (t.task_id.clone(), t.inputs.len())).collect(), results: HashMap::new(), accepted_at }
    }

    /// The job id.
    pub fn job_id(&self) -> Uuid {
        self.spec.job_id
    }

    /// True once every task has a result.
    pub fn is_complete(&self) -> bool {
        self.tasks.keys().all(|t| self.results.contains_key(t))
    }

    /// Current status.
    pub fn status(&self, now: f64) -> JobStatus {
        let mut failures: Vec<Failure> = vec![];
        let mut succeeded = 0;
        for (task, result) in self.tasks.keys().filter_map(|t| self.results.get(t).map(|r| (t, r))) {
            match &result.outcome {
                TaskOutcome::Succeeded => succeeded += 1,
                TaskOutcome::Failed { reason } => failures.push(Failure { task_id: task.clone(), reason: reason.clone() }),
            }
            failures.extend(result.rejected_inputs.iter().cloned());
        }
        let failed = self.results.values().filter(|r| matches!(r.outcome, TaskOutcome::Failed { .. })).count();
        let done = succeeded + failed;
        let elapsed = (now - self.accepted_at).max(1e-9);
        let rate = done as f64 / elapsed;
        let remaining = self.tasks.len().saturating_sub(done);
        let state = if remaining > 0 {
            JobState::Running
        } else if failures.is_empty() {
            JobState::Completed
        } else {
            JobState::CompletedWithFailures
        };
        JobStatus {
            schema: flowgrad_jobs::SCHEMA_VERSION,
            job_id: self.job_id(),
            state,
            rejection: None,
            total_tasks: self.tasks.len(),
            succeeded,
            failed,
            total_images: self.tasks.values().sum(),
            failures,
            accepted_at: self.accepted_at,
            updated_at: now,
            tasks_per_second: rate,
            eta_seconds: (rate > 0.0 && remaining > 0).then(|| remaining as f64 / rate),
        }
    }

    /// The final report (results in task order).
    pub fn report(&self, now: f64) -> JobReport {
        let results: Vec<TaskResult> = self.tasks.keys().filter_map(|t| self.results.get(t).cloned()).collect();
        JobReport {
            status: self.status(now),
            resumed_tasks: results.iter().filter(|r| r.resumed_from_iteration.is_some()).count(),
            edit_seconds: results.iter().map(|r| r.edit_seconds).sum(),
            task_seconds: results.iter().map(|r| r.total_seconds).sum(),
            results,
        }
    }
}

/// Status of a job rejected before it could be accepted.
pub fn rejected_status(job_id: Uuid, reason: &str, now: f64) -> JobStatus {
    JobStatus {
        schema: flowgrad_jobs::SCHEMA_VERSION,
        job_id,
        state: JobState::Rejected,
        rejection: Some(reason.to_string()),
        total_tasks: 0,
        succeeded: 0,
        failed: 0,
        total_images: 0,
        failures: vec![],
        accepted_at: now,
        updated_at: now,
        tasks_per_second: 0.0,
        eta_seconds: None,
    }
}
