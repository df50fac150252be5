//! `flowgrad bench ncsnpp`: NCSN++ cost on this machine. Forward and forward + input-VJP time of
//! a randomly initialised model (CelebA-HQ 256² by default) at batch 1, and the peak resident
//! memory of decomposed (with and without recorded forwards) vs full back-propagation at several
//! N on a fixture's (reduced) config, each case measured in a fresh child process (`VmHWM` of
//! /proc/self/status).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::{Distribution, Tensor, backend::Backend as _};
use clap::ValueEnum;
use flowgrad::tensor_util::to_vec;
use flowgrad::{
    AnchorPlan, DifferentiableField, GradientRule, Guidance, GuidanceContext, Mode, MseToTarget, SegmentAnchor,
    TimeGrid, VelocityField, full_backprop, simulate_recording, velocity_vjp,
};
use flowgrad_backend::{self as backend, Backend};
use flowgrad_models::ncsnpp::{Ncsnpp, NcsnppConfig};

/// Forwards the `recorded` memory case holds at most (what an editor's `--recorded-forwards 16`
/// holds).
pub const RECORDED_CAPACITY: usize = 16;

/// Back-propagation methods whose memory is compared.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// One VJP per Euler step (ξ = 0), each graph freed before the next.
    Decomposed,
    /// The same, the simulation recording forwards for the VJPs as an editor with
    /// `--recorded-forwards` does (at most [`RECORDED_CAPACITY`] held; at ξ = 0 every step is an
    /// anchor).
    Recorded,
    /// Autograd through all N steps at once.
    Full,
}

/// Times forward and forward + VJP of the model of `config` (`None`: CelebA-HQ 256²), then
/// measures the memory of each method at each N on the config of the `ncsnpp/` set `fixture`.
pub fn run(config: Option<&Path>, fixture: &Path, steps: &[usize], repeats: usize) -> anyhow::Result<ExitCode> {
    let config = match config {
        Some(path) => NcsnppConfig::from_json_file(path)?,
        None => NcsnppConfig::celeba_hq_256(),
    };
    timing(&config, repeats)?;
    println!("peak RSS (VmHWM) per run, reduced config of {}, batch 1:", fixture.display());
    println!("{:<12} {:>6} {:>14} {:>14} {:>10}", "method", "N", "baseline MiB", "peak MiB", "VJPs");
    for &n in steps {
        for method in [Method::Decomposed, Method::Recorded, Method::Full] {
            let exe = std::env::current_exe()?;
            let output = Command::new(exe)
                .args(["bench", "ncsnpp-memory", "--fixture"])
                .arg(fixture)
                .args([
                    "--steps",
                    &n.to_string(),
                    "--method",
                    method.to_possible_value().expect("no method is hidden").get_name(),
                ])
                .output()
                .context("running the memory case")?;
            if !output.status.success() {
                bail!("memory case {method:?} N={n} failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            print!("{}", String::from_utf8_lossy(&output.stdout));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn timing(config: &NcsnppConfig, repeats: usize) -> anyhow::Result<()> {
    let device = backend::device();
    let started = Instant::now();
    let model = Ncsnpp::<Backend>::random(config, 0, &device)?;
    println!(
        "NCSN++ {}² nf={} ch_mult={:?}: {} parameters (built in {:.1} s), backend {}",
        config.image_size,
        config.nf,
        config.ch_mult,
        model.num_params(),
        started.elapsed().as_secs_f64(),
        backend::name()
    );
    Backend::seed(&device, 0);
    let shape = [1, config.channels, config.image_size, config.image_size];
    let x = Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let g = Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let t = Tensor::<Backend, 1>::full([1], 0.5, &device);
    let mut forward = vec![];
    let mut with_vjp = vec![];
    for i in 0..=repeats {
        let start = Instant::now();
        let v = model.velocity(x.clone().detach(), t.clone());
        let _ = to_vec(v);
        let f = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let _ = to_vec(velocity_vjp(&model, x.clone(), t.clone(), g.clone()));
        let b = start.elapsed().as_secs_f64();
        if i > 0 {
            forward.push(f);
            with_vjp.push(b);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "batch 1: forward {:.3} s, forward + input VJP {:.3} s (median of {repeats}, after one warm-up)",
        median(&mut forward),
        median(&mut with_vjp)
    );
    Ok(())
}

/// Peak resident memory of this process so far, in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// One memory case (run in its own process): the fixture's model with random weights, N steps
/// of random controls, the gradient of an MSE loss by `method`.
pub fn memory_case(fixture: &Path, steps: usize, method: Method) -> anyhow::Result<ExitCode> {
    let device = backend::device();
    let config = NcsnppConfig::from_json_file(&fixture.join("config.json"))?;
    let model = Ncsnpp::<Backend>::random(&config, 0, &device)?;
    Backend::seed(&device, 0);
    let shape = [1, config.channels, config.image_size, config.image_size];
    let x0 = Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let guidance = MseToTarget::new(Tensor::<Backend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device));
    let controls: Vec<Tensor<Backend, 4>> =
        (0..steps).map(|_| Tensor::random(shape, Distribution::Normal(0.0, 0.01), &device)).collect();
    let time = TimeGrid::new(steps, 1e-3);
    let ctx = GuidanceContext { iteration: 0, seed: 0 };
    let mode = Mode::Reference;
    let _ = to_vec(model.velocity(x0.clone(), Tensor::full([1], 0.5, &device)));
    let baseline = peak_rss_kib()?;
    let vjps = match method {
        Method::Decomposed | Method::Recorded => {
            let capacity = if method == Method::Recorded { RECORDED_CAPACITY } else { 0 };
            let plan = AnchorPlan { xi: 0.0, mode, anchor: SegmentAnchor::Start, capacity };
            let (trajectory, mut recorded) =
                simulate_recording(&model, &model.values(), x0, Some(&controls), &time, mode, plan);
            let rule = GradientRule { xi: 0.0, mode, anchor: SegmentAnchor::Start };
            let gradient = super::iteration::gradient_towards(
                &model,
                &trajectory,
                &mut recorded,
                &controls,
                &time,
                &guidance,
                rule,
            )
            .decomposed;
            let _ = to_vec(gradient.per_step[0].clone());
            gradient.vjps
        }
        Method::Full => {
            let full = full_backprop(&model, x0, &controls, &time, mode, |x1| guidance.loss(x1, &ctx).sum());
            let _ = to_vec(full.per_step[0].clone());
            steps
        }
    };
    let peak = peak_rss_kib()?;
    let name = method.to_possible_value().expect("no method is hidden").get_name().to_string();
    println!("{name:<12} {steps:>6} {:>14.1} {:>14.1} {vjps:>10}", baseline as f64 / 1024.0, peak as f64 / 1024.0);
    Ok(ExitCode::SUCCESS)
}
