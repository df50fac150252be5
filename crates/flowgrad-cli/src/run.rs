//! `flowgrad run` / `flowgrad edit`: the fleet embedded in one process. The same coordinator and
//! workers as in Kubernetes, over a local-directory object store and the in-process broker.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use flowgrad_catalog::{BUNDLED_MODEL, ClipSource, ModelCatalog, NCSNPP_MODEL, NcsnppSource};
use flowgrad_embedded::EmbeddedFleet;
use flowgrad_engine::{Assets, ModelRegistry};
use flowgrad_jobs::{DirectionSpec, GuidanceSpec, InputSpec, JobReport, JobSpec, TaskEventKind, keys};
use flowgrad_lab::report::write_image_reports;
use flowgrad_params::EditParams;
use flowgrad_params::cli::ParamArgs;
use flowgrad_storage::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// Options of `flowgrad run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Input images: folders (their PNG/JPEG files) and/or files.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Output folder (edited PNGs, per-image JSON reports, grid.png, report.json).
    #[arg(long)]
    pub output: PathBuf,
    /// Target class of the model's guidance classifier, e.g. "coat" (see `--target help`).
    #[arg(long, required_unless_present = "text", conflicts_with = "text")]
    pub target: Option<String>,
    /// Text prompt for CLIP guidance instead of a class (needs `--clip`).
    #[arg(long)]
    pub text: Option<String>,
    /// Model: `fashion-mnist` (bundled), `fashion-mnist-reflow` (bundled, reflowed: fewer VJPs)
    /// or `ncsnpp` (needs `--checkpoint`).
    #[arg(long, default_value = BUNDLED_MODEL)]
    pub model: String,
    /// NCSN++ checkpoint: a RectifiedFlow `.pth` training checkpoint or a safetensors state dict.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The NCSN++ model's original config as JSON (default: CelebA-HQ 256²).
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// `ema` or `model` weights of a `.pth` training checkpoint.
    #[arg(long, default_value = "ema")]
    pub weights: String,
    /// CLIP checkpoint (OpenAI or Hugging Face safetensors) for `--text`.
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// CLIP config JSON (default: inferred from the checkpoint's shapes).
    #[arg(long)]
    pub clip_config: Option<PathBuf>,
    /// FlowGrad's parameters (every default from `EditParams::default()`).
    #[command(flatten)]
    pub params: ParamArgs,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Forward passes each edit's simulation keeps for its VJPs to reuse (each one forward's
    /// activations; 0: every VJP runs its own forward; default: the engine's,
    /// `BUNDLED_RECORDED_FORWARDS` for the bundled models, 0 for NCSN++). The edits are the same
    /// either way.
    #[arg(long)]
    pub recorded_forwards: Option<usize>,
    /// Workers editing in parallel (default: one per CPU core).
    #[arg(long, default_value_t = flowgrad_backend::default_workers())]
    pub workers: usize,
    /// CPU threads of each worker's own kernel pool (default: the cores shared out among the
    /// workers, at least one each).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per task, edited together in one batch (each keeps its own controls; the
    /// augmentations of a batch are drawn once for all its images).
    #[arg(long, default_value_t = flowgrad_jobs::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Folder with the bundled models' weights (default: the copies built into this binary).
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// Learn one global direction shared by all the inputs (at most 64) and save it to this
    /// file (safetensors); the inputs are written edited with it.
    #[arg(long, conflicts_with = "apply_direction")]
    pub learn_direction: Option<PathBuf>,
    /// Edit every input with a direction saved by `--learn-direction` (no optimisation; its own
    /// steps and trajectory are used).
    #[arg(long)]
    pub apply_direction: Option<PathBuf>,
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// A file of an input folder that is not edited, and why.
#[derive(Debug, serde::Serialize)]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// Why it was left out.
    pub reason: String,
}

/// Input files: every PNG/JPEG in the given folders (sorted) plus the given files; the other
/// entries of the folders are returned as skipped, with the reason.
fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let mut files = vec![];
    let mut skipped = vec![];
    for input in inputs {
        if input.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot read {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for path in entries {
                let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
                if !path.is_file() {
                    skipped.push(Skipped {
                        file: path,
                        reason: "not a file (folders are not searched recursively)".into(),
                    });
                } else if extension.as_deref().is_some_and(|e| IMAGE_EXTENSIONS.contains(&e)) {
                    files.push(path);
                } else {
                    let reason = match extension {
                        Some(e) => format!(
                            "extension `.{e}` is not an image type flowgrad reads (PNG or JPEG: .png, .jpg, .jpeg)"
                        ),
                        None => "no extension (PNG or JPEG files are read: .png, .jpg, .jpeg)".into(),
                    };
                    skipped.push(Skipped { file: path, reason });
                }
            }
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("input {} does not exist", input.display());
        }
    }
    if files.is_empty() {
        bail!("no PNG or JPEG images found in {:?} ({} other entries skipped)", inputs, skipped.len());
    }
    Ok((files, skipped))
}

/// A job id derived from the inputs and settings: rerunning the same edit resumes it.
fn job_id(
    files: &[(String, Vec<u8>)],
    args: &RunArgs,
    params: &EditParams,
    applied_direction: Option<&[u8]>,
) -> uuid::Uuid {
    let mut hasher = Sha256::new();
    hasher.update(format!("learn:{}", args.learn_direction.is_some()).as_bytes());
    if let Some(bytes) = applied_direction {
        hasher.update(Sha256::digest(bytes));
    }
    for (name, bytes) in files {
        hasher.update(name.as_bytes());
        hasher.update(Sha256::digest(bytes));
    }
    hasher.update(serde_json::to_vec(params).expect("params serialise"));
    hasher.update(
        format!("{}:{:?}:{:?}:{:?}:{:?}:{}", args.model, args.target, args.text, args.checkpoint, args.clip, args.seed)
            .as_bytes(),
    );
    if args.batch_size != 1 {
        // tasks of another size are other tasks: a rerun resumes only the same batching
        hasher.update(format!("batch:{}", args.batch_size).as_bytes());
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &hasher.finalize())
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// Runs an embedded fleet on the inputs and writes outputs and reports into `args.output`.
pub async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let catalog = ModelCatalog {
        ncsnpp: args.checkpoint.clone().map(|checkpoint| NcsnppSource {
            checkpoint,
            config: args.model_config.clone(),
            weights: args.weights.clone(),
        }),
        clip: args.clip.clone().map(|checkpoint| ClipSource { checkpoint, config: args.clip_config.clone() }),
    };
    let registry = Arc::new(
        ModelRegistry::with_catalog(Assets::from_option(args.assets.clone()), catalog)
            .with_recorded_forwards(args.recorded_forwards),
    );
    let (guidance, target) = match (&args.target, &args.text) {
        (Some(class), _) => (GuidanceSpec::Class(class.clone()), class.clone()),
        (None, Some(prompt)) => (GuidanceSpec::Text(prompt.clone()), prompt.clone()),
        (None, None) => bail!("give a --target class or a --text prompt"),
    };
    if args.model == NCSNPP_MODEL && args.checkpoint.is_none() {
        bail!("--model {NCSNPP_MODEL} needs --checkpoint <RectifiedFlow .pth or safetensors>");
    }
    registry.validate(&args.model, &guidance)?;
    let params = args.params.to_params();
    params.validate()?;
    let model = registry.get(&args.model)?;
    let (files, skipped) = collect_inputs(&args.input)?;
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    for entry in &skipped {
        eprintln!("skipped {}: {}", entry.file.display(), entry.reason);
    }

    let mut named = vec![];
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = format!("{i:04}-{}", sanitize(&file.file_name().unwrap_or_default().to_string_lossy()));
        named.push((name, bytes));
    }
    let applied = match &args.apply_direction {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read the direction {}", path.display()))?)
        }
        None => None,
    };
    let job_id = job_id(&named, args, &params, applied.as_deref());
    let threads = args.threads.unwrap_or_else(|| flowgrad_backend::kernel_threads_per_worker(args.workers));
    let fleet = EmbeddedFleet::start(&args.output.join(".flowgrad"), registry, args.workers, threads)?;
    let store = fleet.store().clone();
    for (name, bytes) in &named {
        store.put(&format!("inputs/{name}"), Bytes::from(bytes.clone())).await?;
    }
    let direction_key = format!("directions/{job_id}.safetensors");
    let direction = match (&args.learn_direction, applied) {
        (Some(_), _) => Some(DirectionSpec::Learn(direction_key.clone())),
        (None, Some(bytes)) => {
            store.put(&direction_key, Bytes::from(bytes)).await?;
            Some(DirectionSpec::Apply(direction_key.clone()))
        }
        (None, None) => None,
    };
    let mut events = fleet.events();
    let job = JobSpec {
        job_id,
        params: params.clone(),
        seed: args.seed,
        batch_size: args.batch_size,
        direction,
        ..JobSpec::new(InputSpec::Prefix("inputs/".into()), "outputs/", &args.model, guidance.clone())
    };
    fleet.submit(&job).await?;
    eprintln!(
        "editing {} image(s) with `{}` towards `{target}` (job {job_id}, N = {}, M = {}, ξ = {}) with {} worker(s) × {threads} thread(s)",
        named.len(),
        args.model,
        params.steps,
        params.iterations,
        params.xi,
        args.workers
    );

    let bars = MultiProgress::new();
    let overall = bars.add(ProgressBar::new(named.len() as u64));
    overall.set_style(
        ProgressStyle::with_template("overall   [{bar:30}] {pos}/{len} images  {elapsed_precise} eta {eta}")
            .expect("template"),
    );
    let mut per_task: std::collections::HashMap<String, ProgressBar> = Default::default();
    // an interval, not a fresh sleep per loop: a steady stream of events must not starve the poll
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    let status = loop {
        tokio::select! {
            event = events.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => bail!("the embedded coordinator stopped"),
                };
                if event.job_id != job_id { continue; }
                let bar = per_task.entry(event.task_id.clone()).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(params.iterations as u64));
                    bar.set_style(ProgressStyle::with_template("{prefix:<9} [{bar:30}] {pos}/{len} iterations {msg}").expect("template"));
                    bar.set_prefix(event.task_id.clone());
                    bar
                });
                match event.kind {
                    TaskEventKind::Started { resumed_from } => bar.set_position(resumed_from.unwrap_or(0) as u64),
                    TaskEventKind::Iteration { completed, objective } => { bar.set_position(completed as u64); bar.set_message(format!("objective {objective:.4}")); }
                    TaskEventKind::Retrying { reason, .. } => bar.set_message(format!("retrying: {reason}")),
                    TaskEventKind::Requeued { .. } => bar.set_message("requeued"),
                }
            }
            _ = poll.tick() => {
                let status = match fleet.status(job_id).await {
                    Ok(status) => status,
                    Err(stopped) => return Err(fleet.stop().await.err().unwrap_or(stopped)),
                };
                if let Some(status) = status {
                    overall.set_position((status.succeeded + status.failed) as u64);
                    if status.state.is_final() {
                        break status;
                    }
                }
            }
        }
    };
    for bar in per_task.values() {
        bar.finish_and_clear();
    }
    overall.finish();
    fleet.stop().await?;
    if let Some(reason) = &status.rejection {
        bail!("job rejected: {reason}");
    }
    let report: JobReport =
        flowgrad_jobs::from_json("report", &store.get(&keys::report(job_id)).await?.context("report missing")?)?;
    std::fs::write(args.output.join("report.json"), flowgrad_jobs::to_json(&report))?;
    let mut summary =
        write_image_reports(store.as_ref(), model.as_ref(), &report, &args.output, &guidance, &params).await?;
    summary.skipped = skipped.len();
    let skipped_path = args.output.join("skipped.json");
    if skipped.is_empty() {
        // a rerun's folder must not keep an earlier run's list
        let _ = std::fs::remove_file(&skipped_path);
    } else {
        std::fs::write(&skipped_path, serde_json::to_vec_pretty(&skipped)?)?;
    }
    for failure in &status.failures {
        eprintln!("failed: {}: {}", failure.task_id, failure.reason);
    }
    if let Some(path) = &args.learn_direction
        && status.failures.is_empty()
    {
        let bytes = store.get(&direction_key).await?.context("the learned direction was not stored")?;
        std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        println!("learned direction saved to {}", path.display());
    }
    println!("wrote {} edited image(s), grid.png and reports to {}", status.succeeded, args.output.display());
    println!("{summary}");
    Ok(if status.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `flowgrad edit`: one image in, one edited image out.
pub async fn edit(input: &Path, output: &Path, mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join(".flowgrad-edit");
    args.input = vec![input.to_path_buf()];
    args.output = out_dir.clone();
    let code = run(&args).await?;
    let produced = std::fs::read_dir(&out_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "png") && !p.ends_with("grid.png"));
    if let Some(produced) = produced {
        std::fs::copy(&produced, output)?;
        std::fs::copy(produced.with_extension("json"), output.with_extension("json"))?;
        println!("edited image: {}", output.display());
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_images_are_listed_as_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "b.JPG", "c.gif", "d.svg", "e"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let (files, skipped) = collect_inputs(&[dir.path().to_path_buf()]).unwrap();
        let names = |paths: Vec<&PathBuf>| {
            paths.into_iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>()
        };
        assert_eq!(names(files.iter().collect()), ["a.png", "b.JPG"]);
        assert_eq!(names(skipped.iter().map(|s| &s.file).collect()), ["c.gif", "d.svg", "e", "sub"]);
        assert!(
            skipped[0].reason.contains("`.gif`")
                && skipped[2].reason.contains("no extension")
                && skipped[3].reason.contains("not a file"),
            "{skipped:?}"
        );
    }
}
