//! The fleet end to end on real components: worker and coordinator processes, RabbitMQ, the S3
//! server. Bulk throughput, kill -9 chaos with byte-identical outputs, SIGTERM requeue,
//! coordinator restart, a corpus of bad inputs and rejected jobs, global directions learned and
//! applied.

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
        assert_eq!(
            r.iterations_run,
            5 - from,
            "task {} resumed at {from} must run only the remaining iterations",
            r.task_id
        );
        assert!(r.redeliveries >= 1);
    }
    // the same job without interruptions, on the same inputs, seed and parameters
    let baseline =
        flowgrad_jobs::JobSpec { job_id: uuid::Uuid::new_v4(), output_prefix: "calm/".into(), ..job.clone() };
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
    assert!(
        report.results.iter().any(|r| r.resumed_from_iteration.is_some_and(|i| i >= 1)),
        "the requeued task resumed: {:?}",
        report.results
    );
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

/// A job variant as raw JSON: `edit` changes the serialised job; the id is kept when present.
/// A job message and the id it carries, if any.
type Payload = (Option<uuid::Uuid>, Vec<u8>);

fn variant(base: &flowgrad_jobs::JobSpec, edit: impl FnOnce(&mut serde_json::Value)) -> Payload {
    let mut value: serde_json::Value = serde_json::from_slice(&flowgrad_jobs::to_json(&flowgrad_jobs::JobSpec {
        job_id: uuid::Uuid::new_v4(),
        ..base.clone()
    }))
    .unwrap();
    edit(&mut value);
    let id = value.get("job_id").and_then(|v| v.as_str()).and_then(|v| v.parse().ok());
    (id, serde_json::to_vec(&value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_bad_inputs_and_bad_jobs_fails_clearly_while_good_work_finishes() {
    use serde_json::json;
    let mut fleet = Fleet::new().await;
    let good = fleet.upload_images("in/", 2).await;
    let png = fleet.store.get(&good[0]).await.unwrap().unwrap().to_vec();
    let wide = flowgrad_storage::image::encode_png(&vec![0.0; 9000], 1, 1, 9000).unwrap();
    let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut oversized = png.clone();
    oversized.extend_from_slice(&noise);
    // (key, bytes, a word the failure reason must contain)
    let bad_objects: Vec<(&str, Vec<u8>, &str)> = vec![
        ("in/text.png", b"not a png".to_vec(), "signature"),
        ("in/truncated.png", png[..png.len() / 2].to_vec(), "PNG"),
        ("in/header-only.png", png[..8].to_vec(), "PNG"),
        ("in/empty.png", vec![], "empty"),
        ("in/wide.png", wide, "9000"),
        ("in/truncated-jfif.jpg", vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0], "JPEG"),
        ("in/anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), "Gif"),
        ("in/random.bin", noise[..1024].to_vec(), "signature"),
        ("in/meta.json", br#"{"not": "an image"}"#.to_vec(), "signature"),
        ("in/oversized.png", oversized, "bytes"),
    ];
    for (key, bytes, _) in &bad_objects {
        fleet.store.put(key, flowgrad_storage::Bytes::from(bytes.clone())).await.unwrap();
    }
    fleet.store.put("directions/a-png.safetensors", flowgrad_storage::Bytes::from(png.clone())).await.unwrap();
    fleet.process_env.push(("FLOWGRAD__WORKER__MAX_IMAGE_BYTES".into(), "200000".into()));
    fleet.start_coordinator();
    fleet.start_worker(0);
    let job = Fleet::job("in/", "out/", 6, 1);
    fleet.submit(&job).await;
    let mut manifest = Fleet::job("in/", "out-manifest/", 6, 1);
    manifest.input =
        flowgrad_jobs::InputSpec::Manifest(vec![good[0].clone(), "in/missing-1.png".into(), "in/missing-2.png".into()]);
    fleet.submit(&manifest).await;

    // jobs that must be rejected, each with a word its reason must contain
    let base = Fleet::job("in/", "rejected/", 6, 1);
    let long_key = format!("in/{}.png", "k".repeat(2000));
    let cases: Vec<(Payload, &str)> = vec![
        (variant(&base, |v| v["model"] = json!("stable-diffusion")), "stable-diffusion"),
        (variant(&base, |v| v["guidance"] = json!({"class": "spaceship"})), "spaceship"),
        (variant(&base, |v| v["schema"] = json!(99)), "version 99"),
        (variant(&base, |v| v["params"]["steps"] = json!(0)), "steps"),
        (variant(&base, |v| v["params"]["step_size"] = json!("NaN")), "malformed"),
        (variant(&base, |v| v["params"]["step_size"] = json!(-1.0)), "step_size"),
        (variant(&base, |v| v["params"]["eta"] = json!(1.5)), "eta"),
        (variant(&base, |v| v["params"]["lambda"] = json!(-0.1)), "lambda"),
        (variant(&base, |v| v["params"]["xi"] = json!(-1e-3)), "xi"),
        (variant(&base, |v| v["params"]["iterations"] = json!(1_000_000)), "iterations"),
        (variant(&base, |v| v["params"]["time_eps"] = json!(1.0)), "time_eps"),
        (variant(&base, |v| v["output_prefix"] = json!("../escape/")), "output_prefix"),
        (variant(&base, |v| v["output_prefix"] = json!("/etc/")), "output_prefix"),
        (variant(&base, |v| v["output_prefix"] = json!("in/edited/")), "overlaps"),
        (variant(&base, |v| v["output_prefix"] = json!("jobs/")), "output_prefix"),
        (variant(&base, |v| v["output_prefix"] = json!("active/x/")), "output_prefix"),
        (variant(&base, |v| v["output_prefix"] = json!("no-slash")), "output_prefix"),
        (variant(&base, |v| v["input"] = json!({"prefix": "nothing-here/"})), "no input images"),
        (variant(&base, |v| v["input"] = json!({"manifest": []})), "manifest"),
        (variant(&base, |v| v["input"] = json!({"manifest": ["in/a.png", "in/a.png"]})), "twice"),
        (variant(&base, |v| v["input"] = json!({"manifest": [long_key.clone()]})), "1024"),
        (variant(&base, |v| v["input"] = json!({"manifest": ["in/../secret.png"]})), "manifest"),
        (variant(&base, |v| v["model"] = json!("m".repeat(10_000))), "bytes long"),
        (variant(&base, |v| v["batch_size"] = json!(0)), "batch_size"),
        (variant(&base, |v| v["batch_size"] = json!(1000)), "batch_size"),
        (variant(&base, |v| v["colour"] = json!("blue")), "colour"),
        (
            variant(&base, |v| {
                v.as_object_mut().unwrap().remove("output_prefix");
            }),
            "output_prefix",
        ),
        (variant(&base, |v| v["job_id"] = json!("00000000-0000-0000-0000-000000000000")), "nil"),
        (variant(&base, |v| v["direction"] = json!({"apply": "directions/missing.safetensors"})), "does not exist"),
        (variant(&base, |v| v["direction"] = json!({"apply": "directions/a-png.safetensors"})), "unusable direction"),
        (variant(&base, |v| v["direction"] = json!({"learn": "in/direction.safetensors"})), "input prefix"),
        (variant(&base, |v| v["direction"] = json!({"sideways": "d.safetensors"})), "malformed"),
        ((None, b"{ not json".to_vec()), ""),
        ((None, vec![]), ""),
        ((None, b"[1, 2, 3]".to_vec()), ""),
    ];
    for ((_, payload), _) in &cases {
        fleet.submit_raw(payload.clone()).await;
    }

    let report = fleet.wait_report(job.job_id, 4 * MINUTES).await;
    assert_eq!(report.status.state, JobState::CompletedWithFailures);
    assert_eq!((report.status.succeeded, report.status.failed), (2, bad_objects.len()), "{:?}", report.status);
    for (key, _, word) in &bad_objects {
        let failure = report
            .status
            .failures
            .iter()
            .find(|f| f.reason.contains(key))
            .unwrap_or_else(|| panic!("no failure names {key}: {:?}", report.status.failures));
        assert!(failure.reason.contains(word), "reason for {key} should mention `{word}`: {}", failure.reason);
    }
    assert_eq!(fleet.list("out/").await.len(), 2, "the good images of the same job were edited");
    let manifest_report = fleet.wait_report(manifest.job_id, 4 * MINUTES).await;
    assert_eq!(manifest_report.status.succeeded, 1);
    let missing: Vec<_> =
        manifest_report.status.failures.iter().filter(|f| f.reason.contains("does not exist")).collect();
    assert_eq!(missing.len(), 2, "{:?}", manifest_report.status.failures);
    // failed tasks were dead-lettered, and the coordinator drained tasks.dead after recording them
    assert_eq!(fleet.broker.depth(Queue::Tasks).await.unwrap(), 0);
    assert!(report.results.iter().all(|r| r.outcome == TaskOutcome::Succeeded
        || matches!(&r.outcome, TaskOutcome::Failed { reason } if !reason.is_empty())));

    for ((id, payload), word) in &cases {
        let Some(id) = id else { continue };
        let status = fleet.wait_status(*id, MINUTES, |s| s.state.is_final()).await;
        assert_eq!(
            status.state,
            JobState::Rejected,
            "{} → {status:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        );
        let reason = status.rejection.clone().unwrap_or_default();
        assert!(reason.contains(word), "rejection of a job with bad `{word}` must say so: {reason}");
    }
    let deadline = std::time::Instant::now() + MINUTES;
    while (fleet.broker.dead_depth(Queue::Jobs).await.unwrap() as usize) < cases.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "every bad job message must be dead-lettered ({} of {})",
            fleet.broker.dead_depth(Queue::Jobs).await.unwrap(),
            cases.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fleet.list("rejected/").await.is_empty());
    assert!(bad_objects.len() + 2 + cases.len() >= 30, "the corpus has at least 30 bad inputs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_guided_ncsnpp_jobs_run_on_a_fleet_configured_with_models() {
    let mut fleet = Fleet::new().await;
    let inputs = fleet.upload_images("in/", 2).await;
    let fixtures = flowgrad_tests::fixtures_dir();
    for (key, path) in [
        ("FLOWGRAD__MODELS__NCSNPP__CHECKPOINT", "ncsnpp/weights.safetensors"),
        ("FLOWGRAD__MODELS__NCSNPP__CONFIG", "ncsnpp/config.json"),
        ("FLOWGRAD__MODELS__CLIP__CHECKPOINT", "clip/weights.safetensors"),
        ("FLOWGRAD__MODELS__CLIP__CONFIG", "clip/config.json"),
    ] {
        fleet.process_env.push((key.into(), fixtures.join(path).to_string_lossy().into_owned()));
    }
    fleet.start_coordinator();
    fleet.start_worker(0);
    let mut job = Fleet::job("in/", "out/", 5, 2);
    job.model = "ncsnpp".into();
    job.guidance = flowgrad_jobs::GuidanceSpec::Text("a photo of a smiling face".into());
    fleet.submit(&job).await;
    let mut class_job = Fleet::job("in/", "out-class/", 5, 1);
    class_job.model = "ncsnpp".into();
    fleet.submit(&class_job).await;

    let report = fleet.wait_report(job.job_id, 4 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    for (input, result) in inputs.iter().zip(&report.results) {
        let image = &result.images[0];
        assert_eq!(&image.input_key, input);
        assert!(
            (-1.0..=1.0).contains(&image.guidance_score_before) && (-1.0..=1.0).contains(&image.guidance_score_after),
            "CLIP cosines: {image:?}"
        );
        let png = fleet.store.get(&image.output_key).await.unwrap().expect("output written");
        assert_eq!(png[25], 2, "an RGB PNG for the RGB model");
        assert!(image.note.as_deref().unwrap_or_default().contains("RGB"));
    }
    let rejected = fleet.wait_status(class_job.job_id, MINUTES, |s| s.state.is_final()).await;
    assert_eq!(rejected.state, JobState::Rejected);
    assert!(rejected.rejection.unwrap_or_default().contains("no classifier"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direction_learned_on_a_batch_is_stored_and_applied_to_new_images() {
    use flowgrad_engine::ModelRegistry;
    use flowgrad_jobs::{DirectionSpec, GuidanceSpec};
    use flowgrad_storage::image::{ImageLimits, decode_for_model, encode_png};

    let mut fleet = Fleet::new().await;
    fleet.upload_images("learn/", 4).await;
    let fresh = fleet.upload_images("apply/", 3).await;
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.start_worker(1);
    let key = "directions/coat.safetensors";

    // learn: one task shares one control sequence across the 4 images
    let mut learn = Fleet::job("learn/", "learned/", 8, 3);
    learn.direction = Some(DirectionSpec::Learn(key.into()));
    fleet.submit(&learn).await;
    let report = fleet.wait_report(learn.job_id, 4 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    assert_eq!((report.status.total_tasks, report.status.total_images), (1, 4));
    assert_eq!((report.results[0].images.len(), report.results[0].iterations_run), (4, 3));
    assert_eq!(fleet.list("learned/").await.len(), 4, "the learning batch is written edited");
    let stored = fleet.store.get(key).await.unwrap().expect("direction stored");
    let (direction, labels) = flowgrad::GlobalDirection::from_bytes(&stored).unwrap();
    assert_eq!(direction.controls().shape, vec![8, 1, 1, 32, 32]);
    assert!(direction.controls().values.iter().any(|v| *v != 0.0), "the direction is not zero");
    assert_eq!(
        (labels["model"].as_str(), labels["learned_by"].clone(), labels["images"].as_str()),
        ("fashion-mnist", learn.job_id.to_string(), "4")
    );
    assert_eq!(direction.params().sharing, flowgrad::ControlSharing::Shared);

    // apply: every image alone, no optimisation, the direction's own trajectory (params ignored)
    let mut apply = Fleet::job("apply/", "applied/", 50, 7);
    apply.direction = Some(DirectionSpec::Apply(key.into()));
    fleet.submit(&apply).await;
    let applied = fleet.wait_report(apply.job_id, 4 * MINUTES).await;
    assert_eq!(applied.status.state, JobState::Completed, "{:?}", applied.status);
    assert_eq!(applied.status.total_tasks, 3);
    assert!(
        applied.results.iter().all(|r| r.iterations_run == 0 && r.vjps == 0 && r.images.len() == 1),
        "{:?}",
        applied.results
    );

    // each output is exactly the direction applied in this process, and differs from a plain
    // reconstruction: the direction did the edit
    let registry = ModelRegistry::new(flowgrad_engine::Assets::Embedded);
    let model = registry.get("fashion-mnist").unwrap();
    let session = model.session(&GuidanceSpec::Class("coat".into()), direction.params()).unwrap();
    let zero = flowgrad::GlobalDirection::from_controls(
        flowgrad::HostTensor {
            shape: direction.controls().shape.clone(),
            values: vec![0.0; direction.controls().values.len()],
        },
        direction.params().clone(),
    )
    .unwrap();
    for input in &fresh {
        let png = fleet.store.get(input).await.unwrap().unwrap();
        let pixels = decode_for_model(&png, 1, 32, 32, &ImageLimits::default()).unwrap().values;
        let expected = encode_png(&session.apply(&direction, &pixels, 1).unwrap(), 1, 32, 32).unwrap();
        let plain = encode_png(&session.apply(&zero, &pixels, 1).unwrap(), 1, 32, 32).unwrap();
        let output =
            fleet.store.get(&keys::output("applied/", Some("apply/"), input)).await.unwrap().expect("output written");
        assert_eq!(output.as_ref(), expected.as_slice(), "{input}: the worker applied the stored direction");
        assert_ne!(output.as_ref(), plain.as_slice(), "{input}: the direction changes the image");
    }

    // learning again into the same key is refused, and the stored direction is untouched
    let mut again = Fleet::job("learn/", "learned-again/", 8, 1);
    again.direction = Some(DirectionSpec::Learn(key.into()));
    fleet.submit(&again).await;
    let refused = fleet.wait_status(again.job_id, MINUTES, |s| s.state.is_final()).await;
    assert_eq!(refused.state, JobState::Rejected);
    assert!(refused.rejection.unwrap_or_default().contains("already exists"));
    assert_eq!(fleet.store.get(key).await.unwrap().unwrap(), stored);
}

/// One set of defaults: a job file without `params` runs with `EditParams::default()`, as
/// `flowgrad run` does without flags, and the distributed fleet writes the very bytes the embedded
/// run writes for the same input, name and seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_file_without_params_edits_like_flowgrad_run_without_flags() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/00-tshirt-test19.png");
    let bytes = std::fs::read(&example).unwrap();
    // the embedded run names its inputs `inputs/{index:04}-{file}`: upload under the same key
    let mut fleet = Fleet::new().await;
    fleet.store.put("inputs/0000-00-tshirt-test19.png", bytes.into()).await.unwrap();
    let job = flowgrad_jobs::JobSpec::from_job_file(
        "input = { prefix = \"inputs/\" }\noutput_prefix = \"outputs/\"\nmodel = \"fashion-mnist\"\nguidance = { class = \"coat\" }\n",
        false,
    )
    .unwrap();
    assert_eq!(job.params, flowgrad::EditParams::default());
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.submit(&job).await;

    let local = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(flowgrad_tests::fleet::binary("flowgrad"))
        .args([
            "run",
            "--input",
            example.to_str().unwrap(),
            "--output",
            local.path().to_str().unwrap(),
            "--target",
            "coat",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("summary: 1/1 judged the target") || stdout.contains("summary: 0/1 judged the target"),
        "{stdout}"
    );

    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    let fleet_png = fleet.store.get("outputs/0000-00-tshirt-test19.png").await.unwrap().expect("fleet output");
    let local_png = std::fs::read(local.path().join("0000-00-tshirt-test19.png")).unwrap();
    assert_eq!(fleet_png.to_vec(), local_png, "the fleet and the embedded run write the same bytes");
    assert_eq!(report.results[0].iterations_run, flowgrad::EditParams::default().iterations);
}

/// The diffusion model (DDIM's ODE, built into the binaries) edits through RabbitMQ and S3 like a
/// flow: the job completes and the fleet writes the bytes `flowgrad run --model` writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diffusion_model_job_completes_through_the_fleet_like_the_embedded_run() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let files = ["00-tshirt-test19.png", "03-dress-test13.png"];
    let mut fleet = Fleet::new().await;
    for (index, file) in files.iter().enumerate() {
        let bytes = std::fs::read(examples.join(file)).unwrap();
        fleet.store.put(&format!("inputs/{index:04}-{file}"), bytes.into()).await.unwrap();
    }
    let job = flowgrad_jobs::JobSpec::from_job_file(
        "input = { prefix = \"inputs/\" }\noutput_prefix = \"outputs/\"\nmodel = \"fashion-mnist-ddim\"\n\
         guidance = { class = \"coat\" }\nparams = { steps = 12, iterations = 2 }\n",
        false,
    )
    .unwrap();
    fleet.start_coordinator();
    fleet.start_worker(0);
    fleet.submit(&job).await;

    let local = tempfile::tempdir().unwrap();
    let mut run = std::process::Command::new(flowgrad_tests::fleet::binary("flowgrad"));
    run.args(["run", "--model", "fashion-mnist-ddim", "--steps", "12", "--iterations", "2", "--target", "coat"]);
    for file in files {
        run.arg("--input").arg(examples.join(file));
    }
    let run = run.arg("--output").arg(local.path()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let report = fleet.wait_report(job.job_id, 6 * MINUTES).await;
    assert_eq!(report.status.state, JobState::Completed, "{:?}", report.status);
    assert_eq!((report.status.succeeded, report.status.total_images), (2, 2));
    for (index, file) in files.iter().enumerate() {
        let key = format!("{index:04}-{file}");
        let fleet_png = fleet.store.get(&format!("outputs/{key}")).await.unwrap().expect("fleet output");
        let local_png = std::fs::read(local.path().join(&key)).unwrap();
        assert_eq!(fleet_png.to_vec(), local_png, "{key}: the fleet and the embedded run differ");
    }
    assert!(report.results.iter().all(|r| r.outcome == TaskOutcome::Succeeded && r.iterations_run == 2));
}
