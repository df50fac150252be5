//! The embedded fleet end to end with the bundled model: a job's images are edited and reported,
//! a job the coordinator refuses ends rejected with the reason, the fleet still serving, and a
//! checkpoint that cannot be continued (unreadable, or made with other parameters) restarts its
//! task instead of failing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgrad_embedded::EmbeddedFleet;
use flowgrad_engine::{Assets, ModelRegistry};
use flowgrad_jobs::{GuidanceSpec, InputSpec, JobReport, JobSpec, JobState, JobStatus, TaskOutcome, keys};
use flowgrad_storage::Bytes;

async fn wait_final(fleet: &EmbeddedFleet, job_id: uuid::Uuid) -> JobStatus {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = fleet.status(job_id).await.unwrap()
            && status.state.is_final()
        {
            return status;
        }
        assert!(Instant::now() < deadline, "job {job_id} did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Image `i`: 8-bit levels, so its PNG decodes to exactly these values.
fn pixels(i: usize) -> Vec<f32> {
    (0..32 * 32).map(|p| f32::from(((p * (i + 3)) % 17 * 15) as u8) / 127.5 - 1.0).collect()
}

async fn upload(fleet: &EmbeddedFleet, prefix: &str, count: usize) {
    for i in 0..count {
        let png = flowgrad_storage::image::encode_png(&pixels(i), 1, 32, 32).unwrap();
        fleet.store().put(&format!("{prefix}{i}.png"), Bytes::from(png)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_edited_and_a_bad_one_rejected_by_one_process() {
    let root = tempfile::tempdir().unwrap();
    let fleet = EmbeddedFleet::start(root.path(), Arc::new(ModelRegistry::new(Assets::Embedded)), 2, 1).unwrap();
    upload(&fleet, "in/", 3).await;
    let coat = GuidanceSpec::Class("coat".into());
    let job = JobSpec {
        params: flowgrad_params::EditParams { steps: 4, iterations: 2, ..Default::default() },
        ..JobSpec::new(InputSpec::Prefix("in/".into()), "out/", "fashion-mnist", coat.clone())
    };
    fleet.submit(&job).await.unwrap();
    let status = wait_final(&fleet, job.job_id).await;
    assert_eq!((status.state, status.succeeded, status.failed), (JobState::Completed, 3, 0), "{status:?}");
    for i in 0..3 {
        assert!(fleet.store().get(&format!("out/{i}.png")).await.unwrap().is_some(), "out/{i}.png written");
    }
    let report: JobReport =
        flowgrad_jobs::from_json("report", &fleet.store().get(&keys::report(job.job_id)).await.unwrap().unwrap())
            .unwrap();
    assert_eq!(report.results.len(), 3);

    let unknown = JobSpec::new(InputSpec::Prefix("in/".into()), "elsewhere/", "stable-diffusion", coat);
    fleet.submit(&unknown).await.unwrap();
    let status = wait_final(&fleet, unknown.job_id).await;
    assert_eq!(status.state, JobState::Rejected);
    assert!(status.rejection.as_deref().unwrap_or_default().contains("unknown model `stable-diffusion`"), "{status:?}");
    fleet.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_that_cannot_be_continued_restart_their_tasks() {
    let root = tempfile::tempdir().unwrap();
    let models = Arc::new(ModelRegistry::new(Assets::Embedded));
    let fleet = EmbeddedFleet::start(root.path(), models.clone(), 1, 2).unwrap();
    upload(&fleet, "in/", 3).await;
    let params = flowgrad_params::EditParams { steps: 4, iterations: 2, ..Default::default() };
    let guidance = GuidanceSpec::Class("coat".into());
    let job = JobSpec {
        params: params.clone(),
        ..JobSpec::new(InputSpec::Prefix("in/".into()), "out/", "fashion-mnist", guidance.clone())
    };
    // the state a worker starts task `i` with, made with `params`
    let state = |i: usize, params: &flowgrad_params::EditParams| {
        let session = models.get("fashion-mnist").unwrap().session(&guidance, params).unwrap();
        let stream = keys::stream([format!("in/{i}.png").as_str()]);
        Bytes::from(session.start(&pixels(i), 1, job.seed, stream).unwrap().to_bytes().unwrap())
    };
    let checkpoint = |i: usize| keys::checkpoint(job.job_id, &keys::task_id(i));
    // task 0: a torn write; task 1: made with another guidance weight (as after a rollout);
    // task 2: a good checkpoint, which is continued
    fleet.store().put(&checkpoint(0), Bytes::from_static(b"not a checkpoint")).await.unwrap();
    fleet
        .store()
        .put(&checkpoint(1), state(1, &flowgrad_params::EditParams { eta: params.eta / 2.0, ..params.clone() }))
        .await
        .unwrap();
    fleet.store().put(&checkpoint(2), state(2, &params)).await.unwrap();

    fleet.submit(&job).await.unwrap();
    let status = wait_final(&fleet, job.job_id).await;
    assert_eq!((status.state, status.succeeded, status.failed), (JobState::Completed, 3, 0), "{status:?}");
    let report: JobReport =
        flowgrad_jobs::from_json("report", &fleet.store().get(&keys::report(job.job_id)).await.unwrap().unwrap())
            .unwrap();
    let resumed: Vec<Option<usize>> = report.results.iter().map(|r| r.resumed_from_iteration).collect();
    assert_eq!(resumed, [None, None, Some(0)], "only the good checkpoint is continued");
    for result in &report.results {
        assert!(matches!(result.outcome, TaskOutcome::Succeeded), "{}: {:?}", result.task_id, result.outcome);
        assert_eq!(result.iterations_run, 2, "{}", result.task_id);
    }
    fleet.stop().await.unwrap();
}
