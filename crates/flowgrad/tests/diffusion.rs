//! DDIM as a velocity field, against closed forms: Gaussian data, whose exact noise predictor is
//! known, is reached exactly in the limit of small steps; the Euler step agrees with DDIM's step to
//! first order (and a point mass makes one DDIM step exact); decomposed back-prop (ξ = 0) equals
//! full back-prop through the diffusion ODE.

mod common;

use burn::tensor::{Tensor, backend::Backend};
use common::{B, noise, rel_err, tensor};
use flowgrad::diffusion::{DiffusionOde, NoisePredictor, VpSchedule, ddim_step};
use flowgrad::tensor_util::to_vec;
use flowgrad::{
    Grid, Guidance, GuidanceContext, Mode, MseToTarget, SegmentAnchor, TimeGrid, VelocityField, decomposed_backprop,
    full_backprop, simulate,
};

const SHAPE: [usize; 4] = [2, 3, 2, 2];

/// Per-pixel Gaussian data N(μ, σ²): E[x₀ | X_t = x] = β_t (x − α_t μ) / (α_t² σ² + β_t²).
struct GaussianData {
    mean: Vec<f32>,
    std: f32,
    schedule: VpSchedule,
}

impl GaussianData {
    fn new(std: f32) -> Self {
        Self { mean: noise(3, SHAPE.iter().product()), std, schedule: VpSchedule::DDPM }
    }

    /// The exact probability-flow map from time `t0` to t = 1, per pixel (f64): the standardised
    /// coordinate (x − α μ)/√(α²σ² + β²) is carried unchanged.
    fn exact_endpoint(&self, x: &[f32], t0: f64) -> Vec<f64> {
        let (a, b, s) = (self.schedule.alpha(t0), self.schedule.beta(t0), self.std as f64);
        let spread = (a * a * s * s + b * b).sqrt();
        x.iter().zip(&self.mean).map(|(&x, &m)| m as f64 + s * (x as f64 - a * m as f64) / spread).collect()
    }
}

impl<Bk: Backend> NoisePredictor<Bk> for GaussianData {
    fn predict_noise(&self, x: Tensor<Bk, 4>, t: Tensor<Bk, 1>) -> Tensor<Bk, 4> {
        let mean = Tensor::<Bk, 1>::from_floats(self.mean.as_slice(), &x.device()).reshape(x.dims());
        let (alpha, beta) = self.schedule.coefficients(t);
        let variance = alpha.clone().powi_scalar(2) * (self.std * self.std) + beta.clone().powi_scalar(2);
        (x - mean * alpha) * beta / variance
    }

    fn fingerprint(&self) -> String {
        format!("gaussian:{}", self.std)
    }
}

/// Euler from `t0` to `t1` in `steps` equal steps at exact times, f32 tensors.
fn euler(field: &DiffusionOde<GaussianData>, x: Tensor<B, 4>, (t0, t1): (f64, f64), steps: usize) -> Vec<f64> {
    let h = (t1 - t0) / steps as f64;
    let mut x = x;
    for k in 0..steps {
        let t = Tensor::<B, 1>::full([SHAPE[0]], (t0 + k as f64 * h) as f32, &x.device());
        x = x.clone() + field.velocity(x, t) * h;
    }
    to_vec(x).into_iter().map(f64::from).collect()
}

#[test]
fn the_schedule_is_the_papers_alpha_and_preserves_variance() {
    let s = VpSchedule::DDPM;
    for t in [0.0, 0.1, 0.5, 0.9, 0.999, 1.0] {
        let paper = (-4.975 * (1.0 - t) * (1.0f64 - t) - 0.05 * (1.0 - t)).exp();
        assert!((s.alpha(t) - paper).abs() < 1e-12, "alpha({t}) = {} vs {paper}", s.alpha(t));
        assert!((s.alpha(t).powi(2) + s.beta(t).powi(2) - 1.0).abs() < 1e-12);
        let (h, at) = (1e-6, t.min(1.0 - 1e-6));
        let numeric = (s.log_alpha(at + h) - s.log_alpha(at - h)) / (2.0 * h);
        let rate = to_vec(s.log_alpha_rate_at(Tensor::<B, 1>::from_floats([at as f32], &Default::default())))[0];
        assert!((f64::from(rate) - numeric).abs() < 1e-5, "rate({t}) = {rate} vs {numeric}");
        assert!((s.log_alpha_rate(at) - numeric).abs() < 1e-6, "rate({t}) = {} vs {numeric}", s.log_alpha_rate(at));
    }
    assert_eq!(s.alpha(1.0), 1.0);
    assert_eq!(s.beta(1.0), 0.0);
    assert!(s.alpha(0.0) < 0.007, "t = 0 is (nearly) pure noise");
}

#[test]
fn the_ode_carries_noise_to_gaussian_data_exactly_in_the_limit() {
    let data = GaussianData::new(0.5);
    let t0 = 1e-3;
    let x0 = noise(5, SHAPE.iter().product());
    let exact = data.exact_endpoint(&x0, t0);
    let field = DiffusionOde::new(GaussianData::new(0.5), VpSchedule::DDPM);
    let coarse = rel_err(&euler(&field, tensor(x0.clone(), SHAPE), (t0, 1.0), 400), &exact);
    let fine = rel_err(&euler(&field, tensor(x0.clone(), SHAPE), (t0, 1.0), 3200), &exact);
    assert!(fine < 2e-3, "N = 3200 Euler steps end {fine} (relative) from the exact data point");
    // first order: 8× the steps, about 8× less error (until f32 rounding)
    assert!(coarse / fine > 5.0, "error {coarse} → {fine} does not shrink like 1/N");
}

#[test]
fn euler_and_ddim_steps_agree_to_first_order() {
    let predictor = GaussianData::new(0.7);
    let schedule = VpSchedule::DDPM;
    let field = DiffusionOde::new(GaussianData::new(0.7), schedule);
    let x = tensor(noise(9, SHAPE.iter().product()).iter().map(|v| v * 2.0).collect(), SHAPE);
    let t = 0.4;
    let gap = |h: f64| {
        let ddim: Vec<f64> =
            to_vec(ddim_step(&predictor, schedule, x.clone(), t, t + h)).into_iter().map(f64::from).collect();
        let times = Tensor::<B, 1>::full([SHAPE[0]], t as f32, &x.device());
        let euler: Vec<f64> =
            to_vec(x.clone() + field.velocity(x.clone(), times) * h).into_iter().map(f64::from).collect();
        let step: Vec<f64> = to_vec(x.clone()).into_iter().map(f64::from).collect();
        let moved: Vec<f64> = ddim.iter().zip(&step).map(|(d, s)| d - s).collect();
        rel_err(&euler.iter().zip(&step).map(|(e, s)| e - s).collect::<Vec<_>>(), &moved)
    };
    let (big, small) = (gap(0.02), gap(0.005));
    assert!(small < 0.02, "one Euler step of 0.005 differs from DDIM's by {small} of the move");
    assert!(big / small > 3.0, "the gap {big} → {small} does not shrink with the step");
}

#[test]
fn one_ddim_step_is_exact_for_a_point_mass() {
    // σ = 0: x̂₁ = μ at every step, so DDIM lands on the ODE's exact solution
    // X_s = α_s μ + (β_s/β_t)(X_t − α_t μ); Euler converges to it (the ODE is singular at t = 1
    // for a point mass, so the comparison ends at s = 0.9)
    let predictor = GaussianData::new(0.0);
    let schedule = VpSchedule::DDPM;
    let x0 = noise(21, SHAPE.iter().product());
    let (t, s) = (0.05, 0.9);
    let ddim: Vec<f64> =
        to_vec(ddim_step(&predictor, schedule, tensor(x0.clone(), SHAPE), t, s)).into_iter().map(f64::from).collect();
    let exact: Vec<f64> = x0
        .iter()
        .zip(&predictor.mean)
        .map(|(&x, &m)| {
            let (x, m) = (x as f64, m as f64);
            schedule.alpha(s) * m + schedule.beta(s) / schedule.beta(t) * (x - schedule.alpha(t) * m)
        })
        .collect();
    assert!(rel_err(&ddim, &exact) < 1e-5, "one DDIM step is not the exact solution: {}", rel_err(&ddim, &exact));
    let field = DiffusionOde::new(GaussianData::new(0.0), schedule);
    let coarse = rel_err(&euler(&field, tensor(x0.clone(), SHAPE), (t, s), 200), &exact);
    let fine = rel_err(&euler(&field, tensor(x0, SHAPE), (t, s), 3200), &exact);
    assert!(fine < 1e-3, "3200 Euler steps end {fine} (relative) from DDIM's one step");
    assert!(coarse / fine > 8.0, "error {coarse} → {fine} does not shrink like 1/N");
}

#[test]
fn decomposed_gradient_equals_full_backprop_through_the_diffusion_ode() {
    let field = DiffusionOde::new(GaussianData::new(0.6), VpSchedule::DDPM);
    let n = 16;
    let time = TimeGrid::new(n, 1e-3);
    let numel: usize = SHAPE.iter().product();
    let x0 = tensor(noise(31, numel), SHAPE);
    let target = tensor(noise(32, numel), SHAPE);
    let controls: Vec<Tensor<B, 4>> =
        (0..n).map(|k| tensor(noise(40 + k as u64, numel).iter().map(|v| v * 0.05).collect(), SHAPE)).collect();
    let ctx = GuidanceContext { iteration: 0, seed: 0 };
    let guidance = MseToTarget::new(target);
    for mode in [Mode::Paper, Mode::Reference] {
        let full = full_backprop(&field, x0.clone(), &controls, &time, mode, |x1| guidance.loss(x1, &ctx).sum());
        let traj = simulate(&field, x0.clone(), Some(&controls), &time, mode);
        let x1 = traj.last().require_grad();
        let grads = guidance.loss(x1.clone(), &ctx).sum().backward();
        let grad_x1 = Tensor::from_inner(x1.grad(&grads).expect("x1 is a leaf"));
        let grid = Grid::uniform(n);
        let decomposed =
            decomposed_backprop(&field, &traj, Some(&controls), &grid, &time, grad_x1, mode, SegmentAnchor::Start);
        let flat = |steps: Vec<Tensor<B, 4>>| -> Vec<f64> {
            steps.into_iter().flat_map(|t| to_vec(t.inner())).map(f64::from).collect()
        };
        let (full, decomposed) = (flat(full.per_step), flat(decomposed.per_step));
        let err = rel_err(&decomposed, &full);
        assert!(err < 1e-5, "{mode:?}: decomposed vs full back-prop relative error {err}");
        assert!(full.iter().any(|g| g.abs() > 1e-6), "{mode:?}: the gradient is not trivially zero");
    }
}

/// The exact Gaussian predictor as v-prediction: v̂ = (ε̂ − β_t X)/α_t.
struct GaussianV(GaussianData);

impl GaussianV {
    fn v<Bk: Backend>(&self, x: Tensor<Bk, 4>, t: Tensor<Bk, 1>) -> Tensor<Bk, 4> {
        let (alpha, beta) = self.0.schedule.coefficients(t.clone());
        (self.0.predict_noise(x.clone(), t) - x * beta) / alpha
    }
}

impl<Bk: Backend> NoisePredictor<Bk> for GaussianV {
    fn predict_noise(&self, x: Tensor<Bk, 4>, t: Tensor<Bk, 1>) -> Tensor<Bk, 4> {
        let v = self.v(x.clone(), t.clone());
        self.0.schedule.noise_from_v(x, v, t)
    }

    fn fingerprint(&self) -> String {
        format!("v-{}", NoisePredictor::<Bk>::fingerprint(&self.0))
    }
}

#[test]
fn v_prediction_recovers_the_noise_and_the_velocity() {
    let schedule = VpSchedule::DDPM;
    let numel: usize = SHAPE.iter().product();
    let (x1, x0) = (tensor(noise(51, numel), SHAPE), tensor(noise(52, numel), SHAPE));
    let t = Tensor::<B, 1>::from_floats([0.02, 0.7], &Default::default());
    let xt = schedule.mix_at(x1.clone(), x0.clone(), t.clone());
    let target = schedule.v_target(x1, x0.clone(), t.clone());
    let recovered: Vec<f64> = to_vec(schedule.noise_from_v(xt, target, t)).into_iter().map(f64::from).collect();
    let x0: Vec<f64> = to_vec(x0).into_iter().map(f64::from).collect();
    assert!(rel_err(&recovered, &x0) < 1e-5, "ε̂ from the exact v is {} from x₀", rel_err(&recovered, &x0));

    // the same data read through v: velocity −(α/β)(d log α/dt)·v̂, equal to the ε form's
    let (by_noise, by_v) = (GaussianData::new(0.6), GaussianV(GaussianData::new(0.6)));
    let x = tensor(noise(53, numel).iter().map(|v| v * 2.0).collect(), SHAPE);
    let times = Tensor::<B, 1>::from_floats([0.3, 0.9], &Default::default());
    let v = by_v.v(x.clone(), times.clone());
    let (alpha, beta) = schedule.coefficients(times.clone());
    let closed: Vec<f64> =
        to_vec(v.neg() * alpha / beta * schedule.log_alpha_rate_at(times.clone())).into_iter().map(f64::from).collect();
    let velocity = |field: &dyn VelocityField<B>| -> Vec<f64> {
        to_vec(field.velocity(x.clone(), times.clone())).into_iter().map(f64::from).collect()
    };
    let (through_v, through_noise) =
        (velocity(&DiffusionOde::new(by_v, schedule)), velocity(&DiffusionOde::new(by_noise, schedule)));
    assert!(
        rel_err(&through_v, &closed) < 1e-4,
        "v-prediction's velocity vs closed form: {}",
        rel_err(&through_v, &closed)
    );
    assert!(rel_err(&through_v, &through_noise) < 1e-4, "the two parameterisations disagree");
}

#[test]
fn the_predicted_endpoint_is_ddims_data_estimate() {
    let schedule = VpSchedule::DDPM;
    let data = GaussianData::new(0.6);
    let field = DiffusionOde::new(GaussianData::new(0.6), schedule);
    let x = tensor(noise(61, SHAPE.iter().product()).iter().map(|v| v * 2.0).collect(), SHAPE);
    for t in [0.05, 0.5, 0.95] {
        let times = Tensor::<B, 1>::full([SHAPE[0]], t as f32, &x.device());
        let v = field.velocity(x.clone(), times.clone());
        let predicted: Vec<f64> =
            to_vec(field.predict_endpoint(x.clone(), v, t as f32)).into_iter().map(f64::from).collect();
        let noise = data.predict_noise(x.clone(), times);
        let ddim: Vec<f64> =
            to_vec((x.clone() - noise * schedule.beta(t)) / schedule.alpha(t)).into_iter().map(f64::from).collect();
        assert!(rel_err(&predicted, &ddim) < 1e-4, "t = {t}: x̂₁ off by {}", rel_err(&predicted, &ddim));
    }
}

#[test]
fn the_fingerprint_names_the_schedule_and_the_network() {
    let field = DiffusionOde::new(GaussianData::new(0.6), VpSchedule::DDPM);
    assert_eq!(VelocityField::<B>::fingerprint(&field), "ddim:vp(0.1,20):gaussian:0.6");
}
