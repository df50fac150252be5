//! The model card: `MODEL_CARD.md` and `metrics.json` rendered from the training reports.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::classify::ClassifierReport;
use crate::flow::FlowReport;
use crate::reflow::{COMPARISON_XI, REFLOW_NAME, ReflowReport};
use crate::write_json;

/// Everything the card states, as written to `metrics.json`.
#[derive(Debug, Serialize)]
struct Metrics {
    command: String,
    total_wall_s: Option<f64>,
    flow: Option<FlowReport>,
    reflow: Option<ReflowReport>,
    classifier: Option<ClassifierReport>,
    judge: Option<ClassifierReport>,
}

fn read_report<T: DeserializeOwned>(out_dir: &Path, name: &str) -> anyhow::Result<Option<T>> {
    let path = out_dir.join(format!("{name}.report.json"));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
}

/// Renders `MODEL_CARD.md` and `metrics.json` in `out_dir` from the `*.report.json` files there;
/// `command` is the command line that trained them and `total_wall_s` its wall time if known.
pub fn write_model_card(out_dir: &Path, command: &str, total_wall_s: Option<f64>) -> anyhow::Result<PathBuf> {
    let metrics = Metrics {
        command: command.to_string(),
        total_wall_s,
        flow: read_report(out_dir, "flow")?,
        reflow: read_report(out_dir, REFLOW_NAME)?,
        classifier: read_report(out_dir, "classifier")?,
        judge: read_report(out_dir, "judge")?,
    };
    write_json(&out_dir.join("metrics.json"), &metrics)?;
    let path = out_dir.join("MODEL_CARD.md");
    std::fs::write(&path, render(&metrics)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Renders the card again after one model was trained into `out_dir` on its own (the reflowed
/// flow): keeps the command and wall time the card states for the set when `metrics.json` has
/// them, else states `command` and `wall_s`.
pub fn update_model_card(out_dir: &Path, command: &str, wall_s: f64) -> anyhow::Result<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Previous {
        command: String,
        total_wall_s: Option<f64>,
    }
    let previous = std::fs::read_to_string(out_dir.join("metrics.json")).ok().and_then(|text| serde_json::from_str::<Previous>(&text).ok());
    match previous {
        Some(previous) => write_model_card(out_dir, &previous.command, previous.total_wall_s),
        None => write_model_card(out_dir, command, Some(wall_s)),
    }
}

fn render(m: &Metrics) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# FlowGrad Fleet bundled models\n");
    let _ = writeln!(w, "Trained from scratch on Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence): the 60 000");
    let _ = writeln!(w, "training images, 28×28 zero-padded to 32×32 with black (−1), pixels scaled to [−1, 1]. Metrics use");
    let _ = writeln!(w, "the 10 000-image test set. CPU training with burn 0.21 (`Autodiff<Flex>`), on a 2-core machine.");
    let _ = writeln!(w, "The weights are released under the workspace licence (MIT OR Apache-2.0).\n");
    let _ = writeln!(w, "Command: `{}`", m.command);
    if let Some(t) = m.total_wall_s {
        let _ = writeln!(w, "Total wall time: {:.1} min (training and evaluation).", t / 60.0);
    }
    let _ = writeln!(w, "\nAll numbers below are measured by that run and also stored in `metrics.json`.\n");
    if let Some(f) = &m.flow {
        let _ = writeln!(w, "## flow.safetensors — rectified-flow UNet velocity field\n");
        let _ = writeln!(w, "- Architecture: `flow.config.json` (base {} channels, multipliers {:?}), {} parameters", f.config.model.base, f.config.model.mults, f.parameters);
        let _ = writeln!(w, "- Objective: x₀ ~ N(0, I) at t = 0, data x₁ at t = 1, t ~ U(0, 1), MSE of v(t·x₁ + (1 − t)·x₀, t) to x₁ − x₀");
        let _ = writeln!(w, "{}", run_line(&f.config.run, f.wall_s, f.step_s));
        let _ = writeln!(w, "- Final training loss: {:.4}", f.loss_curve.last().map_or(f64::NAN, |l| l.1));
        let _ = writeln!(w, "- Reconstruction MSE (first {} test images, encode: inverse Euler with 4 fixed-point iterations, N = 100; decode: Euler, N = 100; ε = 1e-3): {:.2e}", f.config.eval_images, f.reconstruction_mse);
        let _ = writeln!(w, "- Samples: `samples.png`, 8×8 draws from noise (seed {}) with N = 100 Euler steps\n", f.config.sample_seed);
    }
    if let Some(r) = &m.reflow {
        let _ = writeln!(w, "## {REFLOW_NAME}.safetensors — reflowed (2-rectified) flow\n");
        let _ = writeln!(w, "- Command: `flowgrad train reflow --pairs {} --pair-steps {} --steps {} --seed {}` (after the set above)", r.config.pairs, r.config.pair_steps, r.config.run.steps, r.config.run.seed);
        let _ = writeln!(w, "- Architecture: that of `flow.safetensors` ({} parameters), initialised from its weights", r.parameters);
        let _ = writeln!(w, "- Pairs: {} noise draws x₀ (seed {}) and the teacher's Euler sample x₁ from each (N = {}), {:.1} min", r.config.pairs, r.config.pair_seed, r.config.pair_steps, r.pairs_wall_s / 60.0);
        let _ = writeln!(w, "- Objective: the flow's, on the pairs: MSE of v(t·x₁ + (1 − t)·x₀, t) to x₁ − x₀");
        let _ = writeln!(w, "{}", run_line(&r.config.run, r.wall_s, r.step_s));
        let _ = writeln!(w, "- Final training loss: {:.4}", r.loss_curve.last().map_or(f64::NAN, |l| l.1));
        let _ = writeln!(w, "- Reconstruction MSE (as above, first {} test images): {:.2e}", r.config.eval_images, r.reconstruction_mse);
        let (t, s) = (r.teacher_straightness, r.straightness);
        let _ = writeln!(w, "- Straightness ({} generation trajectories, N = 100): FlowGrad segments at ξ = {COMPARISON_XI} {:.1} (teacher {:.1}); mean Σ S_k {:.4} (teacher {:.4})", r.config.straightness_draws, s.mean_segments, t.mean_segments, s.mean_total_s, t.mean_total_s);
        let _ = writeln!(w, "- Samples: `samples-reflow.png` (same noise as `samples.png`)\n");
    }
    for (title, r) in [("guidance classifier", &m.classifier), ("evaluation judge (independent architecture and seed)", &m.judge)] {
        if let Some(r) = r {
            let _ = writeln!(w, "## {}.safetensors — {title}\n", r.name);
            let _ = writeln!(w, "- Architecture: `{}.config.json`, {} parameters", r.name, r.parameters);
            let _ = writeln!(w, "- Objective: cross-entropy, random left–right mirroring");
            let _ = writeln!(w, "{}", run_line(&r.run, r.wall_s, r.step_s));
            let _ = writeln!(w, "- Test accuracy (10 000 images): {:.2}%", 100.0 * r.test_accuracy);
            let _ = writeln!(w, "- Test accuracy (first 1 000 test images, checked by the tests): {:.2}%\n", 100.0 * r.subset_accuracy);
        }
    }
    s
}

fn run_line(run: &crate::LoopConfig, wall_s: f64, step_s: f64) -> String {
    format!(
        "- Training: {} steps of batch {}, Adam (lr {} with {} warm-up steps, cosine decay), data seed {}; {:.1} min wall time, {:.0} ms/step",
        run.steps, run.batch, run.lr, run.warmup, run.seed, wall_s / 60.0, 1000.0 * step_s
    )
}
