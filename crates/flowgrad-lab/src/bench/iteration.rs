//! `flowgrad bench iteration`: the time of one FlowGrad edit iteration on an `ncsnpp/` fixture's
//! network, exactly as the original's `flowgrad_optimization` performs it (Reference mode, MSE to
//! a target; FORMAT.md part B): the controlled simulation, straightness and segments, ∂L/∂x_N,
//! one VJP per segment with re-assignment, and the SGD step. `bench/pytorch_side_by_side.py`
//! times the original on the same weights and inputs and compares. With `--network` it first
//! times the network alone (forward, forward + input VJP) on the same inputs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use burn::tensor::{Distribution, Tensor, backend::Backend as _};
use flowgrad::tensor_util::{from_vec, to_vec};
use flowgrad::{
    AnchorPlan, DifferentiableField, GradientRule, Guidance, GuidanceContext, IterationGradient, Mode, MseToTarget,
    RecordedForwards, SegmentAnchor, TimeGrid, Trajectory, VelocityField, endpoint_gradient, flowgrad_gradient,
    simulate, simulate_recording, simulate_untracked, velocity_vjp,
};
use flowgrad_backend::{self as backend, Backend};
use flowgrad_parity::TensorFile;

/// Arguments of `flowgrad bench iteration`.
#[derive(clap::Args, Debug)]
pub struct IterationArgs {
    /// The `ncsnpp/` fixture set (config.json, weights.safetensors); its sibling `flowgrad/`
    /// supplies z0, target, u_init, N, ξ and lr when present.
    #[arg(long, default_value_os_t = default_fixture())]
    fixture: PathBuf,
    /// Euler steps N (default: N of flowgrad/config.json).
    #[arg(long)]
    steps: Option<usize>,
    /// Straightness threshold ξ (default: ξ of flowgrad/config.json).
    #[arg(long)]
    xi: Option<f32>,
    /// Timed repetitions (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// CPU threads of the backend (sets RAYON_NUM_THREADS; default: rayon's choice).
    #[arg(long)]
    threads: Option<usize>,
    /// Forwards the simulation records for the VJPs, as an editor's (0, the default for NCSN++:
    /// every VJP runs its own forward, as the original does).
    #[arg(long, default_value_t = 0)]
    recorded_forwards: usize,
    /// First time one forward and one forward + input VJP of the network at t = 0.5 on z0 (the
    /// VJP's cotangent: the target), medians after a warm-up; prints a `network:` line.
    #[arg(long)]
    network: bool,
    /// Time the iterations without an untimed warm-up iteration first (at NCSN++ 256² and
    /// N = 100 one iteration costs minutes; `--network`'s warm-ups have run by then).
    #[arg(long)]
    no_warmup: bool,
    /// Time the iteration only, not also the simulation three ways afterwards (one of them keeps
    /// every step's graph, which at 256² and N = 100 does not fit in memory).
    #[arg(long)]
    iteration_only: bool,
}

/// FlowGrad's gradient for every control of `trajectory` towards `guidance` under `rule`
/// (`flowgrad::flowgrad_gradient`, reusing the forwards the simulation `recorded`).
pub(super) fn gradient_towards<F: VelocityField<Backend>>(
    field: &F,
    trajectory: &Trajectory<Backend>,
    recorded: &mut RecordedForwards<Backend>,
    controls: &[Tensor<Backend, 4>],
    time: &TimeGrid,
    guidance: &impl Guidance<Backend>,
    rule: GradientRule,
) -> IterationGradient<Backend> {
    let x1 = trajectory.last().require_grad();
    let grad_x1 = endpoint_gradient(&x1, guidance.loss(x1.clone(), &GuidanceContext { iteration: 0, seed: 0 }))
        .expect("the loss depends on x_N");
    flowgrad_gradient(field, trajectory, recorded, Some(controls), time, grad_x1, rule)
}

/// The edit's inputs: from the fixture's `flowgrad/data.safetensors` where shapes match, else
/// seeded random ones (z0, target ~ N(0, 1), u ~ N(0, 0.01²)).
struct Inputs {
    z0: Tensor<Backend, 4>,
    target: Tensor<Backend, 4>,
    controls: Vec<Tensor<Backend, 4>>,
    source: &'static str,
}

fn inputs(data: Option<&TensorFile>, shape: [usize; 4], steps: usize) -> anyhow::Result<Inputs> {
    let device = backend::device();
    Backend::seed(&device, 7);
    let random = |std: f64| Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, std), &device);
    let read = |name: &str, want: &[usize]| -> anyhow::Result<Option<Vec<f32>>> {
        match data {
            Some(file) if file.contains(name) => {
                let (got, values) = file.f32(name)?;
                Ok((got == want).then_some(values))
            }
            _ => Ok(None),
        }
    };
    let image = |name: &str, std| -> anyhow::Result<(Tensor<Backend, 4>, bool)> {
        Ok(match read(name, &shape)? {
            Some(values) => (from_vec(values, shape, &device), true),
            None => (random(std), false),
        })
    };
    let (z0, z0_fixture) = image("z0", 1.0)?;
    let (target, target_fixture) = image("target", 1.0)?;
    let per_step: Vec<usize> = std::iter::once(steps).chain(shape).collect();
    let (controls, u_fixture) = match read("u_init", &per_step)? {
        Some(values) => {
            (values.chunks(values.len() / steps).map(|c| from_vec(c.to_vec(), shape, &device)).collect(), true)
        }
        None => ((0..steps).map(|_| random(0.01)).collect(), false),
    };
    let source = match (z0_fixture && target_fixture, u_fixture) {
        (true, true) => "fixture z0, target, u_init",
        (true, false) => "fixture z0, target; random u_init",
        _ => "random z0, target, u_init",
    };
    Ok(Inputs { z0, target, controls, source })
}

/// Times of one iteration's phases.
struct Timing {
    forward: Duration,
    gradient: Duration,
    total: Duration,
    segments: usize,
}

/// Loads the fixture, times `repeats` iterations after a warm-up and prints the median.
pub fn run(args: &IterationArgs) -> anyhow::Result<ExitCode> {
    if let Some(threads) = args.threads {
        // SAFETY: nothing has spawned a thread yet (the bench commands start no runtime), and
        // rayon reads the variable when its global pool starts, at the first tensor operation.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    let device = backend::device();
    let config = flowgrad_models::NcsnppConfig::from_json_file(&args.fixture.join("config.json"))?;
    let model = flowgrad_models::load_ncsnpp::<Backend>(
        &args.fixture.join("weights.safetensors"),
        &config,
        flowgrad_models::WeightsChoice::Ema,
        &device,
    )?;
    let set = args.fixture.parent().map(|p| p.join("flowgrad")).unwrap_or_default();
    let fixture_config = match set.join("config.json").is_file() {
        true => Some(flowgrad_parity::fixture::read_json(&set.join("config.json"))?),
        false => None,
    };
    let number = |key: &str| fixture_config.as_ref().and_then(|c| c[key].as_f64());
    let steps = args
        .steps
        .or(number("N").map(|n| n as usize))
        .context("--steps is required without a flowgrad/config.json beside the fixture")?;
    let xi = args
        .xi
        .or(number("xi").map(|x| x as f32))
        .context("--xi is required without a flowgrad/config.json beside the fixture")?;
    let lr = number("lr").unwrap_or(10.0) as f32;
    if steps == 0 || args.repeats == 0 {
        bail!("--steps and --repeats must be at least 1");
    }
    let data = match set.join("data.safetensors").is_file() {
        true => Some(TensorFile::open(&set.join("data.safetensors"))?),
        false => None,
    };
    let side = config.image_size;
    let inputs = inputs(data.as_ref(), [1, config.channels, side, side], steps)?;
    if args.network {
        let t = Tensor::<Backend, 1>::full([1], 0.5, &device);
        let forward = super::median_seconds(args.repeats, || {
            let _ = to_vec(model.velocity(inputs.z0.clone(), t.clone()));
        });
        let vjp = super::median_seconds(args.repeats, || {
            let _ = to_vec(velocity_vjp(&model, inputs.z0.clone(), t.clone(), inputs.target.clone()));
        });
        println!("network: forward_seconds={forward:.6} vjp_seconds={vjp:.6}");
    }
    let guidance = MseToTarget::new(inputs.target.clone());
    let time = TimeGrid::new(steps, 1e-3);
    // NCSN++'s values twin, built once outside every timed region
    let values = model.values();
    let iteration = || {
        let clock = Instant::now();
        let plan =
            AnchorPlan { xi, mode: Mode::Reference, anchor: SegmentAnchor::Start, capacity: args.recorded_forwards };
        let (trajectory, mut recorded) = simulate_recording(
            &model,
            &values,
            inputs.z0.clone(),
            Some(&inputs.controls),
            &time,
            Mode::Reference,
            plan,
        );
        let forward = clock.elapsed();
        let rule = GradientRule { xi, mode: Mode::Reference, anchor: SegmentAnchor::Start };
        let gradient =
            gradient_towards(&model, &trajectory, &mut recorded, &inputs.controls, &time, &guidance, rule).decomposed;
        let updated: Vec<Tensor<Backend, 4>> =
            inputs.controls.iter().zip(gradient.per_step).map(|(u, g)| u.clone() - g * lr).collect();
        let _ = to_vec(Tensor::cat(updated, 0));
        let total = clock.elapsed();
        Timing { forward, gradient: total - forward, total, segments: gradient.vjps }
    };
    if !args.no_warmup {
        let _ = iteration();
    }
    let mut runs: Vec<Timing> = (0..args.repeats).map(|_| iteration()).collect();
    runs.sort_by_key(|t| t.total);
    let median = &runs[runs.len() / 2];
    println!(
        "one FlowGrad iteration, NCSN++ nf={} ch_mult={:?} ({}x{side}x{side}) from {}, {}, xi={xi}, backend {}, threads {}",
        config.nf,
        config.ch_mult,
        config.channels,
        args.fixture.display(),
        inputs.source,
        backend::name(),
        args.threads.map_or_else(|| "default".to_string(), |t| t.to_string())
    );
    println!(
        "median of {}: simulation {:.1} ms, straightness + gradient + SGD {:.1} ms (VJPs: {})",
        args.repeats,
        median.forward.as_secs_f64() * 1e3,
        median.gradient.as_secs_f64() * 1e3,
        median.segments
    );
    if !args.iteration_only {
        compare_simulations(args, &config, &model, &values, &inputs, &time)?;
    }
    println!("iteration: seconds={:.6} steps={steps} segments={}", median.total.as_secs_f64(), median.segments);
    Ok(ExitCode::SUCCESS)
}

/// Times the simulation three ways and prints the `simulation alone` line: NCSN++'s values twin
/// (autodiff, releasing its entries after every step), autodiff keeping every entry, and the
/// inner backend (no graph at all).
fn compare_simulations(
    args: &IterationArgs,
    config: &flowgrad_models::NcsnppConfig,
    model: &flowgrad_models::Ncsnpp<Backend>,
    values: &<flowgrad_models::Ncsnpp<Backend> as DifferentiableField<Backend>>::Values,
    inputs: &Inputs,
    time: &TimeGrid,
) -> anyhow::Result<()> {
    let inner_model = flowgrad_models::load_ncsnpp::<backend::InnerBackend>(
        &args.fixture.join("weights.safetensors"),
        config,
        flowgrad_models::WeightsChoice::Ema,
        &backend::device(),
    )?;
    let inner_controls: Vec<_> = inputs.controls.iter().map(|u| u.clone().inner()).collect();
    let released = super::median_seconds(args.repeats, || {
        let trajectory = simulate_untracked(values, inputs.z0.clone(), Some(&inputs.controls), time, Mode::Reference);
        let _ = to_vec(trajectory.last());
    });
    let kept = super::median_seconds(args.repeats, || {
        let _ = to_vec(simulate(model, inputs.z0.clone(), Some(&inputs.controls), time, Mode::Reference).last());
    });
    let inner = super::median_seconds(args.repeats, || {
        let trajectory =
            simulate(&inner_model, inputs.z0.clone().inner(), Some(&inner_controls), time, Mode::Reference);
        let _ = to_vec(trajectory.last());
    });
    println!(
        "simulation alone, median of {}: {:.1} ms through autodiff releasing its entries after every step (NCSN++'s values twin), {:.1} ms keeping them, {:.1} ms on the inner backend: ratios {:.3}, inner {:.3}",
        args.repeats,
        released * 1e3,
        kept * 1e3,
        inner * 1e3,
        released / kept,
        inner / released
    );
    Ok(())
}

/// The default fixture folder: `$FLOWGRAD_FIXTURES/ncsnpp`, else `../shared/fixtures/ncsnpp`.
pub fn default_fixture() -> PathBuf {
    std::env::var_os("FLOWGRAD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/fixtures"))
        .join("ncsnpp")
}
