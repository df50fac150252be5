//! The baselines FlowGrad is evaluated against (the Table-2 analog of `flowgrad eval`):
//!
//! - [`optimise_noise`]: GAN-inversion style editing that optimises only the encoded noise x_0
//!   (one shift per image) with FlowGrad's objective, then decodes without controls;
//! - [`guided_sample`]: classifier guidance for a rectified flow without a noise-aware classifier,
//!   through the one-step prediction of the endpoint (no optimisation, one pass).

use burn::tensor::{Tensor, backend::AutodiffBackend};

pub use crate::guided::{GuidedSample, guided_sample};

use crate::editor::Editor;
use crate::error::{FlowGradError, Result};
use crate::field::{DifferentiableField, Guidance, GuidanceContext};
use crate::gradient::{GradientRule, endpoint_gradient, flowgrad_gradient};
use crate::params::{Selection, UpdateRule};
use crate::recording::RecordedForwards;
use crate::state::ControlState;
use crate::tensor_util::scalar;
use crate::trajectory::simulate_untracked;

/// The result of [`optimise_noise`].
#[derive(Debug, Clone)]
pub struct NoiseEdit<B: AutodiffBackend> {
    /// Images decoded without controls from the selected x_0, `[B, C, H, W]`.
    pub images: Tensor<B, 4>,
    /// The selected shift δ = x_0 − x_0^enc, `[B, C, H, W]`.
    pub shift: Tensor<B, 4>,
    /// Objective (batch sum, with λ‖δ‖²) before each update and after the last one (M + 1 values).
    pub objectives: Vec<f64>,
    /// Iteration whose shift was selected (M = the final one).
    pub selected_iteration: usize,
    /// Vector-Jacobian products of the field per image (one per grid segment and iteration).
    pub vjps: usize,
}

/// Optimises only the encoded noise of `state` (from `editor.start`): x_0 = x_0^enc + δ with
/// δ ← δ − α(∂L/∂x_0 + 2λδ) (the gradient rule; under the trust-region rule a step of RMS ρ per
/// image along that direction), L = Σ_images [η·G(x_1) + (1 − η)·mean|x_1 − x_q|] + λ‖δ‖², for the
/// editor's M iterations. ∂L/∂x_0 is the costate at step 0 of decomposed back-propagation on the
/// editor's ξ-grid (exact for ξ = 0). Returns the best or last shift as the editor's selection
/// says, with the images it decodes to (uncontrolled Euler).
pub fn optimise_noise<B, F, G>(editor: &Editor<B, F, G>, state: &ControlState) -> Result<NoiseEdit<B>>
where
    B: AutodiffBackend,
    F: DifferentiableField<B>,
    G: Guidance<B>,
{
    let params = editor.params();
    let x0 = state.x0.to_tensor::<B, 4>(editor.device())?;
    let original = state.original.to_tensor::<B, 4>(editor.device())?;
    let time = editor.time_grid();
    let mut shift = x0.zeros_like();
    let mut objectives = Vec::with_capacity(params.iterations + 1);
    let mut selected: Option<(usize, f64, Tensor<B, 4>, Tensor<B, 4>)> = None;
    let mut vjps = 0;
    for iteration in 0..=params.iterations {
        let ctx = GuidanceContext { iteration, seed: state.iteration_seed(iteration) };
        let trajectory = simulate_untracked(editor.values(), x0.clone() + shift.clone(), None, &time, params.mode);
        let x1 = trajectory.last().detach().require_grad();
        let weighted = editor.loss_parts(x1.clone(), original.clone(), &ctx).weighted;
        let energy = scalar(shift.clone().powi_scalar(2).sum());
        let objective = scalar(weighted.clone().sum()) + params.lambda as f64 * energy;
        if !objective.is_finite() {
            return Err(FlowGradError::NonFinite { what: "noise objective", iteration });
        }
        objectives.push(objective);
        let last = iteration == params.iterations;
        let better = selected.as_ref().is_none_or(|(_, best, ..)| objective < *best);
        if (params.selection == Selection::Best && better) || (params.selection == Selection::Last && last) {
            selected = Some((iteration, objective, shift.clone(), trajectory.last().detach()));
        }
        if last {
            break;
        }
        let grad_x1 =
            endpoint_gradient(&x1, weighted).ok_or(FlowGradError::NonFinite { what: "loss gradient", iteration })?;
        let gradient = flowgrad_gradient(
            editor.field(),
            &trajectory,
            &mut RecordedForwards::none(),
            None,
            &time,
            grad_x1,
            GradientRule::of(params),
        )
        .decomposed;
        vjps += gradient.vjps;
        let direction = gradient.segment_costates[0].clone() + shift.clone() * (2.0 * params.lambda);
        let step = match params.update {
            UpdateRule::Gradient => direction * params.step_size,
            // as the trust-region rule's first step: ρ along the direction scaled to unit RMS per image
            UpdateRule::TrustRegion => {
                let [b, ..] = direction.dims();
                let rms = direction.clone().powi_scalar(2).reshape([b as i32, -1]).mean_dim(1).sqrt().clamp_min(1e-12);
                direction / rms.reshape([b, 1, 1, 1]) * params.trust_radius
            }
        };
        shift = (shift - step).detach();
    }
    let (selected_iteration, _, shift, images) = selected.expect("the last iteration is always considered");
    Ok(NoiseEdit { images, shift, objectives, selected_iteration, vjps })
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};

    use super::*;
    use crate::analytic::AffineField;
    use crate::field::MseToTarget;
    use crate::params::EditParams;
    use crate::tensor_util::{from_vec, to_vec};
    use crate::trajectory::TimeGrid;

    type B = Autodiff<Flex>;
    const D: usize = 4;
    const SHAPE: [usize; 4] = [2, 1, 2, 2];

    /// v(x, t) = (A₀ + t·A₁)x + b with small, fixed, non-symmetric matrices.
    struct Affine {
        a0: Vec<f32>,
        a1: Vec<f32>,
        b: Vec<f32>,
    }

    impl Affine {
        fn new() -> Self {
            let entry = |i: usize, j: usize, s: f32| s * (((3 * i + 5 * j) % 7) as f32 - 3.0) / 7.0;
            let matrix = |s| (0..D * D).map(|n| entry(n / D, n % D, s)).collect();
            Self { a0: matrix(0.8), a1: matrix(-0.5), b: vec![0.1, -0.2, 0.3, 0.05] }
        }

        fn field(&self) -> AffineField<B> {
            AffineField::new(&self.a0, &self.a1, &self.b, &Default::default())
        }

        /// (A(t)x)_i, or (A(t)ᵀx)_i when `transpose`.
        fn apply(&self, t: f64, x: &[f64], transpose: bool) -> Vec<f64> {
            let a = |i: usize, j: usize| {
                let n = if transpose { j * D + i } else { i * D + j };
                self.a0[n] as f64 + t * self.a1[n] as f64
            };
            (0..D).map(|i| (0..D).map(|j| a(i, j) * x[j]).sum()).collect()
        }

        fn velocity(&self, t: f64, x: &[f64]) -> Vec<f64> {
            self.apply(t, x, false).iter().zip(&self.b).map(|(ax, b)| ax + *b as f64).collect()
        }
    }

    fn values(seed: usize) -> Vec<f32> {
        (0..SHAPE.iter().product()).map(|i| (((i * 7 + seed * 13) % 11) as f32 - 5.0) / 5.0).collect()
    }

    fn tensor(v: Vec<f32>) -> Tensor<B, 4> {
        from_vec(v, SHAPE, &Default::default())
    }

    fn max_rel_err(a: &[f32], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max) / scale
    }

    #[test]
    fn noise_gradient_matches_the_closed_form() {
        let (affine, target, alpha) = (Affine::new(), values(2), 0.5);
        let params = EditParams {
            steps: 8,
            iterations: 1,
            update: UpdateRule::Gradient,
            step_size: alpha,
            eta: 1.0,
            lambda: 0.0,
            xi: 0.0,
            selection: Selection::Last,
            ..EditParams::default()
        };
        let guidance = MseToTarget::new(tensor(target.clone()));
        let editor = Editor::new(affine.field(), guidance, params, Default::default()).unwrap();
        let state = editor.start(tensor(values(1)), 3, 0).unwrap();
        let edit = optimise_noise(&editor, &state).unwrap();
        assert_eq!((edit.selected_iteration, edit.vjps, edit.objectives.len()), (1, 8, 2));

        // δ = −α ∂L/∂x_0 with ∂L/∂x_0 = Π_k (I + h A(t_k))ᵀ ∂L/∂x_N, L = Σ_images mean((x_N − y)²).
        let time = editor.time_grid();
        let h = time.dt() as f64;
        let mut expected = vec![];
        for (x0, y) in state.x0.values.chunks(D).zip(target.chunks(D)) {
            let mut xs = vec![x0.iter().map(|&v| v as f64).collect::<Vec<f64>>()];
            for k in 0..time.steps {
                let x = xs[k].clone();
                let v = affine.velocity(time.t(k) as f64, &x);
                xs.push(x.iter().zip(&v).map(|(x, v)| x + h * v).collect());
            }
            let mut lambda: Vec<f64> =
                xs[time.steps].iter().zip(y).map(|(x, y)| 2.0 * (x - *y as f64) / D as f64).collect();
            for k in (0..time.steps).rev() {
                let at = affine.apply(time.t(k) as f64, &lambda, true);
                lambda = lambda.iter().zip(&at).map(|(l, a)| l + h * a).collect();
            }
            expected.extend(lambda.iter().map(|g| -alpha as f64 * g));
        }
        let err = max_rel_err(&to_vec(edit.shift.clone()), &expected);
        assert!(err < 1e-4, "x_0 gradient off by {err:e}");
        assert!(edit.objectives[1] < edit.objectives[0], "one step downhill lowers the loss: {:?}", edit.objectives);
        let decoded = simulate_untracked(
            editor.values(),
            state.x0.to_tensor::<B, 4>(&Default::default()).unwrap() + edit.shift,
            None,
            &time,
            Default::default(),
        )
        .last();
        assert_eq!(to_vec(decoded), to_vec(edit.images), "the images are the uncontrolled decode of x_0 + δ");
    }

    #[test]
    fn guided_sampling_follows_the_endpoint_gradient() {
        let (affine, x0, target) = (Affine::new(), values(1), values(2));
        let (time, scale) = (TimeGrid::new(3, 1e-3), 0.7f32);
        let guidance = MseToTarget::new(tensor(target.clone()));
        let ctx = GuidanceContext { iteration: 0, seed: 0 };
        let sampled = guided_sample(&affine.field(), &guidance, tensor(x0.clone()), &time, scale, &ctx);
        let replayed = simulate_untracked(
            &affine.field().values(),
            tensor(x0.clone()),
            Some(&sampled.controls),
            &time,
            crate::params::Mode::Paper,
        )
        .last();
        assert!(
            max_rel_err(
                &to_vec(replayed),
                &to_vec(sampled.images.clone()).iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
            ) < 1e-6,
            "the controls replay the sample"
        );

        // ∇_x G(x + (1 − t)v(x, t)) = (I + (1 − t)A(t))ᵀ ∇G(x̂_1), ∇G(x̂) = 2(x̂ − y)/D.
        let h = time.dt() as f64;
        let mut expected = vec![];
        for (x, y) in x0.chunks(D).zip(target.chunks(D)) {
            let mut x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            for k in 0..time.steps {
                let t = time.t(k) as f64;
                let v = affine.velocity(t, &x);
                let g: Vec<f64> = (0..D).map(|i| 2.0 * (x[i] + (1.0 - t) * v[i] - y[i] as f64) / D as f64).collect();
                let at = affine.apply(t, &g, true);
                x = (0..D).map(|i| x[i] + h * (v[i] - scale as f64 * (g[i] + (1.0 - t) * at[i]))).collect();
            }
            expected.extend(x);
        }
        let err = max_rel_err(&to_vec(sampled.images), &expected);
        assert!(err < 1e-5, "guided sample off by {err:e}");
    }
}
