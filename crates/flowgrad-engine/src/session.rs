//! Type-erased FlowGrad edit sessions over host buffers.

use flowgrad::{ControlState, DifferentiableField, Editor, GlobalDirection, Guidance, HostTensor, IterationRecord};

use crate::error::{EngineError, ImageShape};
use flowgrad_backend::{Backend, device};

/// The result of a finished edit, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedEdit {
    /// Edited images, `[B, C, H, W]` row-major in [-1, 1] (clamped).
    pub images: Vec<f32>,
    /// The selected controls, `[N, B or 1, C, H, W]`.
    pub controls: HostTensor,
    /// Iteration whose controls were selected.
    pub selected_iteration: usize,
    /// Objective of the selected controls (batch sum).
    pub objective: f64,
}

/// One edit (a batch of images towards one target): start, step, finish.
pub trait EditSession: Send + Sync {
    /// Encodes `images` (`[batch, C, H, W]` in [-1, 1]) and returns the state before iteration 0.
    fn start(&self, images: &[f32], batch: usize, seed: u64, stream: u64) -> Result<ControlState, EngineError>;
    /// Whether this session can continue `state` (e.g. a checkpoint): an error when it was made by
    /// another model, weights, guidance or parameters.
    fn can_resume(&self, state: &ControlState) -> Result<(), EngineError>;
    /// Runs exactly one FlowGrad iteration.
    fn step(&self, state: &mut ControlState) -> Result<IterationRecord, EngineError>;
    /// True when all iterations ran.
    fn is_finished(&self, state: &ControlState) -> bool;
    /// Decodes the selected controls.
    fn finish(&self, state: &ControlState) -> Result<FinishedEdit, EngineError>;
    /// Edits `images` along `direction` (encode, decode with its controls; no optimisation) and
    /// returns them clamped to [-1, 1]. The session must use the direction's trajectory.
    fn apply(&self, direction: &GlobalDirection, images: &[f32], batch: usize) -> Result<Vec<f32>, EngineError>;
}

/// [`EditSession`] over a concrete editor.
pub(crate) struct Session<F: DifferentiableField<Backend>, G> {
    pub(crate) editor: Editor<Backend, F, G>,
    pub(crate) shape: ImageShape,
}

impl<F, G> EditSession for Session<F, G>
where
    F: DifferentiableField<Backend> + Send + Sync,
    F::Values: Send + Sync,
    G: Guidance<Backend> + Send + Sync,
{
    fn start(&self, images: &[f32], batch: usize, seed: u64, stream: u64) -> Result<ControlState, EngineError> {
        let tensor = self.shape.batch_tensor(images, batch, &device())?;
        Ok(self.editor.start(tensor, seed, stream)?)
    }

    fn can_resume(&self, state: &ControlState) -> Result<(), EngineError> {
        Ok(self.editor.check_state(state)?)
    }

    fn step(&self, state: &mut ControlState) -> Result<IterationRecord, EngineError> {
        Ok(self.editor.step(state)?)
    }

    fn is_finished(&self, state: &ControlState) -> bool {
        self.editor.is_finished(state)
    }

    fn finish(&self, state: &ControlState) -> Result<FinishedEdit, EngineError> {
        let outcome = self.editor.finish(state)?;
        Ok(FinishedEdit {
            images: flowgrad::tensor_util::to_vec(outcome.images.inner().clamp(-1.0, 1.0)),
            controls: outcome.controls,
            selected_iteration: outcome.selected_iteration,
            objective: outcome.objective,
        })
    }

    fn apply(&self, direction: &GlobalDirection, images: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        let tensor = self.shape.batch_tensor(images, batch, &device())?;
        let edited = direction.apply(&self.editor, tensor)?;
        Ok(flowgrad::tensor_util::to_vec(edited.inner().clamp(-1.0, 1.0)))
    }
}
