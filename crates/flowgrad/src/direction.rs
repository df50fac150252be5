//! Global semantic directions: one control sequence learned on a batch of images (an edit with
//! `ControlSharing::Shared`) and applied to new images without further optimisation.
//!
//! A direction serialises to one safetensors buffer: the controls `[N, 1, C, H, W]`, plus as
//! metadata the parameters it was learned with (the trajectory it is only valid on) and free-form
//! labels (model, guidance, origin) for whoever stores it.

use std::collections::BTreeMap;

use burn::tensor::{Tensor, backend::AutodiffBackend};
use flowgrad_params::DirectionHeader;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::editor::{EditOutcome, Editor};
use crate::error::{FlowGradError, Result, invalid};
use crate::field::{DifferentiableField, Guidance};
use crate::params::EditParams;
use crate::state::HostTensor;

const CONTROLS: &str = "controls";

/// A learned direction: controls `[N, 1, C, H, W]` shared by every image, with the parameters of
/// the trajectory they were learned on.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalDirection {
    controls: HostTensor,
    params: EditParams,
}

impl GlobalDirection {
    /// Takes the selected controls of an edit run with `params` (which must share controls).
    pub fn from_outcome<B: AutodiffBackend>(outcome: &EditOutcome<B>, params: &EditParams) -> Result<Self> {
        Self::from_controls(outcome.controls.clone(), params.clone())
    }

    /// Wraps controls of shape `[params.steps, 1, C, H, W]`.
    pub fn from_controls(controls: HostTensor, params: EditParams) -> Result<Self> {
        params.validate()?;
        if controls.shape.len() != 5 || controls.shape[0] != params.steps || controls.shape[1] != 1 {
            let mut expected = controls.shape.clone();
            expected.resize(5, 1);
            expected[0] = params.steps;
            expected[1] = 1;
            return Err(FlowGradError::ShapeMismatch { what: "direction controls", expected, actual: controls.shape });
        }
        if controls.values.len() != controls.shape.iter().product::<usize>() {
            return Err(FlowGradError::CorruptState(format!(
                "direction controls hold {} values for shape {:?}",
                controls.values.len(),
                controls.shape
            )));
        }
        Ok(Self { controls, params })
    }

    /// The shared controls.
    pub fn controls(&self) -> &HostTensor {
        &self.controls
    }

    /// The parameters the direction was learned with; apply it with an editor using the same
    /// trajectory (steps, mode, start time, encoder).
    pub fn params(&self) -> &EditParams {
        &self.params
    }

    /// Checks that `params` follow the trajectory this direction was learned on.
    pub fn check_trajectory(&self, params: &EditParams) -> Result<()> {
        let learned = &self.params;
        let differences = [
            ("steps", learned.steps != params.steps),
            ("mode", learned.mode != params.mode),
            ("time_eps", learned.time_eps != params.time_eps),
            ("encode_solver", learned.encode_solver != params.encode_solver),
            ("encode_steps", learned.encode_steps != params.encode_steps),
        ];
        match differences.iter().find(|(_, differs)| *differs) {
            Some((name, _)) => Err(invalid(
                name,
                "differs from the value the direction was learned with: apply it with the direction's own parameters",
            )),
            None => Ok(()),
        }
    }

    /// Edits `images` along this direction: encode, then decode with the shared controls.
    pub fn apply<B: AutodiffBackend, F: DifferentiableField<B>, G: Guidance<B>>(
        &self,
        editor: &Editor<B, F, G>,
        images: Tensor<B, 4>,
    ) -> Result<Tensor<B, 4>> {
        self.check_trajectory(editor.params())?;
        editor.apply_controls(images, &self.controls)
    }

    /// Serialises to a safetensors buffer, with `labels` kept as metadata.
    pub fn to_bytes(&self, labels: &BTreeMap<String, String>) -> Result<Vec<u8>> {
        let metadata = DirectionHeader::new(self.params.clone(), labels.clone()).metadata();
        let bytes = self.controls.bytes();
        let view = TensorView::new(Dtype::F32, self.controls.shape.clone(), &bytes)
            .map_err(|e| FlowGradError::CorruptState(e.to_string()))?;
        safetensors::serialize([(CONTROLS, view)], Some(metadata))
            .map_err(|e| FlowGradError::CorruptState(e.to_string()))
    }

    /// Parses a buffer written by [`GlobalDirection::to_bytes`]; returns it with its labels.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, BTreeMap<String, String>)> {
        let corrupt = |e: &dyn std::fmt::Display| FlowGradError::CorruptState(format!("direction: {e}"));
        let header = DirectionHeader::read(bytes).map_err(|e| corrupt(&e))?;
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| corrupt(&e))?;
        let controls = HostTensor::from_view(&tensors.tensor(CONTROLS).map_err(|e| corrupt(&e))?)?;
        Ok((Self::from_controls(controls, header.params)?, header.labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direction() -> GlobalDirection {
        let params = EditParams { steps: 3, ..EditParams::default() };
        let values = (0..3 * 2 * 2).map(|i| i as f32 * 0.25 - 1.0).collect();
        GlobalDirection::from_controls(HostTensor { shape: vec![3, 1, 1, 2, 2], values }, params).unwrap()
    }

    #[test]
    fn round_trips_bit_exactly_with_labels() {
        let labels = BTreeMap::from([("model".to_string(), "fashion-mnist".to_string())]);
        let bytes = direction().to_bytes(&labels).unwrap();
        let (back, got) = GlobalDirection::from_bytes(&bytes).unwrap();
        assert_eq!(back, direction());
        assert_eq!(got, labels);
    }

    #[test]
    fn rejects_other_files_and_wrong_shapes() {
        assert!(GlobalDirection::from_bytes(b"not safetensors").is_err());
        let params = EditParams { steps: 3, ..EditParams::default() };
        let per_image = HostTensor { shape: vec![3, 2, 1, 2, 2], values: vec![0.0; 24] };
        assert!(matches!(
            GlobalDirection::from_controls(per_image, params.clone()),
            Err(FlowGradError::ShapeMismatch { .. })
        ));
        let wrong_steps = HostTensor { shape: vec![4, 1, 1, 2, 2], values: vec![0.0; 16] };
        assert!(GlobalDirection::from_controls(wrong_steps, params).is_err());
    }

    #[test]
    fn trajectory_must_match() {
        let d = direction();
        assert!(d.check_trajectory(d.params()).is_ok());
        let more_iterations = EditParams { iterations: 50, xi: 0.0, ..d.params().clone() };
        assert!(d.check_trajectory(&more_iterations).is_ok(), "optimisation settings do not matter");
        let other_steps = EditParams { steps: 4, ..d.params().clone() };
        let err = d.check_trajectory(&other_steps).unwrap_err().to_string();
        assert!(err.contains("steps"), "{err}");
    }
}
