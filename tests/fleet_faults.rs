//! The fleet under infrastructure faults and operations, on real components: the broker
//! connection cut and restored (through a TCP proxy), the S3 server stopped and restarted
//! mid-job, several coordinators (one killed, its job adopted), cancellation, and the metrics
//! the processes export.

use std::collections::BTreeSet;
use std::time::Duration;

use flowgrad_jobs::{JobState, TaskOutcome, keys};
use flowgrad_queue::Queue;
use flowgrad_testkit::{TcpProxy, upstream, via};
use flowgrad_tests::fleet::{Fleet, amqp_url};
use flowgrad_tests::s3_server::PrivateS3;

const MINUTES: Duration = Duration::from_secs(60);

/// Every input has exactly one output and one successful result.
async fn assert_exactly_once(
    fleet: &Fleet,
    job: uuid::Uuid,
    inputs: &[String],
    input_prefix: &str,
    output_prefix: &str,
) {
    let written = fleet.list(output_prefix).await;
    assert_eq!(written.len(), inputs.len(), "{written:?}");
    for input in inputs {
        let expected = keys::output(output_prefix, Some(input_prefix), input);
        assert_eq!(written.iter().filter(|k| **k == expected).count(), 1, "{expected} must exist exactly once");
    }
    assert_eq!(fleet.list(&keys::results_prefix(job)).await.len(), inputs.len());
}

/// The value of an unlabelled Prometheus sample in a `/metrics` text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{metrics}"))
        .trim()
        .parse()
        .expect("numeric sample")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connection_cut_and_restored_mid_job_loses_nothing() {
    let mut fleet = Fleet::new().await;
    let inputs = fleet.upload_images("in/", 6).await;
    let proxy = TcpProxy::start(upstream(&amqp_url(), 5672)).await.expect("proxy");
    fleet.process_env.push(("FLOWGRAD__BROKER__URL".into(), via(&amqp_url(), proxy.addr())));
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.start_worker(1);
    let job = Fleet::job("in/", "out/", 8, 3);
    fleet.submit(&job).await;
    for _ in 0..2 {
        fleet.wait_checkpoint(job.job_id, 1, 3 * MINUTES).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.restore();
    }
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    assert_eq!(report.status.succeeded, 6);
    assert_exactly_once(&fleet, job.job_id, &inputs, "in/", "out/").await;
    let logs = fleet.logs("worker-0") + &fleet.logs("worker-1");
    assert!(logs.contains("reconnecting"), "the workers saw the cut and reconnected");
    assert!(!logs.contains("guest:guest"), "credentials never appear in logs");
    let deadline = std::time::Instant::now() + MINUTES;
    while fleet.broker.depth(Queue::Tasks).await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "a task message was left behind");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_stopped_and_restarted_mid_job_loses_nothing() {
    let s3 = PrivateS3::start(9100);
    let mut fleet = Fleet::on_s3(&s3.endpoint()).await;
    let inputs = fleet.upload_images("in/", 6).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.start_worker(1);
    let job = Fleet::job("in/", "out/", 8, 3);
    fleet.submit(&job).await;
    fleet.wait_checkpoint(job.job_id, 1, 3 * MINUTES).await;
    s3.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    s3.restart();
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    assert_eq!(report.status.succeeded, 6);
    assert_exactly_once(&fleet, job.job_id, &inputs, "in/", "out/").await;
    let logs = fleet.logs("worker-0") + &fleet.logs("worker-1") + &fleet.logs("coordinator");
    assert!(logs.contains("retrying"), "storage calls failed during the outage and were retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_coordinators_share_jobs_and_adopt_a_dead_ones_job() {
    let mut fleet = Fleet::new().await;
    let first = fleet.upload_images("a/", 4).await;
    let second = fleet.upload_images("b/", 4).await;
    fleet.process_env.push(("FLOWGRAD__COORDINATOR__LEASE_SECONDS".into(), "3".into()));
    fleet.start_coordinator_at(0);
    fleet.start_coordinator_at(1);
    fleet.start_worker(0);
    fleet.start_worker(1);
    let (job_a, job_b) = (Fleet::job("a/", "out-a/", 8, 3), Fleet::job("b/", "out-b/", 8, 3));
    fleet.submit(&job_a).await;
    fleet.submit(&job_b).await;
    // both jobs accepted and leased; then the owner of job A dies
    let mut owner_of_a = String::new();
    let deadline = std::time::Instant::now() + MINUTES;
    for job in [job_a.job_id, job_b.job_id] {
        loop {
            if let Some(bytes) = fleet.store.get(&keys::active(job)).await.unwrap() {
                let lease: flowgrad_jobs::Lease = flowgrad_jobs::from_json("lease", &bytes).unwrap();
                if job == job_a.job_id {
                    owner_of_a = lease.coordinator;
                }
                break;
            }
            assert!(std::time::Instant::now() < deadline, "job {job} was never leased");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let victim = if owner_of_a == Fleet::coordinator_id(0) { 0 } else { 1 };
    fleet.kill_coordinator_at(victim);
    let survivor = Fleet::coordinator_id(1 - victim);
    let report_a = fleet.wait_report(job_a.job_id, 6 * MINUTES).await;
    let report_b = fleet.wait_report(job_b.job_id, 6 * MINUTES).await;
    for report in [&report_a, &report_b] {
        assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
        assert_eq!(report.status.succeeded, 4);
    }
    assert_exactly_once(&fleet, job_a.job_id, &first, "a/", "out-a/").await;
    assert_exactly_once(&fleet, job_b.job_id, &second, "b/", "out-b/").await;
    let adopted = fleet.logs(&survivor);
    assert!(
        adopted.contains("adopting job") && adopted.contains(&job_a.job_id.to_string()),
        "{survivor} adopted job A after its coordinator died"
    );
    assert!(fleet.list(keys::ACTIVE_PREFIX).await.is_empty(), "ended jobs release their leases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_queued_and_running_tasks_and_ends_the_job() {
    let mut fleet = Fleet::new().await;
    fleet.upload_images("in/", 8).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 8, 6);
    fleet.submit(&job).await;
    fleet.wait_checkpoint(job.job_id, 1, 3 * MINUTES).await;
    let cancel = std::process::Command::new(flowgrad_tests::fleet::binary("flowgrad"))
        .args(["cancel", "--config"])
        .arg(&fleet.config)
        .arg(job.job_id.to_string())
        .args(["--reason", "wrong target class"])
        .output()
        .expect("flowgrad cancel runs");
    assert!(cancel.status.success(), "{}", String::from_utf8_lossy(&cancel.stderr));
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("cancellation requested"));
    let status = fleet.wait_status(job.job_id, 2 * MINUTES, |s| s.state.is_final()).await;
    assert_eq!(status.state, JobState::Cancelled, "{status:?}");
    assert_eq!(status.cancellation.as_deref(), Some("wrong target class"));
    assert!(status.cancelled >= 7 && status.succeeded + status.cancelled == 8, "{status:?}");
    assert!(fleet.store.get(&keys::report(job.job_id)).await.unwrap().is_some());
    // the worker drains the queue, recording every remaining task as cancelled, and edits nothing more
    let deadline = std::time::Instant::now() + 2 * MINUTES;
    loop {
        let results = fleet.list(&keys::results_prefix(job.job_id)).await;
        if results.len() == 8 && fleet.broker.depth(Queue::Tasks).await.unwrap() == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "cancelled tasks were not drained: {} results", results.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut outcomes = BTreeSet::new();
    for key in fleet.list(&keys::results_prefix(job.job_id)).await {
        let result: flowgrad_jobs::TaskResult =
            flowgrad_jobs::from_json("result", &fleet.store.get(&key).await.unwrap().unwrap()).unwrap();
        outcomes.insert(format!("{:?}", result.outcome));
    }
    assert!(outcomes.contains(&format!("{:?}", TaskOutcome::Cancelled)), "{outcomes:?}");
    assert!(fleet.list("out/").await.len() <= 1, "at most the task finished before the request has an output");
    assert!(
        fleet.list(&format!("jobs/{}/checkpoints/", job.job_id)).await.is_empty(),
        "cancelled tasks drop their checkpoints"
    );
    let again = std::process::Command::new(flowgrad_tests::fleet::binary("flowgrad"))
        .args(["cancel", "--config"])
        .arg(&fleet.config)
        .arg(job.job_id.to_string())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("already ended"));
    let unknown = std::process::Command::new(flowgrad_tests::fleet::binary("flowgrad"))
        .args(["cancel", "--config"])
        .arg(&fleet.config)
        .arg(uuid::Uuid::new_v4().to_string())
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown"));
    // watching a job that never got a status gives up after the wait with its own exit code
    let watched = std::process::Command::new(flowgrad_tests::fleet::binary("flowgrad"))
        .args(["status", "--watch", "--wait-seconds", "1", "--config"])
        .arg(&fleet.config)
        .arg(uuid::Uuid::new_v4().to_string())
        .output()
        .unwrap();
    assert_eq!(watched.status.code(), Some(3), "{}", String::from_utf8_lossy(&watched.stderr));
    assert!(String::from_utf8_lossy(&watched.stderr).contains("no status"));
    let ended = std::process::Command::new(flowgrad_tests::fleet::binary("flowgrad"))
        .args(["status", "--config"])
        .arg(&fleet.config)
        .arg(job.job_id.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ended.stdout);
    assert!(text.contains(": cancelled  tasks") && text.contains("  cancelled: wrong target class"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_processes_did() {
    let mut fleet = Fleet::new().await;
    fleet.upload_images("in/", 3).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 6, 2);
    fleet.submit(&job).await;
    fleet.wait_report(job.job_id, 4 * MINUTES).await;
    let worker = fleet.metrics("worker-0").await;
    assert_eq!(sample(&worker, "flowgrad_tasks_done_total"), 3.0);
    assert_eq!(sample(&worker, "flowgrad_tasks_failed_total"), 0.0);
    assert_eq!(sample(&worker, "flowgrad_iteration_seconds_count"), 6.0, "3 tasks × 2 iterations");
    assert_eq!(
        sample(&worker, "flowgrad_checkpoint_seconds_count"),
        9.0,
        "a checkpoint at the start and after every iteration"
    );
    assert_eq!(sample(&worker, "flowgrad_queue_lag_seconds_count"), 3.0);
    assert!(sample(&worker, "flowgrad_checkpoint_bytes") > 0.0);
    // the coordinator counts a finished job after writing its report and status (the report can
    // be seen first): wait for the count, briefly
    let coordinator = fleet
        .wait_metrics("coordinator", Duration::from_secs(10), |m| sample(m, "flowgrad_jobs_finished_total") >= 1.0)
        .await;
    assert_eq!(sample(&coordinator, "flowgrad_tasks_published_total"), 3.0);
    assert_eq!(sample(&coordinator, "flowgrad_jobs_finished_total"), 1.0);
}
