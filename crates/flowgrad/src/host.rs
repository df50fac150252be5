//! Tensors held on the host: bit-exact, serialisable, and moved to and from any backend.

use burn::tensor::{Tensor, backend::Backend};
use safetensors::{Dtype, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{FlowGradError, Result};
use crate::tensor_util::{from_vec, to_vec};

/// A float tensor held on the host, bit-exact and serialisable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl HostTensor {
    /// Copies a device tensor to the host.
    pub fn from_tensor<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Self {
        let shape = tensor.dims().to_vec();
        Self { shape, values: to_vec(tensor) }
    }

    /// Uploads to `device` as a `D`-dimensional tensor.
    pub fn to_tensor<B: Backend, const D: usize>(&self, device: &B::Device) -> Result<Tensor<B, D>> {
        let shape: [usize; D] =
            self.shape.clone().try_into().map_err(|_| {
                FlowGradError::CorruptState(format!("expected a {D}-d tensor, got shape {:?}", self.shape))
            })?;
        Ok(from_vec(self.values.clone(), shape, device))
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    pub(crate) fn from_view(view: &TensorView<'_>) -> Result<Self> {
        if view.dtype() != Dtype::F32 {
            return Err(FlowGradError::CorruptState(format!("tensor dtype {:?}, expected F32", view.dtype())));
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Self { shape: view.shape().to_vec(), values })
    }
}
