//! Job intake, task publication, progress tracking and reports.

use std::collections::HashMap;
use std::sync::Arc;

use flowgrad_catalog::{ModelCatalog, check_direction};
use flowgrad_jobs::job::MAX_BATCH;
use flowgrad_jobs::{
    Cancellation, DirectionSpec, InputSpec, JobSpec, Lease, TaskEvent, TaskInput, TaskResult, TaskSpec, keys,
};
use flowgrad_params::{ControlSharing, EditParams};
use flowgrad_queue::{Delivery, Queue, SharedBroker};
use flowgrad_storage::{Bytes, SharedStore};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use uuid::Uuid;

use crate::metrics::CoordinatorMetrics;
use crate::settings::CoordinatorSettings;
use crate::tracker::{JobTracker, rejected_status};

/// A coordinator; clones share state.
#[derive(Clone)]
pub struct Coordinator {
    store: SharedStore,
    broker: SharedBroker,
    models: ModelCatalog,
    settings: CoordinatorSettings,
    metrics: CoordinatorMetrics,
    jobs: Arc<Mutex<HashMap<Uuid, JobTracker>>>,
    events: broadcast::Sender<TaskEvent>,
}

/// Why a job was not accepted.
enum Intake {
    /// Accepted now or earlier.
    Accepted,
    /// Invalid: status written, message dead-lettered.
    Rejected(String),
}

/// The `job_id` of a job message, read leniently (the message may be invalid otherwise).
fn job_id_of(payload: &[u8]) -> Option<Uuid> {
    serde_json::from_slice::<serde_json::Value>(payload).ok()?.get("job_id")?.as_str()?.parse().ok()
}

/// Task messages published concurrently (awaiting their publisher confirms together).
const PUBLISH_WINDOW: usize = 64;

fn json<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(flowgrad_jobs::to_json(value))
}

impl Coordinator {
    /// A coordinator over these connections.
    pub fn new(
        store: SharedStore,
        broker: SharedBroker,
        models: ModelCatalog,
        settings: CoordinatorSettings,
        metrics: CoordinatorMetrics,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self { store, broker, models, settings, metrics, jobs: Arc::new(Mutex::new(HashMap::new())), events }
    }

    /// Live task events (started, iterations, retries) as the workers report them.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.events.subscribe()
    }

    /// The metrics this coordinator updates.
    pub fn metrics(&self) -> &CoordinatorMetrics {
        &self.metrics
    }

    /// Adopts unowned active jobs from storage, then consumes jobs, dead-lettered tasks and
    /// events, refreshes statuses and adopts jobs whose coordinator vanished, until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.adopt().await?;
        let mut jobs = self.broker.consume(Queue::Jobs, self.settings.job_prefetch).await?;
        let mut dead_tasks = self.broker.consume_dead(Queue::Tasks, 16).await?;
        let mut events = self.broker.consume(Queue::Events, 64).await?;
        let mut ticker = tokio::time::interval(self.settings.status_interval());
        info!(coordinator = %self.settings.id, "coordinating");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(next) = jobs.next() => match next {
                    Ok(delivery) => self.handle_job(delivery).await,
                    Err(err) => warn!(%err, "jobs consumer error"),
                },
                Some(next) = dead_tasks.next() => match next {
                    Ok(delivery) => self.handle_dead_task(delivery).await,
                    Err(err) => warn!(%err, "dead-task consumer error"),
                },
                Some(next) = events.next() => match next {
                    Ok(delivery) => self.handle_event(delivery).await,
                    Err(err) => warn!(%err, "events consumer error"),
                },
                _ = ticker.tick() => {
                    if let Err(err) = self.refresh().await {
                        warn!(%err, "status refresh failed; will retry");
                    }
                    if let Err(err) = self.adopt().await {
                        warn!(%err, "scan for orphaned jobs failed; will retry");
                    }
                }
            }
        }
        if let Err(err) = self.refresh().await {
            warn!(%err, "final status refresh failed");
        }
        info!("coordinator stopped");
        Ok(())
    }

    /// Takes over every active job whose lease is free (this coordinator's own, or not renewed
    /// for `lease_seconds`: its coordinator died), finishing any publication it did not complete.
    pub async fn adopt(&self) -> anyhow::Result<()> {
        for marker in self.store.list(keys::ACTIVE_PREFIX).await? {
            let Some(id) = marker.strip_prefix(keys::ACTIVE_PREFIX).and_then(|s| s.parse::<Uuid>().ok()) else {
                continue;
            };
            if self.jobs.lock().await.contains_key(&id) || !self.claim(id).await? {
                continue;
            }
            let Some(bytes) = self.store.get(&keys::spec(id)).await? else {
                warn!(job_id = %id, "active marker without a spec: removed");
                self.store.delete(&marker).await?;
                continue;
            };
            let spec: JobSpec = flowgrad_jobs::from_json("job", &bytes)?;
            info!(job_id = %id, coordinator = %self.settings.id, "adopting job");
            self.publish_tasks(&spec).await?;
        }
        Ok(())
    }

    /// The job's current lease, if any (an unreadable one counts as expired).
    async fn lease(&self, job_id: Uuid) -> anyhow::Result<Option<Lease>> {
        Ok(self.store.get(&keys::active(job_id)).await?.map(|bytes| {
            flowgrad_jobs::from_json::<Lease>("lease", &bytes).unwrap_or(Lease {
                schema: flowgrad_jobs::SCHEMA_VERSION,
                coordinator: String::new(),
                renewed_at: 0.0,
            })
        }))
    }

    /// Takes or renews the job's lease unless another live coordinator holds it.
    async fn claim(&self, job_id: Uuid) -> anyhow::Result<bool> {
        let now = flowgrad_jobs::unix_now();
        if let Some(lease) = self.lease(job_id).await?
            && !lease.available_to(&self.settings.id, now, self.settings.lease_seconds)
        {
            return Ok(false);
        }
        let lease =
            Lease { schema: flowgrad_jobs::SCHEMA_VERSION, coordinator: self.settings.id.clone(), renewed_at: now };
        self.store.put(&keys::active(job_id), json(&lease)).await?;
        Ok(true)
    }

    async fn handle_job(&self, delivery: Delivery) {
        // every line about a job carries its id, rejected ones too, whenever one can be read
        let span = match job_id_of(&delivery.payload) {
            Some(job_id) => info_span!("job", %job_id),
            None => info_span!("job", job_id = "unreadable"),
        };
        async {
            let outcome = self.intake(&delivery.payload).await;
            let settled = match outcome {
                Ok(Intake::Accepted) => delivery.ack().await,
                Ok(Intake::Rejected(reason)) => {
                    warn!(%reason, "job rejected: dead-lettered");
                    self.metrics.jobs_rejected.inc();
                    delivery.dead_letter().await
                }
                Err(err) => {
                    // storage or broker trouble: let another attempt (or coordinator) take it
                    error!(%err, "could not accept the job now; requeued");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    delivery.requeue().await
                }
            };
            if let Err(err) = settled {
                warn!(%err, "could not settle the job message (it will be redelivered; intake is idempotent)");
            }
        }
        .instrument(span)
        .await
    }

    async fn intake(&self, payload: &[u8]) -> anyhow::Result<Intake> {
        let spec = match JobSpec::from_json(payload) {
            Ok(spec) => spec,
            Err(err) => return self.reject(payload, err.to_string()).await,
        };
        if let Err(err) = self.models.validate(&spec.model, &spec.guidance) {
            return self.reject(payload, err.to_string()).await;
        }
        // listed before the spec is recorded: a job without inputs is rejected, never accepted
        let inputs = self.list_inputs(&spec).await?;
        if inputs.is_empty() {
            return self.reject(payload, format!("no input images found for {:?}", spec.input)).await;
        }
        if let Some(reason) =
            keys::output_collision(&spec.output_prefix, Self::input_root(&spec), inputs.iter().map(String::as_str))
        {
            return self.reject(payload, reason).await;
        }
        if let Some(reason) = self.direction_problem(&spec, inputs.len()).await? {
            return self.reject(payload, reason).await;
        }
        let created = self.store.put_if_absent(&keys::spec(spec.job_id), json(&spec)).await?;
        if !created {
            info!(job_id = %spec.job_id, "duplicate submission: no-op");
        }
        if created {
            self.metrics.jobs_accepted.inc();
            info!(job_id = %spec.job_id, images = inputs.len(), "job accepted");
        }
        if self.claim(spec.job_id).await? {
            self.publish_tasks(&spec).await?;
        } else {
            info!(job_id = %spec.job_id, "job tracked by another coordinator");
        }
        Ok(Intake::Accepted)
    }

    /// Why the job's direction cannot be learned or applied, checked before it is accepted.
    async fn direction_problem(&self, spec: &JobSpec, images: usize) -> anyhow::Result<Option<String>> {
        let Some(direction) = &spec.direction else { return Ok(None) };
        Ok(match direction {
            DirectionSpec::Learn(_) if images > MAX_BATCH => Some(format!(
                "learning a direction takes at most {MAX_BATCH} images (one batch); the input holds {images}"
            )),
            // an existing object is refused unless the job was accepted before: then it may be the
            // job's own result (a resubmission after it ran)
            DirectionSpec::Learn(key)
                if self.store.get(key).await?.is_some()
                    && self.store.get(&keys::spec(spec.job_id)).await?.is_none() =>
            {
                Some(format!(
                    "direction `{key}` already exists: a learned direction never overwrites an object (choose another key or delete it)"
                ))
            }
            DirectionSpec::Learn(_) => None,
            DirectionSpec::Apply(key) => match self.store.get(key).await? {
                None => Some(format!("direction `{key}` does not exist")),
                Some(bytes) => check_direction(&bytes, &spec.model).err().map(|e| format!("direction `{key}`: {e}")),
            },
        })
    }

    async fn reject(&self, payload: &[u8], reason: String) -> anyhow::Result<Intake> {
        if let Some(job_id) = job_id_of(payload) {
            // a rejection never overwrites an accepted job's status
            if self.store.get(&keys::spec(job_id)).await?.is_none() {
                self.store
                    .put(&keys::status(job_id), json(&rejected_status(job_id, &reason, flowgrad_jobs::unix_now())))
                    .await?;
            }
        }
        Ok(Intake::Rejected(reason))
    }

    async fn list_inputs(&self, spec: &JobSpec) -> anyhow::Result<Vec<String>> {
        Ok(match &spec.input {
            InputSpec::Prefix(prefix) => {
                self.store.list(prefix).await?.into_iter().filter(|k| !k.ends_with('/')).collect()
            }
            InputSpec::Manifest(keys) => keys.clone(),
        })
    }

    /// The folder outputs are named relative to: a prefix job's prefix, none for manifests.
    fn input_root(spec: &JobSpec) -> Option<&str> {
        match &spec.input {
            InputSpec::Prefix(prefix) => Some(prefix.as_str()),
            InputSpec::Manifest(_) => None,
        }
    }

    fn tasks_for(spec: &JobSpec, inputs: &[String], published_at: f64) -> Vec<TaskSpec> {
        let root = Self::input_root(spec);
        // learning a direction shares one control sequence across all the inputs: one task
        let (batch, params) = match &spec.direction {
            Some(DirectionSpec::Learn(_)) => {
                (inputs.len().max(1), EditParams { sharing: ControlSharing::Shared, ..spec.params.clone() })
            }
            _ => (spec.batch_size, spec.params.clone()),
        };
        inputs
            .chunks(batch)
            .enumerate()
            .map(|(index, chunk)| TaskSpec {
                schema: flowgrad_jobs::SCHEMA_VERSION,
                job_id: spec.job_id,
                task_id: keys::task_id(index),
                inputs: chunk
                    .iter()
                    .map(|key| TaskInput { key: key.clone(), output_key: keys::output(&spec.output_prefix, root, key) })
                    .collect(),
                model: spec.model.clone(),
                guidance: spec.guidance.clone(),
                params: params.clone(),
                seed: spec.seed,
                published_at,
                direction: spec.direction.clone(),
                earlier_deliveries: 0,
            })
            .collect()
    }

    /// Publishes the job's tasks unless `tasks.json` says a coordinator already did, then tracks it.
    async fn publish_tasks(&self, spec: &JobSpec) -> anyhow::Result<()> {
        let job_id = spec.job_id;
        if self.jobs.lock().await.contains_key(&job_id) {
            return Ok(());
        }
        let (tasks, accepted_at) = match self.store.get(&keys::tasks(job_id)).await? {
            Some(bytes) => {
                let tasks: Vec<TaskSpec> = flowgrad_jobs::from_json("task list", &bytes)?;
                let accepted_at = tasks.first().map_or_else(flowgrad_jobs::unix_now, |t| t.published_at);
                (tasks, accepted_at)
            }
            None => {
                let now = flowgrad_jobs::unix_now();
                let inputs = self.list_inputs(spec).await?;
                let tasks = Self::tasks_for(spec, &inputs, now);
                // up to PUBLISH_WINDOW publishes in flight: their confirms arrive pipelined
                let messages: Vec<(Bytes, String)> =
                    tasks.iter().map(|task| (json(task), format!("{job_id}/{}", task.task_id))).collect();
                futures::stream::iter(messages)
                    .map(|(payload, id)| {
                        let (broker, published) = (self.broker.clone(), self.metrics.tasks_published.clone());
                        async move {
                            broker.publish(Queue::Tasks, payload, &id).await?;
                            published.inc();
                            anyhow::Ok(())
                        }
                    })
                    .buffer_unordered(PUBLISH_WINDOW)
                    .try_collect::<()>()
                    .await?;
                // written last: a crash before this line republishes (duplicates are harmless)
                self.store.put(&keys::tasks(job_id), json(&tasks)).await?;
                info!(%job_id, tasks = tasks.len(), "tasks published");
                (tasks, now)
            }
        };
        let tracker = JobTracker::new(spec.clone(), &tasks, accepted_at);
        self.store.put(&keys::status(job_id), json(&tracker.status(flowgrad_jobs::unix_now()))).await?;
        let mut jobs = self.jobs.lock().await;
        jobs.insert(job_id, tracker);
        self.metrics.active_jobs.set(jobs.len() as i64);
        Ok(())
    }

    async fn handle_dead_task(&self, delivery: Delivery) {
        let recorded = async {
            let task = TaskSpec::from_json(&delivery.payload)?;
            let key = keys::result(task.job_id, &task.task_id);
            // no result yet: the broker dead-lettered it at its delivery limit (a worker records
            // the failures it dead-letters itself first). The dead-letter queue's own delivery
            // count says nothing about the task's.
            let limit = self.broker.delivery_limit();
            let redeliveries = task.redeliveries(limit);
            let deliveries = redeliveries + 1;
            let reason = format!("dead-lettered by the broker: {}", flowgrad_jobs::crash_limit_reason(deliveries, limit));
            let result = TaskResult::failed(task.job_id, &task.task_id, &self.settings.id, redeliveries, reason, 0.0);
            if self.store.put_if_absent(&key, json(&result)).await? {
                warn!(job_id = %task.job_id, task_id = %task.task_id, deliveries, "task dead-lettered by the broker: recorded as failed");
                self.metrics.tasks_dead_lettered.inc();
            }
            if let Err(err) = self.store.delete(&keys::checkpoint(task.job_id, &task.task_id)).await {
                warn!(job_id = %task.job_id, task_id = %task.task_id, %err, "could not delete the checkpoint of a dead-lettered task");
            }
            anyhow::Ok(())
        }
        .await;
        let settled = match recorded {
            Ok(()) => delivery.ack().await,
            Err(err) => {
                warn!(%err, "could not record a dead-lettered task; requeued");
                delivery.requeue().await
            }
        };
        if let Err(err) = settled {
            warn!(%err, "could not settle a dead-lettered task");
        }
    }

    async fn handle_event(&self, delivery: Delivery) {
        match flowgrad_jobs::from_json::<TaskEvent>("event", &delivery.payload) {
            Ok(event) => {
                tracing::debug!(job_id = %event.job_id, task_id = %event.task_id, worker = %event.worker, kind = ?event.kind, "task event");
                // nobody listening is fine
                let _ = self.events.send(event);
            }
            Err(err) => warn!(%err, "unreadable event"),
        }
        if let Err(err) = delivery.ack().await {
            warn!(%err, "could not ack an event");
        }
    }

    /// Reads new results and cancellation requests of every tracked job, rewrites statuses,
    /// finishes ended jobs and renews the leases of the others.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        if let Ok(depth) = self.broker.depth(Queue::Tasks).await {
            self.metrics.tasks_queue_depth.set(depth as i64);
        }
        let ids: Vec<Uuid> = self.jobs.lock().await.keys().copied().collect();
        for job_id in ids {
            let Some(mut tracker) = self.jobs.lock().await.get(&job_id).cloned() else { continue };
            for key in self.store.list(&keys::results_prefix(job_id)).await? {
                let Some(task) = key.strip_prefix(&keys::results_prefix(job_id)).and_then(|k| k.strip_suffix(".json"))
                else {
                    continue;
                };
                if tracker.results.contains_key(task) {
                    continue;
                }
                if let Some(bytes) = self.store.get(&key).await? {
                    let result: TaskResult = flowgrad_jobs::from_json("task result", &bytes)?;
                    tracker.results.insert(task.to_string(), result);
                }
            }
            if tracker.cancellation.is_none()
                && let Some(bytes) = self.store.get(&keys::cancel(job_id)).await?
            {
                let cancellation: Cancellation = flowgrad_jobs::from_json("cancellation", &bytes)?;
                info!(%job_id, reason = %cancellation.reason, "job cancelled");
                tracker.cancellation = Some(cancellation);
            }
            let now = flowgrad_jobs::unix_now();
            let status = tracker.status(now);
            if !status.state.is_final() && !self.claim(job_id).await? {
                info!(%job_id, "another coordinator took this job over; no longer tracking it");
                self.jobs.lock().await.remove(&job_id);
                continue;
            }
            if status.state.is_final() {
                // whatever ended the job, none of its checkpoints is needed any more
                for key in self.store.list(&keys::checkpoints_prefix(job_id)).await? {
                    self.store.delete(&key).await?;
                }
                self.store.put(&keys::report(job_id), json(&tracker.report(now))).await?;
            }
            self.store.put(&keys::status(job_id), json(&status)).await?;
            let mut jobs = self.jobs.lock().await;
            if status.state.is_final() {
                self.store.delete(&keys::active(job_id)).await?;
                jobs.remove(&job_id);
                self.metrics.jobs_finished.inc();
                info!(%job_id, state = ?status.state, succeeded = status.succeeded, failed = status.failed, cancelled = status.cancelled, "job finished");
            } else {
                jobs.insert(job_id, tracker);
            }
            self.metrics.active_jobs.set(jobs.len() as i64);
        }
        Ok(())
    }
}
