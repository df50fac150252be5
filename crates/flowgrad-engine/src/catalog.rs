//! Which models a fleet serves besides the bundled one: the `[models]` configuration section
//! shared by workers (which load them) and coordinators (which validate jobs against them).

use std::path::PathBuf;

use serde::Deserialize;

/// Name under which a configured NCSN++ rectified flow is served.
pub const NCSNPP_MODEL: &str = "ncsnpp";

/// Optional models (`[models]`): an NCSN++ checkpoint and a CLIP checkpoint for text guidance.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCatalog {
    /// A RectifiedFlow NCSN++ model (`[models.ncsnpp]`), served as model `ncsnpp`.
    #[serde(default)]
    pub ncsnpp: Option<NcsnppSource>,
    /// A CLIP model (`[models.clip]`) enabling `{ text = "..." }` guidance for every model.
    #[serde(default)]
    pub clip: Option<ClipSource>,
}

/// Where an NCSN++ model's weights and configuration are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcsnppSource {
    /// A RectifiedFlow training checkpoint (`.pth`) or a safetensors state dict.
    pub checkpoint: PathBuf,
    /// The original config dumped as JSON (default: the CelebA-HQ 256² config).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// `ema` (default) or `model` weights of a training checkpoint.
    #[serde(default = "ema")]
    pub weights: String,
}

fn ema() -> String {
    "ema".into()
}

/// Where a CLIP model's weights are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipSource {
    /// OpenAI or Hugging Face `CLIPModel` safetensors.
    pub checkpoint: PathBuf,
    /// A config JSON with the constructor arguments (default: inferred from the tensor shapes,
    /// right for every OpenAI ViT model).
    #[serde(default)]
    pub config: Option<PathBuf>,
}
