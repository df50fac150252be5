//! Gradients of a loss on x_N with respect to every control u_k: decomposed back-propagation on a
//! (possibly non-uniform) grid, and full autograd through all N steps as the oracle.

use burn::tensor::{Tensor, backend::AutodiffBackend};

use crate::field::VelocityField;
use crate::params::{Mode, SegmentAnchor, SegmentGradient};
use crate::recording::{RecordedForwards, backward_vjp};
use crate::straightness::Grid;
use crate::trajectory::{TimeGrid, Trajectory, model_input, simulate};

/// Per-step control gradients from decomposed back-propagation.
#[derive(Debug, Clone)]
pub struct DecomposedGradient<B: AutodiffBackend> {
    /// ∂L/∂u_k for every Euler step k (re-assigned within each segment).
    pub per_step: Vec<Tensor<B, 4>>,
    /// Costate λ = ∂L/∂x at each segment start after its VJP, in ascending segment order.
    pub segment_costates: Vec<Tensor<B, 4>>,
    /// Costate at x_N (the loss gradient back-propagation started from).
    pub end_costate: Tensor<B, 4>,
    /// Vector-Jacobian products evaluated (one per segment).
    pub vjps: usize,
    /// Of those, the ones that used a forward recorded during the simulation (backward half only).
    pub recorded_vjps: usize,
}

impl<B: AutodiffBackend> DecomposedGradient<B> {
    /// Per-step gradients with the costate interpolated linearly inside each segment, between
    /// the costates at its two ends, instead of one value copied to all its steps: the same VJPs,
    /// closer to the exact gradient where a long segment's costate changes along it. Equal to
    /// `per_step` on a uniform grid. `Reference` mode: step k gets λ_k (its own start); `Paper`
    /// mode: h·λ_{k+1}.
    pub fn interpolated(&self, grid: &Grid, time: &TimeGrid, mode: Mode) -> Vec<Tensor<B, 4>> {
        let mut per_step = Vec::with_capacity(time.steps);
        for (j, &len) in grid.lengths.iter().enumerate() {
            let begin = &self.segment_costates[j];
            let end = self.segment_costates.get(j + 1).unwrap_or(&self.end_costate);
            let change = end.clone() - begin.clone();
            for offset in 0..len {
                let (position, scale) = match mode {
                    Mode::Reference => (offset, 1.0),
                    Mode::Paper => (offset + 1, time.dt()),
                };
                let fraction = position as f32 / len as f32;
                per_step.push((begin.clone() + change.clone() * fraction) * scale);
            }
        }
        per_step
    }

    /// The per-step gradients as `assignment` gives them to the steps of each segment: `per_step`
    /// (copied) or [`interpolated`](Self::interpolated).
    pub fn assigned(self, assignment: SegmentGradient, grid: &Grid, time: &TimeGrid, mode: Mode) -> Vec<Tensor<B, 4>> {
        match assignment {
            SegmentGradient::Copy => self.per_step,
            SegmentGradient::Interpolate => self.interpolated(grid, time, mode),
        }
    }
}

/// λ ↦ Jᵥ(z, t)ᵀ λ: one vector-Jacobian product of the field at `z`.
pub fn velocity_vjp<B: AutodiffBackend, F: VelocityField<B>>(
    field: &F,
    z: Tensor<B, 4>,
    t: Tensor<B, 1>,
    cotangent: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let z = z.detach().require_grad();
    let v = field.velocity(z.clone(), t);
    backward_vjp(z, v, cotangent)
}

/// Decomposed back-propagation (Eq. 13): walks the segments of `grid` backwards with one VJP each,
/// starting from `grad_x1` = ∂L/∂x_N, and re-assigns each segment's gradient to all its steps.
/// Each VJP is evaluated at the state (and time) of the segment's `anchor` step.
///
/// Exact (up to float rounding) when `grid` is uniform. `Paper` mode returns h·λ at the segment's
/// end for each of its steps (∂x_{k+1}/∂u_k = h); `Reference` mode returns λ at the segment start
/// (u_k perturbs the state, so ∂L/∂u_k = ∂L/∂x_k), as the original code does.
#[allow(clippy::too_many_arguments)]
pub fn decomposed_backprop<B: AutodiffBackend, F: VelocityField<B>>(
    field: &F,
    trajectory: &Trajectory<B>,
    controls: Option<&[Tensor<B, 4>]>,
    grid: &Grid,
    time: &TimeGrid,
    grad_x1: Tensor<B, 4>,
    mode: Mode,
    anchor: SegmentAnchor,
) -> DecomposedGradient<B> {
    decomposed_backprop_recorded(
        field,
        trajectory,
        &mut RecordedForwards::none(),
        controls,
        grid,
        time,
        grad_x1,
        mode,
        anchor,
    )
}

/// [`decomposed_backprop`] on a trajectory from [`crate::simulate_recording`] with the same
/// controls: a VJP whose anchor step's forward was recorded runs only its backward half (and uses
/// that forward up); the others run both. The result is the same.
#[allow(clippy::too_many_arguments)]
pub fn decomposed_backprop_recorded<B: AutodiffBackend, F: VelocityField<B>>(
    field: &F,
    trajectory: &Trajectory<B>,
    recorded: &mut RecordedForwards<B>,
    controls: Option<&[Tensor<B, 4>]>,
    grid: &Grid,
    time: &TimeGrid,
    grad_x1: Tensor<B, 4>,
    mode: Mode,
    anchor: SegmentAnchor,
) -> DecomposedGradient<B> {
    let [batch, ..] = grad_x1.dims();
    let device = grad_x1.device();
    let h = time.dt();
    let mut per_step: Vec<Option<Tensor<B, 4>>> = vec![None; time.steps];
    let mut costates = Vec::with_capacity(grid.len());
    let end_costate = grad_x1.detach();
    let mut lambda = end_costate.clone();
    let mut recorded_vjps = 0;
    for (&start, &len) in grid.starts.iter().zip(&grid.lengths).rev() {
        let at = anchor.step(start, len);
        let jt_lambda = match recorded.vjp(at, lambda.clone()) {
            Some(jt_lambda) => {
                recorded_vjps += 1;
                jt_lambda
            }
            None => {
                let z = model_input(mode, trajectory.states[at].clone(), controls.map(|c| &c[at]));
                velocity_vjp(field, z, time.t_tensor(at, batch, &device), lambda.clone())
            }
        };
        let lambda_start = lambda.clone() + jt_lambda * (h * len as f32);
        let step_gradient = match mode {
            Mode::Paper => lambda * h,
            Mode::Reference => lambda_start.clone(),
        };
        for slot in &mut per_step[start..start + len] {
            *slot = Some(step_gradient.clone());
        }
        costates.push(lambda_start.clone());
        lambda = lambda_start;
    }
    costates.reverse();
    DecomposedGradient {
        per_step: per_step.into_iter().map(|g| g.expect("the grid covers every step")).collect(),
        segment_costates: costates,
        end_costate,
        vjps: grid.len(),
        recorded_vjps,
    }
}

/// Loss value and per-step control gradients from autograd through the whole simulation.
#[derive(Debug, Clone)]
pub struct FullGradient<B: AutodiffBackend> {
    /// The scalar loss.
    pub loss: f64,
    /// ∂L/∂u_k for every step.
    pub per_step: Vec<Tensor<B, 4>>,
}

/// A simulation recorded for full back-propagation: every control is a graph leaf, so the
/// autodiff graph holds all N network evaluations (memory grows with N).
pub struct RecordedSimulation<B: AutodiffBackend> {
    leaves: Vec<Tensor<B, 4>>,
    /// The recorded trajectory (its last state is differentiable in every control).
    pub trajectory: crate::trajectory::Trajectory<B>,
}

/// The forward half of full back-propagation: simulates from `x0` with `controls` as leaves.
pub fn record_simulation<B: AutodiffBackend, F: VelocityField<B>>(
    field: &F,
    x0: Tensor<B, 4>,
    controls: &[Tensor<B, 4>],
    time: &TimeGrid,
    mode: Mode,
) -> RecordedSimulation<B> {
    let leaves: Vec<Tensor<B, 4>> = controls.iter().map(|u| u.clone().detach().require_grad()).collect();
    let trajectory = simulate(field, x0.detach(), Some(&leaves), time, mode);
    RecordedSimulation { leaves, trajectory }
}

impl<B: AutodiffBackend> RecordedSimulation<B> {
    /// The backward half: back-propagates the scalar `loss(x_N)` through the whole recording.
    pub fn backward(self, loss: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 1>) -> FullGradient<B> {
        let value = loss(self.trajectory.last());
        let loss_value = crate::tensor_util::scalar(value.clone().inner());
        let grads = value.backward();
        let per_step = self
            .leaves
            .iter()
            .map(|u| match u.grad(&grads) {
                Some(g) => Tensor::from_inner(g),
                None => u.zeros_like(),
            })
            .collect();
        FullGradient { loss: loss_value, per_step }
    }
}

/// Full back-propagation: simulates with every control as a graph leaf and back-propagates the
/// scalar `loss(x_N)` through all N network evaluations at once (memory grows with N).
pub fn full_backprop<B: AutodiffBackend, F: VelocityField<B>>(
    field: &F,
    x0: Tensor<B, 4>,
    controls: &[Tensor<B, 4>],
    time: &TimeGrid,
    mode: Mode,
    loss: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 1>,
) -> FullGradient<B> {
    record_simulation(field, x0, controls, time, mode).backward(loss)
}
