//! Tasks (one image or a small batch), their progress events and result records.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{DirectionSpec, GuidanceSpec};

/// One input image of a task and where its edit goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    /// Input object key.
    pub key: String,
    /// Output object key (PNG).
    pub output_key: String,
}

/// A task message on the tasks queue: self-contained, so any worker can run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Schema version.
    pub schema: u32,
    /// The job.
    pub job_id: Uuid,
    /// Stable task id within the job.
    pub task_id: String,
    /// Images of this task (edited as one batch).
    pub inputs: Vec<TaskInput>,
    /// Model name.
    pub model: String,
    /// Edit target.
    pub guidance: GuidanceSpec,
    /// FlowGrad parameters.
    pub params: flowgrad_params::EditParams,
    /// Job seed.
    pub seed: u64,
    /// Unix seconds when the coordinator published the task (for queue-lag metrics).
    pub published_at: f64,
    /// The job's global direction, to learn (this task holds all its images) or to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
    /// Unfinished deliveries of this task's earlier messages (a worker crashed or lost its
    /// connection), carried over when a stopping worker republishes the task: a planned stop
    /// does not count towards the delivery limit, crashes still do.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub earlier_deliveries: u32,
}

/// Why a task delivered `deliveries` times without finishing (the broker's delivery limit is
/// `limit`) is given up on: its failure reason, whoever records it.
pub fn crash_limit_reason(deliveries: u32, limit: u32) -> String {
    format!(
        "delivered {deliveries} times without finishing: its workers crashed or lost their broker connection each time (delivery limit {limit})"
    )
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaskSpec {
    /// Unfinished deliveries before the current one: the broker's count for this message
    /// (`x-delivery-count`, `message_redeliveries`) plus those carried over from the messages it
    /// replaced ([`TaskSpec::earlier_deliveries`]).
    pub fn redeliveries(&self, message_redeliveries: u32) -> u32 {
        message_redeliveries + self.earlier_deliveries
    }

    /// Parses a task message.
    pub fn from_json(bytes: &[u8]) -> Result<Self, crate::ValidationError> {
        crate::from_json("task", bytes)
    }
}

/// What a worker reports while running a task (on the events queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEvent {
    /// Schema version.
    pub schema: u32,
    /// The job.
    pub job_id: Uuid,
    /// The task.
    pub task_id: String,
    /// The worker reporting.
    pub worker: String,
    /// What happened.
    pub kind: TaskEventKind,
}

/// Kinds of task events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskEventKind {
    /// Work began, fresh (`resumed_from` = None) or from a checkpoint.
    Started {
        /// Iteration the checkpoint had completed.
        resumed_from: Option<usize>,
    },
    /// An iteration finished and was checkpointed.
    Iteration {
        /// Completed iterations.
        completed: usize,
        /// Objective of the iteration.
        objective: f64,
    },
    /// The task failed this attempt and will be retried.
    Retrying {
        /// Why.
        reason: String,
        /// Deliveries so far.
        attempt: u32,
    },
    /// The task was interrupted (shutdown) and requeued after checkpointing.
    Requeued {
        /// Iterations completed and checkpointed.
        completed: usize,
    },
}

/// Per-image numbers of a finished task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageResult {
    /// Input key.
    pub input_key: String,
    /// Output key.
    pub output_key: String,
    /// Conversion applied to the input (resize, gray), if any.
    pub note: Option<String>,
    /// Objective of this image at iteration 0 (no controls); 0 when a direction was applied
    /// (nothing is optimised, so no objective is evaluated).
    pub objective_before: f64,
    /// Score of the guidance target before the edit: the guidance classifier's probability of
    /// the target class, or CLIP's cosine to the text prompt.
    pub guidance_score_before: f64,
    /// After the edit (of the output as written).
    pub guidance_score_after: f64,
    /// The independent judge's probability of the target class before the edit, where the
    /// model has a judge for the guidance (class targets of the bundled model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_target_prob_before: Option<f64>,
    /// The judge's probability after the edit (of the output as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_target_prob_after: Option<f64>,
    /// Mean absolute difference between input and output as written (values in [-1, 1]).
    pub l1_to_input: f64,
    /// The selected controls of this image are all zero: the output is the model's
    /// reconstruction of the input, not an edit (no trial, nor the warm start, beat it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unedited: bool,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskOutcome {
    /// Outputs written.
    Succeeded,
    /// Gave up; nothing written for this task's outputs.
    Failed {
        /// The error.
        reason: String,
    },
    /// Stopped because the job was cancelled; nothing written for this task's outputs.
    Cancelled,
}

/// The durable record of a finished task, `jobs/{job}/results/{task}.json` (first one wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    /// Schema version.
    pub schema: u32,
    /// The job.
    pub job_id: Uuid,
    /// The task.
    pub task_id: String,
    /// Success or failure.
    pub outcome: TaskOutcome,
    /// Per image (empty on failure).
    pub images: Vec<ImageResult>,
    /// Worker that wrote this record.
    pub worker: String,
    /// Deliveries of the task message before this one.
    pub redeliveries: u32,
    /// Iterations the checkpoint had completed when this worker started (None: fresh start).
    pub resumed_from_iteration: Option<usize>,
    /// Iterations this worker ran.
    pub iterations_run: usize,
    /// Vector-Jacobian products this worker evaluated.
    pub vjps: usize,
    /// Iteration whose controls were selected.
    pub selected_iteration: usize,
    /// Objective (batch sum) at iteration 0 and of the selected controls.
    pub objective_before: f64,
    /// Objective of the selected controls.
    pub objective_after: f64,
    /// Inputs that could not be edited (missing, corrupt, too large) and why.
    pub rejected_inputs: Vec<Failure>,
    /// Objective (batch sum) of every iteration, from the first.
    pub objective_history: Vec<f64>,
    /// Seconds spent in the editor.
    pub edit_seconds: f64,
    /// Seconds spent serialising and writing checkpoints (all but the first and the last are
    /// written while the editor computes the next iteration).
    #[serde(default)]
    pub checkpoint_seconds: f64,
    /// Seconds from delivery to result, including storage and checkpoints.
    pub total_seconds: f64,
}

impl TaskResult {
    /// The record of a task given up with `reason` (no outputs).
    pub fn failed(
        job_id: Uuid,
        task_id: &str,
        worker: &str,
        redeliveries: u32,
        reason: String,
        total_seconds: f64,
    ) -> Self {
        Self::ended(job_id, task_id, worker, redeliveries, TaskOutcome::Failed { reason }, total_seconds)
    }

    /// The record of a task stopped by its job's cancellation (no outputs).
    pub fn cancelled(job_id: Uuid, task_id: &str, worker: &str, redeliveries: u32, total_seconds: f64) -> Self {
        Self::ended(job_id, task_id, worker, redeliveries, TaskOutcome::Cancelled, total_seconds)
    }

    /// A record with `outcome` and nothing run yet: no images, iterations or objectives.
    pub fn ended(
        job_id: Uuid,
        task_id: &str,
        worker: &str,
        redeliveries: u32,
        outcome: TaskOutcome,
        total_seconds: f64,
    ) -> Self {
        Self {
            schema: crate::SCHEMA_VERSION,
            job_id,
            task_id: task_id.to_string(),
            outcome,
            images: vec![],
            worker: worker.to_string(),
            redeliveries,
            resumed_from_iteration: None,
            iterations_run: 0,
            vjps: 0,
            selected_iteration: 0,
            objective_before: 0.0,
            objective_after: 0.0,
            rejected_inputs: vec![],
            objective_history: vec![],
            edit_seconds: 0.0,
            checkpoint_seconds: 0.0,
            total_seconds,
        }
    }
}

/// A failed task and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The task.
    pub task_id: String,
    /// The error.
    pub reason: String,
}
