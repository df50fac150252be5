//! Euler simulation with per-step controls, and encoding images into noise.

use burn::tensor::{
    Tensor,
    backend::{AutodiffBackend, Backend},
};
use serde::{Deserialize, Serialize};

use crate::field::VelocityField;
use crate::params::Mode;
use crate::recording::{AnchorPlan, RecordedForwards, Recorder};

/// The discrete time grid t_k = ε + (1 − ε)·k/N, k = 0..N, with Euler step h = 1/N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeGrid {
    /// Number of Euler steps N.
    pub steps: usize,
    /// Start time ε.
    pub eps: f32,
}

impl TimeGrid {
    /// A grid of `steps` steps starting at `eps`.
    pub fn new(steps: usize, eps: f32) -> Self {
        Self { steps, eps }
    }

    /// t_k, computed in f32 as ((k/N)·(1 − ε)) + ε, the original code's rounding.
    pub fn t(&self, k: usize) -> f32 {
        (k as f32 / self.steps as f32) * (1.0 - self.eps) + self.eps
    }

    /// The Euler step h = 1/N.
    pub fn dt(&self) -> f32 {
        1.0 / self.steps as f32
    }

    /// t_k broadcast to a batch of `batch` images.
    pub fn t_tensor<B: Backend>(&self, k: usize, batch: usize, device: &B::Device) -> Tensor<B, 1> {
        Tensor::full([batch], self.t(k), device)
    }
}

/// States and velocities of one Euler simulation.
#[derive(Debug, Clone)]
pub struct Trajectory<B: Backend> {
    /// x_0 … x_N (N + 1 states, before the control of each step is applied).
    pub states: Vec<Tensor<B, 4>>,
    /// v_0 … v_{N−1}: the velocity evaluated at each step.
    pub velocities: Vec<Tensor<B, 4>>,
}

impl<B: AutodiffBackend> Trajectory<B> {
    /// A trajectory computed on the inner backend, as untracked tensors of `B`.
    pub fn from_inner(inner: Trajectory<B::InnerBackend>) -> Self {
        Self {
            states: inner.states.into_iter().map(Tensor::from_inner).collect(),
            velocities: inner.velocities.into_iter().map(Tensor::from_inner).collect(),
        }
    }
}

impl<B: Backend> Trajectory<B> {
    /// The final state x_N.
    pub fn last(&self) -> Tensor<B, 4> {
        self.states.last().expect("a trajectory has N + 1 ≥ 2 states").clone()
    }
}

/// Where the control of a step enters the update (see [`Mode`]).
pub(crate) fn model_input<B: Backend>(mode: Mode, x: Tensor<B, 4>, u: Option<&Tensor<B, 4>>) -> Tensor<B, 4> {
    match (mode, u) {
        (Mode::Reference, Some(u)) => x + u.clone(),
        _ => x,
    }
}

/// One controlled Euler step of size `h` from `x` with velocity `v` evaluated at [`model_input`].
pub(crate) fn euler_update<B: Backend>(
    mode: Mode,
    x: Tensor<B, 4>,
    v: Tensor<B, 4>,
    u: Option<&Tensor<B, 4>>,
    h: f32,
) -> Tensor<B, 4> {
    match (mode, u) {
        (Mode::Paper, Some(u)) => x + (v + u.clone()) * h,
        (Mode::Reference, Some(u)) => x + u.clone() + v * h,
        (_, None) => x + v * h,
    }
}

/// Runs N controlled Euler steps from `x0`, keeping every state and velocity.
///
/// `controls` holds one tensor per step, of the images' shape or with batch size 1 (shared);
/// `None` simulates the uncontrolled ODE. The kept intermediate states and velocities are
/// detached (values only); the final state keeps its graph, so a loss on it differentiates
/// through tracked inputs (full back-propagation).
pub fn simulate<B: Backend, F: VelocityField<B>>(
    field: &F,
    x0: Tensor<B, 4>,
    controls: Option<&[Tensor<B, 4>]>,
    grid: &TimeGrid,
    mode: Mode,
) -> Trajectory<B> {
    simulate_with(x0, controls, grid, mode, |_, z, t| field.velocity(z, t))
}

/// [`simulate`] for values only (nothing in it is differentiated), on the inner backend with
/// the field's twin `values` ([`crate::DifferentiableField::values`]): no autodiff graph is
/// built, so the memory of a FlowGrad iteration's simulation does not grow with N and no time
/// goes into autodiff bookkeeping. The trajectory comes back on `B`, untracked.
pub fn simulate_untracked<B: AutodiffBackend, V: VelocityField<B::InnerBackend>>(
    values: &V,
    x0: Tensor<B, 4>,
    controls: Option<&[Tensor<B, 4>]>,
    grid: &TimeGrid,
    mode: Mode,
) -> Trajectory<B> {
    let controls = controls.map(inner_all);
    let inner = simulate_with(x0.inner(), controls.as_deref(), grid, mode, |_, z, t| values.velocity(z, t));
    Trajectory::from_inner(inner)
}

/// [`simulate_untracked`] that also records, for the VJPs of the decomposed backward `plan`
/// describes, the forward passes of `field` at their anchor steps (at most `plan.capacity` held
/// at once; see [`crate::recording`]); every other step runs on the twin `values`. Hand both
/// to [`crate::decomposed_backprop_recorded`]: the trajectory and its states are the same as
/// [`simulate_untracked`]'s.
pub fn simulate_recording<B: AutodiffBackend, F: VelocityField<B>, V: VelocityField<B::InnerBackend>>(
    field: &F,
    values: &V,
    x0: Tensor<B, 4>,
    controls: Option<&[Tensor<B, 4>]>,
    grid: &TimeGrid,
    mode: Mode,
    plan: AnchorPlan,
) -> (Trajectory<B>, RecordedForwards<B>) {
    let mut recorder = Recorder::new(plan, grid.steps);
    let controls = controls.map(inner_all);
    let inner = simulate_with(x0.inner(), controls.as_deref(), grid, mode, |k, z, t| {
        let tracked_t = Tensor::from_inner(t.clone());
        recorder.step(k, z, move |input| field.velocity(input, tracked_t), move |z| values.velocity(z, t))
    });
    (Trajectory::from_inner(inner), recorder.forwards)
}

/// The values of `tensors` on the inner backend.
fn inner_all<B: AutodiffBackend>(tensors: &[Tensor<B, 4>]) -> Vec<Tensor<B::InnerBackend, 4>> {
    tensors.iter().map(|u| u.clone().inner()).collect()
}

/// [`simulate`] with step k's velocity at model input z and times t from `velocity(k, z, t)`.
fn simulate_with<B: Backend>(
    x0: Tensor<B, 4>,
    controls: Option<&[Tensor<B, 4>]>,
    grid: &TimeGrid,
    mode: Mode,
    mut velocity: impl FnMut(usize, Tensor<B, 4>, Tensor<B, 1>) -> Tensor<B, 4>,
) -> Trajectory<B> {
    let [batch, ..] = x0.dims();
    let device = x0.device();
    let mut states = Vec::with_capacity(grid.steps + 1);
    let mut velocities = Vec::with_capacity(grid.steps);
    let mut x = x0;
    for k in 0..grid.steps {
        let u = controls.map(|c| &c[k]);
        let v = velocity(k, model_input(mode, x.clone(), u), grid.t_tensor(k, batch, &device));
        let next = euler_update(mode, x.clone(), v.clone(), u, grid.dt());
        states.push(x.detach());
        velocities.push(v.detach());
        x = next;
    }
    states.push(x);
    Trajectory { states, velocities }
}

pub use flowgrad_params::Solver;

/// Encodes images `x1` into noise x_0 by integrating the ODE backwards over `grid`.
pub fn encode<B: Backend, F: VelocityField<B>>(
    field: &F,
    x1: Tensor<B, 4>,
    grid: &TimeGrid,
    solver: Solver,
) -> Tensor<B, 4> {
    let [batch, ..] = x1.dims();
    let device = x1.device();
    let h = grid.dt();
    let v = |x: Tensor<B, 4>, t: f32| field.velocity(x, Tensor::full([batch], t, &device));
    let mut x = x1;
    for k in (0..grid.steps).rev() {
        let (t0, t1) = (grid.t(k), grid.t(k + 1));
        x = match solver {
            Solver::Euler => x.clone() - v(x, t1) * h,
            Solver::Heun => {
                let a = v(x.clone(), t1);
                let guess = x.clone() - a.clone() * h;
                let b = v(guess, t0);
                x - (a + b) * (h / 2.0)
            }
            Solver::Rk4 => {
                let tm = 0.5 * (t0 + t1);
                let k1 = v(x.clone(), t1);
                let k2 = v(x.clone() - k1.clone() * (h / 2.0), tm);
                let k3 = v(x.clone() - k2.clone() * (h / 2.0), tm);
                let k4 = v(x.clone() - k3.clone() * h, t0);
                x - (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0)
            }
            Solver::InverseEuler { iterations } => {
                let mut guess = x.clone() - v(x.clone(), t0) * h;
                for _ in 0..iterations {
                    guess = x.clone() - v(guess, t0) * h;
                }
                guess
            }
        };
    }
    x
}

/// Error of encoding `x1` and decoding it again with uncontrolled Euler on `decode_grid`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundTrip {
    /// Largest absolute element error.
    pub max_abs: f32,
    /// Mean absolute element error.
    pub mean_abs: f32,
}

/// Measures the encode → decode round trip of `x1`.
pub fn round_trip<B: Backend, F: VelocityField<B>>(
    field: &F,
    x1: Tensor<B, 4>,
    encode_grid: &TimeGrid,
    decode_grid: &TimeGrid,
    solver: Solver,
) -> RoundTrip {
    let x0 = encode(field, x1.clone(), encode_grid, solver);
    let decoded = simulate(field, x0, None, decode_grid, Mode::Paper).last();
    let diff = (decoded - x1).abs();
    RoundTrip {
        max_abs: crate::tensor_util::scalar(diff.clone().max().reshape([1])) as f32,
        mean_abs: crate::tensor_util::scalar(diff.mean()) as f32,
    }
}
