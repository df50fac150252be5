//! Evaluation of trained models: classifier accuracy, flow reconstruction error, sample grids.

use std::path::Path;

use anyhow::Context;
use burn::tensor::{ElementConversion, Tensor, backend::Backend};
use flowgrad::{Mode, Solver, TimeGrid, VelocityField, encode, simulate};
use flowgrad_models::ImageClassifier;
use flowgrad_models::fashion::{FashionMnist, SIDE};

use crate::data::{normal, step_rng, tensor};

/// Euler steps (N) used for sampling and reconstruction.
pub const ODE_STEPS: usize = 100;
/// Start time ε of the evaluation time grid (FlowGrad's default).
pub const TIME_EPS: f32 = 1e-3;
/// The fixed-point solver used to encode images for the reconstruction metric.
pub const ENCODER: Solver = Solver::InverseEuler { iterations: 4 };

/// Fraction of `indices` whose arg-max class is the label, evaluated in chunks of `chunk`.
pub fn accuracy<B: Backend, C: ImageClassifier<B>>(
    classifier: &C,
    data: &FashionMnist,
    indices: &[usize],
    chunk: usize,
    device: &B::Device,
) -> f64 {
    let mut correct = 0usize;
    for part in indices.chunks(chunk) {
        let predicted = classifier.logits(data.images(part, device)).argmax(1).reshape([part.len()]);
        let hits: i64 = predicted.equal(data.labels(part, device)).int().sum().into_scalar().elem();
        correct += hits as usize;
    }
    correct as f64 / indices.len() as f64
}

/// Mean squared error of encoding `images` to noise (inverse Euler, 4 iterations, N = 100) and
/// decoding them again with N = 100 Euler steps.
pub fn reconstruction_mse<B: Backend, F: VelocityField<B>>(field: &F, images: Tensor<B, 4>) -> f64 {
    let grid = TimeGrid::new(ODE_STEPS, TIME_EPS);
    let noise = encode(field, images.clone(), &grid, ENCODER);
    let decoded = simulate(field, noise, None, &grid, Mode::Paper).last();
    (decoded - images).powi_scalar(2).mean().into_scalar().elem()
}

/// Draws `count` samples from seeded noise with N = 100 Euler steps.
pub fn samples<B: Backend, F: VelocityField<B>>(
    field: &F,
    count: usize,
    seed: u64,
    device: &B::Device,
) -> Tensor<B, 4> {
    let noise = normal(&mut step_rng(seed, 0), count * SIDE * SIDE);
    let x0 = tensor(noise, [count, 1, SIDE, SIDE], device);
    simulate(field, x0, None, &TimeGrid::new(ODE_STEPS, TIME_EPS), Mode::Paper).last()
}

/// Writes `[n·n, 1, 32, 32]` images in [−1, 1] as an n×n grayscale PNG grid with 2-pixel gaps.
pub fn save_grid<B: Backend>(images: Tensor<B, 4>, n: usize, path: &Path) -> anyhow::Result<()> {
    let [count, ..] = images.dims();
    anyhow::ensure!(count == n * n, "{count} images do not fill a {n}×{n} grid");
    let values: Vec<f32> = images.into_data().to_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    const GAP: usize = 2;
    let side = n * (SIDE + GAP) + GAP;
    let mut grid = image::GrayImage::new(side as u32, side as u32);
    for (k, img) in values.chunks_exact(SIDE * SIDE).enumerate() {
        let (ox, oy) = (GAP + (k % n) * (SIDE + GAP), GAP + (k / n) * (SIDE + GAP));
        for (p, v) in img.iter().enumerate() {
            let byte = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
            grid.put_pixel((ox + p % SIDE) as u32, (oy + p / SIDE) as u32, image::Luma([byte]));
        }
    }
    grid.save(path).with_context(|| format!("writing {}", path.display()))
}
