//! The two things FlowGrad is generic over: the velocity field and the guidance loss.

use std::marker::PhantomData;

use burn::tensor::{
    Tensor,
    backend::{AutodiffBackend, Backend},
    module::avg_pool2d,
};

/// A (frozen) generative ODE dx/dt = v(x, t) on images `[B, C, H, W]`.
pub trait VelocityField<B: Backend> {
    /// Velocity at `x` (`[B, C, H, W]`) and unit times `t` (`[B]`, in [0, 1]); same shape as `x`.
    /// Any time rescaling the model needs (e.g. t·999) happens inside the implementation.
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4>;

    /// A stable identifier of the model and its weights, part of every control-state fingerprint.
    fn fingerprint(&self) -> String;

    /// The one-step prediction x̂_1 of the data point from `x` at time `t`, given the velocity `v`
    /// there (guidance on the predicted endpoint differentiates through it). A rectified flow
    /// moves on straight lines: x + (1 − t)·v, the default.
    fn predict_endpoint(&self, x: Tensor<B, 4>, v: Tensor<B, 4>, t: f32) -> Tensor<B, 4> {
        x + v * (1.0 - t)
    }
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
    fn predict_endpoint(&self, x: Tensor<B, 4>, v: Tensor<B, 4>, t: f32) -> Tensor<B, 4> {
        (**self).predict_endpoint(x, v, t)
    }
}

/// A velocity field on an autodiff backend with a twin on the inner backend (the same weights,
/// no autodiff graph), which runs the forwards whose values are all that is needed: the
/// simulation's and the encoder's. burn-autodiff registers every operation of a forward in its
/// graph, even when nothing in it is differentiated; the twin skips that work and its locking.
pub trait DifferentiableField<B: AutodiffBackend>: VelocityField<B> {
    /// The field on `B::InnerBackend`; its velocities equal this field's.
    type Values: VelocityField<B::InnerBackend>;

    /// This field's inner-backend twin (shares the weights' storage where the backend can).
    fn values(&self) -> Self::Values;
}

impl<B: AutodiffBackend, F: DifferentiableField<B> + ?Sized> DifferentiableField<B> for &F {
    type Values = F::Values;
    fn values(&self) -> F::Values {
        (**self).values()
    }
}

/// The inner-backend twin of a field that has no other: each velocity runs `F` on the autodiff
/// backend and then releases the graph entries it left (so the memory of a simulation stays flat
/// in N), returning the values. Correct for any field, without the twin's speed.
#[derive(Debug, Clone)]
pub struct Untracked<B, F> {
    field: F,
    _backend: PhantomData<B>,
}

impl<B, F> Untracked<B, F> {
    /// Wraps `field`.
    pub fn new(field: F) -> Self {
        Self { field, _backend: PhantomData }
    }
}

impl<B: AutodiffBackend, F: VelocityField<B>> VelocityField<B::InnerBackend> for Untracked<B, F> {
    fn velocity(&self, x: Tensor<B::InnerBackend, 4>, t: Tensor<B::InnerBackend, 1>) -> Tensor<B::InnerBackend, 4> {
        let device = x.device();
        let v = self.field.velocity(Tensor::from_inner(x), Tensor::from_inner(t)).inner();
        release_untracked::<B>(&device);
        v
    }
    fn fingerprint(&self) -> String {
        self.field.fingerprint()
    }
    fn predict_endpoint(
        &self,
        x: Tensor<B::InnerBackend, 4>,
        v: Tensor<B::InnerBackend, 4>,
        t: f32,
    ) -> Tensor<B::InnerBackend, 4> {
        self.field.predict_endpoint(Tensor::from_inner(x), Tensor::from_inner(v), t).inner()
    }
}

/// Runs a backward pass on a fresh one-element tensor: its only effect is burn-autodiff's
/// clean-up of graph entries whose tensors were all dropped. burn 0.21 registers every operation
/// in its graph, with the tensors a memory-bound operation may need again, and frees what is no
/// longer referenced only after a backward pass.
fn release_untracked<B: AutodiffBackend>(device: &B::Device) {
    let _ = Tensor::<B, 1>::zeros([1], device).require_grad().sum().backward();
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
        (x1 - self.target.clone()).powi_scalar(2).reshape([b as i32, -1]).mean_dim(1).reshape([b])
    }
    fn fingerprint(&self) -> String {
        format!("mse:{}", crate::state::digest_f32(&crate::tensor_util::to_vec(self.target.clone())))
    }
}

/// Per-image mean absolute difference between `a` and `b` (`[B, C, H, W]` → `[B]`).
pub fn mean_abs_diff<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, ..] = a.dims();
    (a - b).abs().reshape([n as i32, -1]).mean_dim(1).reshape([n])
}

/// Side of the square SSIM windows (smaller images use one window of their smaller side).
pub const SSIM_WINDOW: usize = 8;
/// Stride between SSIM windows.
pub const SSIM_STRIDE: usize = 4;

/// Per-image structural similarity of `a` and `b` (`[B, C, H, W]`, values in [−1, 1]) → `[B]`,
/// differentiable: on pixels mapped to [0, 1], the mean over channels and over
/// [`SSIM_WINDOW`]² windows ([`SSIM_STRIDE`] apart) of
/// (2μ_aμ_b + c₁)(2σ_ab + c₂) / ((μ_a² + μ_b² + c₁)(σ_a² + σ_b² + c₂)), c₁ = 0.01², c₂ = 0.03²,
/// with unbiased (co)variances. 1 for identical images.
pub fn ssim<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 1> {
    let [n, _, h, w] = a.dims();
    let window = SSIM_WINDOW.min(h).min(w);
    let pool = |x: Tensor<B, 4>| avg_pool2d(x, [window, window], [SSIM_STRIDE, SSIM_STRIDE], [0, 0], true, false);
    let (a, b) = ((a + 1.0) / 2.0, (b + 1.0) / 2.0);
    let count = (window * window) as f32;
    let unbiased = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
    let (mean_a, mean_b) = (pool(a.clone()), pool(b.clone()));
    let var_a = (pool(a.clone() * a.clone()) - mean_a.clone() * mean_a.clone()) * unbiased;
    let var_b = (pool(b.clone() * b.clone()) - mean_b.clone() * mean_b.clone()) * unbiased;
    let cov = (pool(a * b) - mean_a.clone() * mean_b.clone()) * unbiased;
    let (c1, c2) = (1e-4f32, 9e-4f32);
    let luminance =
        (mean_a.clone() * mean_b.clone() * 2.0 + c1) / (mean_a.clone() * mean_a + mean_b.clone() * mean_b + c1);
    let structure = (cov * 2.0 + c2) / (var_a + var_b + c2);
    (luminance * structure).reshape([n as i32, -1]).mean_dim(1).reshape([n])
}
