//! Load: 1000 no-op tasks (M = 0: encode and decode only) through the real RabbitMQ and S3 server
//! with two worker processes. Nothing may be lost or done twice. The throughput is printed for the
//! benchmark notes (BENCHMARKS.md), never asserted.

use std::time::{Duration, Instant};

use flowgrad_jobs::{JobState, TaskOutcome, keys};
use flowgrad_queue::Queue;
use flowgrad_tests::fleet::Fleet;

const TASKS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_no_op_tasks_through_two_workers_lose_and_duplicate_nothing() {
    let mut fleet = Fleet::new().await;
    let png = {
        let one = fleet.upload_images("seed/", 1).await;
        fleet.store.get(&one[0]).await.unwrap().unwrap()
    };
    let mut uploads = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let (store, png) = (fleet.store.clone(), png.clone());
        uploads.spawn(async move { store.put(&format!("in/{i:04}.png"), png).await });
        if uploads.len() >= 32 {
            uploads.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(done) = uploads.join_next().await {
        done.unwrap().unwrap();
    }
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.start_worker(1);
    let job = Fleet::job("in/", "out/", 2, 0);
    let started = Instant::now();
    fleet.submit(&job).await;
    while fleet.store.get(&keys::tasks(job.job_id)).await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = started.elapsed().as_secs_f64();
    println!(
        "load: the coordinator listed the inputs and published {TASKS} tasks (with confirms) in {published:.2} s: {:.0} tasks/s",
        TASKS as f64 / published
    );
    let report = fleet.wait_report(job.job_id, Duration::from_secs(20 * 60)).await;
    let seconds = started.elapsed().as_secs_f64();
    println!("load: {TASKS} no-op tasks, 2 workers: {seconds:.1} s, {:.1} tasks/s end to end", TASKS as f64 / seconds);

    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    assert_eq!((report.status.total_tasks, report.status.succeeded), (TASKS, TASKS));
    assert!(report.results.iter().all(|r| r.outcome == TaskOutcome::Succeeded && r.iterations_run == 0));
    let outputs = fleet.list("out/").await;
    assert_eq!(outputs.len(), TASKS, "one output per input");
    assert_eq!(fleet.list(&keys::results_prefix(job.job_id)).await.len(), TASKS);
    assert_eq!(fleet.broker.depth(Queue::Tasks).await.unwrap(), 0);
    assert_eq!(fleet.broker.dead_depth(Queue::Tasks).await.unwrap(), 0);
    // every task was edited by exactly one worker, once
    let done: f64 = [fleet.metrics("worker-0").await, fleet.metrics("worker-1").await]
        .iter()
        .map(|m| {
            m.lines().find_map(|l| l.strip_prefix("flowgrad_tasks_done_total ")).unwrap().trim().parse::<f64>().unwrap()
        })
        .sum();
    assert_eq!(done, TASKS as f64, "no task was processed twice");
    let editor: f64 = report.results.iter().map(|r| r.edit_seconds).sum();
    let total: f64 = report.results.iter().map(|r| r.total_seconds).sum();
    println!("load: editor share of task time {:.1} % (the rest: queue, S3, checkpoints)", 100.0 * editor / total);
}
