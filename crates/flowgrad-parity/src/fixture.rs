//! Reading fixture files: safetensors tensors and JSON configs.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use thiserror::Error;

/// Why a fixture set could not be read.
#[derive(Debug, Error)]
pub enum FixtureError {
    /// A file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file does not have the FORMAT.md layout.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A safetensors file held in memory.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads `path`.
    pub fn open(path: &Path) -> Result<Self, FixtureError> {
        let bytes = std::fs::read(path).map_err(|source| FixtureError::Io { path: path.into(), source })?;
        SafeTensors::deserialize(&bytes).map_err(|e| format_error(path, e.to_string()))?;
        Ok(Self { path: path.into(), bytes })
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated on open")
    }

    /// True when the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors().names().contains(&name)
    }

    /// Names of all tensors.
    pub fn names(&self) -> Vec<String> {
        self.tensors().names().into_iter().map(String::from).collect()
    }

    /// An f32 tensor's shape and values.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), FixtureError> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).map_err(|e| format_error(&self.path, format!("{name}: {e}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(format_error(&self.path, format!("{name}: dtype {:?}, expected F32", view.dtype())));
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((view.shape().to_vec(), values))
    }

    /// An integer tensor (I64 or I32) as i64 values.
    pub fn ints(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>), FixtureError> {
        let tensors = self.tensors();
        let view = tensors.tensor(name).map_err(|e| format_error(&self.path, format!("{name}: {e}")))?;
        let values = match view.dtype() {
            Dtype::I64 => {
                view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
            }
            Dtype::I32 => {
                view.data().chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect()
            }
            other => return Err(format_error(&self.path, format!("{name}: dtype {other:?}, expected an integer"))),
        };
        Ok((view.shape().to_vec(), values))
    }
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> Result<serde_json::Value, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|e| format_error(path, e.to_string()))
}

pub(crate) fn format_error(path: &Path, reason: String) -> FixtureError {
    FixtureError::Format { path: path.into(), reason }
}
