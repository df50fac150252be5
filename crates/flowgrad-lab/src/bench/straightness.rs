//! `flowgrad bench straightness`: how straight each bundled generative ODE is — the 1-rectified
//! flow, the reflowed flow and the diffusion model (DDIM's ODE) — on generation trajectories from
//! the same seeded noise: the mean straightness S(t_k) per step (Fig. 5a across model families)
//! and the segments (VJPs per gradient) FlowGrad's grid keeps at ξ. The paper's claim: the
//! straighter the ODE, the fewer VJPs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use flowgrad::{TimeGrid, VelocityField};
use flowgrad_backend::{self as backend, InnerBackend};
use flowgrad_models::fashion::SIDE;
use flowgrad_models::{Assets, ddim_ode, load_ddim, load_flow, load_reflow};
use flowgrad_train::data::{normal, step_rng, tensor};
use flowgrad_train::eval::TIME_EPS;
use flowgrad_train::reflow::trajectory_straightness;
use serde::Serialize;

use crate::eval::plots;

/// Arguments of `flowgrad bench straightness`.
#[derive(clap::Args, Debug)]
pub struct StraightnessArgs {
    /// Noise draws (one generation trajectory each).
    #[arg(long, default_value_t = 64)]
    draws: usize,
    /// Euler steps N.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Straightness threshold ξ of the segment count.
    #[arg(long, default_value_t = flowgrad_params::EditParams::default().xi)]
    xi: f32,
    /// Seed of the noise.
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Folder of the models (default: the ones built into the binary).
    #[arg(long)]
    assets: Option<PathBuf>,
    /// Output folder: straightness.json and straightness.png.
    #[arg(long, default_value = "out/straightness")]
    output: PathBuf,
}

/// One model's straightness over the draws.
#[derive(Debug, Serialize)]
struct Family {
    model: &'static str,
    /// Mean over draws of S(t_k), k = 0..N−1.
    mean_s: Vec<f64>,
    /// Mean Σ_k S(t_k).
    mean_total_s: f64,
    /// Mean segments at ξ (VJPs per FlowGrad gradient on an uncontrolled trajectory).
    mean_segments: f64,
    /// Fewest and most segments over the draws.
    segments_range: (usize, usize),
}

/// The whole report, written to `straightness.json`.
#[derive(Debug, Serialize)]
struct Report {
    draws: usize,
    steps: usize,
    xi: f32,
    seed: u64,
    t: Vec<f64>,
    families: Vec<Family>,
}

fn measure<F: VelocityField<InnerBackend>>(model: &'static str, field: &F, args: &StraightnessArgs) -> Family {
    let device = backend::device();
    let noise = normal(&mut step_rng(args.seed, 1), args.draws * SIDE * SIDE);
    let x0 = tensor::<InnerBackend, 4>(noise, [args.draws, 1, SIDE, SIDE], &device);
    let mut mean_s = vec![0.0; args.steps];
    let mut segments = Vec::with_capacity(args.draws);
    for draw in trajectory_straightness(field, x0, args.steps, args.xi) {
        for (sum, v) in mean_s.iter_mut().zip(&draw.s) {
            *sum += *v as f64 / args.draws as f64;
        }
        segments.push(draw.segments);
    }
    Family {
        model,
        mean_total_s: mean_s.iter().sum(),
        mean_s,
        mean_segments: segments.iter().sum::<usize>() as f64 / args.draws as f64,
        segments_range: (*segments.iter().min().unwrap_or(&0), *segments.iter().max().unwrap_or(&0)),
    }
}

/// Measures every bundled model the assets hold, prints a table and writes the JSON and plot.
pub fn run(args: &StraightnessArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.draws > 0 && args.steps > 1, "--draws must be at least 1 and --steps at least 2");
    crate::font::load_font(None)?;
    let device = backend::device();
    let assets = Assets::from_option(args.assets.clone());
    let mut families =
        vec![measure(flowgrad_engine::BUNDLED_MODEL, &load_flow::<InnerBackend>(&assets, &device)?, args)];
    families.push(measure(flowgrad_engine::REFLOW_MODEL, &load_reflow::<InnerBackend>(&assets, &device)?, args));
    if assets.has(&format!("{}.safetensors", flowgrad_models::DDIM_STEM)) {
        let ddim = ddim_ode(load_ddim::<InnerBackend>(&assets, &device)?);
        families.push(measure(flowgrad_engine::DDIM_MODEL, &ddim, args));
    }
    let time = TimeGrid::new(args.steps, TIME_EPS);
    let t: Vec<f64> = (0..args.steps).map(|k| time.t(k) as f64).collect();
    println!(
        "straightness of N = {} generation trajectories from {} seeded noise draws (seed {}), ξ = {}:",
        args.steps, args.draws, args.seed, args.xi
    );
    println!("{:<22} {:>14} {:>12} {:>12}", "model", "mean segments", "range", "mean ΣS");
    for f in &families {
        println!(
            "{:<22} {:>14.2} {:>12} {:>12.3}",
            f.model,
            f.mean_segments,
            format!("{}–{}", f.segments_range.0, f.segments_range.1),
            f.mean_total_s
        );
    }
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let series: Vec<(String, Vec<(f64, f64)>)> = families
        .iter()
        .map(|f| {
            (
                format!("{} ({:.1} segments)", f.model, f.mean_segments),
                t.iter().copied().zip(f.mean_s.clone()).collect(),
            )
        })
        .collect();
    plots::straightness_families(&args.output.join("straightness.png"), &series)?;
    let report = Report { draws: args.draws, steps: args.steps, xi: args.xi, seed: args.seed, t, families };
    let json = args.output.join("straightness.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("wrote {} and straightness.png", json.display());
    Ok(ExitCode::SUCCESS)
}
