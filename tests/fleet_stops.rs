//! Planned and unplanned stops of fleet processes, on the real RabbitMQ and S3 server: SIGTERM
//! never counts against the delivery limit while crashes do (with the right count in the
//! reason), a duplicate copy of a task stops once the other finishes, readiness follows the
//! broker, colliding outputs are refused, and no checkpoint outlives its job.

use std::time::Duration;

use flowgrad_jobs::{JobState, TaskResult, TaskSpec, keys};
use flowgrad_queue::Queue;
use flowgrad_storage::Bytes;
use flowgrad_storage::image::{ImageLimits, decode_for_model, encode_png};
use flowgrad_testkit::{TcpProxy, upstream, via};
use flowgrad_tests::fleet::{Fleet, amqp_url};

const MINUTES: Duration = Duration::from_secs(60);

async fn result_of(fleet: &Fleet, job: uuid::Uuid) -> TaskResult {
    let bytes = fleet.store.get(&keys::result(job, &keys::task_id(0))).await.unwrap().expect("result recorded");
    flowgrad_jobs::from_json("result", &bytes).unwrap()
}

async fn assert_no_checkpoints(fleet: &Fleet, job: uuid::Uuid) {
    let left = fleet.list(&keys::checkpoints_prefix(job)).await;
    assert!(left.is_empty(), "checkpoints outlived the job: {left:?}");
}

/// Stops worker 0 with `signal` `stops` times, each time after the running worker advanced the
/// task past the checkpoint it started from, restarting it after each stop; returns the
/// checkpointed iterations after each stop.
async fn stop_repeatedly(fleet: &mut Fleet, job: uuid::Uuid, signal: i32, stops: usize) -> Vec<usize> {
    let mut seen = vec![];
    for _ in 0..stops {
        let last = fleet.checkpoint_iteration(job).await;
        fleet.wait_checkpoint(job, last + 1, 3 * MINUTES).await;
        let mut child = fleet.signal_worker(0, signal);
        child.wait().expect("worker exits");
        seen.push(fleet.checkpoint_iteration(job).await);
        fleet.start_worker(0);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sigtermed_ten_times_under_delivery_limit_five_completes_resuming_each_time() {
    let mut fleet = Fleet::with_delivery_limit(5).await;
    // a raw 28×28 Fashion-MNIST image: padded for the model, its edit cropped back to 28×28
    let data = flowgrad_models::FashionMnist::load(
        std::path::Path::new(flowgrad_models::fashion::DEFAULT_DIR),
        flowgrad_models::Split::Test,
    )
    .expect("Fashion-MNIST installed");
    let raw: Vec<f32> = data.raw(0).iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect();
    fleet.store.put("in/raw.png", Bytes::from(encode_png(&raw, 1, 28, 28).unwrap())).await.unwrap();
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 16, 60);
    fleet.submit(&job).await;
    let mut seen = stop_repeatedly(&mut fleet, job.job_id, libc::SIGTERM, 5).await;
    // a stop while the worker starts up (the task may already be sent to it) does not count either
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.signal_worker(0, libc::SIGTERM).wait().expect("worker exits");
    fleet.start_worker(0);
    seen.extend(stop_repeatedly(&mut fleet, job.job_id, libc::SIGTERM, 5).await);
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?} (stopped at iterations {seen:?})", report.status);
    let result = result_of(&fleet, job.job_id).await;
    let warnings: Vec<String> = fleet
        .logs("worker-0")
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("resuming") || l.contains("handed back"))
        .map(String::from)
        .collect();
    assert_eq!(result.redeliveries, 0, "planned stops do not count as failed deliveries:\n{}", warnings.join("\n"));
    assert!(
        result.resumed_from_iteration.is_some_and(|i| i >= *seen.last().unwrap()),
        "{:?} vs {seen:?}",
        result.resumed_from_iteration
    );
    let logs = fleet.logs("worker-0");
    assert!(logs.matches("resuming from checkpoint").count() >= 10, "every restart resumed from the checkpoint");
    assert!(logs.matches("checkpointed and handed back").count() >= 10);
    assert_no_checkpoints(&fleet, job.job_id).await;
    let image = &result.images[0];
    assert!(image.note.as_deref().is_some_and(|n| n.starts_with("padded 28×28")), "{:?}", image.note);
    let output = fleet.store.get("out/raw.png").await.unwrap().expect("output written");
    let decoded = decode_for_model(&output, 1, 28, 28, &ImageLimits::default()).unwrap();
    assert_eq!(decoded.note, None, "the output has the input's 28×28 size");
    // the fleet records the independent judge like the embedded run
    assert!(image.judge_target_prob_before.is_some() && image.judge_target_prob_after.is_some(), "{image:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_crashes_its_worker_past_the_limit_is_dead_lettered_with_the_right_count() {
    let mut fleet = Fleet::with_delivery_limit(5).await;
    fleet.upload_images("in/", 1).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 16, 200);
    fleet.submit(&job).await;
    stop_repeatedly(&mut fleet, job.job_id, libc::SIGKILL, 6).await;
    let status = fleet.wait_status(job.job_id, 3 * MINUTES, |s| s.state.is_final()).await;
    assert_eq!(status.state, JobState::CompletedWithFailures, "{status:?}");
    let reason = &status.failures[0].reason;
    assert!(
        reason.contains("dead-lettered by the broker")
            && reason.contains("delivered 6 times")
            && reason.contains("delivery limit 5"),
        "{reason}"
    );
    assert_eq!(result_of(&fleet, job.job_id).await.redeliveries, 5);
    assert_no_checkpoints(&fleet, job.job_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_copy_of_a_task_stops_once_the_other_records_the_result() {
    let mut fleet = Fleet::new().await;
    fleet.upload_images("in/", 1).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 16, 30);
    fleet.submit(&job).await;
    fleet.wait_checkpoint(job.job_id, 4, 3 * MINUTES).await;
    // what a broker outage can cause: the same task delivered a second time while it runs
    let tasks: Vec<TaskSpec> =
        flowgrad_jobs::from_json("tasks", &fleet.store.get(&keys::tasks(job.job_id)).await.unwrap().unwrap()).unwrap();
    fleet.broker.publish(Queue::Tasks, Bytes::from(flowgrad_jobs::to_json(&tasks[0])), "duplicate").await.unwrap();
    fleet.start_worker(1);
    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    let deadline = std::time::Instant::now() + 2 * MINUTES;
    loop {
        let logs = fleet.logs("worker-0") + &fleet.logs("worker-1");
        if logs.contains("stopping this copy") {
            break;
        }
        assert!(!logs.contains("another worker recorded this task first"), "both copies ran to the end");
        assert!(std::time::Instant::now() < deadline, "the duplicate copy never stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fleet.list("out/").await.len(), 1);
    assert_no_checkpoints(&fleet, job.job_id).await;
}

/// Polls `/readyz` of `id` until it answers `code`; returns the seconds it took.
async fn readiness_becomes(fleet: &Fleet, id: &str, code: u16) -> f64 {
    let start = std::time::Instant::now();
    loop {
        let (got, body) = fleet.http_get(id, "/readyz").await;
        if got == code {
            return start.elapsed().as_secs_f64();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "/readyz of {id} stayed {got} ({body})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_and_liveness_does_not() {
    let mut fleet = Fleet::new().await;
    let proxy = TcpProxy::start(upstream(&amqp_url(), 5672)).await.expect("proxy");
    fleet.process_env.push(("FLOWGRAD__BROKER__URL".into(), via(&amqp_url(), proxy.addr())));
    fleet.start_coordinator();
    fleet.start_worker(0);
    for id in ["coordinator", "worker-0"] {
        fleet.wait_serving(id, MINUTES).await;
        readiness_becomes(&fleet, id, 200).await;
    }
    proxy.cut();
    for id in ["coordinator", "worker-0"] {
        let seconds = readiness_becomes(&fleet, id, 503).await;
        assert!(seconds < 5.0, "{id} noticed the broker outage after {seconds:.1} s");
        let (_, body) = fleet.http_get(id, "/readyz").await;
        assert!(body.contains("broker unreachable"), "{body}");
        assert_eq!(fleet.http_get(id, "/healthz").await.0, 200, "liveness does not depend on the broker");
    }
    proxy.restore();
    for id in ["coordinator", "worker-0"] {
        let seconds = readiness_becomes(&fleet, id, 200).await;
        assert!(seconds < 5.0, "{id} noticed the broker was back after {seconds:.1} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_that_would_write_one_output_are_refused_naming_both() {
    let mut fleet = Fleet::new().await;
    let png = fleet.store.get(&fleet.upload_images("in/collide/", 1).await[0]).await.unwrap().unwrap();
    fleet.store.put("in/collide/shoe.png", png.clone()).await.unwrap();
    fleet.store.put("in/collide/shoe.jpg", png).await.unwrap();
    fleet.start_coordinator();
    let job = Fleet::job("in/", "out/", 4, 1);
    fleet.submit(&job).await;
    let status = fleet.wait_status(job.job_id, MINUTES, |s| s.state.is_final()).await;
    assert_eq!(status.state, JobState::Rejected, "{status:?}");
    let reason = status.rejection.unwrap();
    assert!(
        reason.contains("`in/collide/shoe.jpg`")
            && reason.contains("`in/collide/shoe.png`")
            && reason.contains("`out/collide/shoe.png`"),
        "{reason}"
    );
    // the coordinator's rejection line carries the job id
    let logs = fleet.logs("coordinator");
    let line = logs.lines().find(|l| l.contains("job rejected")).expect("rejection logged");
    assert!(line.contains(&job.job_id.to_string()), "{line}");
}
