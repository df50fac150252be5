//! CLIP with a ViT image tower and a causal text transformer, as in OpenAI's `clip/model.py`.
//! One code path for every shape: ViT-B/32, the tiny fixture models, anything in between.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::checkpoint::{Checkpoint, CheckpointError, CheckpointSource, Init, ParamSource, RandomSource};
use super::config::ClipConfig;
use super::layers::{LayerNorm, Transformer, frozen};
use crate::weights::seeded_init;

/// The image tower: patch conv, class token, positions, ln_pre, transformer, ln_post on the
/// class token, projection.
#[derive(Module, Debug)]
pub struct VisionTower<B: Backend> {
    conv1: Param<Tensor<B, 4>>,
    class_embedding: Param<Tensor<B, 1>>,
    positional_embedding: Param<Tensor<B, 2>>,
    ln_pre: LayerNorm<B>,
    transformer: Transformer<B>,
    ln_post: LayerNorm<B>,
    proj: Param<Tensor<B, 2>>,
    patch: usize,
}

impl<B: Backend> VisionTower<B> {
    fn load(source: &mut impl ParamSource<B>, c: &ClipConfig) -> Self {
        let w = c.vision_width;
        Self {
            class_embedding: frozen(source.take("visual.class_embedding", [w], Init::Normal)),
            positional_embedding: frozen(source.take(
                "visual.positional_embedding",
                [c.grid() * c.grid() + 1, w],
                Init::Normal,
            )),
            proj: frozen(source.take("visual.proj", [w, c.embed_dim], Init::Normal)),
            conv1: frozen(source.take(
                "visual.conv1.weight",
                [w, 3, c.vision_patch_size, c.vision_patch_size],
                Init::Normal,
            )),
            ln_pre: LayerNorm::load(source, "visual.ln_pre", w),
            transformer: Transformer::load(source, "visual.transformer", w, c.vision_layers, c.vision_heads),
            ln_post: LayerNorm::load(source, "visual.ln_post", w),
            patch: c.vision_patch_size,
        }
    }

    /// Image features `[N, E]` of normalised images `[N, 3, R, R]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let p = self.patch;
        let x = conv2d(images, self.conv1.val(), None, ConvOptions::new([p, p], [0, 0], [1, 1], 1));
        let [n, w, gh, gw] = x.dims();
        let x = x.reshape([n, w, gh * gw]).swap_dims(1, 2);
        let class = Tensor::cat(vec![self.class_embedding.val().reshape([1, 1, w]); n], 0);
        let x = Tensor::cat(vec![class, x], 1) + self.positional_embedding.val().unsqueeze();
        let x = self.transformer.forward(self.ln_pre.forward(x), None);
        let first = x.slice([0..n, 0..1, 0..w]).reshape([n, w]);
        self.ln_post.forward(first).matmul(self.proj.val())
    }
}

/// The text tower: token + position embeddings, causal transformer, ln_final, pooling at the
/// first occurrence of the largest token id (the end token), projection.
#[derive(Module, Debug)]
pub struct TextTower<B: Backend> {
    token_embedding: Param<Tensor<B, 2>>,
    positional_embedding: Param<Tensor<B, 2>>,
    transformer: Transformer<B>,
    ln_final: LayerNorm<B>,
    text_projection: Param<Tensor<B, 2>>,
}

impl<B: Backend> TextTower<B> {
    fn load(source: &mut impl ParamSource<B>, c: &ClipConfig) -> Self {
        let w = c.transformer_width;
        Self {
            positional_embedding: frozen(source.take("positional_embedding", [c.context_length, w], Init::Normal)),
            text_projection: frozen(source.take("text_projection", [w, c.embed_dim], Init::Normal)),
            transformer: Transformer::load(source, "transformer", w, c.transformer_layers, c.transformer_heads),
            token_embedding: frozen(source.take("token_embedding.weight", [c.vocab_size, w], Init::Normal)),
            ln_final: LayerNorm::load(source, "ln_final", w),
        }
    }

    /// Text features `[T, E]` of token rows (each `context_length` long).
    pub fn forward(&self, rows: &[Vec<u32>]) -> Tensor<B, 2> {
        let device = self.token_embedding.device();
        let (t, l) = (rows.len(), rows.first().map_or(0, Vec::len));
        let ids: Vec<i64> = rows.iter().flatten().map(|&id| id as i64).collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [t * l]), &device);
        let w = self.positional_embedding.dims()[1];
        let x = self.token_embedding.val().select(0, ids).reshape([t, l, w])
            + self.positional_embedding.val().slice([0..l, 0..w]).unsqueeze();
        let mask: Vec<f32> = (0..l * l).map(|i| if i % l > i / l { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_data(TensorData::new(mask, [l, l]), &device);
        let x = self.ln_final.forward(self.transformer.forward(x, Some(mask)));
        // argmax: the first position holding the row's largest id
        let pooled: Vec<i64> = rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let max = row.iter().copied().max().unwrap_or(0);
                (r * l + row.iter().position(|&id| id == max).unwrap_or(0)) as i64
            })
            .collect();
        let pooled = Tensor::<B, 1, Int>::from_data(TensorData::new(pooled, [t]), &device);
        x.reshape([t * l, w]).select(0, pooled).matmul(self.text_projection.val())
    }
}

/// Both towers and the logit scale.
#[derive(Module, Debug)]
pub struct ClipNet<B: Backend> {
    visual: VisionTower<B>,
    text: TextTower<B>,
    logit_scale: Param<Tensor<B, 1>>,
}

impl<B: Backend> ClipNet<B> {
    fn load(source: &mut impl ParamSource<B>, c: &ClipConfig) -> Self {
        Self {
            logit_scale: frozen(source.take("logit_scale", [1], Init::Zeros)),
            visual: VisionTower::load(source, c),
            text: TextTower::load(source, c),
        }
    }
}

/// A frozen CLIP model with its configuration and a digest of its weights.
#[derive(Debug, Clone)]
pub struct ClipModel<B: Backend> {
    net: ClipNet<B>,
    config: ClipConfig,
    digest: String,
}

impl<B: Backend> ClipModel<B> {
    /// Loads a safetensors checkpoint (OpenAI or Hugging Face layout) into a model of shape
    /// `config`; any missing, unexpected or misshaped tensor is an error naming the keys.
    pub fn load(path: &Path, config: &ClipConfig, device: &B::Device) -> Result<Self, CheckpointError> {
        Self::from_checkpoint(Checkpoint::read(path)?, config, device)
    }

    /// Like [`ClipModel::load`], with the shape inferred from the tensors as the original
    /// `build_model` does (heads = width / 64: right for every OpenAI ViT model).
    pub fn load_inferred(path: &Path, device: &B::Device) -> Result<Self, CheckpointError> {
        let checkpoint = Checkpoint::read(path)?;
        let config = ClipConfig::infer(&checkpoint.shapes())?;
        Self::from_checkpoint(checkpoint, &config, device)
    }

    /// Builds the model of shape `config` from checkpoint tensors (strictly).
    pub fn from_checkpoint(
        checkpoint: Checkpoint,
        config: &ClipConfig,
        device: &B::Device,
    ) -> Result<Self, CheckpointError> {
        let digest = checkpoint.digest();
        let mut source = CheckpointSource::new(checkpoint, device);
        let net = ClipNet::load(&mut source, config);
        source.finish()?;
        Ok(Self { net, config: config.clone(), digest })
    }

    /// A model of shape `config` with seeded random weights (N(0, 0.02²), LayerNorms at 1/0).
    pub fn random(config: &ClipConfig, seed: u64, device: &B::Device) -> Self {
        let net = seeded_init(device, seed, || ClipNet::load(&mut RandomSource { device }, config));
        Self { net, config: config.clone(), digest: format!("random-{seed}") }
    }

    /// The model's shape.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Digest of the weights (or of the seed for random models), for fingerprints.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// exp(logit_scale), the factor between cosines and logits.
    pub fn logit_scale(&self) -> Tensor<B, 1> {
        self.net.logit_scale.val().exp()
    }

    /// `encode_image`: features `[N, E]` (not normalised) of CLIP-normalised images `[N, 3, R, R]`.
    pub fn encode_image(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.net.visual.forward(images)
    }

    /// `encode_text`: features `[T, E]` (not normalised) of token rows from [`super::Tokenizer::tokenize`].
    pub fn encode_text(&self, rows: &[Vec<u32>]) -> Tensor<B, 2> {
        self.net.text.forward(rows)
    }

    /// Cosine similarities `[N, T]` between images and token rows (`logits_per_image / logit scale`).
    pub fn cosine(&self, images: Tensor<B, 4>, rows: &[Vec<u32>]) -> Tensor<B, 2> {
        normalize(self.encode_image(images)).matmul(normalize(self.encode_text(rows)).transpose())
    }
}

/// Rows divided by their L2 norm.
pub fn normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}
