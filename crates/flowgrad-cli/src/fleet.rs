//! `flowgrad submit`, `status` and `cancel`: talk to a running fleet through its broker and storage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use flowgrad_jobs::{Cancellation, JobSpec, JobStatus, keys};
use flowgrad_queue::Queue;
use flowgrad_service::{FleetConfig, connect_broker, connect_store};
use flowgrad_storage::Bytes;
use serde::Deserialize;

/// The CLI reads only the shared sections of the fleet configuration.
#[derive(Debug, Deserialize)]
struct NoSection {}

fn load(config: Option<&Path>) -> anyhow::Result<FleetConfig<NoSection>> {
    FleetConfig::load(config, "")
}

/// Reads a job from TOML or JSON; fills `schema` and a fresh `job_id` when absent.
pub fn read_job(path: &Path) -> anyhow::Result<JobSpec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    JobSpec::from_job_file(&text, path.extension().is_some_and(|e| e == "json"))
        .with_context(|| format!("{} is not a valid job", path.display()))
}

/// Validates and publishes a job; prints its id.
pub async fn submit(config: Option<&Path>, job: &Path) -> anyhow::Result<ExitCode> {
    let spec = read_job(job)?;
    let config = load(config)?;
    let broker = connect_broker(&config.broker).await?;
    broker.publish(Queue::Jobs, Bytes::from(flowgrad_jobs::to_json(&spec)), &spec.job_id.to_string()).await?;
    println!("{}", spec.job_id);
    Ok(ExitCode::SUCCESS)
}

/// Exit code of `flowgrad status` for a job with no status (unknown, or rejected before its id
/// could be read) after the wait.
pub const EXIT_UNKNOWN_JOB: u8 = 3;

/// Prints a job's status; with `watch`, polls until it ends. A job without a status is waited
/// for `wait_seconds` (when watching), then reported unknown with [`EXIT_UNKNOWN_JOB`].
pub async fn status(
    config: Option<&Path>,
    job_id: uuid::Uuid,
    watch: bool,
    wait_seconds: u64,
) -> anyhow::Result<ExitCode> {
    let config = load(config)?;
    let store = connect_store(&config.storage, &config.storage_retry).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(if watch { wait_seconds } else { 0 });
    loop {
        let status: Option<JobStatus> = match store.get(&keys::status(job_id)).await? {
            Some(bytes) => Some(flowgrad_jobs::from_json("status", &bytes)?),
            None => None,
        };
        match &status {
            None if std::time::Instant::now() >= deadline => {
                eprintln!(
                    "job {job_id}: no status (never accepted: unknown, or rejected before its job_id could be read; see the coordinator's log)"
                );
                return Ok(ExitCode::from(EXIT_UNKNOWN_JOB));
            }
            None => println!("job {job_id}: no status yet, waiting"),
            Some(s) => print!("{}", describe(job_id, s)),
        }
        let done = status.as_ref().is_some_and(|s| s.state.is_final());
        if status.is_some() && (!watch || done) {
            let clean =
                status.is_some_and(|s| s.failures.is_empty() && s.rejection.is_none() && s.cancellation.is_none());
            return Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// What `flowgrad status` prints for a job: a summary line, then one line per reason.
fn describe(job_id: uuid::Uuid, s: &JobStatus) -> String {
    use std::fmt::Write;
    let eta = s.eta_seconds.map_or("-".to_string(), |e| format!("{e:.0}s"));
    let mut text = format!(
        "job {job_id}: {}  tasks {}/{} done ({} ok, {} failed)  images {}  rate {:.2} tasks/s  eta {eta}\n",
        s.state,
        s.succeeded + s.failed,
        s.total_tasks,
        s.succeeded,
        s.failed,
        s.total_images,
        s.tasks_per_second
    );
    if s.cancelled > 0 {
        let _ = writeln!(text, "  cancelled tasks: {}", s.cancelled);
    }
    // reasons come from other programs: one line each, however they end
    let one_line = |reason: &str| reason.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(reason) = &s.rejection {
        let _ = writeln!(text, "  rejected: {}", one_line(reason));
    }
    if let Some(reason) = &s.cancellation {
        let _ = writeln!(text, "  cancelled: {}", one_line(reason));
    }
    for failure in &s.failures {
        let _ = writeln!(text, "  failed {}: {}", failure.task_id, one_line(&failure.reason));
    }
    text
}

/// Asks the fleet to stop a job: workers record its remaining tasks as cancelled and the
/// coordinator ends it. Already written outputs stay.
pub async fn cancel(config: Option<&Path>, job_id: uuid::Uuid, reason: &str) -> anyhow::Result<ExitCode> {
    let config = load(config)?;
    let store = connect_store(&config.storage, &config.storage_retry).await?;
    if store.get(&keys::spec(job_id)).await?.is_none() {
        anyhow::bail!("job {job_id} is unknown (never accepted by a coordinator)");
    }
    if let Some(bytes) = store.get(&keys::status(job_id)).await? {
        let status: JobStatus = flowgrad_jobs::from_json("status", &bytes)?;
        if status.state.is_final() {
            println!("job {job_id} already ended: {:?}", status.state);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let request = Cancellation {
        schema: flowgrad_jobs::SCHEMA_VERSION,
        reason: reason.to_string(),
        requested_at: flowgrad_jobs::unix_now(),
    };
    if !store.put_if_absent(&keys::cancel(job_id), Bytes::from(flowgrad_jobs::to_json(&request))).await? {
        println!("job {job_id}: cancellation already requested");
    } else {
        println!("job {job_id}: cancellation requested");
    }
    Ok(ExitCode::SUCCESS)
}

/// Path arguments shared by the fleet commands.
#[derive(clap::Args, Debug)]
pub struct FleetArgs {
    /// Fleet configuration (TOML, same file as the services'); env `FLOWGRAD__...` overrides.
    #[arg(long, env = "FLOWGRAD_CONFIG")]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example job under deploy/jobs/ is a valid job as `flowgrad submit` reads it.
    #[test]
    fn status_lines_use_the_state_names_of_status_json_and_one_line_per_reason() {
        let job_id = uuid::Uuid::nil();
        let status = JobStatus {
            schema: flowgrad_jobs::SCHEMA_VERSION,
            job_id,
            state: flowgrad_jobs::JobState::CompletedWithFailures,
            rejection: None,
            cancellation: None,
            total_tasks: 2,
            succeeded: 1,
            failed: 1,
            cancelled: 0,
            total_images: 2,
            failures: vec![flowgrad_jobs::Failure {
                task_id: "task-000001".into(),
                reason: "in/x.png: not an image\n".into(),
            }],
            accepted_at: 0.0,
            updated_at: 1.0,
            tasks_per_second: 2.0,
            eta_seconds: None,
        };
        let text = describe(job_id, &status);
        assert!(text.starts_with(&format!("job {job_id}: completed_with_failures  tasks")), "{text}");
        assert!(text.ends_with("  failed task-000001: in/x.png: not an image\n"), "{text:?}");
        assert!(!text.contains("\n\n") && !text.contains("CompletedWithFailures"), "{text:?}");
    }

    #[test]
    fn example_jobs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/jobs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                read_job(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 5, "deploy/jobs holds the examples ({seen} found)");
    }
}
