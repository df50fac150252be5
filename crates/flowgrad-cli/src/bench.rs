//! `flowgrad bench`: gradient cost of FlowGrad vs full back-propagation, as ratios of one run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use burn::tensor::{Distribution, Tensor, backend::Backend as _};
use clap::Subcommand;
use flowgrad::tensor_util::to_vec;
use flowgrad::{Grid, Guidance, GuidanceContext, Mode, MseToTarget, TimeGrid, decomposed_backprop, full_backprop, simulate, straightness};
use flowgrad_models::ConvFieldConfig;

use flowgrad_engine::backend::{self, Backend};

mod ncsnpp;

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
        /// Image side (square, 3 channels).
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Hidden channels of the benchmark conv net.
        #[arg(long, default_value_t = 32)]
        hidden: usize,
    },
    /// NCSN++ cost: forward and forward + VJP time of a random CelebA-HQ 256² model (or
    /// `--config`) at batch 1, and peak memory of decomposed vs full back-prop at each `--steps`
    /// on the reduced config of an `ncsnpp/` fixture set (one child process per case).
    Ncsnpp {
        /// An original config as JSON for the timing (default: CelebA-HQ 256²).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The `ncsnpp/` fixture set whose config the memory cases use.
        #[arg(long, default_value_os_t = ncsnpp::default_fixture())]
        fixture: std::path::PathBuf,
        /// Euler steps N of the memory cases.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        steps: Vec<usize>,
        /// Timed repetitions (after one warm-up).
        #[arg(long, default_value_t = 2)]
        repeats: usize,
    },
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

/// Runs a suite.
pub fn run(suite: &Suite) -> anyhow::Result<ExitCode> {
    match suite {
        Suite::Ncsnpp { config, fixture, steps, repeats } => ncsnpp::run(config.as_deref(), fixture, steps, *repeats),
        Suite::NcsnppMemory { fixture, steps, method } => ncsnpp::memory_case(fixture, *steps, *method),
        Suite::Table1 { quick, steps, size, hidden } => table1(*quick, steps.unwrap_or(if *quick { 20 } else { 100 }), *size, *hidden),
    }
}

struct Row {
    name: String,
    time: Duration,
    vjps: usize,
    gradient: Vec<f32>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn median_time(repeats: usize, mut f: impl FnMut() -> (usize, Vec<f32>)) -> (Duration, usize, Vec<f32>) {
    let mut times = vec![];
    let mut last = (0, vec![]);
    for _ in 0..repeats {
        let start = Instant::now();
        last = f();
        times.push(start.elapsed());
    }
    times.sort();
    (times[times.len() / 2], last.0, last.1)
}

fn table1(quick: bool, steps: usize, size: usize, hidden: usize) -> anyhow::Result<ExitCode> {
    let device = backend::device();
    Backend::seed(&device, 7);
    let repeats = if quick { 1 } else { 3 };
    let field = ConvFieldConfig::new(3).with_hidden(hidden).with_seed(7).init::<Backend>(&device);
    let shape = [1, 3, size, size];
    let x0 = Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let target = Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let controls: Vec<Tensor<Backend, 4>> = (0..steps).map(|_| Tensor::random(shape, Distribution::Normal(0.0, 0.01), &device)).collect();
    let guidance = MseToTarget::new(target);
    let ctx = GuidanceContext { iteration: 0, seed: 0 };
    let time = TimeGrid::new(steps, 1e-3);
    let mode = Mode::Paper;
    let flat = |g: Vec<Tensor<Backend, 4>>| -> Vec<f32> { g.into_iter().flat_map(|t| to_vec(t)).collect() };

    let mut rows = vec![];
    let (t, vjps, g) = median_time(repeats, || {
        let full = full_backprop(&field, x0.clone(), &controls, &time, mode, |x1| guidance.loss(x1, &ctx).sum());
        (steps, flat(full.per_step))
    });
    rows.push(Row { name: "full back-prop".into(), time: t, vjps, gradient: g });
    for (name, xi) in [("decomposed (xi=0)", 0.0f32), ("FlowGrad xi=5e-3", 5e-3), ("FlowGrad xi=1e-2", 1e-2)] {
        let (t, vjps, g) = median_time(repeats, || {
            let trajectory = simulate(&field, x0.clone(), Some(&controls), &time, mode);
            let x1 = trajectory.last().require_grad();
            let grads = guidance.loss(x1.clone(), &ctx).sum().backward();
            let grad_x1 = Tensor::from_inner(x1.grad(&grads).expect("loss depends on x1"));
            let grid = if xi == 0.0 { Grid::uniform(steps) } else { Grid::build(&straightness(&trajectory.velocities, mode).s, xi, mode) };
            let gradient = decomposed_backprop(&field, &trajectory, Some(&controls), &grid, &time, grad_x1, mode);
            (gradient.vjps, flat(gradient.per_step))
        });
        rows.push(Row { name: name.into(), time: t, vjps, gradient: g });
    }

    println!("Table 1 analog: gradient of all {steps} controls, conv net ({hidden} hidden, {size}x{size}x3), backend {}, median of {repeats}", backend::name());
    println!("{:<20} {:>10} {:>6} {:>10} {:>10} {:>12}", "method", "time (ms)", "VJPs", "time/full", "VJPs/full", "cos to exact");
    let exact = rows[1].gradient.clone();
    for row in &rows {
        println!(
            "{:<20} {:>10.1} {:>6} {:>10.3} {:>10.3} {:>12.6}",
            row.name,
            row.time.as_secs_f64() * 1e3,
            row.vjps,
            row.time.as_secs_f64() / rows[0].time.as_secs_f64(),
            row.vjps as f64 / rows[0].vjps as f64,
            cosine(&row.gradient, &exact)
        );
    }
    let fast = &rows[2];
    println!(
        "table1: vjp_ratio={:.2} time_ratio={:.2} cosine={:.6}",
        rows[0].vjps as f64 / fast.vjps as f64,
        rows[0].time.as_secs_f64() / fast.time.as_secs_f64(),
        cosine(&fast.gradient, &exact)
    );
    Ok(ExitCode::SUCCESS)
}
