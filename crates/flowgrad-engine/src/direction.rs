//! Stored global directions: the labels written with a learned direction, and the checks made
//! before one is applied (right file, right model, right image shape).

use flowgrad::GlobalDirection;
use flowgrad_catalog::{check_direction, direction_labels};
use flowgrad_jobs::GuidanceSpec;

use crate::error::{EngineError, ImageShape};

/// Serialises `direction`, learned on `images` images of `model` towards `guidance` by
/// `learned_by` (e.g. the job id), with those facts as labels.
pub fn direction_bytes(
    direction: &GlobalDirection,
    model: &str,
    guidance: &GuidanceSpec,
    learned_by: &str,
    images: usize,
) -> Result<Vec<u8>, EngineError> {
    Ok(direction.to_bytes(&direction_labels(model, guidance, learned_by, images))?)
}

/// Reads a stored direction for `model`: a clear error when the object is not a direction, or
/// was learned on another model. With `shape`, the controls must also fit the model's images.
pub fn read_direction(bytes: &[u8], model: &str, shape: Option<ImageShape>) -> Result<GlobalDirection, EngineError> {
    check_direction(bytes, model)?;
    let (direction, _) = GlobalDirection::from_bytes(bytes).map_err(|e| EngineError::Direction(e.to_string()))?;
    if let Some(shape) = shape {
        let got = &direction.controls().shape[2..];
        if got != [shape.channels, shape.height, shape.width] {
            return Err(EngineError::Direction(format!(
                "its controls are {got:?} per step; model `{model}` works on {shape:?}"
            )));
        }
    }
    Ok(direction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgrad::{EditParams, HostTensor};

    fn stored(model: &str) -> Vec<u8> {
        let params = EditParams { steps: 2, ..EditParams::default() };
        let direction =
            GlobalDirection::from_controls(HostTensor { shape: vec![2, 1, 1, 2, 2], values: vec![0.5; 8] }, params)
                .unwrap();
        direction_bytes(&direction, model, &GuidanceSpec::Class("coat".into()), "job-1", 4).unwrap()
    }

    #[test]
    fn reads_back_for_the_same_model_and_shape() {
        let shape = ImageShape { channels: 1, height: 2, width: 2 };
        let direction = read_direction(&stored("m"), "m", Some(shape)).unwrap();
        assert_eq!(direction.controls().values, vec![0.5; 8]);
    }

    #[test]
    fn refuses_another_model_another_shape_or_another_file() {
        let err = read_direction(&stored("m"), "other", None).unwrap_err().to_string();
        assert!(err.contains("learned on model `m`"), "{err}");
        let err = read_direction(&stored("m"), "m", Some(ImageShape { channels: 3, height: 2, width: 2 }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("per step"), "{err}");
        let err = read_direction(b"\x89PNG not a direction", "m", None).unwrap_err().to_string();
        assert!(err.contains("direction"), "{err}");
    }
}
