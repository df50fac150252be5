//! The fleet end to end on real components: worker and coordinator processes, RabbitMQ, the S3
//! server. Bulk throughput, kill -9 chaos with byte-identical outputs, SIGTERM requeue,
//! coordinator restart, bad inputs and rejected jobs.

use std::collections::BTreeMap;
use std::time::Duration;

use flowgrad_jobs::{JobState, TaskOutcome, keys};
use flowgrad_queue::Queue;
use flowgrad_tests::fleet::Fleet;

const MINUTES: Duration = Duration::from_secs(60);

async fn outputs(fleet: &Fleet, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for key in fleet.list(prefix).await {
        let bytes = fleet.store.get(&key).await.unwrap().unwrap();
        out.insert(key.trim_start_matches(prefix).to_string(), bytes.to_vec());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_job_with_two_workers_writes_every_output_exactly_once() {
    let mut fleet = Fleet::new().await;
    let inputs = fleet.upload_images("in/", 20).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.start_worker(1);
    let job = Fleet::job("in/", "out/", 8, 2);
    fleet.submit(&job).await;
    fleet.submit(&job).await; // a duplicate submission is a no-op
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    assert_eq!((report.status.total_tasks, report.status.succeeded, report.status.total_images), (20, 20, 20));
    let written = fleet.list("out/").await;
    assert_eq!(written.len(), 20, "{written:?}");
    for input in &inputs {
        let expected = keys::output("out/", Some("in/"), input);
        assert_eq!(written.iter().filter(|k| **k == expected).count(), 1, "{expected} must exist exactly once");
    }
    assert_eq!(fleet.list(&keys::results_prefix(job.job_id)).await.len(), 20);
    assert_eq!(report.results.len(), 20);
    assert!(report.results.iter().all(|r| r.outcome == TaskOutcome::Succeeded && r.iterations_run == 2));
    let workers: std::collections::BTreeSet<_> = report.results.iter().map(|r| r.worker.clone()).collect();
    assert_eq!(workers.len(), 2, "both workers took tasks: {workers:?}");
    assert!(fleet.list(&format!("jobs/{}/checkpoints/", job.job_id)).await.is_empty(), "checkpoints are cleaned up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_workers_mid_task_resume_from_checkpoints_with_identical_outputs() {
    let mut fleet = Fleet::new().await;
    fleet.upload_images("in/", 6).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.start_worker(1);
    let job = Fleet::job("in/", "chaos/", 10, 5);
    fleet.submit(&job).await;
    for round in 0..3 {
        fleet.wait_checkpoint(job.job_id, 1, 3 * MINUTES).await;
        let victim = round % 2;
        let mut child = fleet.signal_worker(victim, libc::SIGKILL);
        child.wait().unwrap();
        fleet.start_worker(victim);
    }
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    let resumed: Vec<_> = report.results.iter().filter(|r| r.resumed_from_iteration.is_some()).collect();
    assert!(!resumed.is_empty(), "killed tasks must resume from their checkpoints");
    for r in &resumed {
        let from = r.resumed_from_iteration.unwrap();
        assert_eq!(r.iterations_run, 5 - from, "task {} resumed at {from} must run only the remaining iterations", r.task_id);
        assert!(r.redeliveries >= 1);
    }
    // the same job without interruptions, on the same inputs, seed and parameters
    let baseline = flowgrad_jobs::JobSpec { job_id: uuid::Uuid::new_v4(), output_prefix: "calm/".into(), ..job.clone() };
    fleet.submit(&baseline).await;
    let calm = fleet.wait_report(baseline.job_id, 6 * MINUTES).await;
    assert!(calm.results.iter().all(|r| r.resumed_from_iteration.is_none()));
    let (chaos, calm) = (outputs(&fleet, "chaos/").await, outputs(&fleet, "calm/").await);
    assert_eq!(chaos.len(), 6);
    assert_eq!(chaos, calm, "outputs after kill -9 must be byte-identical to an uninterrupted run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_checkpoints_requeues_and_exits_within_the_grace_period() {
    let mut fleet = Fleet::new().await;
    fleet.upload_images("in/", 2).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 10, 6);
    fleet.submit(&job).await;
    fleet.wait_checkpoint(job.job_id, 1, 3 * MINUTES).await;
    let mut child = fleet.signal_worker(0, libc::SIGTERM);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(25), "worker did not exit within its grace period");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "graceful exit: {status:?}");
    assert!(fleet.broker.depth(Queue::Tasks).await.unwrap() >= 1, "the interrupted task is back in the queue");
    fleet.start_worker(0);
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed);
    assert!(report.results.iter().any(|r| r.resumed_from_iteration.is_some_and(|i| i >= 1)), "the requeued task resumed: {:?}", report.results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_mid_job_is_rebuilt_from_storage() {
    let mut fleet = Fleet::new().await;
    fleet.upload_images("in/", 6).await;
    fleet.start_coordinator();
    let job = Fleet::job("in/", "out/", 8, 2);
    fleet.submit(&job).await;
    let deadline = std::time::Instant::now() + MINUTES;
    while fleet.store.get(&keys::tasks(job.job_id)).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "tasks were never published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.kill_coordinator();
    fleet.start_worker(0);
    fleet.wait_checkpoint(job.job_id, 1, 3 * MINUTES).await;
    fleet.start_coordinator();
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed);
    assert_eq!(report.status.succeeded, 6);
    assert_eq!(fleet.list("out/").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_fail_alone_and_bad_jobs_are_rejected_and_dead_lettered() {
    let mut fleet = Fleet::new().await;
    fleet.upload_images("in/", 2).await;
    fleet.store.put("in/broken.png", flowgrad_storage::Bytes::from_static(b"not a png")).await.unwrap();
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 6, 1);
    fleet.submit(&job).await;
    let report = fleet.wait_report(job.job_id, 4 * MINUTES).await;
    assert_eq!(report.status.state, JobState::CompletedWithFailures);
    assert_eq!((report.status.succeeded, report.status.failed), (2, 1));
    assert!(report.status.failures.iter().any(|f| f.reason.contains("in/broken.png")), "{:?}", report.status.failures);
    assert_eq!(fleet.list("out/").await.len(), 2);
    // the failed task was dead-lettered and nothing is left to redeliver (the coordinator drains
    // tasks.dead after making sure every dead task has a failed result)
    assert_eq!(fleet.broker.depth(Queue::Tasks).await.unwrap(), 0);
    let failed = report.results.iter().find(|r| matches!(r.outcome, TaskOutcome::Failed { .. })).expect("a failed result");
    assert!(matches!(&failed.outcome, TaskOutcome::Failed { reason } if reason.contains("in/broken.png")), "{failed:?}");

    let mut bad = Fleet::job("in/", "out2/", 6, 1);
    bad.guidance = flowgrad_jobs::GuidanceSpec::Class("spaceship".into());
    fleet.submit(&bad).await;
    fleet.submit_raw(b"{ not json".to_vec()).await;
    let deadline = std::time::Instant::now() + MINUTES;
    let status = loop {
        if let Some(status) = fleet.status(bad.job_id).await {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "no status for the rejected job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.state, JobState::Rejected);
    assert!(status.rejection.as_deref().unwrap_or_default().contains("spaceship"), "{status:?}");
    let deadline = std::time::Instant::now() + MINUTES;
    while fleet.broker.dead_depth(Queue::Jobs).await.unwrap() < 2 {
        assert!(std::time::Instant::now() < deadline, "both bad job messages must be dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fleet.list("out2/").await.is_empty());
}
