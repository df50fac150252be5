//! `flowgrad bench`: gradient cost of FlowGrad vs full back-propagation, as ratios of one run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::{Distribution, Tensor, backend::Backend as _};
use clap::Subcommand;
use flowgrad::tensor_util::to_vec;
use flowgrad::{
    AnchorPlan, DifferentiableField, GradientRule, Guidance, GuidanceContext, Mode, MseToTarget, SegmentAnchor,
    SegmentGradient, TimeGrid, record_simulation, simulate_recording,
};
use flowgrad_models::ConvFieldConfig;

use flowgrad_backend::{self as backend, Backend};

mod clip;
mod edit;
mod iteration;
mod ncsnpp;
mod straightness;

/// Benchmark suites.
#[derive(Subcommand, Debug)]
pub enum Suite {
    /// Table-1 analog: time and VJPs for the gradient of all controls, full back-prop vs
    /// decomposed (ξ = 0) vs fast (ξ = 5e-3, 1e-2), with the cosine to the exact gradient.
    Table1 {
        /// Fewer steps and one repetition (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Euler steps N (default 100; 20 with --quick).
        #[arg(long)]
        steps: Option<usize>,
        /// Velocity field: the bundled Fashion-MNIST UNet, or a seeded conv net.
        #[arg(long, value_enum, default_value_t = BenchModel::Bundled)]
        model: BenchModel,
        /// Folder with the bundled models' weights (default: the copies built into this binary).
        #[arg(long)]
        assets: Option<std::path::PathBuf>,
        /// Image side of the conv net (square, 3 channels).
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Hidden channels of the conv net.
        #[arg(long, default_value_t = 32)]
        hidden: usize,
        /// Straightness thresholds ξ of the FlowGrad rows (the summary line uses the first).
        #[arg(long, value_delimiter = ',', default_value = "5e-3,1e-2")]
        xi: Vec<f32>,
        /// The `ncsnpp/` fixture set for `--model ncsnpp`.
        #[arg(long, default_value_os_t = iteration::default_fixture())]
        fixture: std::path::PathBuf,
        /// The controls u_k on the measured trajectory.
        #[arg(long, value_enum, default_value_t = BenchControls::Zero)]
        controls: BenchControls,
        /// Simulation and grid convention: `reference` (the original code's) or `paper`.
        #[arg(long, value_parser = flowgrad_params::cli::parse_enum::<Mode>, default_value = "reference")]
        mode: Mode,
        /// The FlowGrad variant of the summary line: how a segment's gradient reaches its
        /// steps (`copy` or `interpolate`, as `params.segment_gradient`)…
        #[arg(long, value_parser = flowgrad_params::cli::parse_enum::<SegmentGradient>, default_value = "copy")]
        segment_gradient: SegmentGradient,
        /// …and where its VJP is evaluated (`start` or `middle`, as `params.segment_anchor`).
        #[arg(long, value_parser = flowgrad_params::cli::parse_enum::<SegmentAnchor>, default_value = "start")]
        segment_anchor: SegmentAnchor,
        /// Timed runs per row; the median is kept (default 3; 1 with --quick).
        #[arg(long)]
        repeats: Option<usize>,
        /// Forwards the FlowGrad rows' simulations record for their VJPs (as an editor's
        /// `recorded_forwards`; 0: every VJP runs its own forward, the paper's way).
        #[arg(long, default_value_t = flowgrad_engine::BUNDLED_RECORDED_FORWARDS)]
        recorded_forwards: usize,
    },
    /// NCSN++ cost: forward and forward + VJP time of a random CelebA-HQ 256² model (or
    /// `--config`) at batch 1, and peak memory of decomposed (without and with recorded forwards)
    /// vs full back-prop at each `--steps` on the reduced config of an `ncsnpp/` fixture set (one
    /// child process per case).
    Ncsnpp {
        /// An original config as JSON for the timing (default: CelebA-HQ 256²).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The `ncsnpp/` fixture set whose config the memory cases use.
        #[arg(long, default_value_os_t = iteration::default_fixture())]
        fixture: std::path::PathBuf,
        /// Euler steps N of the memory cases.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        steps: Vec<usize>,
        /// Timed repetitions (after one warm-up).
        #[arg(long, default_value_t = 2)]
        repeats: usize,
    },
    /// CLIP guidance cost: forward + backward of the augmented CLIP loss (ViT-B/32, random
    /// weights) for K copies of one image, relative to one NCSN++ CelebA-HQ 256² forward.
    Clip {
        /// Augmented copies K.
        #[arg(long, default_value_t = 20)]
        copies: usize,
        /// Side of the edited image (resized to 224² for CLIP).
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Timed repetitions (after one warm-up).
        #[arg(long, default_value_t = 1)]
        repeats: usize,
    },
    /// One FlowGrad edit iteration on an `ncsnpp/` fixture's network as the original's
    /// `flowgrad_optimization` does it (MSE to a target), for bench/pytorch_side_by_side.py.
    Iteration(iteration::IterationArgs),
    /// Straightness of each bundled model's generation trajectories (flow, reflowed flow, DDIM):
    /// the mean S(t) curve and the segments FlowGrad keeps at ξ, with a plot.
    Straightness(straightness::StraightnessArgs),
    /// Throughput of real edits with the bundled model (`flowgrad run` end to end): images/s
    /// for each number of workers and batch size, and the ratio to 1 worker at batch 1.
    Edit(edit::EditBenchArgs),
    /// One memory case of `bench ncsnpp` (run in a child process).
    #[command(hide = true)]
    NcsnppMemory {
        /// The `ncsnpp/` fixture set whose config is used.
        #[arg(long)]
        fixture: std::path::PathBuf,
        /// Euler steps N.
        #[arg(long)]
        steps: usize,
        /// Back-propagation method.
        #[arg(long, value_enum)]
        method: ncsnpp::Method,
    },
}

/// Velocity fields `bench table1` can measure.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum BenchModel {
    /// The bundled rectified flow (UNet, 1×32×32).
    Bundled,
    /// The bundled reflowed (2-rectified) flow: same UNet, straighter trajectories.
    Reflow,
    /// A seeded conv net (`--size`, `--hidden`).
    Conv,
    /// NCSN++ from an `ncsnpp/` fixture set's weights and config (`--fixture`; reduced config).
    Ncsnpp,
}

/// Controls on the trajectory `bench table1` differentiates.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchControls {
    /// u = 0: the trajectory of every edit's first iteration (FlowGrad starts from zero controls).
    Zero,
    /// Independent N(0, 0.01²) noise at every step: a stress case (no edit has such controls;
    /// FlowGrad's are piecewise constant over segments), which makes every step look curved.
    Noise,
}

/// Settings of one `bench table1` run besides the velocity field.
struct Table1Settings<'a> {
    repeats: usize,
    steps: usize,
    xis: &'a [f32],
    controls: BenchControls,
    mode: Mode,
    /// The variant the `table1:` summary line reports.
    summary: (SegmentGradient, SegmentAnchor),
    /// Forwards recorded for the VJPs in each FlowGrad row's simulations.
    recorded_forwards: usize,
}

/// Runs a suite.
pub fn run(suite: &Suite) -> anyhow::Result<ExitCode> {
    match suite {
        Suite::Ncsnpp { config, fixture, steps, repeats } => ncsnpp::run(config.as_deref(), fixture, steps, *repeats),
        Suite::NcsnppMemory { fixture, steps, method } => ncsnpp::memory_case(fixture, *steps, *method),
        Suite::Clip { copies, size, repeats } => clip::run(*copies, *size, *repeats),
        Suite::Iteration(args) => iteration::run(args),
        Suite::Edit(args) => edit::run(args),
        Suite::Straightness(args) => straightness::run(args),
        Suite::Table1 {
            quick,
            steps,
            model,
            assets,
            size,
            hidden,
            xi,
            fixture,
            controls,
            mode,
            segment_gradient,
            segment_anchor,
            repeats,
            recorded_forwards,
        } => {
            let steps = steps.unwrap_or(if *quick { 20 } else { 100 });
            let settings = Table1Settings {
                repeats: repeats.unwrap_or(if *quick { 1 } else { 3 }),
                steps,
                xis: xi,
                controls: *controls,
                mode: *mode,
                summary: (*segment_gradient, *segment_anchor),
                recorded_forwards: *recorded_forwards,
            };
            let device = backend::device();
            match model {
                BenchModel::Bundled => {
                    let flow = flowgrad_models::load_flow::<Backend>(
                        &flowgrad_engine::Assets::from_option(assets.clone()),
                        &device,
                    )?
                    .no_grad();
                    table1(&flow, "bundled UNet (1x32x32)", [1, 1, 32, 32], &settings)
                }
                BenchModel::Reflow => {
                    let flow = flowgrad_models::load_reflow::<Backend>(
                        &flowgrad_engine::Assets::from_option(assets.clone()),
                        &device,
                    )?
                    .no_grad();
                    table1(&flow, "bundled reflowed UNet (1x32x32)", [1, 1, 32, 32], &settings)
                }
                BenchModel::Conv => {
                    let field = ConvFieldConfig::new(3).with_hidden(*hidden).with_seed(7).init::<Backend>(&device);
                    table1(
                        &field,
                        &format!("conv net ({hidden} hidden, {size}x{size}x3)"),
                        [1, 3, *size, *size],
                        &settings,
                    )
                }
                BenchModel::Ncsnpp => {
                    let config = flowgrad_models::NcsnppConfig::from_json_file(&fixture.join("config.json"))?;
                    let field = flowgrad_models::load_ncsnpp::<Backend>(
                        &fixture.join("weights.safetensors"),
                        &config,
                        flowgrad_models::WeightsChoice::Ema,
                        &device,
                    )?;
                    let side = config.image_size;
                    let label = format!(
                        "NCSN++ nf={} ch_mult={:?} ({}x{side}x{side}) from {}",
                        config.nf,
                        config.ch_mult,
                        config.channels,
                        fixture.display()
                    );
                    table1(&field, &label, [1, config.channels, side, side], &settings)
                }
            }
        }
    }
}

/// One method's measurements: forward simulation and gradient (given the trajectory) times.
struct Row {
    forward: Duration,
    gradient_time: Duration,
    vjps: usize,
    /// VJPs that used a forward recorded during the simulation.
    recorded_vjps: usize,
    gradient: Vec<f32>,
}

impl Row {
    fn total(&self) -> Duration {
        self.forward + self.gradient_time
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Median of `repeats` timed runs of `f` after one warm-up, in seconds.
fn median_seconds(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    timed_median(repeats, f)
}

/// Median of `repeats` (at least one) timed runs of `f`, in seconds.
fn timed_median(repeats: usize, mut f: impl FnMut()) -> f64 {
    let times: Vec<Duration> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    median_duration(times).as_secs_f64()
}

/// The median of (at least one) durations.
fn median_duration(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The run with the median total time.
fn median_row(mut runs: Vec<Row>) -> Row {
    runs.sort_by_key(Row::total);
    runs.swap_remove(runs.len() / 2)
}

/// The FlowGrad variants every ξ gets a row for: row label, how a segment's gradient reaches its
/// steps, where its VJP is evaluated. The first is the paper's (and the edit default).
const VARIANTS: [(&str, SegmentGradient, SegmentAnchor); 4] = [
    ("copied", SegmentGradient::Copy, SegmentAnchor::Start),
    ("interpolated", SegmentGradient::Interpolate, SegmentAnchor::Start),
    ("middle anchor", SegmentGradient::Copy, SegmentAnchor::Middle),
    ("middle + interp.", SegmentGradient::Interpolate, SegmentAnchor::Middle),
];

/// Timed gradients per simulated trajectory in the merged-grid rows (their median is kept).
const FAST_GRADIENT_SAMPLES: usize = 5;

fn table1<F: DifferentiableField<Backend>>(
    field: &F,
    label: &str,
    shape: [usize; 4],
    settings: &Table1Settings,
) -> anyhow::Result<ExitCode> {
    let Table1Settings { repeats, steps, xis, controls: kind, mode, summary, recorded_forwards } = *settings;
    anyhow::ensure!(!xis.is_empty() && xis.iter().all(|x| x.is_finite() && *x > 0.0), "--xi needs positive thresholds");
    anyhow::ensure!(repeats > 0, "--repeats must be at least 1");
    let device = backend::device();
    let values = &field.values();
    Backend::seed(&device, 7);
    let x0 = Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let target = Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let controls: Vec<Tensor<Backend, 4>> = match kind {
        BenchControls::Zero => (0..steps).map(|_| Tensor::zeros(shape, &device)).collect(),
        BenchControls::Noise => {
            (0..steps).map(|_| Tensor::random(shape, Distribution::Normal(0.0, 0.01), &device)).collect()
        }
    };
    let guidance = MseToTarget::new(target);
    let ctx = GuidanceContext { iteration: 0, seed: 0 };
    let time = TimeGrid::new(steps, 1e-3);
    let flat = |g: Vec<Tensor<Backend, 4>>| -> Vec<f32> { g.into_iter().flat_map(to_vec).collect() };

    let (x0, controls, time, guidance, ctx) = (&x0, &controls, &time, &guidance, &ctx);
    // (row name, one timed run of it)
    let mut methods: Vec<(String, Box<dyn FnMut() -> Row + '_>)> = vec![(
        "full back-prop".to_string(),
        Box::new(move || {
            let clock = Instant::now();
            let recorded = record_simulation(field, x0.clone(), controls, time, mode);
            let forward = clock.elapsed();
            let clock = Instant::now();
            let full = recorded.backward(|x1| guidance.loss(x1, ctx).sum());
            let gradient = flat(full.per_step);
            Row { forward, gradient_time: clock.elapsed(), vjps: steps, recorded_vjps: 0, gradient }
        }),
    )];
    // ξ = 0 is the uniform grid, where every variant is exact
    let variants =
        std::iter::once(("decomposed (xi=0)".to_string(), 0.0f32, VARIANTS[0])).chain(xis.iter().flat_map(|xi| {
            VARIANTS.iter().enumerate().map(move |(i, variant)| {
                (if i == 0 { format!("FlowGrad xi={xi}") } else { format!("  {}", variant.0) }, *xi, *variant)
            })
        }));
    for (name, xi, (_, assignment, anchor)) in variants {
        methods.push((
            name,
            Box::new(move || {
                // a merged grid's gradient takes a fraction of the simulation: time several
                // (simulation, gradient) pairs and keep each one's median, so that the gradient's
                // is as steady as the longer rows'; each simulation records afresh the forwards
                // its gradient uses up
                let samples = if xi > 0.0 { FAST_GRADIENT_SAMPLES } else { 1 };
                let plan = AnchorPlan { xi, mode, anchor, capacity: recorded_forwards };
                let (mut forwards, mut gradients, mut measured) = (vec![], vec![], None);
                for _ in 0..samples {
                    let clock = Instant::now();
                    let (trajectory, mut recorded) =
                        simulate_recording(field, values, x0.clone(), Some(controls), time, mode, plan);
                    forwards.push(clock.elapsed());
                    let clock = Instant::now();
                    let result = iteration::gradient_towards(
                        field,
                        &trajectory,
                        &mut recorded,
                        controls,
                        time,
                        guidance,
                        GradientRule { xi, mode, anchor },
                    );
                    let counts = (result.decomposed.vjps, result.decomposed.recorded_vjps);
                    let gradient = flat(result.decomposed.assigned(assignment, &result.grid, time, mode));
                    gradients.push(clock.elapsed());
                    measured = Some((gradient, counts));
                }
                let (gradient, (vjps, recorded_vjps)) = measured.expect("timed at least once");
                Row {
                    forward: median_duration(forwards),
                    gradient_time: median_duration(gradients),
                    vjps,
                    recorded_vjps,
                    gradient,
                }
            }),
        ));
    }
    // interleaved: every repetition runs each method once in turn, so that the machine's speed
    // drifting during the run (by tens of percent here) reaches every row alike
    let mut runs: Vec<Vec<Row>> = methods.iter().map(|_| Vec::with_capacity(repeats)).collect();
    for _ in 0..repeats {
        for ((_, run), times) in methods.iter_mut().zip(&mut runs) {
            times.push(run());
        }
    }
    let rows: Vec<(String, Row)> =
        methods.into_iter().map(|(name, _)| name).zip(runs.into_iter().map(median_row)).collect();

    println!(
        "Table 1 analog: gradient of all {steps} controls, {label}, controls {kind:?}, mode {mode:?}, backend {}, median of {repeats} interleaved runs ({FAST_GRADIENT_SAMPLES} gradient timings per run in the merged-grid rows)",
        backend::name()
    );
    println!("gradient = time after the forward simulation (the paper's convention); total = simulation + gradient");
    println!(
        "rows under each xi: the same grid and VJPs; costates copied (the paper's) or interpolated inside segments, VJP at the segment's start (the paper's) or middle step"
    );
    println!(
        "decomposed rows record up to {recorded_forwards} forwards in their simulation for the VJPs to reuse (column 'rec.': VJPs that ran only their backward half)"
    );
    println!(
        "{:<20} {:>9} {:>13} {:>6} {:>5} {:>10} {:>10} {:>10} {:>12}",
        "method", "sim (ms)", "gradient (ms)", "VJPs", "rec.", "VJPs/full", "grad/full", "total/full", "cos to exact"
    );
    let (full_row, exact) = (&rows[0].1, &rows[1].1.gradient);
    let full = (full_row.gradient_time.as_secs_f64(), full_row.total().as_secs_f64());
    for (name, row) in &rows {
        println!(
            "{:<20} {:>9.1} {:>13.1} {:>6} {:>5} {:>10.3} {:>10.3} {:>10.3} {:>12.6}",
            name,
            row.forward.as_secs_f64() * 1e3,
            row.gradient_time.as_secs_f64() * 1e3,
            row.vjps,
            row.recorded_vjps,
            row.vjps as f64 / full_row.vjps as f64,
            row.gradient_time.as_secs_f64() / full.0,
            row.total().as_secs_f64() / full.1,
            cosine(&row.gradient, exact)
        );
    }
    let ratios = |row: &Row| {
        format!(
            "vjp_ratio={:.2} time_ratio={:.2} cosine={:.6}",
            full_row.vjps as f64 / row.vjps as f64,
            full.0 / row.gradient_time.as_secs_f64(),
            cosine(&row.gradient, exact)
        )
    };
    // rows: full back-prop, decomposed (ξ = 0), then VARIANTS in order for each ξ
    let at_first_xi = &rows[2..2 + VARIANTS.len()];
    for ((variant_name, ..), (_, row)) in VARIANTS.iter().zip(at_first_xi) {
        println!("xi={} {variant_name}: {}", xis[0], ratios(row));
    }
    let (_, fast) = &at_first_xi[VARIANTS
        .iter()
        .position(|(_, assignment, anchor)| (*assignment, *anchor) == summary)
        .expect("every variant has a row")];
    println!("with the simulation: total_time_ratio={:.2}", full.1 / fast.total().as_secs_f64());
    println!("table1: {}", ratios(fast));
    Ok(ExitCode::SUCCESS)
}
