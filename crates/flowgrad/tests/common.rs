//! Shared helpers for the algorithm tests: a deterministic affine field and host-side references.
#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use flowgrad::analytic::AffineField;
use flowgrad::tensor_util::from_vec;

pub type B = Autodiff<Flex>;

/// Deterministic pseudo-random numbers in [-1, 1).
pub fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The analytic problem: A₀, A₁, b on images of shape [batch, 3, 2, 2].
pub struct Affine {
    pub a0: Vec<f32>,
    pub a1: Vec<f32>,
    pub b: Vec<f32>,
    pub dims: usize,
}

impl Affine {
    pub fn new(seed: u64) -> Self {
        let dims = 12;
        let scale = 1.5 / (dims as f32).sqrt();
        let a0 = noise(seed, dims * dims).iter().map(|v| v * scale).collect();
        let a1 = noise(seed + 1, dims * dims).iter().map(|v| v * 2.0 * scale).collect();
        let b = noise(seed + 2, dims);
        Self { a0, a1, b, dims }
    }

    pub fn field(&self) -> AffineField<B> {
        AffineField::new(&self.a0, &self.a1, &self.b, &Default::default())
    }

    /// A(t)·x in f64.
    pub fn apply(&self, t: f64, x: &[f64]) -> Vec<f64> {
        let d = self.dims;
        (0..d)
            .map(|i| (0..d).map(|j| (self.a0[i * d + j] as f64 + t * self.a1[i * d + j] as f64) * x[j]).sum())
            .collect()
    }

    /// A(t)ᵀ·λ in f64.
    pub fn apply_t(&self, t: f64, l: &[f64]) -> Vec<f64> {
        let d = self.dims;
        (0..d)
            .map(|j| (0..d).map(|i| (self.a0[i * d + j] as f64 + t * self.a1[i * d + j] as f64) * l[i]).sum())
            .collect()
    }
}

pub fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
    from_vec(values, shape, &Default::default())
}

pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}
