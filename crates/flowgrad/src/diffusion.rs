//! Diffusion models as ODEs: DDIM, i.e. the probability-flow ODE of the variance-preserving
//! diffusion, written as a velocity field so that everything FlowGrad does to a rectified flow
//! (encoding, simulation, straightness, the non-uniform grid, decomposed back-prop) applies as is.
//!
//! In FlowGrad's time (t = 0 noise, t = 1 data) the paper's Eq. 3 interpolates
//! X_t = α_t x₁ + β_t x₀ with x₀ ~ N(0, I), β_t = √(1 − α_t²) and
//! α_t = exp(−¼(β_max − β_min)(1 − t)² − ½β_min(1 − t)) — the VP SDE's mean coefficient
//! ("DDPM" schedule β_min = 0.1, β_max = 20 gives the paper's exp(−4.975(1 − t)² − 0.05(1 − t))).
//! A network ε̂(X, t) trained to predict the noise x₀ in X_t gives x̂₁ = (X − β_t ε̂)/α_t, and the
//! ODE's velocity α̇_t x̂₁ + β̇_t ε̂ simplifies (β̇ = −αα̇/β) to
//!
//! v(X, t) = (d log α_t / dt) · (X − ε̂(X, t) / β_t).
//!
//! DDIM's deterministic update [`ddim_step`] is the exact solution of this ODE when ε̂ is held
//! fixed over the step, so Euler steps and DDIM steps agree to first order.
//!
//! A network may instead predict v = α_t x₀ − β_t x₁ (v-prediction, Salimans & Ho 2022): it is
//! read as the noise predictor ε̂ = β_t X + α_t v̂ ([`VpSchedule::noise_from_v`]), for which the
//! velocity is −(α_t/β_t)(d log α_t/dt)·v̂. Near the noise end (t → 0, α_t → 0.007) ε-prediction
//! multiplies the network's error by d log α_t/dt ≈ 10 against a data signal of size α_t, while
//! v-prediction multiplies it by α_t·(d log α_t/dt) ≈ 0.07: the bundled model predicts v.

use burn::tensor::{
    Tensor,
    backend::{AutodiffBackend, Backend},
};
use serde::{Deserialize, Serialize};

use crate::field::{DifferentiableField, VelocityField};

/// The variance-preserving schedule α_t, β_t = √(1 − α_t²) in FlowGrad's time (t = 1: data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VpSchedule {
    /// β(s) at the data end of the diffusion (the SDE's β_min).
    pub beta_min: f64,
    /// β(s) at the noise end of the diffusion (the SDE's β_max).
    pub beta_max: f64,
}

impl VpSchedule {
    /// DDPM's linear schedule as a continuous VP SDE (β_min 0.1, β_max 20): the paper's α_t.
    pub const DDPM: Self = Self { beta_min: 0.1, beta_max: 20.0 };

    /// log α_t = −¼(β_max − β_min)(1 − t)² − ½β_min(1 − t).
    pub fn log_alpha(&self, t: f64) -> f64 {
        let s = 1.0 - t;
        -0.25 * (self.beta_max - self.beta_min) * s * s - 0.5 * self.beta_min * s
    }

    /// α_t, the data's coefficient in X_t.
    pub fn alpha(&self, t: f64) -> f64 {
        self.log_alpha(t).exp()
    }

    /// β_t = √(1 − α_t²), the noise's coefficient in X_t (computed without cancellation near t = 1).
    pub fn beta(&self, t: f64) -> f64 {
        (-(2.0 * self.log_alpha(t)).exp_m1()).sqrt()
    }

    /// d log α_t / dt = ½(β_max − β_min)(1 − t) + ½β_min at time `t`.
    pub fn log_alpha_rate(&self, t: f64) -> f64 {
        0.5 * (self.beta_max - self.beta_min) * (1.0 - t) + 0.5 * self.beta_min
    }

    /// X_t for per-image times `t` (`[B]`): α_t x₁ + β_t x₀, as differentiable tensor ops.
    pub fn mix_at<B: Backend>(&self, x1: Tensor<B, 4>, x0: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let (alpha, beta) = self.coefficients(t);
        x1 * alpha + x0 * beta
    }

    /// α_t and β_t of per-image times `t` (`[B]`) as `[B, 1, 1, 1]` tensors (differentiable).
    pub fn coefficients<B: Backend>(&self, t: Tensor<B, 1>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [batch] = t.dims();
        let s = t.neg().add_scalar(1.0);
        let log_alpha = s.clone().powi_scalar(2).mul_scalar(-0.25 * (self.beta_max - self.beta_min))
            - s.mul_scalar(0.5 * self.beta_min);
        let alpha = log_alpha.clone().exp();
        let beta = log_alpha.mul_scalar(2.0).exp().neg().add_scalar(1.0).sqrt();
        (alpha.reshape([batch, 1, 1, 1]), beta.reshape([batch, 1, 1, 1]))
    }

    /// [`Self::log_alpha_rate`] (the rate of the velocity) of per-image times `t` (`[B]`) as a
    /// `[B, 1, 1, 1]` tensor.
    pub fn log_alpha_rate_at<B: Backend>(&self, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let [batch] = t.dims();
        t.neg()
            .add_scalar(1.0)
            .mul_scalar(0.5 * (self.beta_max - self.beta_min))
            .add_scalar(0.5 * self.beta_min)
            .reshape([batch, 1, 1, 1])
    }

    /// v-prediction's regression target α_t x₀ − β_t x₁ for data `x1`, noise `x0` and times `t`.
    pub fn v_target<B: Backend>(&self, x1: Tensor<B, 4>, x0: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let (alpha, beta) = self.coefficients(t);
        x0 * alpha - x1 * beta
    }

    /// The noise ε̂ = β_t X + α_t v̂ that a v-prediction `v` at `x` (X_t) and times `t` implies.
    pub fn noise_from_v<B: Backend>(&self, x: Tensor<B, 4>, v: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let (alpha, beta) = self.coefficients(t);
        x * beta + v * alpha
    }
}

/// A network that predicts the noise x₀ in X_t = α_t x₁ + β_t x₀ (ε-prediction), with unit
/// times t ∈ [0, 1] in FlowGrad's direction (t = 1: data).
pub trait NoisePredictor<B: Backend> {
    /// ε̂(x, t) for `x` (`[B, C, H, W]`) and times `t` (`[B]`); same shape as `x`.
    fn predict_noise(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4>;

    /// A stable identifier of the network and its weights.
    fn fingerprint(&self) -> String;
}

/// A noise predictor on an autodiff backend with a twin on the inner backend (the same weights):
/// what makes its [`DiffusionOde`] a [`DifferentiableField`].
pub trait DifferentiablePredictor<B: AutodiffBackend>: NoisePredictor<B> {
    /// The predictor on `B::InnerBackend`.
    type Values: NoisePredictor<B::InnerBackend>;

    /// This predictor's inner-backend twin.
    fn values(&self) -> Self::Values;
}

/// DDIM's ODE: a noise predictor and its schedule as a [`VelocityField`].
#[derive(Debug, Clone)]
pub struct DiffusionOde<P> {
    predictor: P,
    schedule: VpSchedule,
}

impl<P> DiffusionOde<P> {
    /// The ODE of `predictor` under `schedule`.
    pub fn new(predictor: P, schedule: VpSchedule) -> Self {
        Self { predictor, schedule }
    }
}

impl<B: Backend, P: NoisePredictor<B>> VelocityField<B> for DiffusionOde<P> {
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let (_, beta) = self.schedule.coefficients(t.clone());
        let rate = self.schedule.log_alpha_rate_at(t.clone());
        let noise = self.predictor.predict_noise(x.clone(), t);
        (x - noise / beta) * rate
    }

    /// DDIM's x̂_1 = (X − β_t ε̂)/α_t, written with the velocity v = r(X − ε̂/β_t)
    /// (r = d log α_t/dt) as α_t X + β_t² v/(α_t r): a straight line is not the ODE's path here.
    fn predict_endpoint(&self, x: Tensor<B, 4>, v: Tensor<B, 4>, t: f32) -> Tensor<B, 4> {
        let t = f64::from(t);
        let (alpha, beta) = (self.schedule.alpha(t), self.schedule.beta(t));
        let rate = self.schedule.log_alpha_rate(t);
        x * alpha + v * (beta * beta / (alpha * rate))
    }

    fn fingerprint(&self) -> String {
        format!("ddim:vp({},{}):{}", self.schedule.beta_min, self.schedule.beta_max, self.predictor.fingerprint())
    }
}

impl<B: AutodiffBackend, P: DifferentiablePredictor<B>> DifferentiableField<B> for DiffusionOde<P> {
    type Values = DiffusionOde<P::Values>;
    fn values(&self) -> Self::Values {
        DiffusionOde::new(self.predictor.values(), self.schedule)
    }
}

/// One deterministic DDIM step of `x` from time `t` to time `s` (either direction):
/// x̂₁ = (x − β_t ε̂)/α_t, then α_s x̂₁ + β_s ε̂.
pub fn ddim_step<B: Backend, P: NoisePredictor<B>>(
    predictor: &P,
    schedule: VpSchedule,
    x: Tensor<B, 4>,
    t: f64,
    s: f64,
) -> Tensor<B, 4> {
    let [batch, ..] = x.dims();
    let times = Tensor::<B, 1>::full([batch], t as f32, &x.device());
    let noise = predictor.predict_noise(x.clone(), times);
    let data = (x - noise.clone() * schedule.beta(t)) / schedule.alpha(t);
    data * schedule.alpha(s) + noise * schedule.beta(s)
}
