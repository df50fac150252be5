//! Named host tensors under the original PyTorch keys, and the builder that turns them (or a
//! seeded random initialisation) into backend tensors while checking every key and shape.

use std::collections::{BTreeMap, BTreeSet};

use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::NcsnppError;

/// One f32 tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParam {
    /// Dimensions, PyTorch layout.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// A state dict: tensors by their original key (`all_modules.4.Conv_0.weight`, `sigmas`, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    /// The tensors, sorted by key.
    pub tensors: BTreeMap<String, HostParam>,
}

impl StateDict {
    /// Number of values over all tensors.
    pub fn num_values(&self) -> usize {
        self.tensors.values().map(|p| p.values.len()).sum()
    }

    /// Drops the `module.` prefix that `torch.nn.DataParallel` adds, when every key has it.
    pub fn strip_data_parallel_prefix(self) -> Self {
        const PREFIX: &str = "module.";
        if self.tensors.is_empty() || !self.tensors.keys().all(|k| k.starts_with(PREFIX)) {
            return self;
        }
        let tensors = self.tensors.into_iter().map(|(k, v)| (k[PREFIX.len()..].to_string(), v)).collect();
        Self { tensors }
    }
}

/// How a parameter is drawn when the model is built without weights.
#[derive(Debug, Clone)]
pub(crate) enum Init {
    /// N(0, σ²).
    Normal(f32),
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// These values (e.g. the `sigmas` buffer).
    Values(Vec<f32>),
}

enum Source<'a> {
    Weights { dict: &'a StateDict, used: BTreeSet<String> },
    Random { state: u64 },
}

/// Hands out the tensors of the model in the order the original registers them, from a state
/// dict (recording missing and mis-shaped keys) or from a seeded random initialisation.
pub(crate) struct Builder<'a, B: Backend> {
    device: &'a B::Device,
    source: Source<'a>,
    missing: Vec<String>,
    mis_shaped: Vec<String>,
    /// Every requested key with its shape, in request order.
    pub(crate) requested: Vec<(String, Vec<usize>)>,
}

impl<'a, B: Backend> Builder<'a, B> {
    /// Takes tensors from `dict`.
    pub(crate) fn from_state_dict(dict: &'a StateDict, device: &'a B::Device) -> Self {
        Self::new(Source::Weights { dict, used: BTreeSet::new() }, device)
    }

    /// Draws tensors from a generator seeded with `seed`.
    pub(crate) fn random(seed: u64, device: &'a B::Device) -> Self {
        Self::new(Source::Random { state: seed }, device)
    }

    fn new(source: Source<'a>, device: &'a B::Device) -> Self {
        Self { device, source, missing: vec![], mis_shaped: vec![], requested: vec![] }
    }

    /// The device tensors are created on.
    pub(crate) fn device(&self) -> &B::Device {
        self.device
    }

    /// The tensor `name` of shape `shape` (zeros as a placeholder when it is missing or
    /// mis-shaped; [`Builder::finish`] then fails).
    pub(crate) fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D], init: Init) -> Tensor<B, D> {
        self.requested.push((name.to_string(), shape.to_vec()));
        let count = shape.iter().product::<usize>();
        let values = match &mut self.source {
            Source::Weights { dict, used } => match dict.tensors.get(name) {
                None => {
                    self.missing.push(format!("{name} {shape:?}"));
                    None
                }
                Some(p) if p.shape != shape => {
                    self.mis_shaped.push(format!("{name}: file {:?}, model {shape:?}", p.shape));
                    used.insert(name.to_string());
                    None
                }
                Some(p) => {
                    used.insert(name.to_string());
                    Some(p.values.clone())
                }
            },
            Source::Random { state } => Some(match init {
                Init::Normal(std) => (0..count).map(|_| std * normal(state)).collect(),
                Init::Zeros => vec![0.0; count],
                Init::Ones => vec![1.0; count],
                Init::Values(v) => v,
            }),
        };
        let values = values.unwrap_or_else(|| vec![0.0; count]);
        Tensor::from_data(TensorData::new(values, shape), self.device)
    }

    /// Fails with every missing, unexpected and mis-shaped key at once; `origin` names the
    /// weights (a file) in the error.
    pub(crate) fn finish(self, origin: &str) -> Result<Vec<(String, Vec<usize>)>, NcsnppError> {
        let unexpected: Vec<String> = match &self.source {
            Source::Weights { dict, used } => dict.tensors.keys().filter(|k| !used.contains(*k)).cloned().collect(),
            Source::Random { .. } => vec![],
        };
        if self.missing.is_empty() && self.mis_shaped.is_empty() && unexpected.is_empty() {
            return Ok(self.requested);
        }
        Err(NcsnppError::Mismatch {
            origin: origin.to_string(),
            missing: self.missing,
            unexpected,
            mis_shaped: self.mis_shaped,
        })
    }
}

/// A standard normal draw (SplitMix64 + Box–Muller): seeded weights without an RNG dependency.
fn normal(state: &mut u64) -> f32 {
    let mut uniform = || {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (u1, u2) = (uniform(), uniform());
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
