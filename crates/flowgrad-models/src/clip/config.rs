//! The shape of a CLIP model (the constructor arguments of the original `CLIP` with a ViT
//! image tower), with the ViT-B/32 preset and inference from checkpoint tensor shapes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::checkpoint::CheckpointError;

/// Constructor arguments of a ViT CLIP; every tower shape derives from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Width of the joint image/text embedding.
    pub embed_dim: usize,
    /// Side of the (square) input image.
    pub image_resolution: usize,
    /// Residual blocks of the vision transformer.
    pub vision_layers: usize,
    /// Width of the vision transformer.
    pub vision_width: usize,
    /// Side of the square patches (kernel and stride of `conv1`).
    pub vision_patch_size: usize,
    /// Attention heads of the vision transformer (the original uses width / 64).
    pub vision_heads: usize,
    /// Text positions (77).
    pub context_length: usize,
    /// Token vocabulary (49408).
    pub vocab_size: usize,
    /// Width of the text transformer.
    pub transformer_width: usize,
    /// Attention heads of the text transformer.
    pub transformer_heads: usize,
    /// Residual blocks of the text transformer.
    pub transformer_layers: usize,
}

impl ClipConfig {
    /// OpenAI's ViT-B/32, the model FlowGrad edits with.
    pub fn vit_b32() -> Self {
        Self {
            embed_dim: 512,
            image_resolution: 224,
            vision_layers: 12,
            vision_width: 768,
            vision_patch_size: 32,
            vision_heads: 12,
            context_length: 77,
            vocab_size: 49408,
            transformer_width: 512,
            transformer_heads: 8,
            transformer_layers: 12,
        }
    }

    /// Reads the original constructor arguments from a JSON object (`embed_dim`,
    /// `image_resolution`, `vision_layers`, `vision_width`, `vision_patch_size`,
    /// `context_length`, `vocab_size`, `transformer_width`, `transformer_heads`,
    /// `transformer_layers`), like the `model` block of a fixture's config.json. The vision
    /// heads come from a key starting with `vision_heads` if there is one, else width / 64.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let field = |key: &str| {
            value[key].as_u64().map(|v| v as usize).ok_or_else(|| format!("`{key}` must be a non-negative integer"))
        };
        let vision_width = field("vision_width")?;
        let vision_heads = match value.as_object().and_then(|o| o.iter().find(|(k, _)| k.starts_with("vision_heads"))) {
            Some((key, v)) => {
                v.as_u64().map(|v| v as usize).ok_or_else(|| format!("`{key}` must be a non-negative integer"))?
            }
            None => (vision_width / 64).max(1),
        };
        Ok(Self {
            embed_dim: field("embed_dim")?,
            image_resolution: field("image_resolution")?,
            vision_layers: field("vision_layers")?,
            vision_width,
            vision_patch_size: field("vision_patch_size")?,
            vision_heads,
            context_length: field("context_length")?,
            vocab_size: field("vocab_size")?,
            transformer_width: field("transformer_width")?,
            transformer_heads: field("transformer_heads")?,
            transformer_layers: field("transformer_layers")?,
        })
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_resolution / self.vision_patch_size
    }

    /// Infers the shape from OpenAI-layout tensor shapes the way the original `build_model`
    /// does; heads are not stored, so both towers get width / 64 (at least 1).
    pub fn infer(shapes: &HashMap<String, Vec<usize>>) -> Result<Self, CheckpointError> {
        let dim = |key: &str, axis: usize| {
            shapes
                .get(key)
                .and_then(|s| s.get(axis).copied())
                .ok_or_else(|| CheckpointError::Missing { keys: vec![key.to_string()] })
        };
        let count = |prefix: &str| {
            shapes
                .keys()
                .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok())
                .max()
                .map_or(0, |m| m + 1)
        };
        let vision_width = dim("visual.conv1.weight", 0)?;
        let vision_patch_size = dim("visual.conv1.weight", 3)?;
        let positions = dim("visual.positional_embedding", 0)?;
        let grid = ((positions.saturating_sub(1)) as f64).sqrt().round() as usize;
        let transformer_width = dim("ln_final.weight", 0)?;
        Ok(Self {
            embed_dim: dim("text_projection", 1)?,
            image_resolution: grid * vision_patch_size,
            vision_layers: count("visual.transformer.resblocks."),
            vision_width,
            vision_patch_size,
            vision_heads: (vision_width / 64).max(1),
            context_length: dim("positional_embedding", 0)?,
            vocab_size: dim("token_embedding.weight", 0)?,
            transformer_width,
            transformer_heads: (transformer_width / 64).max(1),
            transformer_layers: count("transformer.resblocks."),
        })
    }
}
