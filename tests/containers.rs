//! The container image (`FLOWGRAD_TEST_IMAGE`, built from docker/Dockerfile.cpu by
//! scripts/images.sh, which runs these tests) on real components: it starts read-only as uid
//! 10001, edits with the models built into its binaries, and a fleet of its containers (the
//! coordinator and two workers, RabbitMQ and the S3 server on the host) runs a job submitted with
//! the containerised `flowgrad submit`, through a `docker stop` of a worker mid-task.

use std::process::Output;
use std::time::Duration;

use flowgrad_jobs::{JobState, keys};
use flowgrad_testkit::output_text as text;
use flowgrad_tests::fleet::Fleet;

const MINUTES: Duration = Duration::from_secs(60);

fn image() -> String {
    std::env::var("FLOWGRAD_TEST_IMAGE")
        .expect("FLOWGRAD_TEST_IMAGE names the image under test: run these tests through scripts/images.sh")
}

/// Runs `args` in a one-off container of the image, as the fleet runs its containers.
fn run_in_image(fleet: &Fleet, name: &str, args: &[&str]) -> Output {
    fleet.container(name).arg(image()).args(args).output().expect("docker runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_read_only_as_uid_10001_and_edits_with_its_built_in_models() {
    let fleet = Fleet::new().await;
    let version =
        run_in_image(&fleet, &format!("{}-version", uuid::Uuid::new_v4().simple()), &["flowgrad", "--version"]);
    assert!(
        version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("flowgrad "),
        "{}",
        text(&version)
    );
    let who = run_in_image(&fleet, &format!("{}-id", uuid::Uuid::new_v4().simple()), &["id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&who.stdout).trim(), "10001", "{}", text(&who));
    let readonly =
        run_in_image(&fleet, &format!("{}-ro", uuid::Uuid::new_v4().simple()), &["touch", "/opt/flowgrad/x"]);
    assert!(!readonly.status.success(), "the root file system is read-only");
    let edit = run_in_image(
        &fleet,
        &format!("{}-run", uuid::Uuid::new_v4().simple()),
        &[
            "flowgrad",
            "run",
            "--input",
            "/opt/flowgrad/examples",
            "--output",
            "/tmp/out",
            "--target",
            "coat",
            "--steps",
            "4",
            "--iterations",
            "1",
        ],
    );
    assert!(edit.status.success(), "{}", text(&edit));
    let stdout = String::from_utf8_lossy(&edit.stdout);
    assert!(stdout.contains("wrote 8 edited image(s)") && stdout.contains("summary: "), "{}", text(&edit));
    assert!(
        !String::from_utf8_lossy(&edit.stderr).contains("without labels"),
        "the image has a font for grid.png: {}",
        text(&edit)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_containers_runs_a_reflow_job_through_a_docker_stop() {
    let mut fleet = Fleet::new().await;
    fleet.image = Some(image());
    let inputs = fleet.upload_images("in/", 3).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.start_worker(1);
    for id in ["coordinator", "worker-0", "worker-1"] {
        fleet.wait_serving(id, MINUTES).await;
        assert_eq!(fleet.http_get(id, "/healthz").await.0, 200, "{id}");
    }
    let job_id = uuid::Uuid::new_v4();
    let job = format!(
        "job_id = \"{job_id}\"\ninput = {{ prefix = \"in/\" }}\noutput_prefix = \"out/\"\nmodel = \"fashion-mnist-reflow\"\nguidance = {{ class = \"coat\" }}\nseed = 1\nbatch_size = 1\n[params]\nsteps = 16\niterations = 12\n"
    );
    std::fs::write(fleet.dir.path().join("job.toml"), job).unwrap();
    let submitted = run_in_image(
        &fleet,
        &format!("{}-submit", uuid::Uuid::new_v4().simple()),
        &["flowgrad", "submit", "--config", "/etc/flowgrad/flowgrad.toml", "/fleet/job.toml"],
    );
    assert!(submitted.status.success(), "{}", text(&submitted));
    assert_eq!(String::from_utf8_lossy(&submitted.stdout).trim(), job_id.to_string());
    // a worker container stopped mid-task hands the task back within its grace period
    fleet.wait_checkpoint(job_id, 2, 5 * MINUTES).await;
    let (took, status) = fleet.docker_stop_worker(0, Duration::from_secs(30));
    assert!(took < Duration::from_secs(25), "the worker container took {took:?} to stop");
    assert!(status.success(), "the worker exited cleanly on SIGTERM: {status:?}");
    let report = fleet.wait_report(job_id, 10 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    assert_eq!(report.status.succeeded, inputs.len());
    assert_eq!(fleet.list("out/").await.len(), inputs.len());
    assert!(fleet.list(&keys::checkpoints_prefix(job_id)).await.is_empty());
    let stopped = fleet.logs("worker-0");
    assert!(stopped.contains("checkpointed and handed back"), "the stopped worker handed its task back:\n{stopped}");
    assert!(report.results.iter().all(|r| r.redeliveries == 0), "the docker stop did not count as a failed delivery");
}
