//! The embedded fleet end to end with the bundled model: a job's images are edited and reported,
//! and a job the coordinator refuses ends rejected with the reason, the fleet still serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgrad_embedded::EmbeddedFleet;
use flowgrad_engine::{Assets, ModelRegistry};
use flowgrad_jobs::{GuidanceSpec, InputSpec, JobReport, JobSpec, JobState, JobStatus, keys};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_edited_and_a_bad_one_rejected_by_one_process() {
    let root = tempfile::tempdir().unwrap();
    let fleet = EmbeddedFleet::start(root.path(), Arc::new(ModelRegistry::new(Assets::Embedded)), 2).unwrap();
    for i in 0..3 {
        let pixels: Vec<f32> = (0..32 * 32).map(|p| ((p * (i + 3)) % 17) as f32 / 8.0 - 1.0).collect();
        let png = flowgrad_storage::image::encode_png(&pixels, 1, 32, 32).unwrap();
        fleet.store().put(&format!("in/{i}.png"), Bytes::from(png)).await.unwrap();
    }
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
