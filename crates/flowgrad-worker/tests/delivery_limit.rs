//! A task's unfinished deliveries carried over a planned stop (`earlier_deliveries`) still count:
//! one whose total passes the broker's limit is failed by the worker, with the count in the
//! reason, and dead-lettered (in-process broker and a local store; no model is loaded).

use std::sync::Arc;
use std::time::Duration;

use flowgrad_engine::{Assets, ModelRegistry};
use flowgrad_jobs::{GuidanceSpec, TaskInput, TaskOutcome, TaskResult, TaskSpec, keys};
use flowgrad_queue::{Broker, InProcessBroker, Queue, Topology};
use flowgrad_storage::{Bytes, LocalStore, ObjectStore};
use flowgrad_worker::{Worker, WorkerMetrics, WorkerSettings};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn crashes_carried_over_a_planned_stop_still_count_towards_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    let broker = Arc::new(InProcessBroker::new(Topology { delivery_limit: 2, ..Topology::default() }));
    let settings = WorkerSettings {
        id: "w".into(),
        assets: None,
        shutdown_grace_seconds: 1,
        max_attempts: 2,
        retry_backoff_ms: 1,
        max_image_bytes: 1 << 20,
        recorded_forwards: None,
        kernel_threads: Some(1),
    };
    let worker = Worker::new(
        store.clone(),
        broker.clone(),
        Arc::new(ModelRegistry::new(Assets::Embedded)),
        settings,
        WorkerMetrics::new(),
    )
    .unwrap();
    let task = TaskSpec {
        schema: flowgrad_jobs::SCHEMA_VERSION,
        job_id: uuid::Uuid::new_v4(),
        task_id: keys::task_id(0),
        inputs: vec![TaskInput { key: "in/a.png".into(), output_key: "out/a.png".into() }],
        model: "fashion-mnist".into(),
        guidance: GuidanceSpec::Class("coat".into()),
        params: flowgrad::EditParams::default(),
        seed: 0,
        published_at: 0.0,
        direction: None,
        // three crashes before a planned stop republished it: this fourth delivery is one more
        // than the broker allows (limit + 1 = 3)
        earlier_deliveries: 3,
    };
    broker.publish(Queue::Tasks, Bytes::from(flowgrad_jobs::to_json(&task)), "t").await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let token = shutdown.clone();
        async move { worker.run(token).await }
    });
    let key = keys::result(task.job_id, &task.task_id);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let result: TaskResult = loop {
        if let Some(bytes) = store.get(&key).await.unwrap() {
            break flowgrad_jobs::from_json("result", &bytes).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no result recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shutdown.cancel();
    running.await.unwrap().unwrap();
    match &result.outcome {
        TaskOutcome::Failed { reason } => {
            assert!(reason.contains("delivered 4 times") && reason.contains("delivery limit 2"), "{reason}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(result.redeliveries, 3);
    assert_eq!(broker.dead_depth(Queue::Tasks).await.unwrap(), 1, "dead-lettered");
    assert!(store.get("out/a.png").await.unwrap().is_none(), "nothing was edited");
}
