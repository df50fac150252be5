//! Global semantic directions: one control sequence learned on a batch of images and applied to
//! new images without further optimisation.

use burn::tensor::{Tensor, backend::AutodiffBackend};

use crate::editor::{EditOutcome, Editor};
use crate::error::{FlowGradError, Result};
use crate::field::{Guidance, VelocityField};
use crate::state::HostTensor;

/// A learned direction: controls `[N, 1, C, H, W]` shared by every image.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalDirection {
    controls: HostTensor,
}

impl GlobalDirection {
    /// Takes the selected controls of an edit trained with `ControlSharing::Shared`.
    pub fn from_outcome<B: AutodiffBackend>(outcome: &EditOutcome<B>) -> Result<Self> {
        Self::from_controls(outcome.controls.clone())
    }

    /// Wraps controls that must have batch dimension 1.
    pub fn from_controls(controls: HostTensor) -> Result<Self> {
        if controls.shape.len() != 5 || controls.shape[1] != 1 {
            let mut expected = controls.shape.clone();
            expected.resize(5, 1);
            expected[1] = 1;
            return Err(FlowGradError::ShapeMismatch { what: "direction controls", expected, actual: controls.shape });
        }
        Ok(Self { controls })
    }

    /// The shared controls.
    pub fn controls(&self) -> &HostTensor {
        &self.controls
    }

    /// Edits `images` along this direction: encode, then decode with the shared controls.
    pub fn apply<B: AutodiffBackend, F: VelocityField<B>, G: Guidance<B>>(
        &self,
        editor: &Editor<B, F, G>,
        images: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>> {
        editor.apply_controls(images, &self.controls)
    }
}
