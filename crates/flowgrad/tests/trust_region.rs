//! The trust-region rule (the default update): one setting works for every N, the accepted
//! objective never rises, the loss's scale does not matter, and an edit resumes bit for bit.

mod common;

use burn::tensor::Tensor;
use common::{Affine, B, noise, tensor};
use flowgrad::{ControlState, EditParams, Editor, Guidance, GuidanceContext, Mode, MseToTarget, UpdateRule};

const SHAPE: [usize; 4] = [2, 3, 2, 2];

/// A guidance loss multiplied by a constant: the same edit problem at another loss scale.
struct Scaled(MseToTarget<B>, f32);

impl Guidance<B> for Scaled {
    fn loss(&self, x1: Tensor<B, 4>, ctx: &GuidanceContext) -> Tensor<B, 1> {
        self.0.loss(x1, ctx) * self.1
    }
    fn fingerprint(&self) -> String {
        format!("{}x{}", self.0.fingerprint(), self.1)
    }
}

fn target() -> Tensor<B, 4> {
    tensor(noise(5, 24), SHAPE)
}

fn image() -> Tensor<B, 4> {
    tensor(noise(9, 24), SHAPE)
}

fn params(steps: usize, mode: Mode) -> EditParams {
    EditParams {
        steps,
        iterations: 8,
        xi: 0.02,
        eta: 0.9,
        lambda: 1e-4,
        mode,
        warm_start: 0.0,
        ..EditParams::default()
    }
}

fn editor(params: EditParams, scale: f32) -> Editor<B, flowgrad::analytic::AffineField<B>, Scaled> {
    Editor::new(Affine::new(3).field(), Scaled(MseToTarget::new(target()), scale), params, Default::default()).unwrap()
}

#[test]
fn the_default_rule_is_the_trust_region_and_the_paper_keeps_its_gradient_step() {
    assert_eq!(EditParams::default().update, UpdateRule::TrustRegion);
    assert_eq!(EditParams::paper().update, UpdateRule::Gradient);
    assert_eq!(EditParams::paper().step_size, 10.0);
}

/// One default radius edits at every N in both parametrisations: the objective of the accepted
/// controls never rises, falls by at least a third within 8 iterations, and the result is never
/// worse than the best objective seen.
#[test]
fn one_default_decreases_the_objective_monotonically_at_every_n() {
    for mode in [Mode::Reference, Mode::Paper] {
        for steps in [10, 25, 50, 100, 200] {
            let editor = editor(params(steps, mode), 1.0);
            let mut state = editor.start(image(), 1, 2).unwrap();
            let outcome = editor.run(&mut state, |_, _| {}).unwrap();
            let mut accepted = vec![];
            for record in &state.history {
                assert_eq!((record.accepted.len(), record.radius.len()), (2, 2), "per-image trust regions");
                if record.accepted.iter().all(|&a| a) {
                    accepted.push(record.objective);
                }
            }
            assert!(accepted.windows(2).all(|w| w[1] < w[0]), "{mode:?} N = {steps}: accepted objectives {accepted:?}");
            let first = state.history[0].objective;
            let best_seen = state.history.iter().map(|r| r.objective).fold(f64::INFINITY, f64::min);
            assert!(
                outcome.objective <= best_seen + 1e-12,
                "{mode:?} N = {steps}: {} > {best_seen}",
                outcome.objective
            );
            assert!(
                outcome.objective < 0.67 * first,
                "{mode:?} N = {steps}: {first} → {} ({:?})",
                outcome.objective,
                state.history
            );
            let trust = state.trust.as_ref().unwrap();
            assert!(trust.accepted_objective.iter().sum::<f64>() <= first);
        }
    }
}

/// The first step moves each output by about ρ (RMS), whatever N is.
#[test]
fn the_first_step_moves_the_output_by_the_radius() {
    for steps in [10, 200] {
        let p = params(steps, Mode::Reference);
        let radius = p.trust_radius;
        let editor = editor(p, 1.0);
        let mut state = editor.start(image(), 1, 2).unwrap();
        let before = flowgrad::tensor_util::to_vec(editor.decode(&state, &state.controls).unwrap());
        editor.step(&mut state).unwrap();
        let after = flowgrad::tensor_util::to_vec(editor.decode(&state, &state.controls).unwrap());
        for image in 0..2 {
            let moved: f32 = (image * 12..(image + 1) * 12).map(|i| (after[i] - before[i]).powi(2)).sum::<f32>() / 12.0;
            let rms = moved.sqrt();
            assert!(
                rms > 0.4 * radius && rms < 2.5 * radius,
                "N = {steps}, image {image}: moved {rms} for ρ = {radius}"
            );
        }
    }
}

/// Only the gradient's direction is used: a loss 1000× larger gives the same controls (η = 1,
/// λ = 0, so the objective is the scaled loss itself), where the paper's α would diverge.
#[test]
fn the_loss_scale_does_not_change_the_edit() {
    let p = EditParams { eta: 1.0, lambda: 0.0, ..params(25, Mode::Reference) };
    let plain = editor(p.clone(), 1.0);
    let scaled = editor(p, 1000.0);
    let (mut a, mut b) = (plain.start(image(), 0, 0).unwrap(), scaled.start(image(), 0, 0).unwrap());
    let (a, b) = (plain.run(&mut a, |_, _| {}).unwrap(), scaled.run(&mut b, |_, _| {}).unwrap());
    let worst = a.controls.values.iter().zip(&b.controls.values).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let size = a.controls.values.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(size > 0.0 && worst <= 1e-3 * size, "controls differ by {worst} (largest {size})");
    assert_eq!(a.selected_iterations, b.selected_iterations);
}

/// A checkpoint taken after any iteration, resumed by another editor, ends in the same bits:
/// the radii, accepted controls and directions travel with it.
#[test]
fn resume_from_every_iteration_is_bit_identical() {
    let p = params(12, Mode::Reference);
    let editor = editor(p.clone(), 1.0);
    let mut straight = editor.start(image(), 4, 5).unwrap();
    let expected = editor.run(&mut straight, |_, _| {}).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for stop in 0..=p.iterations {
        let mut state = editor.start(image(), 4, 5).unwrap();
        for _ in 0..stop {
            editor.step(&mut state).unwrap();
        }
        let mut resumed = ControlState::from_bytes(&state.to_bytes().unwrap()).unwrap();
        assert_eq!(resumed, state, "round trip at {stop}");
        assert_eq!(resumed.trust.is_some(), stop > 0);
        let other = self::editor(p.clone(), 1.0);
        let outcome = other.run(&mut resumed, |_, _| {}).unwrap();
        assert_eq!(bits(&outcome.controls.values), bits(&expected.controls.values), "resumed at {stop}");
        assert_eq!(outcome.selected_iterations, expected.selected_iterations);
        assert_eq!(resumed.history, straight.history);
    }
}

/// A radius far too large is rejected, shrunk, and the edit still ends better than it began;
/// rejected iterations need no gradient (no VJPs).
#[test]
fn an_oversized_radius_backtracks() {
    let p = EditParams { trust_radius: 200.0, iterations: 14, ..params(20, Mode::Reference) };
    let editor = editor(p, 1.0);
    let mut state = editor.start(image(), 0, 0).unwrap();
    let outcome = editor.run(&mut state, |_, _| {}).unwrap();
    let rejected: Vec<_> = state.history.iter().filter(|r| r.accepted.iter().all(|a| !a)).collect();
    assert!(!rejected.is_empty(), "{:?}", state.history);
    assert!(rejected.iter().all(|r| r.segments == 0), "a fully rejected iteration runs no VJPs");
    assert!(state.history[1].radius.iter().all(|&r| r < 200.0 * 1.5));
    assert!(outcome.objective < state.history[0].objective);
}
