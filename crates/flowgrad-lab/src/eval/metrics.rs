//! Scores of edited images (judge success and probability, faithfulness, cost), their running
//! sums, and the markdown tables of `flowgrad eval`.

use std::fmt::Write as _;

use burn::tensor::Tensor;
use flowgrad::mean_abs_diff;
use flowgrad::tensor_util::to_vec;
use flowgrad_backend::Backend;
use flowgrad_models::{CLASS_NAMES, Classifier, ImageClassifier, Judge, top_classes};
use serde::{Deserialize, Serialize};

use super::{Edited, EvalReport};
use crate::report::ssim;

/// Means over the scored images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    /// Images scored.
    pub images: usize,
    /// Fraction whose judge top-1 class is the target.
    pub success_rate: f64,
    /// Mean judge probability of the target.
    pub judge_target_prob: f64,
    /// Fraction whose guidance-classifier top-1 class is the target (what the edit optimised).
    pub guidance_success_rate: f64,
    /// Of the edits the guidance classifier calls the target, the fraction the judge agrees on
    /// (low: the edit fooled the guidance classifier without changing what another model sees).
    pub agreement: f64,
    /// Mean absolute difference to the input, in [0, 1] pixel units.
    pub l1: f64,
    /// Mean SSIM to the input (8×8 windows).
    pub ssim: f64,
    /// Wall seconds per image (batched).
    pub seconds_per_image: f64,
    /// Vector-Jacobian products of the flow per image.
    pub vjps_per_image: f64,
    /// Mean Σ_k ‖u_k‖² of the returned controls per image.
    pub control_energy: f64,
    /// Mean ‖x_0 − x_0^enc‖² per image (the x_0-only baseline's change).
    pub x0_shift: f64,
}

/// Running sums of scores (stored with each finished part of an evaluation).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    images: usize,
    successes: usize,
    guidance_successes: usize,
    both: usize,
    prob: f64,
    l1: f64,
    ssim: f64,
    seconds: f64,
    vjps: f64,
    control_energy: f64,
    x0_shift: f64,
}

impl Tally {
    /// Adds another tally's sums.
    pub fn merge(&mut self, other: &Tally) {
        self.images += other.images;
        self.successes += other.successes;
        self.guidance_successes += other.guidance_successes;
        self.both += other.both;
        self.prob += other.prob;
        self.l1 += other.l1;
        self.ssim += other.ssim;
        self.seconds += other.seconds;
        self.vjps += other.vjps;
        self.control_energy += other.control_energy;
        self.x0_shift += other.x0_shift;
    }

    /// The means (zeros when nothing was scored).
    pub fn metrics(&self) -> Metrics {
        let n = self.images.max(1) as f64;
        Metrics {
            images: self.images,
            success_rate: self.successes as f64 / n,
            judge_target_prob: self.prob / n,
            guidance_success_rate: self.guidance_successes as f64 / n,
            agreement: self.both as f64 / self.guidance_successes.max(1) as f64,
            l1: self.l1 / n,
            ssim: self.ssim / n,
            seconds_per_image: self.seconds / n,
            vjps_per_image: self.vjps / n,
            control_energy: self.control_energy / n,
            x0_shift: self.x0_shift / n,
        }
    }
}

/// Scores a batch of edits of `original` towards `target` with the judge, and the guidance
/// classifier's verdict for their agreement.
pub(super) fn score(
    judge: &Judge<Backend>,
    classifier: &Classifier<Backend>,
    target: usize,
    original: &Tensor<Backend, 4>,
    edited: Edited,
) -> Tally {
    let [batch, _, height, width] = original.dims();
    let pixels = height * width;
    // scored as they would be written: in the data range
    let images = edited.images.detach().clamp(-1.0, 1.0);
    let probs = to_vec(judge.probabilities(images.clone()));
    let judged = top_classes(&probs);
    let guided = top_classes(&to_vec(classifier.probabilities(images.clone())));
    let l1 = to_vec(mean_abs_diff(images.clone(), original.clone()));
    let (before, after) = (to_vec(original.clone()), to_vec(images));
    let mut tally = Tally {
        images: batch,
        seconds: edited.seconds,
        vjps: (edited.vjps * batch) as f64,
        control_energy: edited.control_energy,
        x0_shift: edited.x0_shift,
        ..Tally::default()
    };
    for i in 0..batch {
        let p = &probs[i * CLASS_NAMES.len()..(i + 1) * CLASS_NAMES.len()];
        let (judged, guided) = (judged[i] == target, guided[i] == target);
        tally.successes += usize::from(judged);
        tally.guidance_successes += usize::from(guided);
        tally.both += usize::from(judged && guided);
        tally.prob += p[target] as f64;
        tally.l1 += l1[i] as f64 / 2.0;
        tally.ssim += ssim(&before[i * pixels..(i + 1) * pixels], &after[i * pixels..(i + 1) * pixels], height, width);
    }
    tally
}

/// The tables of table.md: methods overall, success per class, the N and ξ sweeps.
pub(super) fn markdown(report: &EvalReport) -> String {
    let s = &report.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Fashion-MNIST test, {} images × {} ({}), N = {}, M = {}, update {}, η = {}, λ = {}, batch {}, guidance scale {}, seed {}, {}; {:.0} s of computing on {} threads ({} of {} parts from earlier runs; this run {:.0} s).\n",
        s.images,
        s.classes.len(),
        s.classes.join(", "),
        s.params.steps,
        s.params.iterations,
        match s.params.update {
            flowgrad::UpdateRule::TrustRegion => format!("trust region ρ = {}", s.params.trust_radius),
            flowgrad::UpdateRule::Gradient => format!("gradient α = {}", s.params.step_size),
        },
        s.params.eta,
        s.params.lambda,
        s.batch,
        s.guidance_scale,
        s.seed,
        s.backend,
        report.part_seconds,
        s.workers,
        report.resumed_parts,
        report.parts,
        report.wall_seconds
    );
    let _ = writeln!(
        out,
        "| method | edits | judge success | judge p(target) | guidance success | judge agrees | L1 ↓ | SSIM ↑ | s / image | VJPs / image |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for m in &report.methods {
        let o = &m.overall;
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {:.3} | {:.3} | {:.1} |",
            m.label,
            o.images,
            o.success_rate,
            o.judge_target_prob,
            o.guidance_success_rate,
            o.agreement,
            o.l1,
            o.ssim,
            o.seconds_per_image,
            o.vjps_per_image
        );
    }
    let _ = writeln!(
        out,
        "\nFrontier (the edits of the first {} images, one row per setting):\n\n| method | setting | edits | judge success | L1 ↓ | SSIM ↑ |\n|---|---|---|---|---|---|",
        s.frontier_images
    );
    for p in &report.frontier {
        let _ = writeln!(
            out,
            "| {} | {} = {} | {} | {:.3} | {:.4} | {:.3} |",
            p.method, p.knob, p.value, p.metrics.images, p.metrics.success_rate, p.metrics.l1, p.metrics.ssim
        );
    }
    let _ = writeln!(out, "\n{}", dominance(report));
    let _ = writeln!(
        out,
        "\nJudge success per target class:\n\n| method | {} |\n|---|{}",
        s.classes.join(" | "),
        "---|".repeat(s.classes.len())
    );
    for m in &report.methods {
        let cells: Vec<String> = m.per_class.iter().map(|c| format!("{:.3}", c.metrics.success_rate)).collect();
        let _ = writeln!(out, "| {} | {} |", m.label, cells.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nStraightness of {} uncontrolled trajectories (Fig. 5a): mean S(t) < 1e-3 at {:.0}% of the steps.",
        report.straightness.trajectories,
        100.0 * report.straightness.fraction_below_1e_3
    );
    let _ = writeln!(
        out,
        "\nξ sweep (Fig. 5b), {} images → {}:\n\n| ξ | VJPs (iteration 0) | objective / image: start → lowest evaluated (→ last trial) | update seconds | judge success |\n|---|---|---|---|---|",
        s.sweep_images, s.sweep_class
    );
    for r in &report.xi_sweep {
        let _ = writeln!(
            out,
            "| {} | {} | {:.4} → {:.4} (→ {:.4}) | {:.1} | {:.3} |",
            r.label,
            r.segments.first().copied().unwrap_or(0),
            r.objective.first().copied().unwrap_or(f64::NAN),
            r.objective.iter().copied().fold(f64::NAN, f64::min),
            r.objective.last().copied().unwrap_or(f64::NAN),
            r.seconds.last().copied().unwrap_or(0.0),
            r.final_metrics.success_rate
        );
    }
    let _ = writeln!(
        out,
        "\nSteps sweep (Fig. 7), FlowGrad, {} images → {}:\n\n| N | judge success | judge p(target) | L1 | SSIM | s / image | VJPs / image |\n|---|---|---|---|---|---|---|",
        s.sweep_images, s.sweep_class
    );
    for r in &report.steps_sweep {
        let m = &r.metrics;
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.3} | {:.4} | {:.3} | {:.3} | {:.1} |",
            r.steps, m.success_rate, m.judge_target_prob, m.l1, m.ssim, m.seconds_per_image, m.vjps_per_image
        );
    }
    out
}

/// Whether FlowGrad dominates guided sampling on the frontier: for every guided-sampling point,
/// some FlowGrad point with L1 no larger has judge success no smaller; and the same against
/// FlowGrad's mixes of two settings (see [`best_mix`]).
pub(super) fn dominance(report: &EvalReport) -> String {
    let (flowgrad, guided): (Vec<_>, Vec<_>) = report.frontier.iter().partition(|p| p.method == "flowgrad");
    let points: Vec<(f64, f64)> = flowgrad.iter().map(|f| (f.metrics.l1, f.metrics.success_rate)).collect();
    let (mut single, mut mixed) = (0, 0);
    for g in &guided {
        let (l1, success) = (g.metrics.l1, g.metrics.success_rate);
        single += usize::from(points.iter().any(|&(f_l1, f_success)| f_l1 <= l1 && f_success >= success));
        mixed += usize::from(best_mix(&points, l1).is_some_and(|best| best >= success));
    }
    let n = guided.len();
    let verdict = |count: usize| if count == n { " (it dominates)" } else { "" };
    format!(
        "FlowGrad reaches guided sampling's success at no more L1 for {single} of its {n} settings{}; \
         with a mix of two η settings (each image edited at one of them) for {mixed} of {n}{}.",
        verdict(single),
        verdict(mixed)
    )
}

/// The highest judge success FlowGrad reaches on average at mean L1 at most `l1`, editing each
/// image at one of two frontier settings `(l1, success)` (in the proportion that puts the mean L1
/// at `l1`) or at one setting; `None` when every setting's L1 exceeds `l1`.
fn best_mix(points: &[(f64, f64)], l1: f64) -> Option<f64> {
    let within = points.iter().filter(|p| p.0 <= l1);
    let mut best = within.clone().map(|p| p.1).reduce(f64::max);
    for &(low_l1, low_success) in within {
        for &(high_l1, high_success) in points.iter().filter(|p| p.0 > l1) {
            let share = (l1 - low_l1) / (high_l1 - low_l1);
            let mixed = low_success + share * (high_success - low_success);
            best = Some(best.map_or(mixed, |b| b.max(mixed)));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::best_mix;

    #[test]
    fn a_mix_of_two_settings_reaches_the_line_between_them() {
        let points = [(0.05, 0.3), (0.15, 0.7), (0.20, 0.9)];
        assert_eq!(best_mix(&points, 0.01), None, "every setting changes the image more");
        assert_eq!(best_mix(&points, 0.05), Some(0.3));
        let halfway = best_mix(&points, 0.10).unwrap();
        assert!((halfway - 0.5).abs() < 1e-12, "half of each of the first two: {halfway}");
        // At 0.15 the mix of the first and the third (0.3 + 2/3 · 0.6 = 0.7) ties the second.
        assert!((best_mix(&points, 0.15).unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(best_mix(&points, 0.5), Some(0.9), "beyond the last setting: the best one");
        // A worse setting of larger L1 never lowers what a better one of smaller L1 gives.
        assert_eq!(best_mix(&[(0.1, 0.8), (0.2, 0.4)], 0.15), Some(0.8));
    }
}
