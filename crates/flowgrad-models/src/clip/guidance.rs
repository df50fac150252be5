//! FlowGrad's text guidance: −(mean cosine between CLIP features of K augmented copies of each
//! image and the prompt's features), as the original `clip_semantic_loss` computes it. The
//! engine adds the (1 − η) faithfulness and λ‖u‖² terms.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use flowgrad::{Guidance, GuidanceContext};

use super::augment::AugmentConfig;
use super::model::{ClipModel, normalize};
use super::tokenizer::{TokenizeError, Tokenizer};

/// CLIP's per-channel input mean (RGB, images in [0, 1]).
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel input standard deviation.
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.261_302_6, 0.275_777_1];

/// Images in [0, 1] `[N, 3, H, W]` → bilinear resize (half-pixel centres, no antialiasing, as
/// `F.interpolate(..., mode='bilinear')`) to `resolution`² → CLIP normalisation.
pub fn clip_preprocess<B: Backend>(images: Tensor<B, 4>, resolution: usize) -> Tensor<B, 4> {
    let device = images.device();
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
    let resized = interpolate(images, [resolution, resolution], options);
    let mean = Tensor::<B, 4>::from_data(TensorData::new(CLIP_MEAN.to_vec(), [1, 3, 1, 1]), &device);
    let std = Tensor::<B, 4>::from_data(TensorData::new(CLIP_STD.to_vec(), [1, 3, 1, 1]), &device);
    (resized - mean) / std
}

/// Guidance towards a text prompt with a frozen CLIP model.
#[derive(Debug, Clone)]
pub struct ClipGuidance<B: Backend> {
    model: ClipModel<B>,
    prompt: String,
    text: Tensor<B, 2>,
    augment: AugmentConfig,
}

impl<B: Backend> ClipGuidance<B> {
    /// Encodes `prompt` once (untruncated, as FlowGrad's `clip.tokenize([text])`: a prompt longer
    /// than the context is an error) and keeps a handle on `model` (weights are shared, not copied).
    pub fn new(
        model: &ClipModel<B>,
        tokenizer: &Tokenizer,
        prompt: &str,
        augment: AugmentConfig,
    ) -> Result<Self, TokenizeError> {
        let row = tokenizer.tokenize(prompt, model.config().context_length, false)?;
        let text = normalize(model.encode_text(&[row])).detach();
        Ok(Self { model: model.clone(), prompt: prompt.to_string(), text, augment })
    }

    /// The prompt.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The augmentation settings.
    pub fn augment(&self) -> &AugmentConfig {
        &self.augment
    }

    /// Per-image cosine to the prompt `[B]`, averaged over max(K, 1) augmented copies drawn
    /// from `seed`, for images `x` `[B, 3, H, W]` in [−1, 1] (augmented in that range, then
    /// mapped to [0, 1] by (x + 1)/2 as the original's inverse scaler).
    pub fn augmented_cosine(&self, x: Tensor<B, 4>, seed: u64) -> Tensor<B, 1> {
        let [b, _, h, w] = x.dims();
        let k = self.augment.copies.max(1);
        // the same k draws for every image: its loss does not depend on the images batched with it
        let draw = self.augment.draw(k, h, w, seed).for_images(b);
        // cat, not repeat_dim: burn 0.21's autodiff gets repeat_dim's backward wrong
        let copies = self.augment.apply(Tensor::cat(vec![x; k], 0), &draw);
        self.cosine(copies).reshape([k, b]).mean_dim(0).reshape([b])
    }

    /// Per-image cosine to the prompt `[N]` of images `x` `[N, 3, H, W]` in [−1, 1] as they are
    /// (no augmentation): mapped to [0, 1], resized, normalised, encoded.
    pub fn cosine(&self, x: Tensor<B, 4>) -> Tensor<B, 1> {
        let [n, ..] = x.dims();
        let images = clip_preprocess((x + 1.0) / 2.0, self.model.config().image_resolution);
        normalize(self.model.encode_image(images)).matmul(self.text.clone().transpose()).reshape([n])
    }
}

impl<B: Backend> Guidance<B> for ClipGuidance<B> {
    /// −cosine per image, averaged over the augmented copies of this call's seed.
    fn loss(&self, x1: Tensor<B, 4>, ctx: &GuidanceContext) -> Tensor<B, 1> {
        -self.augmented_cosine(x1, ctx.seed)
    }

    fn fingerprint(&self) -> String {
        let augment = serde_json::to_string(&self.augment).expect("augment config serialises");
        format!("clip:{:?}:weights={}:augment={augment}", self.prompt, self.model.digest())
    }
}
