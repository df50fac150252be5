//! The guidance losses a session can optimise, behind one type: a class of the model's guidance
//! classifier, or a CLIP text prompt.

use burn::tensor::Tensor;
use flowgrad::{Guidance, GuidanceContext};
use flowgrad_models::clip::{AugmentConfig, ClipGuidance, ClipModel, Tokenizer};
use flowgrad_models::{ClassGuidance, Classifier};

use crate::error::EngineError;
use flowgrad_backend::Backend;

/// CLIP guidance towards a prompt for images of any channel count (gray is replicated to RGB).
#[derive(Debug, Clone)]
pub struct TextGuidance {
    clip: ClipGuidance<Backend>,
}

impl TextGuidance {
    /// Encodes `prompt` with `model` (FlowGrad's augmented loss with the default augmentations).
    pub fn new(model: &ClipModel<Backend>, tokenizer: &Tokenizer, prompt: &str) -> Result<Self, EngineError> {
        let clip = ClipGuidance::new(model, tokenizer, prompt, AugmentConfig::default())
            .map_err(|e| EngineError::Guidance(e.to_string()))?;
        Ok(Self { clip })
    }

    fn rgb(images: Tensor<Backend, 4>) -> Tensor<Backend, 4> {
        match images.dims()[1] {
            1 => Tensor::cat(vec![images.clone(), images.clone(), images], 1),
            _ => images,
        }
    }

    /// Per-image cosine between the (un-augmented) images in [−1, 1] and the prompt.
    pub fn cosine(&self, images: Tensor<Backend, 4>) -> Tensor<Backend, 1> {
        self.clip.cosine(Self::rgb(images))
    }
}

impl Guidance<Backend> for TextGuidance {
    fn loss(&self, x1: Tensor<Backend, 4>, ctx: &GuidanceContext) -> Tensor<Backend, 1> {
        self.clip.loss(Self::rgb(x1), ctx)
    }
    fn fingerprint(&self) -> String {
        self.clip.fingerprint()
    }
}

/// A session's guidance (one per session, so the text variant's size costs nothing).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum AnyGuidance {
    /// Towards a class of the guidance classifier.
    Class(ClassGuidance<Classifier<Backend>>),
    /// Towards a text prompt.
    Text(TextGuidance),
}

impl Guidance<Backend> for AnyGuidance {
    fn loss(&self, x1: Tensor<Backend, 4>, ctx: &GuidanceContext) -> Tensor<Backend, 1> {
        match self {
            Self::Class(g) => g.loss(x1, ctx),
            Self::Text(g) => g.loss(x1, ctx),
        }
    }
    fn fingerprint(&self) -> String {
        match self {
            Self::Class(g) => g.fingerprint(),
            Self::Text(g) => g.fingerprint(),
        }
    }
}
