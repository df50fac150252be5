//! The model card: `MODEL_CARD.md` and `metrics.json` rendered from the training reports.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::classify::ClassifierReport;
use crate::flow::FlowReport;
use crate::reflow::{COMPARISON_XI, REFLOW_NAME, ReflowReport};
use crate::{read_report, write_json};
use flowgrad_models::{DDIM_SCHEDULE, DDIM_STEM};

/// Everything the card states, as written to `metrics.json`.
#[derive(Debug, Serialize)]
struct Metrics {
    command: String,
    total_wall_s: Option<f64>,
    flow: Option<FlowReport>,
    reflow: Option<ReflowReport>,
    ddim: Option<FlowReport>,
    classifier: Option<ClassifierReport>,
    judge: Option<ClassifierReport>,
}

/// Renders `MODEL_CARD.md` and `metrics.json` in `out_dir` from the `*.report.json` files there;
/// `command` is the command line that trained them and `total_wall_s` its wall time if known.
pub fn write_model_card(out_dir: &Path, command: &str, total_wall_s: Option<f64>) -> anyhow::Result<PathBuf> {
    let metrics = Metrics {
        command: command.to_string(),
        total_wall_s,
        flow: read_report(out_dir, "flow")?,
        reflow: read_report(out_dir, REFLOW_NAME)?,
        ddim: read_report(out_dir, DDIM_STEM)?,
        classifier: read_report(out_dir, "classifier")?,
        judge: read_report(out_dir, "judge")?,
    };
    write_json(&out_dir.join("metrics.json"), &metrics)?;
    let path = out_dir.join("MODEL_CARD.md");
    std::fs::write(&path, render(&metrics)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Renders the card again after one model was trained into `out_dir` on its own (the reflowed
/// flow, the diffusion model): keeps the command and wall time the card states for the set when `metrics.json` has
/// them, else states `command` and `wall_s`.
pub fn update_model_card(out_dir: &Path, command: &str, wall_s: f64) -> anyhow::Result<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Previous {
        command: String,
        total_wall_s: Option<f64>,
    }
    let previous = std::fs::read_to_string(out_dir.join("metrics.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Previous>(&text).ok());
    match previous {
        Some(previous) => write_model_card(out_dir, &previous.command, previous.total_wall_s),
        None => write_model_card(out_dir, command, Some(wall_s)),
    }
}

/// The lines a UNet training run (flow or ddim) states: its run, final loss, reconstruction and
/// sample grid (`samples`, drawn with N Euler steps `of_what`).
fn unet_run_lines(w: &mut String, r: &FlowReport, samples: &str, of_what: &str) {
    let _ = writeln!(w, "{}", run_line(&r.config.run, r.wall_s, r.step_s));
    let _ = writeln!(w, "- Final training loss: {:.4}", r.loss_curve.last().map_or(f64::NAN, |l| l.1));
    let _ = writeln!(
        w,
        "- Reconstruction MSE (first {} test images, encode: inverse Euler with 4 fixed-point iterations, N = 100; decode: Euler, N = 100; ε = 1e-3): {:.2e}",
        r.config.eval_images, r.reconstruction_mse
    );
    let _ = writeln!(
        w,
        "- Samples: `{samples}`, 8×8 draws from noise (seed {}) with N = 100 Euler steps{of_what}\n",
        r.config.sample_seed
    );
}

fn render(m: &Metrics) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# FlowGrad Fleet bundled models\n");
    let _ = writeln!(w, "Trained from scratch on Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, MIT licence): the 60 000");
    let _ = writeln!(
        w,
        "training images, 28×28 zero-padded to 32×32 with black (−1), pixels scaled to [−1, 1]. Metrics use"
    );
    let _ =
        writeln!(w, "the 10 000-image test set. Trained with burn 0.21 on the {} backend.", flowgrad_backend::name());
    let _ = writeln!(w, "The weights are released under the workspace licence (MIT OR Apache-2.0).\n");
    let _ = writeln!(w, "Command: `{}`", m.command);
    if let Some(t) = m.total_wall_s {
        let _ = writeln!(w, "Total wall time: {:.1} min (training and evaluation).", t / 60.0);
    }
    let _ = writeln!(w, "\nAll numbers below are measured by that run and also stored in `metrics.json`.\n");
    if let Some(f) = &m.flow {
        let _ = writeln!(w, "## flow.safetensors — rectified-flow UNet velocity field\n");
        let _ = writeln!(
            w,
            "- Architecture: `flow.config.json` (base {} channels, multipliers {:?}), {} parameters",
            f.config.model.base, f.config.model.mults, f.parameters
        );
        let _ = writeln!(
            w,
            "- Objective: x₀ ~ N(0, I) at t = 0, data x₁ at t = 1, t ~ U(0, 1), MSE of v(t·x₁ + (1 − t)·x₀, t) to x₁ − x₀"
        );
        unet_run_lines(w, f, "samples.png", "");
    }
    if let Some(d) = &m.ddim {
        let _ = writeln!(w, "## {DDIM_STEM}.safetensors — diffusion model (DDIM)\n");
        let _ = writeln!(
            w,
            "- Architecture: `{DDIM_STEM}.config.json`, the flow's UNet (base {} channels, multipliers {:?}), {} parameters",
            d.config.model.base, d.config.model.mults, d.parameters
        );
        let _ = writeln!(
            w,
            "- Objective: v-prediction, X_t = α_t x₁ + β_t x₀ with α_t = exp(−¼(β_max − β_min)(1 − t)² − ½β_min(1 − t)), β_t = √(1 − α_t²), β_min {}, β_max {} (the paper's Eq. 3), t ~ U(0, 1), MSE of v̂(X_t, t) to α_t x₀ − β_t x₁",
            DDIM_SCHEDULE.beta_min, DDIM_SCHEDULE.beta_max
        );
        let _ =
            writeln!(w, "- Served as DDIM's ODE with ε̂ = β_t X + α_t v̂: v(X, t) = (d log α_t/dt)·(X − ε̂(X, t)/β_t)");
        unet_run_lines(w, d, "samples-ddim.png", " of the ODE");
    }
    if let Some(r) = &m.reflow {
        let _ = writeln!(w, "## {REFLOW_NAME}.safetensors — reflowed (2-rectified) flow\n");
        let _ = writeln!(w, "- Architecture: that of `flow.safetensors` ({} parameters)", r.parameters);
        let _ = writeln!(
            w,
            "- Objective: the flow's, on (noise, teacher sample) pairs: MSE of v(t·x₁ + (1 − t)·x₀, t) to x₁ − x₀"
        );
        let rounds = r.rounds();
        for (i, round) in rounds.iter().enumerate() {
            let c = &round.config;
            let (init_flag, start) = match i {
                0 => (String::new(), "after the set above, from the teacher's weights".to_string()),
                _ => (format!(" --init <round {i}>"), format!("after round {i}, from its weights")),
            };
            let _ = writeln!(
                w,
                "- Round {} of {}: `flowgrad train reflow --pairs {} --pair-steps {} --pair-seed {} --steps {} --seed {}{init_flag}` ({start})",
                i + 1,
                rounds.len(),
                c.pairs,
                c.pair_steps,
                c.pair_seed,
                c.run.steps,
                c.run.seed
            );
            let _ = writeln!(
                w,
                "  - Pairs: {} noise draws x₀ (seed {}) and the teacher's Euler sample x₁ from each (N = {}), {:.1} min",
                c.pairs,
                c.pair_seed,
                c.pair_steps,
                round.pairs_wall_s / 60.0
            );
            let _ = writeln!(w, "  {}", run_line(&c.run, round.wall_s, round.step_s));
            let _ = writeln!(
                w,
                "  - Final training loss: {:.4}; straightness after it: {:.1} segments",
                round.loss_curve.last().map_or(f64::NAN, |l| l.1),
                round.straightness.mean_segments
            );
        }
        let _ = writeln!(
            w,
            "- Reconstruction MSE (as above, first {} test images): {:.2e}",
            r.config.eval_images, r.reconstruction_mse
        );
        let (t, s) = (r.teacher_straightness, r.straightness);
        let _ = writeln!(
            w,
            "- Straightness ({} generation trajectories, N = 100): FlowGrad segments at ξ = {COMPARISON_XI} {:.1} (teacher {:.1}); mean Σ S_k {:.4} (teacher {:.4})",
            r.config.straightness_draws, s.mean_segments, t.mean_segments, s.mean_total_s, t.mean_total_s
        );
        let _ = writeln!(w, "- Samples: `samples-reflow.png` (same noise as `samples.png`)\n");
    }
    for (title, r) in
        [("guidance classifier", &m.classifier), ("evaluation judge (independent architecture and seed)", &m.judge)]
    {
        if let Some(r) = r {
            let _ = writeln!(w, "## {}.safetensors — {title}\n", r.name);
            let _ = writeln!(w, "- Architecture: `{}.config.json`, {} parameters", r.name, r.parameters);
            match &r.views {
                Some(v) => {
                    let _ = writeln!(
                        w,
                        "- Objective: cross-entropy on random views: shifts of up to {} px, left–right mirroring, Gaussian noise σ = {} (images in [−1, 1]); noise-trained for input gradients that look like the classes, at some clean accuracy",
                        v.max_shift, v.noise_std
                    );
                }
                None => {
                    let _ = writeln!(w, "- Objective: cross-entropy, random left–right mirroring");
                }
            }
            let _ = writeln!(w, "{}", run_line(&r.run, r.wall_s, r.step_s));
            let _ = writeln!(w, "- Test accuracy (10 000 images): {:.2}%", 100.0 * r.test_accuracy);
            let _ = writeln!(
                w,
                "- Test accuracy (first 1 000 test images, checked by the tests): {:.2}%\n",
                100.0 * r.subset_accuracy
            );
        }
    }
    s
}

fn run_line(run: &crate::LoopConfig, wall_s: f64, step_s: f64) -> String {
    format!(
        "- Training: {} steps of batch {}, Adam (lr {} with {} warm-up steps, cosine decay), data seed {}; {:.1} min wall time, {:.0} ms/step",
        run.steps,
        run.batch,
        run.lr,
        run.warmup,
        run.seed,
        wall_s / 60.0,
        1000.0 * step_s
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflow::{ReflowTrainConfig, StraightnessStats};

    fn round(pair_seed: u64, segments: f64, previous: Option<ReflowReport>) -> ReflowReport {
        let config = ReflowTrainConfig {
            pairs: 3072,
            pair_seed,
            init_dir: previous.as_ref().map(|_| "assets".into()),
            ..ReflowTrainConfig::default()
        };
        ReflowReport {
            config,
            parameters: 10,
            pairs_wall_s: 60.0,
            wall_s: 120.0,
            step_s: 1.0,
            loss_curve: vec![(50, 0.5)],
            reconstruction_mse: 1e-6,
            teacher_straightness: StraightnessStats { mean_segments: 14.9, mean_total_s: 0.6 },
            straightness: StraightnessStats { mean_segments: segments, mean_total_s: 0.1 },
            weights: "w".into(),
            samples: "s".into(),
            previous: previous.map(Box::new),
        }
    }

    /// A reflow continued from an earlier round lists both rounds, first to last, with the
    /// commands that reproduce them; the report keeps its lineage through JSON.
    #[test]
    fn card_lists_every_reflow_round_in_order() {
        let second = round(2, 6.5, Some(round(1, 7.9, None)));
        let back: ReflowReport = serde_json::from_str(&serde_json::to_string(&second).unwrap()).unwrap();
        assert_eq!(back.rounds().iter().map(|r| r.config.pair_seed).collect::<Vec<_>>(), vec![1, 2]);
        let metrics = Metrics {
            command: "train_all".into(),
            total_wall_s: None,
            flow: None,
            reflow: Some(back),
            ddim: None,
            classifier: None,
            judge: None,
        };
        let card = render(&metrics);
        let first = card.find("- Round 1 of 2: `flowgrad train reflow --pairs 3072 --pair-steps 32 --pair-seed 1 --steps 1500 --seed 0` (after the set above, from the teacher's weights)").expect(&card);
        let second = card.find("- Round 2 of 2: `flowgrad train reflow --pairs 3072 --pair-steps 32 --pair-seed 2 --steps 1500 --seed 0 --init <round 1>` (after round 1, from its weights)").expect(&card);
        assert!(first < second, "{card}");
        assert!(
            card.contains("straightness after it: 7.9 segments")
                && card.contains("FlowGrad segments at ξ = 0.005 6.5 (teacher 14.9)"),
            "{card}"
        );
    }
}
