//! The engine's error and the shape of a model's images: the types every module of the engine
//! shares (so none of them imports another for them).

use burn::tensor::Tensor;
use flowgrad_backend::Backend;
use flowgrad_catalog::CatalogError;

/// Errors of model loading and editing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model or guidance is not served (unknown model or class, no classifier, no CLIP).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Weights could not be loaded.
    #[error("cannot load model `{name}` from {dir}: {reason}")]
    Load {
        /// Model name.
        name: String,
        /// Folder searched.
        dir: String,
        /// Underlying error.
        reason: String,
    },
    /// The guidance does not fit the model (e.g. unknown class).
    #[error("guidance: {0}")]
    Guidance(String),
    /// Input buffers of the wrong size.
    #[error("expected {expected} values for {batch} image(s) of {shape:?}, got {actual}")]
    Shape {
        /// Per-image shape.
        shape: ImageShape,
        /// Batch size.
        batch: usize,
        /// Values needed.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// A stored direction cannot be used (not a direction, another model, another shape).
    #[error("unusable direction: {0}")]
    Direction(String),
    /// The algorithm refused (bad parameters, fingerprint mismatch, non-finite loss...).
    #[error(transparent)]
    FlowGrad(#[from] flowgrad::FlowGradError),
}

/// Channels and size of a model's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Channels (1 gray, 3 RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True for a zero-sized shape.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn batch_tensor(
        &self,
        values: &[f32],
        batch: usize,
        device: &burn::tensor::Device<Backend>,
    ) -> Result<Tensor<Backend, 4>, EngineError> {
        let expected = batch * self.len();
        if values.len() != expected || batch == 0 {
            return Err(EngineError::Shape { shape: *self, batch, expected, actual: values.len() });
        }
        Ok(flowgrad::tensor_util::from_vec(values.to_vec(), [batch, self.channels, self.height, self.width], device))
    }
}
