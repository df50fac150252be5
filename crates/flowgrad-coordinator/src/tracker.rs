//! In-memory view of one job, always derivable from storage.

use std::collections::{BTreeMap, HashMap};

use flowgrad_jobs::{
    Cancellation, Failure, JobReport, JobSpec, JobState, JobStatus, TaskOutcome, TaskResult, TaskSpec,
};
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
    /// The cancellation request, once one was seen.
    pub cancellation: Option<Cancellation>,
}

impl JobTracker {
    /// A tracker for `spec` with its published `tasks`.
    pub fn new(spec: JobSpec, tasks: &[TaskSpec], accepted_at: f64) -> Self {
        Self {
            spec,
            tasks: tasks.iter().map(|t| (t.task_id.clone(), t.inputs.len())).collect(),
            results: HashMap::new(),
            accepted_at,
            cancellation: None,
        }
    }

    /// The job id.
    pub fn job_id(&self) -> Uuid {
        self.spec.job_id
    }

    /// Current status. A cancelled job ends at once: tasks still queued or running are counted
    /// as cancelled (workers record them as such when they see the request).
    pub fn status(&self, now: f64) -> JobStatus {
        let mut failures: Vec<Failure> = vec![];
        let (mut succeeded, mut failed, mut cancelled) = (0, 0, 0);
        for (task, result) in self.tasks.keys().filter_map(|t| self.results.get(t).map(|r| (t, r))) {
            match &result.outcome {
                TaskOutcome::Succeeded => succeeded += 1,
                TaskOutcome::Failed { reason } => {
                    failed += 1;
                    failures.push(Failure { task_id: task.clone(), reason: reason.clone() });
                }
                TaskOutcome::Cancelled => cancelled += 1,
            }
            failures.extend(result.rejected_inputs.iter().cloned());
        }
        let done = succeeded + failed + cancelled;
        let elapsed = (now - self.accepted_at).max(1e-9);
        let rate = done as f64 / elapsed;
        let mut remaining = self.tasks.len().saturating_sub(done);
        let state = if self.cancellation.is_some() {
            cancelled += remaining;
            remaining = 0;
            JobState::Cancelled
        } else if remaining > 0 {
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
            cancellation: self.cancellation.as_ref().map(|c| c.reason.clone()),
            total_tasks: self.tasks.len(),
            succeeded,
            failed,
            cancelled,
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
        cancellation: None,
        total_tasks: 0,
        succeeded: 0,
        failed: 0,
        cancelled: 0,
        total_images: 0,
        failures: vec![],
        accepted_at: now,
        updated_at: now,
        tasks_per_second: 0.0,
        eta_seconds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgrad_jobs::{GuidanceSpec, InputSpec, TaskInput};

    fn tracker(tasks: usize) -> JobTracker {
        let spec =
            JobSpec::new(InputSpec::Prefix("in/".into()), "out/", "fashion-mnist", GuidanceSpec::Class("coat".into()));
        let tasks: Vec<TaskSpec> = (0..tasks)
            .map(|i| TaskSpec {
                schema: flowgrad_jobs::SCHEMA_VERSION,
                job_id: spec.job_id,
                task_id: flowgrad_jobs::keys::task_id(i),
                inputs: vec![TaskInput { key: format!("in/{i}.png"), output_key: format!("out/{i}.png") }],
                model: spec.model.clone(),
                guidance: spec.guidance.clone(),
                params: spec.params.clone(),
                seed: 0,
                published_at: 0.0,
                direction: None,
                earlier_deliveries: 0,
            })
            .collect();
        JobTracker::new(spec, &tasks, 0.0)
    }

    fn record(t: &mut JobTracker, index: usize, outcome: TaskOutcome) {
        let id = flowgrad_jobs::keys::task_id(index);
        let result = TaskResult { outcome, ..TaskResult::failed(t.job_id(), &id, "w", 0, String::new(), 1.0) };
        t.results.insert(id, result);
    }

    #[test]
    fn counts_outcomes_and_ends_only_when_every_task_has_one() {
        let mut t = tracker(3);
        record(&mut t, 0, TaskOutcome::Succeeded);
        record(&mut t, 1, TaskOutcome::Failed { reason: "corrupt".into() });
        let status = t.status(10.0);
        assert_eq!((status.state, status.succeeded, status.failed, status.remaining()), (JobState::Running, 1, 1, 1));
        assert_eq!(status.failures, vec![Failure { task_id: "task-000001".into(), reason: "corrupt".into() }]);
        record(&mut t, 2, TaskOutcome::Succeeded);
        assert_eq!(t.status(11.0).state, JobState::CompletedWithFailures);
    }

    #[test]
    fn a_cancelled_job_ends_at_once_counting_unfinished_tasks_as_cancelled() {
        let mut t = tracker(4);
        record(&mut t, 0, TaskOutcome::Succeeded);
        record(&mut t, 1, TaskOutcome::Cancelled);
        t.cancellation = Some(Cancellation {
            schema: flowgrad_jobs::SCHEMA_VERSION,
            reason: "wrong class".into(),
            requested_at: 5.0,
        });
        let status = t.status(10.0);
        assert_eq!(
            (status.state, status.succeeded, status.cancelled, status.remaining()),
            (JobState::Cancelled, 1, 3, 0)
        );
        assert_eq!(status.cancellation.as_deref(), Some("wrong class"));
        assert!(status.eta_seconds.is_none());
    }
}
