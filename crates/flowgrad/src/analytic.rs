//! An analytic velocity field v(x, t) = (A₀ + t·A₁)·x + b on flattened images: its Jacobian is
//! known in closed form, which makes it the reference for gradient tests and a model-free demo.

use burn::tensor::{
    Tensor,
    backend::{AutodiffBackend, Backend},
};

use crate::field::{DifferentiableField, VelocityField};
use crate::state::digest_f32;
use crate::tensor_util::from_vec;

/// Affine, time-dependent field on images of `dims = C·H·W` elements.
#[derive(Debug, Clone)]
pub struct AffineField<B: Backend> {
    a0_t: Tensor<B, 2>,
    a1_t: Tensor<B, 2>,
    b: Tensor<B, 2>,
    fingerprint: String,
}

impl<B: Backend> AffineField<B> {
    /// Builds the field from row-major `A₀`, `A₁` (`dims × dims`) and `b` (`dims`).
    pub fn new(a0: &[f32], a1: &[f32], b: &[f32], device: &B::Device) -> Self {
        let d = b.len();
        assert_eq!(a0.len(), d * d, "A0 must be dims × dims");
        assert_eq!(a1.len(), d * d, "A1 must be dims × dims");
        let fingerprint = format!("affine:{}", digest_f32(&[a0, a1, b].concat()));
        Self {
            a0_t: from_vec::<B, 2>(a0.to_vec(), [d, d], device).transpose(),
            a1_t: from_vec::<B, 2>(a1.to_vec(), [d, d], device).transpose(),
            b: from_vec(b.to_vec(), [1, d], device),
            fingerprint,
        }
    }
}

impl<B: Backend> VelocityField<B> for AffineField<B> {
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let shape = x.dims();
        let flat: Tensor<B, 2> = x.reshape([shape[0] as i32, -1]);
        let t: Tensor<B, 2> = t.reshape([shape[0], 1]);
        let v = flat.clone().matmul(self.a0_t.clone()) + flat.matmul(self.a1_t.clone()) * t + self.b.clone();
        v.reshape(shape)
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

impl<B: AutodiffBackend> DifferentiableField<B> for AffineField<B> {
    type Values = AffineField<B::InnerBackend>;
    fn values(&self) -> Self::Values {
        AffineField {
            a0_t: self.a0_t.clone().inner(),
            a1_t: self.a1_t.clone().inner(),
            b: self.b.clone().inner(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}
