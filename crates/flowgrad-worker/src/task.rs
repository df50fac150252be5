//! Running one task: resume or start, iterate with checkpoints, write outputs, record the result.

use std::sync::Arc;
use std::time::Instant;

use flowgrad::{ControlState, GlobalDirection};
use flowgrad_backend::KernelThreads;
use flowgrad_engine::{EditSession, Model, ModelRegistry, direction_bytes, read_direction};
use flowgrad_jobs::{
    DirectionSpec, Failure, GuidanceSpec, ImageResult, TaskEvent, TaskEventKind, TaskOutcome, TaskResult, TaskSpec,
    keys,
};
use flowgrad_queue::{Consumer, Delivery, Queue, SharedBroker};
use flowgrad_storage::image::{ImageLimits, ModelImage, crop, decode_for_model, encode_png};
use flowgrad_storage::{Bytes, SharedStore, StorageError};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::metrics::WorkerMetrics;
use crate::settings::WorkerSettings;

/// Why a task attempt failed.
#[derive(Debug, thiserror::Error)]
enum TaskError {
    /// Retrying cannot help (bad input, unknown model or class, invalid parameters).
    #[error("{0}")]
    Permanent(String),
    /// Might work on another attempt (storage or broker trouble, a lost worker).
    #[error("{0}")]
    Transient(String),
}

impl From<StorageError> for TaskError {
    fn from(err: StorageError) -> Self {
        if err.is_retryable() { Self::Transient(err.to_string()) } else { Self::Permanent(err.to_string()) }
    }
}

fn permanent(err: impl std::fmt::Display) -> TaskError {
    TaskError::Permanent(err.to_string())
}

/// How an attempt ended without error.
enum Attempt {
    /// Result recorded (by this worker or an earlier one).
    Done,
    /// Stopped for shutdown after checkpointing `completed` iterations.
    Interrupted { completed: usize },
}

/// Everything a worker needs; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Worker {
    store: SharedStore,
    broker: SharedBroker,
    models: Arc<ModelRegistry>,
    settings: WorkerSettings,
    metrics: WorkerMetrics,
    kernels: KernelThreads,
}

/// An input image decoded for the model and where its edit goes.
type LoadedInput = (flowgrad_jobs::TaskInput, ModelImage);

/// Per-task bookkeeping carried through an attempt.
struct Progress {
    resumed_from: Option<usize>,
    iterations_run: usize,
    vjps: usize,
    edit_seconds: f64,
    checkpoint_seconds: f64,
}

impl Worker {
    /// A worker using these connections, models and settings.
    pub fn new(
        store: SharedStore,
        broker: SharedBroker,
        models: Arc<ModelRegistry>,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
    ) -> anyhow::Result<Self> {
        let kernels = match settings.kernel_threads {
            Some(threads) => KernelThreads::own(threads, &settings.id)?,
            None => KernelThreads::shared(),
        };
        Ok(Self { store, broker, models, settings, metrics, kernels })
    }

    /// Runs editor work off the async threads, its CPU kernels on this worker's threads.
    async fn compute<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> Result<R, TaskError> {
        let kernels = self.kernels.clone();
        tokio::task::spawn_blocking(move || kernels.run(work))
            .await
            .map_err(|e| TaskError::Transient(format!("editor thread: {e}")))
    }

    /// The metrics this worker updates.
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    /// Consumes tasks until `shutdown` is cancelled (finishing or requeueing the current one).
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut consumer = self.broker.consume(Queue::Tasks, 1).await?;
        info!(worker = %self.settings.id, "waiting for tasks");
        loop {
            let delivery = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.drain(consumer.as_mut()).await;
                    break;
                }
                next = consumer.next() => next,
            };
            match delivery {
                None => break,
                Some(Err(err)) => {
                    warn!(%err, "task consumer error");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Some(Ok(delivery)) => self.handle(delivery, &shutdown, consumer.as_mut()).await,
            }
        }
        // the last acknowledgements must reach the broker before the process exits
        if let Err(err) = consumer.close().await {
            warn!(%err, "could not close the task consumer cleanly");
        }
        info!(worker = %self.settings.id, "worker stopped");
        Ok(())
    }

    async fn handle(&self, delivery: Delivery, shutdown: &CancellationToken, consumer: &mut dyn Consumer) {
        let task = match TaskSpec::from_json(&delivery.payload) {
            Ok(task) => task,
            Err(err) => {
                warn!(%err, "unreadable task message: dead-lettered");
                if let Err(err) = delivery.dead_letter().await {
                    warn!(%err, "dead-lettering failed");
                }
                return;
            }
        };
        let span = info_span!("task", job_id = %task.job_id, task_id = %task.task_id, worker = %self.settings.id);
        async {
            let started = Instant::now();
            self.metrics.queue_lag_seconds.observe((flowgrad_jobs::unix_now() - task.published_at).max(0.0));
            let redeliveries = task.redeliveries(delivery.redeliveries);
            let limit = self.broker.delivery_limit();
            let outcome = if redeliveries > limit {
                Err(TaskError::Permanent(flowgrad_jobs::crash_limit_reason(redeliveries + 1, limit)))
            } else {
                self.attempt(&task, redeliveries, started, shutdown).await
            };
            let settle = match outcome {
                Ok(Attempt::Done) => delivery.ack().await,
                Ok(Attempt::Interrupted { completed }) => {
                    info!(completed, "shutdown: checkpointed and handed back");
                    self.metrics.tasks_requeued.inc();
                    self.event(&task, TaskEventKind::Requeued { completed }).await;
                    // no further delivery for this worker: one would come back counted when it exits
                    if let Err(err) = consumer.stop().await {
                        warn!(%err, "could not stop consuming before handing the task back");
                    }
                    self.hand_back(task.clone(), redeliveries, delivery).await
                }
                Err(TaskError::Transient(reason)) if redeliveries + 1 < self.settings.max_attempts => {
                    let delay = self.settings.retry_delay(redeliveries);
                    warn!(%reason, attempt = redeliveries + 1, ?delay, "transient failure: will retry");
                    self.metrics.tasks_retried.inc();
                    self.event(&task, TaskEventKind::Retrying { reason, attempt: redeliveries + 1 }).await;
                    tokio::select! { _ = tokio::time::sleep(delay) => {}, _ = shutdown.cancelled() => {} }
                    delivery.requeue().await
                }
                Err(err) => {
                    warn!(reason = %err, "task failed: recording the failure and dead-lettering");
                    self.metrics.tasks_failed.inc();
                    self.record_failure(&task, redeliveries, started, &err.to_string()).await;
                    if let Err(err) = self.store.delete(&keys::checkpoint(task.job_id, &task.task_id)).await {
                        warn!(%err, "could not delete the checkpoint of a failed task");
                    }
                    delivery.dead_letter().await
                }
            };
            if let Err(err) = settle {
                warn!(%err, "could not settle the delivery (it will be redelivered; results are idempotent)");
            }
        }
        .instrument(span)
        .await
    }

    /// On shutdown: stops consuming and hands back, uncounted, any task the broker had already
    /// sent this worker (it would otherwise return counted as a failed delivery at exit).
    async fn drain(&self, consumer: &mut dyn Consumer) {
        if let Err(err) = consumer.stop().await {
            warn!(%err, "could not stop consuming");
        }
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(std::time::Duration::from_secs(2), consumer.next()).await
        {
            let Ok(task) = TaskSpec::from_json(&delivery.payload) else {
                // unreadable: it goes back and the next worker dead-letters it
                continue;
            };
            let redeliveries = task.redeliveries(delivery.redeliveries);
            info!(job_id = %task.job_id, task_id = %task.task_id, "shutdown: handing back a task not started");
            if let Err(err) = self.hand_back(task, redeliveries, delivery).await {
                warn!(%err, "could not hand a task back (it returns to the queue when the worker exits)");
            }
        }
    }

    /// Returns a task interrupted by a planned stop to the queue without counting the stop as a
    /// failed delivery: a copy carrying the unfinished deliveries so far is published (confirmed),
    /// then this delivery is acknowledged. If publishing fails the delivery is requeued instead
    /// (counted, never lost); a crash between the two leaves a duplicate, which the result record
    /// makes harmless.
    async fn hand_back(
        &self,
        mut task: TaskSpec,
        redeliveries: u32,
        delivery: Delivery,
    ) -> Result<(), flowgrad_queue::QueueError> {
        task.earlier_deliveries = redeliveries;
        let message_id = format!("{}/{}", task.job_id, task.task_id);
        match self.broker.publish(Queue::Tasks, Bytes::from(flowgrad_jobs::to_json(&task)), &message_id).await {
            Ok(()) => delivery.ack().await,
            Err(err) => {
                warn!(%err, "could not republish the interrupted task: requeued (counts as a delivery)");
                delivery.requeue().await
            }
        }
    }

    async fn event(&self, task: &TaskSpec, kind: TaskEventKind) {
        let event = TaskEvent {
            schema: flowgrad_jobs::SCHEMA_VERSION,
            job_id: task.job_id,
            task_id: task.task_id.clone(),
            worker: self.settings.id.clone(),
            kind,
        };
        let id = format!("{}/{}/{}", task.job_id, task.task_id, flowgrad_jobs::unix_now());
        if let Err(err) = self.broker.publish(Queue::Events, Bytes::from(flowgrad_jobs::to_json(&event)), &id).await {
            warn!(%err, "could not publish a task event");
        }
    }

    async fn record_failure(&self, task: &TaskSpec, redeliveries: u32, started: Instant, reason: &str) {
        let result = TaskResult::failed(
            task.job_id,
            &task.task_id,
            &self.settings.id,
            redeliveries,
            reason.to_string(),
            started.elapsed().as_secs_f64(),
        );
        let key = keys::result(task.job_id, &task.task_id);
        if let Err(err) = self.store.put_if_absent(&key, Bytes::from(flowgrad_jobs::to_json(&result))).await {
            warn!(%err, "could not record the failure");
        }
    }

    async fn attempt(
        &self,
        task: &TaskSpec,
        redeliveries: u32,
        started: Instant,
        shutdown: &CancellationToken,
    ) -> Result<Attempt, TaskError> {
        if self.store.get(&keys::result(task.job_id, &task.task_id)).await?.is_some() {
            info!("result already recorded: duplicate delivery acknowledged");
            return Ok(Attempt::Done);
        }
        if self.stopped_by_cancellation(task, redeliveries, started).await? {
            return Ok(Attempt::Done);
        }
        if let Some(DirectionSpec::Apply(key)) = &task.direction {
            return self.apply_direction(task, key, redeliveries, started).await;
        }
        let model = self.models.get(&task.model).map_err(permanent)?;
        let session: Arc<dyn EditSession> = Arc::from(model.session(&task.guidance, &task.params).map_err(permanent)?);
        let checkpoint_key = keys::checkpoint(task.job_id, &task.task_id);
        let (inputs, rejected) = self.usable_inputs(task, model.as_ref()).await?;
        let batch = inputs.len();
        let pixels: Vec<f32> = inputs.iter().flat_map(|(_, image)| image.values.iter().copied()).collect();

        let mut progress =
            Progress { resumed_from: None, iterations_run: 0, vjps: 0, edit_seconds: 0.0, checkpoint_seconds: 0.0 };
        // One policy for a checkpoint that cannot be continued, whether unreadable or made by
        // other weights or parameters (a rollout while the job ran): start the task over, so every
        // output comes from one model version, and say so in the log.
        let resumable = match self.store.get(&checkpoint_key).await? {
            Some(bytes) => match ControlState::from_bytes(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|state| session.can_resume(&state).map(|()| state).map_err(|e| e.to_string()))
            {
                Ok(state) => Some(state),
                Err(reason) => {
                    warn!(%reason, "checkpoint cannot be continued: starting the task over");
                    None
                }
            },
            None => None,
        };
        let mut state = match resumable {
            Some(state) => {
                info!(iteration = state.iteration, "resuming from checkpoint");
                self.metrics.tasks_resumed.inc();
                progress.resumed_from = Some(state.iteration);
                state
            }
            None => self.start(&session, &pixels, batch, task, &mut progress).await?,
        };
        self.event(task, TaskEventKind::Started { resumed_from: progress.resumed_from }).await;
        if progress.resumed_from.is_none() {
            progress.checkpoint_seconds += self.checkpoint(&checkpoint_key, &state).await?;
        }

        // Each iteration's checkpoint is written while the next iteration computes (one write in
        // flight at most): a worker killed meanwhile resumes from the one before, bit-exactly.
        let mut unsaved: Option<ControlState> = None;
        while !session.is_finished(&state) {
            if shutdown.is_cancelled() {
                self.save(&checkpoint_key, unsaved.take()).await?;
                return Ok(Attempt::Interrupted { completed: state.iteration });
            }
            if self.stopped_by_cancellation(task, redeliveries, started).await? || self.finished_elsewhere(task).await?
            {
                return Ok(Attempt::Done);
            }
            let clock = Instant::now();
            let worker_session = session.clone();
            let stepping = self.compute(move || {
                let record = worker_session.step(&mut state);
                (record, state)
            });
            let (stepped, saved) = tokio::join!(stepping, self.save(&checkpoint_key, unsaved.take()));
            let (record, returned) = stepped?;
            progress.checkpoint_seconds += saved?;
            state = returned;
            let record = record.map_err(permanent)?;
            let seconds = clock.elapsed().as_secs_f64();
            self.metrics.iteration_seconds.observe(seconds);
            progress.edit_seconds += seconds;
            progress.iterations_run += 1;
            progress.vjps += record.segments;
            unsaved = Some(state.clone());
            self.event(task, TaskEventKind::Iteration { completed: state.iteration, objective: record.objective })
                .await;
        }
        progress.checkpoint_seconds += self.save(&checkpoint_key, unsaved.take()).await?;

        let clock = Instant::now();
        let finish_session = session.clone();
        let finish_state = state.clone();
        let finished = self.compute(move || finish_session.finish(&finish_state)).await?.map_err(permanent)?;
        progress.edit_seconds += clock.elapsed().as_secs_f64();

        if let Some(DirectionSpec::Learn(key)) = &task.direction {
            self.store_direction(task, model.as_ref(), &finished.controls, key, batch).await?;
        }
        if self.finished_elsewhere(task).await? {
            return Ok(Attempt::Done);
        }
        let objectives_before: Vec<f64> =
            (0..batch).map(|i| state.history.first().map_or(0.0, |r| r.per_image[i])).collect();
        let mut images = self
            .write_outputs(model.as_ref(), &task.guidance, &inputs, &pixels, &finished.images, &objectives_before)
            .await?;
        // per control entry: one per image, or one shared by the batch
        let zero: Vec<bool> = flowgrad::trust::entry_energies(&finished.controls).iter().map(|&e| e == 0.0).collect();
        for (i, image) in images.iter_mut().enumerate() {
            image.unedited = zero[i.min(zero.len() - 1)];
        }
        let result = TaskResult {
            schema: flowgrad_jobs::SCHEMA_VERSION,
            job_id: task.job_id,
            task_id: task.task_id.clone(),
            outcome: TaskOutcome::Succeeded,
            images,
            worker: self.settings.id.clone(),
            redeliveries,
            resumed_from_iteration: progress.resumed_from,
            iterations_run: progress.iterations_run,
            vjps: progress.vjps,
            selected_iteration: finished.selected_iteration,
            objective_before: state.history.first().map_or(0.0, |r| r.objective),
            objective_after: finished.objective,
            rejected_inputs: rejected,
            objective_history: state.history.iter().map(|r| r.objective).collect(),
            edit_seconds: progress.edit_seconds,
            checkpoint_seconds: progress.checkpoint_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
        };
        self.record_success(&result).await?;
        if let Err(err) = self.store.delete(&checkpoint_key).await {
            warn!(%err, "could not delete the checkpoint");
        }
        info!(iterations = progress.iterations_run, resumed_from = ?progress.resumed_from, seconds = result.total_seconds, "task done");
        Ok(Attempt::Done)
    }

    /// Writes a finished task's result record (the first one wins) and counts it.
    async fn record_success(&self, result: &TaskResult) -> Result<(), TaskError> {
        let created = self
            .store
            .put_if_absent(&keys::result(result.job_id, &result.task_id), Bytes::from(flowgrad_jobs::to_json(result)))
            .await?;
        if !created {
            info!("another worker recorded this task first");
        }
        self.metrics.tasks_done.inc();
        Ok(())
    }

    /// Writes the edited images as PNGs and measures each edit as written (the 8-bit output the
    /// user gets): guidance scores, the judge's where the model has one, L1 to the input.
    async fn write_outputs(
        &self,
        model: &dyn Model,
        guidance: &GuidanceSpec,
        inputs: &[LoadedInput],
        pixels: &[f32],
        edited: &[f32],
        objectives_before: &[f64],
    ) -> Result<Vec<ImageResult>, TaskError> {
        let batch = inputs.len();
        let shape = model.image_shape();
        let per = shape.len();
        let limits = Self::image_limits(model, usize::MAX);
        let mut pngs = Vec::with_capacity(batch);
        let mut written = Vec::with_capacity(edited.len());
        for (output, (_, input)) in edited.chunks(per).zip(inputs) {
            // a padded input's edit is cropped back to the input's size
            let png = match input.region {
                Some(r) => encode_png(
                    &crop(output, shape.channels, shape.height, shape.width, r),
                    shape.channels,
                    r.height,
                    r.width,
                ),
                None => encode_png(output, shape.channels, shape.height, shape.width),
            }
            .map_err(permanent)?;
            written.extend(
                decode_for_model(&png, shape.channels, shape.height, shape.width, &limits).map_err(permanent)?.values,
            );
            pngs.push(png);
        }
        let before = model.guidance_scores(guidance, pixels, batch).map_err(permanent)?;
        let after = model.guidance_scores(guidance, &written, batch).map_err(permanent)?;
        let judge_before = model.judge_scores(guidance, pixels, batch).map_err(permanent)?;
        let judge_after = model.judge_scores(guidance, &written, batch).map_err(permanent)?;
        let mut images = Vec::with_capacity(batch);
        for (i, ((input, image), png)) in inputs.iter().zip(pngs).enumerate() {
            self.store.put(&input.output_key, Bytes::from(png)).await?;
            let (output, original) = (&written[i * per..(i + 1) * per], &image.values);
            images.push(ImageResult {
                input_key: input.key.clone(),
                output_key: input.output_key.clone(),
                note: image.note.clone(),
                objective_before: objectives_before[i],
                guidance_score_before: before[i] as f64,
                guidance_score_after: after[i] as f64,
                judge_target_prob_before: judge_before.as_ref().map(|p| p[i] as f64),
                judge_target_prob_after: judge_after.as_ref().map(|p| p[i] as f64),
                l1_to_input: output.iter().zip(original).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / per as f64,
                unedited: false,
            });
        }
        Ok(images)
    }

    /// Stores the direction a learning task found at `key`. Put-if-absent: a redelivered task
    /// recomputes the same bytes (accepted); different bytes there are another direction, which
    /// is never overwritten.
    async fn store_direction(
        &self,
        task: &TaskSpec,
        model: &dyn Model,
        controls: &flowgrad::HostTensor,
        key: &str,
        images: usize,
    ) -> Result<(), TaskError> {
        let direction = GlobalDirection::from_controls(controls.clone(), task.params.clone()).map_err(permanent)?;
        let bytes = Bytes::from(
            direction_bytes(&direction, model.name(), &task.guidance, &task.job_id.to_string(), images)
                .map_err(permanent)?,
        );
        if self.store.put_if_absent(key, bytes.clone()).await? {
            info!(key, "direction stored");
            return Ok(());
        }
        match self.store.get(key).await? {
            Some(existing) if existing == bytes => Ok(()),
            _ => Err(TaskError::Permanent(format!(
                "`{key}` already holds another object: a learned direction never overwrites one (choose another key or delete it)"
            ))),
        }
    }

    /// Runs a task that applies a stored direction: no iterations, so no checkpoints.
    async fn apply_direction(
        &self,
        task: &TaskSpec,
        key: &str,
        redeliveries: u32,
        started: Instant,
    ) -> Result<Attempt, TaskError> {
        let model = self.models.get(&task.model).map_err(permanent)?;
        let bytes = self
            .store
            .get(key)
            .await?
            .ok_or_else(|| TaskError::Permanent(format!("direction `{key}` does not exist")))?;
        let direction = read_direction(&bytes, model.name(), Some(model.image_shape()))
            .map_err(|e| TaskError::Permanent(format!("direction `{key}`: {e}")))?;
        let session: Arc<dyn EditSession> =
            Arc::from(model.session(&task.guidance, direction.params()).map_err(permanent)?);
        let (inputs, rejected) = self.usable_inputs(task, model.as_ref()).await?;
        let batch = inputs.len();
        let pixels: Vec<f32> = inputs.iter().flat_map(|(_, image)| image.values.iter().copied()).collect();
        let clock = Instant::now();
        let edit_pixels = pixels.clone();
        let edited = self.compute(move || session.apply(&direction, &edit_pixels, batch)).await?.map_err(permanent)?;
        let edit_seconds = clock.elapsed().as_secs_f64();
        let images =
            self.write_outputs(model.as_ref(), &task.guidance, &inputs, &pixels, &edited, &vec![0.0; batch]).await?;
        let result = TaskResult {
            images,
            rejected_inputs: rejected,
            edit_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
            ..TaskResult::ended(
                task.job_id,
                &task.task_id,
                &self.settings.id,
                redeliveries,
                TaskOutcome::Succeeded,
                0.0,
            )
        };
        self.record_success(&result).await?;
        info!(key, seconds = result.total_seconds, "direction applied: task done");
        Ok(Attempt::Done)
    }

    /// Whether another copy of this task (a duplicate delivery after a broker outage) already
    /// recorded its result: then this copy stops without writing anything more.
    async fn finished_elsewhere(&self, task: &TaskSpec) -> Result<bool, TaskError> {
        let finished = self.store.get(&keys::result(task.job_id, &task.task_id)).await?.is_some();
        if finished {
            // this copy may have written its checkpoint after the job ended and its checkpoints were deleted
            self.store.delete(&keys::checkpoint(task.job_id, &task.task_id)).await?;
            info!("another worker recorded this task's result: stopping this copy");
            self.metrics.tasks_superseded.inc();
        }
        Ok(finished)
    }

    /// When the task's job was cancelled: records the task as cancelled, drops its checkpoint
    /// and returns true (the delivery is then acknowledged).
    async fn stopped_by_cancellation(
        &self,
        task: &TaskSpec,
        redeliveries: u32,
        started: Instant,
    ) -> Result<bool, TaskError> {
        if self.store.get(&keys::cancel(task.job_id)).await?.is_none() {
            return Ok(false);
        }
        let result = TaskResult::cancelled(
            task.job_id,
            &task.task_id,
            &self.settings.id,
            redeliveries,
            started.elapsed().as_secs_f64(),
        );
        self.store
            .put_if_absent(&keys::result(task.job_id, &task.task_id), Bytes::from(flowgrad_jobs::to_json(&result)))
            .await?;
        if let Err(err) = self.store.delete(&keys::checkpoint(task.job_id, &task.task_id)).await {
            warn!(%err, "could not delete the checkpoint of a cancelled task");
        }
        self.metrics.tasks_cancelled.inc();
        info!("job cancelled: task stopped");
        Ok(true)
    }

    async fn start(
        &self,
        session: &Arc<dyn EditSession>,
        pixels: &[f32],
        batch: usize,
        task: &TaskSpec,
        progress: &mut Progress,
    ) -> Result<ControlState, TaskError> {
        let clock = Instant::now();
        let session = session.clone();
        let pixels = pixels.to_vec();
        let (seed, stream) = (task.seed, keys::stream(task.inputs.iter().map(|i| i.key.as_str())));
        let state = self.compute(move || session.start(&pixels, batch, seed, stream)).await?.map_err(permanent)?;
        progress.edit_seconds += clock.elapsed().as_secs_f64();
        progress.vjps += task.params.warm_start_vjps();
        Ok(state)
    }

    /// Writes `state`'s checkpoint when there is one to write; returns the seconds it took.
    async fn save(&self, key: &str, state: Option<ControlState>) -> Result<f64, TaskError> {
        match state {
            Some(state) => self.checkpoint(key, &state).await,
            None => Ok(0.0),
        }
    }

    /// Writes `state`'s checkpoint; returns the seconds it took.
    async fn checkpoint(&self, key: &str, state: &ControlState) -> Result<f64, TaskError> {
        let clock = Instant::now();
        let bytes = state.to_bytes().map_err(permanent)?;
        self.metrics.checkpoint_bytes.set(bytes.len() as i64);
        self.store.put(key, Bytes::from(bytes)).await?;
        let seconds = clock.elapsed().as_secs_f64();
        self.metrics.checkpoint_seconds.observe(seconds);
        Ok(seconds)
    }

    /// How images are decoded for `model`: at most `max_bytes`, smaller ones padded where the
    /// model was trained on padded images.
    fn image_limits(model: &dyn Model, max_bytes: usize) -> ImageLimits {
        ImageLimits { max_bytes, pad_smaller: model.pads_small_inputs(), ..ImageLimits::default() }
    }

    /// [`Worker::load_inputs`], failing the task when no input is usable.
    async fn usable_inputs(
        &self,
        task: &TaskSpec,
        model: &dyn Model,
    ) -> Result<(Vec<LoadedInput>, Vec<Failure>), TaskError> {
        let (inputs, rejected) = self.load_inputs(task, model).await?;
        if inputs.is_empty() {
            let reasons: Vec<String> = rejected.iter().map(|f| f.reason.clone()).collect();
            return Err(TaskError::Permanent(format!("no usable input: {}", reasons.join("; "))));
        }
        Ok((inputs, rejected))
    }

    /// Downloads and decodes the task's images; unusable ones are reported, not fatal.
    async fn load_inputs(
        &self,
        task: &TaskSpec,
        model: &dyn Model,
    ) -> Result<(Vec<LoadedInput>, Vec<Failure>), TaskError> {
        let shape = model.image_shape();
        let limits = Self::image_limits(model, self.settings.max_image_bytes);
        let mut inputs = vec![];
        let mut rejected = vec![];
        for input in &task.inputs {
            let reject =
                |reason: String| Failure { task_id: task.task_id.clone(), reason: format!("{}: {reason}", input.key) };
            match self.store.get(&input.key).await? {
                None => rejected.push(reject("input object does not exist".into())),
                Some(bytes) => match decode_for_model(&bytes, shape.channels, shape.height, shape.width, &limits) {
                    Ok(image) => inputs.push((input.clone(), image)),
                    Err(err) => rejected.push(reject(err.to_string())),
                },
            }
        }
        for failure in &rejected {
            warn!(reason = %failure.reason, "input rejected");
        }
        Ok((inputs, rejected))
    }
}
