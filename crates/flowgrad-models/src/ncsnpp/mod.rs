//! NCSN++ (Song et al.) as RectifiedFlow trains it, ported from `ImageGeneration/models/ncsnpp.py`:
//! configurable, loading the original checkpoints directly, usable as a FlowGrad velocity field
//! (v(x, t) = model(x, t·999), divided by σ = t·999 with `scale_by_sigma`).

mod blocks;
pub mod checkpoint;
pub mod config;
mod fir;
mod layers;
pub mod model;
pub mod state_dict;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

pub use checkpoint::{
    WeightsChoice, ema_parameter_order, read_pytorch, read_safetensors, read_weights, write_safetensors,
};
pub use config::{Activation, CombineMethod, Embedding, NcsnppConfig, Progressive, ProgressiveInput};
pub use model::{Ncsnpp, TIME_SCALE};
pub use state_dict::{HostParam, StateDict};

/// Why an NCSN++ model could not be configured or loaded.
#[derive(Debug, thiserror::Error)]
pub enum NcsnppError {
    /// A config field is missing, malformed or describes an unsupported architecture.
    #[error("NCSN++ config `{field}`: {reason}")]
    Config {
        /// The field (original name).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not a readable checkpoint.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The weights do not fit the architecture.
    #[error(
        "weights {origin} do not match the NCSN++ config: {} missing {missing:?}, {} unexpected {unexpected:?}, {} mis-shaped {mis_shaped:?}",
        missing.len(), unexpected.len(), mis_shaped.len()
    )]
    Mismatch {
        /// Where the weights came from.
        origin: String,
        /// Model tensors absent from the weights (key and shape).
        missing: Vec<String>,
        /// Weights the model has no place for.
        unexpected: Vec<String>,
        /// Keys present with another shape.
        mis_shaped: Vec<String>,
    },
    /// `ema.shadow_params` does not have one entry per trainable parameter.
    #[error("{path}: ema.shadow_params has {shadow} tensors, but the model has {parameters} trainable parameters")]
    EmaCount {
        /// The checkpoint.
        path: PathBuf,
        /// Trainable parameters of `model`.
        parameters: usize,
        /// Entries of `shadow_params`.
        shadow: usize,
    },
    /// An EMA tensor's shape differs from the parameter it is paired with.
    #[error("{path}: ema.shadow_params[{index}] has shape {ema:?}, but its parameter {key} has {model:?}")]
    EmaShape {
        /// The checkpoint.
        path: PathBuf,
        /// Position in `shadow_params`.
        index: usize,
        /// The parameter it is paired with.
        key: String,
        /// The EMA tensor's shape.
        ema: Vec<usize>,
        /// The parameter's shape.
        model: Vec<usize>,
    },
}

impl NcsnppConfig {
    /// Reads an original config dumped as JSON (with `data` and `model` blocks), e.g. a
    /// fixture's `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self, NcsnppError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| NcsnppError::Io { path: path.to_path_buf(), source })?;
        let value = serde_json::from_str(&text)
            .map_err(|e| NcsnppError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
        Self::from_original_json(&value)
    }
}

/// A ready velocity field from a checkpoint (`.pth` training checkpoint or safetensors state
/// dict) and its config; `choice` picks EMA or raw weights of a training checkpoint.
pub fn load_ncsnpp<B: Backend>(
    checkpoint: &Path,
    config: &NcsnppConfig,
    choice: WeightsChoice,
    device: &B::Device,
) -> Result<Ncsnpp<B>, NcsnppError> {
    let weights = read_weights(checkpoint, choice)?;
    Ncsnpp::from_state_dict(config, &weights, &checkpoint.display().to_string(), device)
}
