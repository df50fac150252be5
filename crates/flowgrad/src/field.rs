//! The two things FlowGrad is generic over: the velocity field and the guidance loss.

use burn::tensor::{Tensor, backend::Backend};

/// A (frozen) generative ODE dx/dt = v(x, t) on images `[B, C, H, W]`.
pub trait VelocityField<B: Backend> {
    /// Velocity at `x` (`[B, C, H, W]`) and unit times `t` (`[B]`, in [0, 1]); same shape as `x`.
    /// Any time rescaling the model needs (e.g. t·999) happens inside the implementation.
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4>;

    /// A stable identifier of the model and its weights, part of every control-state fingerprint.
    fn fingerprint(&self) -> String;
}

/// Per-call context handed to the guidance, so stochastic losses stay reproducible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuidanceContext {
    /// The FlowGrad iteration being computed (0-based).
    pub iteration: usize,
    /// Seed for any randomness of this call (derived from job seed, image id and iteration).
    pub seed: u64,
}

/// A differentiable loss on the final images x_1 (lower is better).
pub trait Guidance<B: Backend> {
    /// Per-image loss of `x1` (`[B, C, H, W]`) as a `[B]` tensor, differentiable in `x1`.
    fn loss(&self, x1: Tensor<B, 4>, ctx: &GuidanceContext) -> Tensor<B, 1>;

    /// A stable identifier of the loss and its configuration (target, weights), for fingerprints.
    fn fingerprint(&self) -> String;
}

impl<B: Backend, F: VelocityField<B> + ?Sized> VelocityField<B> for &F {
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        (**self).velocity(x, t)
    }
    fn fingerprint(&self) -> String {
        (**self).fingerprint()
    }
}

impl<B: Backend, G: Guidance<B> + ?Sized> Guidance<B> for &G {
    fn loss(&self, x1: Tensor<B, 4>, ctx: &GuidanceContext) -> Tensor<B, 1> {
        (**self).loss(x1, ctx)
    }
    fn fingerprint(&self) -> String {
        (**self).fingerprint()
    }
}

/// Mean squared error to a fixed target image batch: the loss used by the parity fixtures.
#[derive(Debug, Clone)]
pub struct MseToTarget<B: Backend> {
    target: Tensor<B, 4>,
}

impl<B: Backend> MseToTarget<B> {
    /// Loss ‖x1 − target‖² averaged over each image's elements.
    pub fn new(target: Tensor<B, 4>) -> Self {
        Self { target }
    }
}

impl<B: Backend> Guidance<B> for MseToTarget<B> {
    fn loss(&self, x1: Tensor<B, 4>, _ctx: &GuidanceContext) -> Tensor<B, 1> {
        let [b, ..] = x1.dims();
        (x1 - self.target.clone())
            .powi_scalar(2)
            .reshape([b as i32, -1])
            .mean_dim(1)
            .reshape([b])
    }
    fn fingerprint(&self) -> String {
        format!(
            "mse:{}",
            crate::state::digest_f32(&crate::tensor_util::to_vec(self.target.clone()))
        )
    }
}

/// Per-image mean absolute difference between `a` and `b` (`[B, C, H, W]` → `[B]`).
pub fn mean_abs_diff<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, ..] = a.dims();
    (a - b).abs().reshape([n as i32, -1]).mean_dim(1).reshape([n])
}
