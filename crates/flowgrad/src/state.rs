//! The resumable state of one edit: controls, iteration, history, seeds and fingerprint.
//! It serialises to one safetensors buffer (tensors + JSON metadata) for checkpoints.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::host::HostTensor;

use crate::error::{FlowGradError, Result};
use crate::trust::TrustRegion;

/// Version of the serialised layout; bumped on incompatible changes.
pub const STATE_FORMAT: u32 = 1;
const METADATA_KEY: &str = "flowgrad.state";

/// What one iteration measured (the objective is evaluated at the controls before its update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    /// 0-based iteration index.
    pub iteration: usize,
    /// Objective summed over the batch: η·guidance + (1 − η)·faithfulness + λ·energy.
    pub objective: f64,
    /// Guidance loss summed over the batch.
    pub guidance: f64,
    /// Mean absolute difference to the input, summed over the batch.
    pub faithfulness: f64,
    /// Σ_k ‖u_k‖² over all controls.
    pub energy: f64,
    /// η·guidance + (1 − η)·faithfulness of each image (without the energy term).
    pub per_image: Vec<f64>,
    /// Segments of the non-uniform grid (= VJPs of the backward pass; 0 when every trial of a
    /// trust-region iteration was rejected and no gradient was needed).
    pub segments: usize,
    /// Trust-region rule: whether each control entry accepted this iteration's controls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<bool>,
    /// Trust-region rule: each entry's radius for the next trial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub radius: Vec<f32>,
}

/// The lowest-objective controls seen so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BestControls {
    /// Iteration whose starting controls these are (M = the final controls).
    pub iteration: usize,
    /// Their objective.
    pub objective: f64,
    /// The controls, `[N, B or 1, C, H, W]`.
    pub controls: HostTensor,
}

/// Everything needed to continue an edit on any machine, bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlState {
    /// Completed iterations.
    pub iteration: usize,
    /// Controls u, `[N, B or 1, C, H, W]`.
    pub controls: HostTensor,
    /// Encoded noise x_0 of the input, `[B, C, H, W]`.
    pub x0: HostTensor,
    /// The input images x_q, `[B, C, H, W]`.
    pub original: HostTensor,
    /// One record per completed iteration.
    pub history: Vec<IterationRecord>,
    /// Best controls so far (gradient rule, when the editor selects the best).
    pub best: Option<BestControls>,
    /// The trust-region rule's radii, accepted controls and directions (after iteration 0).
    pub trust: Option<TrustRegion>,
    /// Job seed.
    pub seed: u64,
    /// Stream id (e.g. a hash of the task's inputs): part of the fingerprint, so a checkpoint
    /// belongs to one task; the randomness does not depend on it (see [`ControlState::iteration_seed`]).
    pub stream: u64,
    /// Digest of model, guidance, parameters, input, seed and stream.
    pub fingerprint: String,
}

#[derive(Serialize, Deserialize)]
struct StateMetadata {
    format: u32,
    iteration: usize,
    history: Vec<IterationRecord>,
    best_iteration: Option<usize>,
    best_objective: Option<f64>,
    seed: u64,
    stream: u64,
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust: Option<TrustMetadata>,
}

/// The trust region's non-tensor fields.
#[derive(Serialize, Deserialize)]
struct TrustMetadata {
    radius: Vec<f32>,
    accepted_objective: Vec<f64>,
    accepted_iteration: Vec<usize>,
}

impl ControlState {
    /// Seed of the randomness of `iteration`: a SplitMix64 mix of the job seed and iteration, so
    /// the RNG state never needs to be stored and a resumed edit draws the same numbers. It is
    /// the same for every task of a job (the stream is left out), so that an image edited in a
    /// batch sees the same random guidance views as edited alone: batching does not change it.
    pub fn iteration_seed(&self, iteration: usize) -> u64 {
        let mut z = self.seed ^ splitmix(iteration as u64 ^ 0xA5A5_A5A5);
        z = splitmix(z);
        z
    }

    /// Serialises to a safetensors buffer with the non-tensor fields as JSON metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let meta = StateMetadata {
            format: STATE_FORMAT,
            iteration: self.iteration,
            history: self.history.clone(),
            best_iteration: self.best.as_ref().map(|b| b.iteration),
            best_objective: self.best.as_ref().map(|b| b.objective),
            seed: self.seed,
            stream: self.stream,
            fingerprint: self.fingerprint.clone(),
            trust: self.trust.as_ref().map(|t| TrustMetadata {
                radius: t.radius.clone(),
                accepted_objective: t.accepted_objective.clone(),
                accepted_iteration: t.accepted_iteration.clone(),
            }),
        };
        let json = serde_json::to_string(&meta).map_err(|e| FlowGradError::CorruptState(e.to_string()))?;
        let mut named: Vec<(&str, &HostTensor)> =
            vec![("controls", &self.controls), ("x0", &self.x0), ("original", &self.original)];
        if let Some(best) = &self.best {
            named.push(("best_controls", &best.controls));
        }
        if let Some(trust) = &self.trust {
            named.push(("trust_accepted", &trust.accepted));
            named.push(("trust_direction", &trust.direction));
        }
        let buffers: Vec<(String, Vec<usize>, Vec<u8>)> =
            named.into_iter().map(|(name, t)| (name.to_string(), t.shape.clone(), t.bytes())).collect();
        let views = buffers
            .iter()
            .map(|(name, shape, bytes)| TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (name.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| FlowGradError::CorruptState(e.to_string()))?;
        let metadata = HashMap::from([(METADATA_KEY.to_string(), json)]);
        safetensors::serialize(views, Some(metadata)).map_err(|e| FlowGradError::CorruptState(e.to_string()))
    }

    /// Parses a buffer written by [`ControlState::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |e: &dyn std::fmt::Display| FlowGradError::CorruptState(e.to_string());
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(&e))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| FlowGradError::CorruptState(format!("missing `{METADATA_KEY}` metadata")))?;
        let meta: StateMetadata = serde_json::from_str(json).map_err(|e| corrupt(&e))?;
        if meta.format != STATE_FORMAT {
            return Err(FlowGradError::CorruptState(format!(
                "state format {} is not supported (expected {STATE_FORMAT})",
                meta.format
            )));
        }
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| corrupt(&e))?;
        let read = |name: &str| -> Result<HostTensor> {
            HostTensor::from_view(&tensors.tensor(name).map_err(|e| corrupt(&e))?)
        };
        let best = match (meta.best_iteration, meta.best_objective) {
            (Some(iteration), Some(objective)) => {
                Some(BestControls { iteration, objective, controls: read("best_controls")? })
            }
            _ => None,
        };
        let trust = match meta.trust {
            Some(t) => Some(TrustRegion {
                radius: t.radius,
                accepted_objective: t.accepted_objective,
                accepted_iteration: t.accepted_iteration,
                accepted: read("trust_accepted")?,
                direction: read("trust_direction")?,
            }),
            None => None,
        };
        Ok(Self {
            iteration: meta.iteration,
            controls: read("controls")?,
            x0: read("x0")?,
            original: read("original")?,
            history: meta.history,
            best,
            trust,
            seed: meta.seed,
            stream: meta.stream,
            fingerprint: meta.fingerprint,
        })
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hex SHA-256 of f32 values (bit patterns), for fingerprints.
pub fn digest_f32(values: &[f32]) -> String {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Hex SHA-256 of a list of text parts (length-prefixed, so parts cannot run together).
pub fn digest_parts(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}
