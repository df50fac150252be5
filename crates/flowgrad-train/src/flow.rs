//! Training of the UNet: as a rectified-flow velocity field, or as DDIM's network (v-prediction).

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Device, Tensor};
use flowgrad::VelocityField;
use flowgrad::diffusion::VpSchedule;
use flowgrad_models::fashion::{FashionMnist, SIDE, Split};
use flowgrad_models::{DDIM_SCHEDULE, DDIM_STEM, UNet, UNetConfig, ddim_ode, save};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{image_batch, normal, sample_indices, step_rng, tensor};
use crate::eval::{reconstruction_mse, samples, save_grid};
use crate::trainer::{LoopConfig, run};
use crate::{EvalBackend, TrainBackend, write_json};

/// Configuration of [`train_flow`] and [`train_ddim`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowTrainConfig {
    /// Architecture and initial-weight seed.
    pub model: UNetConfig,
    /// Optimisation settings.
    pub run: LoopConfig,
    /// Test images used for the reconstruction MSE.
    pub eval_images: usize,
    /// Seed of the noise of the sample grid.
    pub sample_seed: u64,
}

impl Default for FlowTrainConfig {
    fn default() -> Self {
        Self {
            model: UNetConfig::new(),
            run: LoopConfig { steps: 3000, batch: 32, lr: 1e-3, warmup: 200, ..LoopConfig::default() },
            eval_images: 32,
            sample_seed: 2024,
        }
    }
}

/// Results of [`train_flow`] (also written to `out_dir/flow.report.json`) and [`train_ddim`]
/// (`out_dir/ddim.report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowReport {
    /// The configuration used.
    pub config: FlowTrainConfig,
    /// Trainable parameters.
    pub parameters: usize,
    /// Training seconds (over all resumed runs).
    pub wall_s: f64,
    /// Mean seconds per step of the last run.
    pub step_s: f64,
    /// Mean training loss per logging window.
    pub loss_curve: Vec<(usize, f64)>,
    /// Encode (inverse Euler, 4 iterations, N = 100) → decode (Euler, N = 100) MSE on the first
    /// `eval_images` test images.
    pub reconstruction_mse: f64,
    /// The weights file.
    pub weights: PathBuf,
    /// The 8×8 sample grid.
    pub samples: PathBuf,
}

/// The rectified-flow loss of one batch: t ~ U(0, 1) per image (drawn from `rng`), the mean
/// squared error of v(t·x₁ + (1 − t)·x₀, t) to x₁ − x₀.
pub fn flow_matching_loss(
    model: &UNet<TrainBackend>,
    x0: Tensor<TrainBackend, 4>,
    x1: Tensor<TrainBackend, 4>,
    rng: &mut impl Rng,
    device: &Device<TrainBackend>,
) -> Tensor<TrainBackend, 1> {
    let [b, ..] = x0.dims();
    let t = uniform_times(rng, b, device);
    let tb = t.clone().reshape([b, 1, 1, 1]);
    let xt = x1.clone() * tb.clone() + x0.clone() * (tb.neg() + 1.0);
    let v = model.forward(xt, t);
    (v - (x1 - x0)).powi_scalar(2).mean()
}

/// One time t ~ U(0, 1) per image of a batch of `b`, drawn from `rng`.
fn uniform_times(rng: &mut impl Rng, b: usize, device: &Device<TrainBackend>) -> Tensor<TrainBackend, 1> {
    let times: Vec<f32> = (0..b).map(|_| rng.random()).collect();
    tensor::<TrainBackend, 1>(times, [b], device)
}

/// The diffusion model's (v-prediction) loss of one batch: t ~ U(0, 1) per image (drawn from
/// `rng`), the mean squared error of v̂(α_t x₁ + β_t x₀, t) to α_t x₀ − β_t x₁.
pub fn v_prediction_loss(
    model: &UNet<TrainBackend>,
    schedule: VpSchedule,
    x0: Tensor<TrainBackend, 4>,
    x1: Tensor<TrainBackend, 4>,
    rng: &mut impl Rng,
    device: &Device<TrainBackend>,
) -> Tensor<TrainBackend, 1> {
    let t = uniform_times(rng, x0.dims()[0], device);
    let xt = schedule.mix_at(x1.clone(), x0.clone(), t.clone());
    (model.forward(xt, t.clone()) - schedule.v_target(x1, x0, t)).powi_scalar(2).mean()
}

/// Trains the UNet with the rectified-flow objective and writes `flow.safetensors`,
/// `flow.config.json`, `samples.png` and `flow.report.json` into `out_dir`.
///
/// Each step draws x_1 from the training set, x_0 ~ N(0, I), t ~ U(0, 1), and regresses
/// v(t·x_1 + (1 − t)·x_0, t) onto x_1 − x_0 with a mean squared error.
pub fn train_flow(cfg: &FlowTrainConfig, out_dir: &Path) -> anyhow::Result<FlowReport> {
    let files = UNetFiles { stem: "flow", samples: "samples.png" };
    train_unet(cfg, out_dir, files, flow_matching_loss, |unet| unet)
}

/// Trains the UNet as DDIM's network (v-prediction) under [`DDIM_SCHEDULE`] and writes
/// `ddim.safetensors`, `ddim.config.json`, `samples-ddim.png` and `ddim.report.json` into
/// `out_dir`; its reconstruction and samples integrate the diffusion ODE (Euler, N = 100).
pub fn train_ddim(cfg: &FlowTrainConfig, out_dir: &Path) -> anyhow::Result<FlowReport> {
    let files = UNetFiles { stem: DDIM_STEM, samples: "samples-ddim.png" };
    let loss =
        |model: &_, x0, x1, rng: &mut _, device: &_| v_prediction_loss(model, DDIM_SCHEDULE, x0, x1, rng, device);
    train_unet(cfg, out_dir, files, loss, ddim_ode)
}

/// The files a UNet training run writes: `{stem}.safetensors`, `{stem}.config.json`,
/// `{stem}.report.json` and the sample grid.
struct UNetFiles {
    stem: &'static str,
    samples: &'static str,
}

/// The training loop shared by both objectives: `loss` per batch; `field` turns the trained
/// network into the velocity field that is evaluated and sampled.
fn train_unet<F: VelocityField<EvalBackend>>(
    cfg: &FlowTrainConfig,
    out_dir: &Path,
    files: UNetFiles,
    loss: impl Fn(
        &UNet<TrainBackend>,
        Tensor<TrainBackend, 4>,
        Tensor<TrainBackend, 4>,
        &mut ChaCha8Rng,
        &Device<TrainBackend>,
    ) -> Tensor<TrainBackend, 1>,
    field: impl FnOnce(UNet<EvalBackend>) -> F,
) -> anyhow::Result<FlowReport> {
    let device = Default::default();
    let data = FashionMnist::load(&cfg.run.data_dir, Split::Train)?;
    let model = cfg.model.init::<TrainBackend>(&device);
    let parameters = model.num_params();
    let outcome = run(files.stem, &cfg.run, out_dir, model, |model, step| {
        let mut rng = step_rng(cfg.run.seed, step);
        let b = cfg.run.batch;
        let x1 = image_batch::<TrainBackend>(&data, &sample_indices(&mut rng, data.len(), b), false, &mut rng, &device);
        let x0 = tensor(normal(&mut rng, b * SIDE * SIDE), [b, 1, SIDE, SIDE], &device);
        loss(model, x0, x1, &mut rng, &device)
    })?;
    let model = outcome.model.valid();
    std::fs::create_dir_all(out_dir)?;
    let weights = out_dir.join(format!("{}.safetensors", files.stem));
    save(&model, &weights)?;
    let config_file = format!("{}.config.json", files.stem);
    cfg.model.save(out_dir.join(&config_file)).with_context(|| format!("writing {config_file}"))?;

    let field = field(model);
    let test = FashionMnist::load(&cfg.run.data_dir, Split::Test)?;
    let first: Vec<usize> = (0..cfg.eval_images.min(test.len())).collect();
    let reconstruction_mse = reconstruction_mse(&field, test.images(&first, &device));
    let samples_path = out_dir.join(files.samples);
    save_grid(samples(&field, 64, cfg.sample_seed, &device), 8, &samples_path)?;
    let report = FlowReport {
        config: cfg.clone(),
        parameters,
        wall_s: outcome.wall_s,
        step_s: outcome.step_s,
        loss_curve: outcome.loss_curve,
        reconstruction_mse,
        weights,
        samples: samples_path,
    };
    write_json(&out_dir.join(format!("{}.report.json", files.stem)), &report)?;
    Ok(report)
}
