//! Small conversions between burn tensors and host vectors.

use burn::tensor::{Tensor, TensorData, backend::Backend};

/// Copies a float tensor to a host `Vec<f32>` (row-major).
pub fn to_vec<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().into_vec::<f32>().expect("float tensor converts to f32")
}

/// Builds a float tensor from host data.
pub fn from_vec<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Reads a one-element tensor as f64.
pub fn scalar<B: Backend>(tensor: Tensor<B, 1>) -> f64 {
    to_vec(tensor)[0] as f64
}
