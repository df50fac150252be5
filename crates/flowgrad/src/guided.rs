//! Classifier-guided sampling of a rectified flow: the guidance term every Euler step adds, from
//! the one-step prediction of the endpoint. A baseline of `flowgrad eval`, and the editor's warm
//! start (controls that begin where guided sampling ends).

use burn::tensor::{Tensor, backend::AutodiffBackend};

use crate::field::{Guidance, GuidanceContext, VelocityField};
use crate::trajectory::TimeGrid;

/// A guided sample and the controls that reproduce it (see [`guided_sample`]).
#[derive(Debug, Clone)]
pub struct GuidedSample<B: AutodiffBackend> {
    /// The sampled images x_N, `[B, C, H, W]`.
    pub images: Tensor<B, 4>,
    /// The guidance term of every step, u_k = −s·∇_{x_k} G(x̂_1), in the paper's units
    /// (x_{k+1} = x_k + h·(v + u_k)): N tensors of the images' shape.
    pub controls: Vec<Tensor<B, 4>>,
}

/// Classifier-guided Euler sampling from `x0` over `time`, without controls or optimisation:
///
/// x_{k+1} = x_k + h·(v(x_k, t_k) − s·∇_{x_k} G(x̂_1)),  x̂_1 = x_k + (1 − t_k)·v(x_k, t_k),
///
/// i.e. the guidance loss (for a class, −log p(target | ·)) of the one-step prediction of the
/// endpoint ([`VelocityField::predict_endpoint`]: the line above for a rectified flow, DDIM's
/// x̂_1 for a diffusion model), differentiated through the field. This is how a rectified flow is guided by a
/// classifier trained on clean images. Costs one VJP of the field per step (N per image).
pub fn guided_sample<B, F, G>(
    field: &F,
    guidance: &G,
    x0: Tensor<B, 4>,
    time: &TimeGrid,
    scale: f32,
    ctx: &GuidanceContext,
) -> GuidedSample<B>
where
    B: AutodiffBackend,
    F: VelocityField<B>,
    G: Guidance<B>,
{
    let [batch, ..] = x0.dims();
    let device = x0.device();
    let mut x = x0.detach();
    let mut controls = Vec::with_capacity(time.steps);
    for k in 0..time.steps {
        let t = time.t(k);
        let leaf = x.clone().require_grad();
        let v = field.velocity(leaf.clone(), time.t_tensor(k, batch, &device));
        let endpoint = field.predict_endpoint(leaf.clone(), v.clone(), t);
        let grads = guidance.loss(endpoint, ctx).sum().backward();
        let control = leaf.grad(&grads).map_or_else(|| x.zeros_like(), Tensor::from_inner) * (-scale);
        x = (x + (v.detach() + control.clone()) * time.dt()).detach();
        controls.push(control);
    }
    GuidedSample { images: x, controls }
}
