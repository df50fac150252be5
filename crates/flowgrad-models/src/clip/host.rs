//! The host side of a CLIP checkpoint, shared by its reader and its key converters: tensors as
//! f32 values with their shapes, and why a checkpoint cannot be used.

use std::path::PathBuf;

/// Why a CLIP checkpoint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Text guidance was asked for without a CLIP checkpoint.
    #[error(
        "text guidance needs a CLIP checkpoint: give the path of a CLIP ViT checkpoint as safetensors, either a Hugging Face \
         `CLIPModel` model.safetensors (e.g. openai/clip-vit-base-patch32) or an OpenAI state_dict saved with safetensors"
    )]
    NotGiven,
    /// No checkpoint file at the path.
    #[error(
        "CLIP checkpoint {path} not found: provide a CLIP ViT checkpoint as safetensors, either a Hugging Face \
         `CLIPModel` model.safetensors (e.g. openai/clip-vit-base-patch32) or an OpenAI state_dict saved with safetensors"
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file cannot be read or is not safetensors.
    #[error("cannot read CLIP checkpoint {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tensor has a dtype other than f32, f16, bf16 or f64.
    #[error("CLIP checkpoint tensor `{key}` has unsupported dtype {dtype}")]
    Dtype {
        /// The key.
        key: String,
        /// Its dtype.
        dtype: String,
    },
    /// Keys the model needs are absent (e.g. to infer its shape).
    #[error("CLIP checkpoint lacks {keys:?}")]
    Missing {
        /// The absent keys.
        keys: Vec<String>,
    },
    /// The tensors do not match the model.
    #[error(
        "CLIP checkpoint does not match the model: missing {missing:?}, unexpected {unexpected:?}, misshaped {misshaped:?}"
    )]
    Mismatch {
        /// Keys the model needs that the file lacks (OpenAI names).
        missing: Vec<String>,
        /// Keys of the file the model does not use (names as in the file).
        unexpected: Vec<String>,
        /// `key: file shape vs model shape` for tensors of the wrong shape.
        misshaped: Vec<String>,
    },
}

/// A tensor on the host: shape and f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape (`[]` for scalars).
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}
