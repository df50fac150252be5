//! A whole fleet in one process: the same coordinator and workers as a Kubernetes deployment,
//! with the services' own default settings (`flowgrad_coordinator::settings::DEFAULTS`,
//! `flowgrad_worker::settings::DEFAULTS`), over a local-folder object store and the in-process
//! broker. `flowgrad run` edits with it; tests drive it directly.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use flowgrad_coordinator::settings::CoordinatorSection;
use flowgrad_coordinator::{Coordinator, CoordinatorMetrics};
use flowgrad_engine::ModelRegistry;
use flowgrad_jobs::{JobSpec, JobStatus, TaskEvent, keys};
use flowgrad_queue::{InProcessBroker, Queue, RabbitConfig, SharedBroker};
use flowgrad_storage::{Bytes, LocalStore, RetryPolicy, RetryingStore, SharedStore};
use flowgrad_worker::settings::WorkerSection;
use flowgrad_worker::{Worker, WorkerMetrics};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running embedded fleet: one coordinator and its workers, stopped by [`EmbeddedFleet::stop`].
pub struct EmbeddedFleet {
    store: SharedStore,
    broker: SharedBroker,
    coordinator: Coordinator,
    shutdown: CancellationToken,
    services: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl EmbeddedFleet {
    /// Starts a coordinator serving the models of `models` and `workers` workers editing with
    /// them, each with its own pool of `kernel_threads` CPU threads, storing every object under
    /// the folder `root`. Must be called inside a tokio runtime.
    pub fn start(
        root: &Path,
        models: Arc<ModelRegistry>,
        workers: usize,
        kernel_threads: usize,
    ) -> anyhow::Result<Self> {
        if workers == 0 {
            bail!("an embedded fleet needs at least one worker");
        }
        let store: SharedStore = Arc::new(RetryingStore::new(LocalStore::new(root)?, RetryPolicy::default()));
        let broker: SharedBroker = Arc::new(InProcessBroker::new(RabbitConfig::default().topology));
        let shutdown = CancellationToken::new();
        let mut coordinator_section: CoordinatorSection =
            flowgrad_service::section_defaults(flowgrad_coordinator::settings::DEFAULTS)?;
        coordinator_section.coordinator.id = "embedded-coordinator".into();
        let coordinator = Coordinator::new(
            store.clone(),
            broker.clone(),
            models.catalog().clone(),
            coordinator_section.coordinator,
            CoordinatorMetrics::new(),
        );
        let mut services = vec![];
        {
            let (coordinator, token) = (coordinator.clone(), shutdown.clone());
            services.push(tokio::spawn(async move { coordinator.run(token).await }));
        }
        let worker_section: WorkerSection = flowgrad_service::section_defaults(flowgrad_worker::settings::DEFAULTS)?;
        for w in 0..workers {
            let settings = flowgrad_worker::WorkerSettings {
                id: format!("embedded-worker-{w}"),
                kernel_threads: Some(kernel_threads),
                ..worker_section.worker.clone()
            };
            let worker = Worker::new(store.clone(), broker.clone(), models.clone(), settings, WorkerMetrics::new())?;
            let token = shutdown.clone();
            services.push(tokio::spawn(async move { worker.run(token).await }));
        }
        Ok(Self { store, broker, coordinator, shutdown, services })
    }

    /// The fleet's object store (inputs go in, outputs, status and reports come out).
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The coordinator's task events (start, iteration, retry), for progress displays.
    pub fn events(&self) -> broadcast::Receiver<TaskEvent> {
        self.coordinator.subscribe()
    }

    /// Queues `job`, as `flowgrad submit` does on a deployed fleet.
    pub async fn submit(&self, job: &JobSpec) -> anyhow::Result<()> {
        self.broker.publish(Queue::Jobs, Bytes::from(flowgrad_jobs::to_json(job)), &job.job_id.to_string()).await?;
        Ok(())
    }

    /// The job's latest stored status (none before the coordinator first writes it); an error
    /// when a coordinator or worker stopped, since the job could then never end.
    pub async fn status(&self, job_id: uuid::Uuid) -> anyhow::Result<Option<JobStatus>> {
        if self.services.iter().any(JoinHandle::is_finished) {
            bail!("an embedded coordinator or worker stopped before the job ended");
        }
        match self.store.get(&keys::status(job_id)).await? {
            Some(bytes) => Ok(Some(flowgrad_jobs::from_json("status", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Stops every service and returns the first error one of them ended with.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for service in self.services {
            service.await??;
        }
        Ok(())
    }
}
