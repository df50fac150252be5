//! Host-side randomness for training: per-step seeded RNGs, batches, Gaussian noise.

use burn::tensor::{Tensor, TensorData, backend::Backend};
use flowgrad_models::fashion::{FashionMnist, RAW_SIDE, padded_batch, to_padded};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The RNG of training step `step`: a function of (seed, step) only, so a resumed run draws
/// exactly the batches, noise and times an uninterrupted one would.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step as u64);
    rng
}

/// `batch` image indices drawn uniformly (with replacement) from `0..len`.
pub fn sample_indices(rng: &mut impl Rng, len: usize, batch: usize) -> Vec<usize> {
    (0..batch).map(|_| rng.random_range(0..len)).collect()
}

/// `n` standard normal samples (Box–Muller).
pub fn normal(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f32 = 1.0 - rng.random::<f32>();
        let u2: f32 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f32::consts::PI * u2;
        out.push(r * theta.cos());
        out.push(r * theta.sin());
    }
    out.truncate(n);
    out
}

/// `[n]` floats as a tensor of `shape`.
pub fn tensor<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Images `indices` as a `[B, 1, 32, 32]` batch, each mirrored left–right with probability
/// ½ when `mirror` is set (light augmentation for the classifiers).
pub fn image_batch<B: Backend>(
    data: &FashionMnist,
    indices: &[usize],
    mirror: bool,
    rng: &mut impl Rng,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut values = Vec::new();
    for &i in indices {
        let raw = data.raw(i);
        if mirror && rng.random::<bool>() {
            let flipped: Vec<u8> = raw.chunks_exact(RAW_SIDE).flat_map(|row| row.iter().rev().copied()).collect();
            values.extend(to_padded(&flipped));
        } else {
            values.extend(to_padded(raw));
        }
    }
    padded_batch(values, device)
}
