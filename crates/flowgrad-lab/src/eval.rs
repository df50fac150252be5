//! `flowgrad eval`: the Table-2 analog. Fashion-MNIST test images are edited towards several
//! classes by FlowGrad (ξ = 5e-3), the exact decomposed gradient (ξ = 0), optimising only the
//! encoded noise x_0, and classifier-guided sampling; the independent judge scores the edits.
//! Also the straightness curve (Fig. 5a), loss vs time over a ξ sweep (Fig. 5b) and success vs N
//! (Fig. 7). Writes eval.json, table.md and three PNG plots.

mod metrics;
pub(crate) mod plots;
mod resume;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use burn::module::Module;
use burn::tensor::Tensor;
use clap::Args;
use flowgrad::baselines::{guided_sample, optimise_noise};
use flowgrad::state::digest_parts;
use flowgrad::tensor_util::to_vec;
use flowgrad::{
    ControlState, DifferentiableField, EditParams, Editor, Guidance, GuidanceContext, HostTensor, Mode, Selection,
    TimeGrid, encode, energy, simulate, straightness,
};
use flowgrad_backend::{self as backend, Backend};
use flowgrad_engine::{Assets, BUNDLED_MODEL, BUNDLED_RECORDED_FORWARDS, DDIM_MODEL, REFLOW_MODEL};
use flowgrad_jobs::DEFAULT_BATCH_SIZE;
use flowgrad_models::fashion::{DEFAULT_DIR, FashionMnist, Split};
use flowgrad_models::{
    CLASS_NAMES, ClassGuidance, ClassViews, Classifier, ImageClassifier, Judge, class_index, ddim_ode, load_classifier,
    load_ddim, load_flow, load_judge, load_reflow,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use metrics::{Metrics, Tally};

use flowgrad_params::cli::ParamArgs;

/// The ξ values of the loss-vs-time sweep (Fig. 5b); `f32::MAX` makes a single segment.
const XI_SWEEP: [(f32, &str); 6] =
    [(0.0, "0"), (1e-3, "1e-3"), (5e-3, "5e-3"), (1e-2, "1e-2"), (5e-2, "5e-2"), (f32::MAX, "single segment")];

/// Options of `flowgrad eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Output folder: eval.json, table.md, straightness.png, xi_sweep.png, steps_sweep.png, and
    /// chunks/ and sweeps.json, the finished parts: a rerun into the same folder with the same
    /// settings (or more --images) reuses them and computes only what is missing.
    #[arg(long)]
    pub output: PathBuf,
    /// Test images, drawn with --seed from the Fashion-MNIST test split.
    #[arg(long, default_value_t = 120)]
    pub images: usize,
    /// Target classes, comma-separated (images already of a target class are skipped for it).
    #[arg(long, value_delimiter = ',', default_value = "coat,sneaker,bag")]
    pub classes: Vec<String>,
    /// FlowGrad's parameters (defaults: `EditParams::default()`, as `flowgrad run`); ξ is also
    /// used by the x_0-only baseline's gradient, M by the x_0-only baseline.
    #[command(flatten)]
    pub params: ParamArgs,
    /// Images edited together in one batch (default: a fleet task's, so each image is edited as
    /// the fleet edits it, with its own grid).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch: usize,
    /// Batches evaluated side by side, each on its own thread (default: one per CPU core, as
    /// `flowgrad run`'s workers). The results do not depend on it.
    #[arg(long, default_value_t = backend::default_workers())]
    pub workers: usize,
    /// Guided sampling's scale s: x_{k+1} = x_k + h(v − s·∇_{x_k} CE(x̂_1)).
    #[arg(long, default_value_t = 20.0)]
    pub guidance_scale: f32,
    /// The frontier's guidance weights η for FlowGrad (judge success against L1 and SSIM): from
    /// nearly all faithfulness to pure guidance, so FlowGrad's L1 spans guided sampling's.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.3,0.5,0.7,0.9,1")]
    pub frontier_etas: Vec<f32>,
    /// The frontier's guided-sampling scales s.
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,40")]
    pub frontier_scales: Vec<f32>,
    /// Images the frontier is measured on: the first chosen ones (whole batches; at least
    /// --images means every image). Each setting beyond the comparison's own costs a full edit
    /// of every image, so the frontier on a subset keeps the full comparison affordable.
    #[arg(long, default_value_t = 40)]
    pub frontier_images: usize,
    /// Guide with the classifier's loss on the image itself instead of its averaged random views
    /// (the guidance before views were added; for the guidance-vs-judge agreement comparison).
    #[arg(long)]
    pub plain_guidance: bool,
    /// Images of the ξ and N sweeps (the first chosen images not of the first class, towards it).
    #[arg(long, default_value_t = 12)]
    pub sweep_images: usize,
    /// N values of the steps sweep (Fig. 7).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
    pub sweep_steps: Vec<usize>,
    /// Seed of the image choice and of the edits.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fashion-MNIST folder (IDX files).
    #[arg(long, default_value = DEFAULT_DIR)]
    pub data: PathBuf,
    /// Folder with the bundled models' weights (default: the copies built into this binary).
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// The model evaluated: the 1-rectified flow, the reflowed flow or the diffusion model (DDIM's
    /// ODE, whose guided sampling and warm start use DDIM's x̂₁ instead of x + (1 − t)v).
    #[arg(long, default_value = BUNDLED_MODEL, value_parser = [BUNDLED_MODEL, REFLOW_MODEL, DDIM_MODEL])]
    pub model: String,
    /// TrueType font for the plots' text (default: the first common system font found).
    #[arg(long)]
    pub font: Option<PathBuf>,
}

/// The compared methods, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Input,
    FlowGrad,
    Exact,
    NoiseOnly,
    Guided,
}

impl Method {
    const ALL: [Method; 5] = [Method::Input, Method::FlowGrad, Method::Exact, Method::NoiseOnly, Method::Guided];

    fn key(self) -> &'static str {
        match self {
            Method::Input => "input",
            Method::FlowGrad => "flowgrad",
            Method::Exact => "decomposed_xi0",
            Method::NoiseOnly => "noise_only",
            Method::Guided => "guided_sampling",
        }
    }

    fn label(self, xi: f32) -> String {
        match self {
            Method::Input => "input (no edit)".into(),
            Method::FlowGrad => format!("FlowGrad ξ = {xi:e}"),
            Method::Exact => "decomposed, exact (ξ = 0)".into(),
            Method::NoiseOnly => "optimise x_0 only".into(),
            Method::Guided => "guided sampling (no controls)".into(),
        }
    }
}

/// One method's results: over all classes and per class.
#[derive(Debug, Serialize)]
struct MethodReport {
    method: &'static str,
    label: String,
    overall: Metrics,
    per_class: Vec<ClassMetrics>,
}

#[derive(Debug, Serialize)]
struct ClassMetrics {
    class: String,
    #[serde(flatten)]
    metrics: Metrics,
}

/// Mean straightness S(t_k) of the uncontrolled trajectories of the encoded inputs (paper mode).
#[derive(Debug, Serialize)]
struct StraightnessCurve {
    t: Vec<f64>,
    mean_s: Vec<f64>,
    fraction_below_1e_3: f64,
    trajectories: usize,
}

/// One ξ of the loss-vs-time sweep.
#[derive(Debug, Serialize, Deserialize)]
struct XiRun {
    xi: f32,
    label: String,
    /// Seconds of updates spent before reaching each iterate's controls.
    seconds: Vec<f64>,
    /// Objective per image of each iterate (M + 1 values: u = 0 … after the last update).
    objective: Vec<f64>,
    /// Segments (VJPs) of each iteration's backward pass.
    segments: Vec<usize>,
    final_metrics: Metrics,
}

/// One point of the quality frontier: a method at one setting of its knob, over every edit of
/// the comparison.
#[derive(Debug, Serialize)]
struct FrontierPoint {
    method: &'static str,
    /// "eta" (FlowGrad) or "scale" (guided sampling).
    knob: &'static str,
    value: f32,
    #[serde(flatten)]
    metrics: Metrics,
}

/// The settings the frontier sweeps, in report order: the given η and scales, each list with
/// the comparison's own setting added when missing (sorted).
fn frontier_settings(args: &EvalArgs, eta: f32) -> Vec<(Method, f32)> {
    let with = |values: &[f32], own: f32| {
        let mut all = values.to_vec();
        if !all.contains(&own) {
            all.push(own);
        }
        all.sort_by(f32::total_cmp);
        all
    };
    let flowgrad = with(&args.frontier_etas, eta).into_iter().map(|eta| (Method::FlowGrad, eta));
    flowgrad.chain(with(&args.frontier_scales, args.guidance_scale).into_iter().map(|s| (Method::Guided, s))).collect()
}

/// One N of the steps sweep.
#[derive(Debug, Serialize, Deserialize)]
struct StepsRun {
    steps: usize,
    #[serde(flatten)]
    metrics: Metrics,
}

#[derive(Debug, Serialize)]
struct Settings {
    images: usize,
    classes: Vec<String>,
    params: EditParams,
    batch: usize,
    guidance_scale: f32,
    /// Images the frontier was measured on (the first of the chosen ones).
    frontier_images: usize,
    sweep_images: usize,
    sweep_class: String,
    seed: u64,
    /// The model evaluated (a served model name).
    model: String,
    backend: &'static str,
    /// Threads that evaluated batches side by side in this run.
    workers: usize,
}

#[derive(Debug, Serialize)]
struct EvalReport {
    settings: Settings,
    methods: Vec<MethodReport>,
    frontier: Vec<FrontierPoint>,
    straightness: StraightnessCurve,
    xi_sweep: Vec<XiRun>,
    steps_sweep: Vec<StepsRun>,
    /// Wall seconds of this run.
    wall_seconds: f64,
    /// Parts (batches and the sweeps) in all, and how many of them earlier runs had finished.
    parts: usize,
    resumed_parts: usize,
    /// Wall seconds the parts took, summed over every run that computed them.
    part_seconds: f64,
}

/// An editor of the evaluated model towards one class.
type ClassEditor<'a, F> = Editor<Backend, &'a F, &'a ClassGuidance<Classifier<Backend>>>;

/// The evaluated model's velocity field and the bundled classifier and judge.
#[derive(Clone)]
struct Models<F> {
    flow: F,
    classifier: Classifier<Backend>,
    judge: Judge<Backend>,
}

/// Runs the evaluation and writes its outputs.
pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    ensure!(
        args.images > 0 && args.batch > 0 && args.sweep_images > 0 && args.workers > 0,
        "--images, --batch, --sweep-images and --workers must be at least 1"
    );
    let targets = args.classes.iter().map(|c| class_index(c)).collect::<Result<Vec<_>, _>>()?;
    ensure!(!targets.is_empty(), "--classes needs at least one class");
    crate::font::load_font(args.font.as_deref())?;
    let params = args.params.to_params();
    params.validate()?;
    for &n in &args.sweep_steps {
        EditParams { steps: n, ..params.clone() }.validate()?;
    }
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;

    let device = backend::device();
    let assets = Assets::from_option(args.assets.clone());
    // Frozen weights: VJPs then skip the (useless, costly) parameter gradients.
    let classifier = load_classifier(&assets, &device)?.no_grad();
    let judge = load_judge(&assets, &device)?.no_grad();
    match args.model.as_str() {
        REFLOW_MODEL => {
            let flow = load_reflow(&assets, &device)?.no_grad();
            evaluate(args, &params, &targets, Models { flow, classifier, judge }, started)
        }
        DDIM_MODEL => {
            let flow = ddim_ode(load_ddim(&assets, &device)?.no_grad());
            evaluate(args, &params, &targets, Models { flow, classifier, judge }, started)
        }
        _ => {
            let flow = load_flow(&assets, &device)?.no_grad();
            evaluate(args, &params, &targets, Models { flow, classifier, judge }, started)
        }
    }
}

/// What one batch of the comparison produced: score sums per method and class and per
/// frontier setting, and the straightness of its uncontrolled trajectories.
#[derive(Debug, Serialize, Deserialize)]
struct ChunkPart {
    /// Test-set indices of the batch's images.
    images: Vec<usize>,
    /// Score sums, `[method][target]` in [`Method::ALL`] and `--classes` order.
    methods: Vec<Vec<Tally>>,
    /// Score sums per frontier setting ([`frontier_settings`] order).
    frontier: Vec<Tally>,
    /// S(t_k) summed over the batch's trajectories, per step.
    straightness: Vec<f64>,
    /// Wall seconds the batch took.
    seconds: f64,
}

/// The ξ and N sweeps' results.
#[derive(Debug, Serialize, Deserialize)]
struct SweepsPart {
    xi_sweep: Vec<XiRun>,
    steps_sweep: Vec<StepsRun>,
    seconds: f64,
}

/// A part of the evaluation computed on its own (and stored on its own, see [`resume`]).
enum Part {
    Sweeps,
    Chunk(usize),
}

/// Digest of what decides every part's edits: the model, the guidance of every target, the
/// parameters, the seed, the weights' source, the backend, and what this build computes — the
/// folder's reference [`behaviour_probe`] (see [`resume::reference_probe`]). Each part adds its
/// own settings to it.
fn edit_digest<F: DifferentiableField<Backend>>(
    args: &EvalArgs,
    params: &EditParams,
    models: &Models<F>,
    test: &FashionMnist,
    targets: &[usize],
) -> anyhow::Result<String> {
    let guidance: Vec<String> = targets.iter().map(|&t| class_guidance(args, models, t).fingerprint()).collect();
    let settings = format!("seed {} assets {:?} backend {}", args.seed, args.assets, backend::name());
    let probe = behaviour_probe(args, params, models, test, targets[0])?;
    let reference = resume::reference_probe(&args.output.join("probe.json"), &probe)?;
    Ok(digest_parts(&[
        &models.flow.fingerprint(),
        &guidance.join(" "),
        &params.fingerprint_form(),
        &settings,
        &reference,
    ]))
}

/// What this build computes: every method's edit of one test image at N = 4, M = 2 (the other
/// parameters as given), summarised by the judge's and the classifier's probabilities of the
/// edit and its mean, mean absolute value and mean square. Parts computed by a build that edits
/// or scores differently (a changed algorithm, model or guidance) are computed again instead of
/// mixed in; the rounding differences between CPUs are far below [`resume::PROBE_TOLERANCE`].
fn behaviour_probe<F: DifferentiableField<Backend>>(
    args: &EvalArgs,
    params: &EditParams,
    models: &Models<F>,
    test: &FashionMnist,
    target: usize,
) -> anyhow::Result<Vec<f64>> {
    let probe = EditParams { steps: 4, iterations: 2, ..params.clone() };
    let index = (0..test.len()).find(|&i| test.labels[i] as usize != target).context("no probe image")?;
    let original = test.images::<Backend>(&[index], &backend::device());
    let encoder_time = TimeGrid::new(probe.encoder_steps(), probe.time_eps);
    let x0 = HostTensor::from_tensor(encode(&models.flow, original.clone(), &encoder_time, probe.encode_solver));
    let mut values = vec![];
    for (_, edited) in edit_all(args, &probe, models, target, original, x0, 0)? {
        let images = edited.images.detach();
        values.extend(to_vec(models.judge.probabilities(images.clone())).into_iter().map(f64::from));
        values.extend(to_vec(models.classifier.probabilities(images.clone())).into_iter().map(f64::from));
        let pixels: Vec<f64> = to_vec(images).into_iter().map(f64::from).collect();
        let mean = |f: fn(f64) -> f64| pixels.iter().map(|&x| f(x)).sum::<f64>() / pixels.len() as f64;
        values.extend([mean(|x| x), mean(f64::abs), mean(|x| x * x)]);
    }
    Ok(values)
}

/// The evaluation of `models` (see [`run`]): the parts earlier runs into the same folder left
/// are reused, the rest computed `--workers` at a time.
fn evaluate<F: DifferentiableField<Backend> + Clone + Send>(
    args: &EvalArgs,
    params: &EditParams,
    targets: &[usize],
    models: Models<F>,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let test = FashionMnist::load(&args.data, Split::Test)?;
    ensure!(args.images <= test.len(), "--images {} exceeds the {} test images", args.images, test.len());
    let mut chosen: Vec<usize> = (0..test.len()).collect();
    chosen.shuffle(&mut flowgrad_train::data::step_rng(args.seed, 0));
    chosen.truncate(args.images);
    for eta in &args.frontier_etas {
        EditParams { eta: *eta, ..params.clone() }.validate()?;
    }
    let chunks: Vec<&[usize]> = chosen.chunks(args.batch).collect();
    let sweep_class = targets[0];
    let sweep_set: Vec<usize> =
        chosen.iter().copied().filter(|&i| test.labels[i] as usize != sweep_class).take(args.sweep_images).collect();
    if sweep_set.is_empty() {
        bail!("no chosen image for the sweeps: all are already `{}`", CLASS_NAMES[sweep_class]);
    }

    let edits = edit_digest(args, params, &models, &test, targets)?;
    let settings = frontier_settings(args, params.eta);
    let frontier_chunks = args.frontier_images.div_ceil(args.batch).min(chunks.len());
    let chunk_settings = |chunk: usize| if chunk < frontier_chunks { &settings[..] } else { &[] };
    // A batch's digest names the frontier settings it computes (none beyond the frontier's
    // images), so batches inside the frontier keep their digest whatever --frontier-images is.
    let chunk_digest = |chunk: usize| {
        let frontier: Vec<(&str, f32)> = chunk_settings(chunk).iter().map(|&(m, v)| (m.key(), v)).collect();
        digest_parts(&[&edits, &format!("batch {} scale {} frontier {frontier:?}", args.batch, args.guidance_scale)])
    };
    let sweeps_digest = digest_parts(&[&edits, &format!("sweeps {sweep_set:?} steps {:?}", args.sweep_steps)]);
    let chunk_path = |chunk: usize| args.output.join("chunks").join(format!("{chunk:05}.json"));
    let sweeps_path = args.output.join("sweeps.json");
    let mut pending = vec![];
    if resume::load::<SweepsPart>(&sweeps_path, &sweeps_digest)?.is_none() {
        pending.push(Part::Sweeps);
    }
    for chunk in 0..chunks.len() {
        if resume::load::<ChunkPart>(&chunk_path(chunk), &chunk_digest(chunk))?.is_none() {
            pending.push(Part::Chunk(chunk));
        }
    }
    let parts = chunks.len() + 1;
    let resumed_parts = parts - pending.len();
    eprintln!(
        "{} batches of up to {} images (the first {frontier_chunks} with the frontier) and the sweeps: {resumed_parts} of {parts} parts from earlier runs, {} to compute on {} threads",
        chunks.len(),
        args.batch,
        pending.len(),
        args.workers
    );
    resume::run_parallel(&pending, args.workers, &models, |models, part| match part {
        Part::Sweeps => {
            let start = Instant::now();
            eprintln!("ξ and N sweeps on {} images towards `{}`", sweep_set.len(), CLASS_NAMES[sweep_class]);
            let xi_sweep = xi_sweep(args, params, models, &test, &sweep_set, sweep_class)?;
            let steps_sweep = steps_sweep(args, params, models, &test, &sweep_set, sweep_class)?;
            let part = SweepsPart { xi_sweep, steps_sweep, seconds: start.elapsed().as_secs_f64() };
            resume::store(&sweeps_path, &sweeps_digest, &part)
        }
        Part::Chunk(chunk) => {
            let part =
                compare_chunk(args, params, models, &test, chunks[*chunk], *chunk, targets, chunk_settings(*chunk))?;
            resume::store(&chunk_path(*chunk), &chunk_digest(*chunk), &part)
        }
    })?;

    let sweeps: SweepsPart = resume::load(&sweeps_path, &sweeps_digest)?.context("the sweeps part vanished")?;
    let mut stored = vec![];
    for chunk in 0..chunks.len() {
        stored.push(
            resume::load::<ChunkPart>(&chunk_path(chunk), &chunk_digest(chunk))?.context("a batch's part vanished")?,
        );
    }
    let (methods, frontier, straightness) = summarise(params, targets, &settings, &stored);
    let report = EvalReport {
        settings: Settings {
            images: args.images,
            classes: targets.iter().map(|&c| CLASS_NAMES[c].to_string()).collect(),
            params: params.clone(),
            batch: args.batch,
            guidance_scale: args.guidance_scale,
            frontier_images: chunks[..frontier_chunks].iter().map(|c| c.len()).sum(),
            sweep_images: sweep_set.len(),
            sweep_class: CLASS_NAMES[sweep_class].to_string(),
            seed: args.seed,
            model: args.model.clone(),
            backend: backend::name(),
            workers: args.workers,
        },
        methods,
        frontier,
        straightness,
        part_seconds: sweeps.seconds + stored.iter().map(|c| c.seconds).sum::<f64>(),
        xi_sweep: sweeps.xi_sweep,
        steps_sweep: sweeps.steps_sweep,
        wall_seconds: started.elapsed().as_secs_f64(),
        parts,
        resumed_parts,
    };
    write_outputs(args, &report)?;
    Ok(ExitCode::SUCCESS)
}

/// Edits the images `chunk` (test-set indices, batch number `index`) towards every target with
/// each method and every frontier setting, from one shared encoding, and scores the edits.
#[allow(clippy::too_many_arguments)]
fn compare_chunk<F: DifferentiableField<Backend>>(
    args: &EvalArgs,
    params: &EditParams,
    models: &Models<F>,
    test: &FashionMnist,
    chunk: &[usize],
    index: usize,
    targets: &[usize],
    settings: &[(Method, f32)],
) -> anyhow::Result<ChunkPart> {
    let started = Instant::now();
    let device = backend::device();
    let mut methods: Vec<Vec<Tally>> = vec![vec![Tally::default(); targets.len()]; Method::ALL.len()];
    let mut frontier = vec![Tally::default(); settings.len()];
    let mut s_sum = vec![0.0f64; params.steps];
    let time = TimeGrid::new(params.steps, params.time_eps);
    let encoder_time = TimeGrid::new(params.encoder_steps(), params.time_eps);
    let images = test.images::<Backend>(chunk, &device);
    let x0 = encode(&models.flow, images, &encoder_time, params.encode_solver);
    let velocities = simulate(&models.flow, x0.clone(), None, &time, Mode::Paper).velocities;
    for i in 0..chunk.len() {
        let own: Vec<Tensor<Backend, 4>> = velocities.iter().map(|v| v.clone().narrow(0, i, 1)).collect();
        for (sum, s) in s_sum.iter_mut().zip(straightness(&own, Mode::Paper).s) {
            *sum += s as f64;
        }
    }
    let x0 = HostTensor::from_tensor(x0);
    for (class_slot, &target) in targets.iter().enumerate() {
        let keep: Vec<usize> = (0..chunk.len()).filter(|&i| test.labels[chunk[i]] as usize != target).collect();
        if keep.is_empty() {
            continue;
        }
        let indices: Vec<usize> = keep.iter().map(|&i| chunk[i]).collect();
        let original = test.images::<Backend>(&indices, &device);
        let runs = edit_all(args, params, models, target, original.clone(), rows(&x0, &keep), index as u64)?;
        let times: Vec<String> = runs.iter().skip(1).map(|(m, e)| format!("{} {:.1} s", m.key(), e.seconds)).collect();
        eprintln!("batch {index}: {} images → `{}`: {}", indices.len(), CLASS_NAMES[target], times.join(", "));
        let mut main = vec![];
        for (method, edited) in runs {
            let slot = Method::ALL.iter().position(|m| *m == method).expect("known method");
            let tally = metrics::score(&models.judge, &models.classifier, target, &original, edited);
            methods[slot][class_slot].merge(&tally);
            main.push((method, tally));
        }
        for (point, &(method, value)) in settings.iter().enumerate() {
            let same = match method {
                Method::FlowGrad => value == params.eta,
                _ => value == args.guidance_scale,
            };
            let tally = match main.iter().find(|(m, _)| *m == method && same) {
                Some((_, tally)) => tally.clone(),
                None => {
                    let edited = frontier_edit(
                        args,
                        params,
                        models,
                        target,
                        &original,
                        rows(&x0, &keep),
                        index as u64,
                        method,
                        value,
                    )?;
                    metrics::score(&models.judge, &models.classifier, target, &original, edited)
                }
            };
            frontier[point].merge(&tally);
        }
    }
    Ok(ChunkPart {
        images: chunk.to_vec(),
        methods,
        frontier,
        straightness: s_sum,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The per-method reports, the frontier and the straightness curve of every batch's part, summed
/// in batch order (so a resumed evaluation reports exactly what an uninterrupted one does).
fn summarise(
    params: &EditParams,
    targets: &[usize],
    settings: &[(Method, f32)],
    parts: &[ChunkPart],
) -> (Vec<MethodReport>, Vec<FrontierPoint>, StraightnessCurve) {
    let mut tallies: Vec<Vec<Tally>> = vec![vec![Tally::default(); targets.len()]; Method::ALL.len()];
    let mut frontier = vec![Tally::default(); settings.len()];
    let (mut s_sum, mut trajectories) = (vec![0.0f64; params.steps], 0usize);
    for part in parts {
        for (sums, part_sums) in tallies.iter_mut().zip(&part.methods) {
            for (sum, tally) in sums.iter_mut().zip(part_sums) {
                sum.merge(tally);
            }
        }
        for (sum, tally) in frontier.iter_mut().zip(&part.frontier) {
            sum.merge(tally);
        }
        for (sum, s) in s_sum.iter_mut().zip(&part.straightness) {
            *sum += s;
        }
        trajectories += part.images.len();
    }
    let reports = Method::ALL
        .iter()
        .zip(&tallies)
        .map(|(method, per_class)| MethodReport {
            method: method.key(),
            label: method.label(params.xi),
            overall: per_class
                .iter()
                .fold(Tally::default(), |mut acc, t| {
                    acc.merge(t);
                    acc
                })
                .metrics(),
            per_class: targets
                .iter()
                .zip(per_class)
                .map(|(&c, t)| ClassMetrics { class: CLASS_NAMES[c].to_string(), metrics: t.metrics() })
                .collect(),
        })
        .collect();
    let frontier = settings
        .iter()
        .zip(&frontier)
        .map(|(&(method, value), tally)| FrontierPoint {
            method: method.key(),
            knob: if method == Method::FlowGrad { "eta" } else { "scale" },
            value,
            metrics: tally.metrics(),
        })
        .collect();
    let time = TimeGrid::new(params.steps, params.time_eps);
    let mean_s: Vec<f64> = s_sum.iter().map(|s| s / trajectories.max(1) as f64).collect();
    let curve = StraightnessCurve {
        t: (0..params.steps).map(|k| time.t(k) as f64).collect(),
        fraction_below_1e_3: mean_s.iter().filter(|&&s| s < 1e-3).count() as f64 / mean_s.len() as f64,
        mean_s,
        trajectories,
    };
    (reports, frontier, curve)
}

/// One frontier point's edit of a batch: FlowGrad with guidance weight `value`, or guided
/// sampling with scale `value`.
#[allow(clippy::too_many_arguments)]
fn frontier_edit<F: DifferentiableField<Backend>>(
    args: &EvalArgs,
    params: &EditParams,
    models: &Models<F>,
    target: usize,
    original: &Tensor<Backend, 4>,
    x0: HostTensor,
    stream: u64,
    method: Method,
    value: f32,
) -> anyhow::Result<Edited> {
    let guidance = class_guidance(args, models, target);
    let params = EditParams { eta: if method == Method::FlowGrad { value } else { params.eta }, ..params.clone() };
    let editor = class_editor(models, &guidance, params)?;
    timed(|| match method {
        Method::FlowGrad => {
            run_editor(&editor, editor.start_encoded(HostTensor::from_tensor(original.clone()), x0, args.seed, stream)?)
        }
        _ => {
            let ctx = GuidanceContext { iteration: 0, seed: args.seed };
            let images = guided_sample(
                &models.flow,
                &guidance,
                x0.to_tensor::<Backend, 4>(&backend::device())?,
                &editor.time_grid(),
                value,
                &ctx,
            )
            .images;
            Ok(Edited { images, seconds: 0.0, vjps: editor.params().steps, control_energy: 0.0, x0_shift: 0.0 })
        }
    })
}

/// An editor of the evaluated model with `guidance`, holding as many recorded forwards as the
/// fleet's editors of the bundled models do (faster; the edits are the same).
fn class_editor<'a, F: DifferentiableField<Backend>>(
    models: &'a Models<F>,
    guidance: &'a ClassGuidance<Classifier<Backend>>,
    params: EditParams,
) -> anyhow::Result<ClassEditor<'a, F>> {
    Ok(Editor::new(&models.flow, guidance, params, backend::device())?
        .with_recorded_forwards(BUNDLED_RECORDED_FORWARDS))
}

/// The guidance towards `target`: averaged over random views, or the plain loss with
/// `--plain-guidance`.
fn class_guidance<F>(args: &EvalArgs, models: &Models<F>, target: usize) -> ClassGuidance<Classifier<Backend>> {
    let guidance = ClassGuidance::new::<Backend>(models.classifier.clone(), target);
    if args.plain_guidance { guidance.with_views(ClassViews::none()) } else { guidance }
}

/// The images of `x` (`[B, …]`) at the positions `keep`.
fn rows(x: &HostTensor, keep: &[usize]) -> HostTensor {
    let per_image: usize = x.shape[1..].iter().product();
    let values = keep.iter().flat_map(|&i| x.values[i * per_image..(i + 1) * per_image].iter().copied()).collect();
    HostTensor { shape: [vec![keep.len()], x.shape[1..].to_vec()].concat(), values }
}

/// What one method produced for a batch: the edited images and its cost.
struct Edited {
    images: Tensor<Backend, 4>,
    seconds: f64,
    vjps: usize,
    control_energy: f64,
    x0_shift: f64,
}

/// Runs every method on one batch towards `target` from the shared encoding `x0`.
fn edit_all<F: DifferentiableField<Backend>>(
    args: &EvalArgs,
    params: &EditParams,
    models: &Models<F>,
    target: usize,
    original: Tensor<Backend, 4>,
    x0: HostTensor,
    stream: u64,
) -> anyhow::Result<Vec<(Method, Edited)>> {
    let device = backend::device();
    let guidance = class_guidance(args, models, target);
    let fast = class_editor(models, &guidance, params.clone())?;
    let exact = class_editor(models, &guidance, EditParams { xi: 0.0, ..params.clone() })?;
    let host_original = HostTensor::from_tensor(original.clone());
    let start =
        |editor: &ClassEditor<'_, F>| editor.start_encoded(host_original.clone(), x0.clone(), args.seed, stream);
    let mut out =
        vec![(Method::Input, Edited { images: original, seconds: 0.0, vjps: 0, control_energy: 0.0, x0_shift: 0.0 })];
    for (method, editor) in [(Method::FlowGrad, &fast), (Method::Exact, &exact)] {
        out.push((method, timed(|| run_editor(editor, start(editor)?))?));
    }
    out.push((
        Method::NoiseOnly,
        timed(|| {
            // x_0 only: no controls, so no warm start to compute
            let cold = class_editor(models, &guidance, EditParams { warm_start: 0.0, ..params.clone() })?;
            let edit = optimise_noise(&cold, &start(&cold)?)?;
            let shift = flowgrad::tensor_util::scalar(edit.shift.powi_scalar(2).sum());
            Ok(Edited { images: edit.images, seconds: 0.0, vjps: edit.vjps, control_energy: 0.0, x0_shift: shift })
        })?,
    ));
    out.push((
        Method::Guided,
        timed(|| {
            let ctx = GuidanceContext { iteration: 0, seed: args.seed };
            let images = guided_sample(
                &models.flow,
                &guidance,
                x0.to_tensor::<Backend, 4>(&device)?,
                &fast.time_grid(),
                args.guidance_scale,
                &ctx,
            )
            .images;
            Ok(Edited { images, seconds: 0.0, vjps: params.steps, control_energy: 0.0, x0_shift: 0.0 })
        })?,
    ));
    Ok(out)
}

/// Runs `f` and stores its wall time in the result.
fn timed(f: impl FnOnce() -> anyhow::Result<Edited>) -> anyhow::Result<Edited> {
    let start = Instant::now();
    let mut edited = f()?;
    edited.seconds = start.elapsed().as_secs_f64();
    Ok(edited)
}

/// Runs all iterations of `editor` from `state`; VJPs are the segments summed over iterations.
fn run_editor<F: DifferentiableField<Backend>>(
    editor: &ClassEditor<'_, F>,
    mut state: ControlState,
) -> anyhow::Result<Edited> {
    let outcome = editor.run(&mut state, |_, _| {})?;
    Ok(Edited {
        images: outcome.images,
        seconds: 0.0,
        vjps: editor.params().warm_start_vjps() + state.history.iter().map(|r| r.segments).sum::<usize>(),
        control_energy: energy(&outcome.controls),
        x0_shift: 0.0,
    })
}

/// Fig. 5b analog: FlowGrad's objective against the time spent on updates, for each ξ.
fn xi_sweep<F: DifferentiableField<Backend>>(
    args: &EvalArgs,
    params: &EditParams,
    models: &Models<F>,
    test: &FashionMnist,
    set: &[usize],
    target: usize,
) -> anyhow::Result<Vec<XiRun>> {
    let device = backend::device();
    let guidance = class_guidance(args, models, target);
    let original = test.images::<Backend>(set, &device);
    let batch = set.len() as f64;
    let mut x0 = None;
    let mut runs = vec![];
    for (xi, label) in XI_SWEEP {
        let editor = class_editor(models, &guidance, EditParams { xi, selection: Selection::Last, ..params.clone() })?;
        let x0 = x0.get_or_insert_with(|| HostTensor::from_tensor(editor.encode(original.clone())));
        let mut state = editor.start_encoded(HostTensor::from_tensor(original.clone()), x0.clone(), args.seed, 0)?;
        let (mut seconds, mut elapsed) = (vec![0.0], 0.0);
        while !editor.is_finished(&state) {
            let start = Instant::now();
            editor.step(&mut state)?;
            elapsed += start.elapsed().as_secs_f64();
            seconds.push(elapsed);
        }
        let outcome = editor.finish(&state)?;
        let mut objective: Vec<f64> = state.history.iter().map(|r| r.objective / batch).collect();
        objective.push(outcome.objective / batch);
        let edited = Edited {
            images: outcome.images,
            seconds: elapsed,
            vjps: state.history.iter().map(|r| r.segments).sum(),
            control_energy: energy(&outcome.controls),
            x0_shift: 0.0,
        };
        let final_metrics = metrics::score(&models.judge, &models.classifier, target, &original, edited).metrics();
        eprintln!(
            "ξ = {label}: objective/image {:.4} → {:.4} in {elapsed:.1} s",
            objective[0],
            objective[objective.len() - 1]
        );
        runs.push(XiRun {
            xi,
            label: label.to_string(),
            seconds,
            objective,
            segments: state.history.iter().map(|r| r.segments).collect(),
            final_metrics,
        });
    }
    Ok(runs)
}

/// Fig. 7 analog: FlowGrad's edit success for each number of Euler steps N.
fn steps_sweep<F: DifferentiableField<Backend>>(
    args: &EvalArgs,
    params: &EditParams,
    models: &Models<F>,
    test: &FashionMnist,
    set: &[usize],
    target: usize,
) -> anyhow::Result<Vec<StepsRun>> {
    let device = backend::device();
    let guidance = class_guidance(args, models, target);
    let original = test.images::<Backend>(set, &device);
    let mut runs = vec![];
    for &steps in &args.sweep_steps {
        let editor = class_editor(models, &guidance, EditParams { steps, ..params.clone() })?;
        let edited = timed(|| run_editor(&editor, editor.start(original.clone(), args.seed, 0)?))?;
        let metrics = metrics::score(&models.judge, &models.classifier, target, &original, edited).metrics();
        eprintln!("N = {steps}: success {:.2}, judge p {:.3}", metrics.success_rate, metrics.judge_target_prob);
        runs.push(StepsRun { steps, metrics });
    }
    Ok(runs)
}

/// Writes eval.json, table.md (also printed) and the three plots.
fn write_outputs(args: &EvalArgs, report: &EvalReport) -> anyhow::Result<()> {
    std::fs::write(args.output.join("eval.json"), serde_json::to_vec_pretty(report)?)?;
    let table = metrics::markdown(report);
    std::fs::write(args.output.join("table.md"), &table)?;
    println!("{table}");
    let curve = &report.straightness;
    plots::straightness(&args.output.join("straightness.png"), &curve.t, &curve.mean_s)?;
    let series: Vec<(String, Vec<(f64, f64)>)> = report
        .xi_sweep
        .iter()
        .map(|r| (format!("ξ = {}", r.label), r.seconds.iter().copied().zip(r.objective.iter().copied()).collect()))
        .collect();
    plots::xi_sweep(&args.output.join("xi_sweep.png"), &series)?;
    let steps: Vec<(f64, f64)> = report.steps_sweep.iter().map(|r| (r.steps as f64, r.metrics.success_rate)).collect();
    plots::steps_sweep(&args.output.join("steps_sweep.png"), &steps)?;
    for (file, axis, value) in [
        ("frontier_l1.png", "L1 to the input", (|m: &Metrics| m.l1) as fn(&Metrics) -> f64),
        ("frontier_ssim.png", "SSIM to the input", |m: &Metrics| m.ssim),
    ] {
        let series: Vec<(String, Vec<(f64, f64)>)> =
            [("flowgrad", "FlowGrad (η sweep)"), ("guided_sampling", "guided sampling (scale sweep)")]
                .iter()
                .map(|(key, name)| {
                    (
                        name.to_string(),
                        report
                            .frontier
                            .iter()
                            .filter(|p| p.method == *key)
                            .map(|p| (value(&p.metrics), p.metrics.success_rate))
                            .collect(),
                    )
                })
                .collect();
        plots::frontier(&args.output.join(file), axis, &series)?;
    }
    println!("wrote eval.json, table.md and plots to {}", args.output.display());
    Ok(())
}
