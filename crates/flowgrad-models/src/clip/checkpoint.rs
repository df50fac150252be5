//! CLIP checkpoints as safetensors, in either layout: OpenAI's `state_dict` keys (`visual.*`,
//! `transformer.resblocks.*`, …) or Hugging Face `CLIPModel` keys (`vision_model.*`,
//! `text_model.*`, separate q/k/v projections, `[out, in]` projection matrices). Everything is
//! converted to OpenAI keys and f32 on the host, then handed to the model one tensor at a time
//! through a [`ParamSource`], which records every missing, misshaped or unused key.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::{Distribution, Tensor, TensorData, backend::Backend};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

pub use super::host::{CheckpointError, HostTensor};

/// The key layout of a checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// OpenAI `CLIP.state_dict()` keys.
    OpenAi,
    /// Hugging Face `CLIPModel` keys.
    HuggingFace,
}

/// Buffers that hold no weights and are skipped when present.
const IGNORED: [&str; 5] = [
    "input_resolution",
    "context_length",
    "vocab_size",
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
];

/// The tensors of a checkpoint under OpenAI keys, with the file's own key for each.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    tensors: BTreeMap<String, (String, HostTensor)>,
    layout: Layout,
}

fn to_f32(key: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, CheckpointError> {
    Ok(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
        other => return Err(CheckpointError::Dtype { key: key.to_string(), dtype: format!("{other:?}") }),
    })
}

impl Checkpoint {
    /// The checkpoint path text guidance was given, or [`CheckpointError::NotGiven`] naming
    /// what to provide.
    pub fn require(path: Option<&Path>) -> Result<&Path, CheckpointError> {
        path.ok_or(CheckpointError::NotGiven)
    }

    /// Reads a safetensors checkpoint in either layout (detected from its keys).
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        if !path.is_file() {
            return Err(CheckpointError::NotFound { path: path.to_path_buf() });
        }
        let read_err = |message: String| CheckpointError::Read { path: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| read_err(e.to_string()))?;
        let mut raw = BTreeMap::new();
        for (key, view) in file.tensors() {
            if IGNORED.contains(&key.as_str()) {
                continue;
            }
            let values = to_f32(&key, view.dtype(), view.data())?;
            raw.insert(key, HostTensor { shape: view.shape().to_vec(), values });
        }
        Self::from_tensors(raw)
    }

    /// Takes tensors keyed as in a file of either layout.
    pub fn from_tensors(raw: BTreeMap<String, HostTensor>) -> Result<Self, CheckpointError> {
        let hugging_face = raw.keys().any(|k| k.starts_with("vision_model.") || k.starts_with("text_model."));
        if hugging_face {
            Ok(Self { tensors: super::hf_keys::to_openai(raw)?, layout: Layout::HuggingFace })
        } else {
            Ok(Self { tensors: raw.into_iter().map(|(k, t)| (k.clone(), (k, t))).collect(), layout: Layout::OpenAi })
        }
    }

    /// The layout the file was in.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Shapes under OpenAI keys.
    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.tensors.iter().map(|(k, (_, t))| (k.clone(), t.shape.clone())).collect()
    }

    /// SHA-256 (hex, 16 characters) of the keys, shapes and values, for fingerprints.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for (key, (_, t)) in &self.tensors {
            hasher.update(key.as_bytes());
            hasher.update(format!("{:?}", t.shape).as_bytes());
            for v in &t.values {
                hasher.update(v.to_le_bytes());
            }
        }
        hex::encode(hasher.finalize())[..16].to_string()
    }
}

/// How a parameter is initialised when it is drawn at random rather than read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Init {
    /// N(0, 0.02²).
    Normal,
    /// All ones (LayerNorm scales).
    Ones,
    /// All zeros (biases).
    Zeros,
}

/// Where the model's parameters come from, by OpenAI key.
pub(crate) trait ParamSource<B: Backend> {
    /// The tensor `key` of `shape`.
    fn take<const D: usize>(&mut self, key: &str, shape: [usize; D], init: Init) -> Tensor<B, D>;
}

/// Random parameters (benchmarks, tests); seeded by the caller through the backend RNG.
pub(crate) struct RandomSource<'a, B: Backend> {
    /// Device of the tensors.
    pub device: &'a B::Device,
}

impl<B: Backend> ParamSource<B> for RandomSource<'_, B> {
    fn take<const D: usize>(&mut self, _key: &str, shape: [usize; D], init: Init) -> Tensor<B, D> {
        match init {
            Init::Normal => Tensor::random(shape, Distribution::Normal(0.0, 0.02), self.device),
            Init::Ones => Tensor::ones(shape, self.device),
            Init::Zeros => Tensor::zeros(shape, self.device),
        }
    }
}

/// Parameters read from a [`Checkpoint`]; problems are collected and reported by `finish`.
pub(crate) struct CheckpointSource<'a, B: Backend> {
    checkpoint: Checkpoint,
    device: &'a B::Device,
    missing: Vec<String>,
    misshaped: Vec<String>,
}

impl<'a, B: Backend> CheckpointSource<'a, B> {
    /// Serves the tensors of `checkpoint` on `device`.
    pub fn new(checkpoint: Checkpoint, device: &'a B::Device) -> Self {
        Self { checkpoint, device, missing: vec![], misshaped: vec![] }
    }

    /// Ok when every requested key was present with its shape and no tensor is left over.
    pub fn finish(self) -> Result<(), CheckpointError> {
        let unexpected: Vec<String> = self.checkpoint.tensors.into_values().map(|(file_key, _)| file_key).collect();
        if self.missing.is_empty() && self.misshaped.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        Err(CheckpointError::Mismatch { missing: self.missing, unexpected, misshaped: self.misshaped })
    }
}

impl<B: Backend> ParamSource<B> for CheckpointSource<'_, B> {
    fn take<const D: usize>(&mut self, key: &str, shape: [usize; D], _init: Init) -> Tensor<B, D> {
        let Some((file_key, tensor)) = self.checkpoint.tensors.remove(key) else {
            self.missing.push(key.to_string());
            return Tensor::zeros(shape, self.device);
        };
        // a scalar ([]) stands for a one-element tensor
        let scalar_ok = tensor.shape.is_empty() && shape.iter().product::<usize>() == 1;
        if tensor.shape != shape && !scalar_ok {
            self.misshaped.push(format!("{file_key}: file {:?} vs model {shape:?}", tensor.shape));
            return Tensor::zeros(shape, self.device);
        }
        Tensor::from_data(TensorData::new(tensor.values, shape), self.device)
    }
}
