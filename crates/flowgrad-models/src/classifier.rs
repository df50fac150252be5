//! Fashion-MNIST classifiers on clean `[B, 1, 32, 32]` images in [−1, 1]: the guidance
//! [`Classifier`], an independent [`Judge`] for evaluation, and [`ClassGuidance`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{log_softmax, relu, silu, softmax};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use flowgrad::{Guidance, GuidanceContext};

use crate::class_views::ClassViews;
use crate::fashion::{CLASS_NAMES, NUM_CLASSES};
use crate::weights::{seeded_init, weights_digest};

/// Anything mapping `[B, 1, 32, 32]` images to `[B, 10]` class logits.
pub trait ImageClassifier<B: Backend> {
    /// Class logits `[B, 10]`.
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2>;

    /// Class probabilities `[B, 10]` (softmax of the logits).
    fn probabilities(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        softmax(self.logits(x), 1)
    }
}

/// Shape of a [`Classifier`].
#[derive(Config, Debug)]
pub struct ClassifierConfig {
    /// Channels of the first stage (doubled at each of the three stages).
    #[config(default = 16)]
    pub width: usize,
    /// Seed of the initial weights.
    #[config(default = 1)]
    pub seed: u64,
}

/// Guidance classifier: 3×3 conv + GroupNorm + SiLU layers in three stages (one conv at 32×32,
/// two at 16×16, two at 8×8) with average pooling between stages and global average pooling at
/// the end (smooth, so its input gradients are useful).
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    convs: Vec<Conv2d<B>>,
    norms: Vec<GroupNorm<B>>,
    head: Linear<B>,
}

fn conv<B: Backend>(cin: usize, cout: usize, kernel: usize, device: &B::Device) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new([cin, cout], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init(device)
}

/// Convolutions per stage, from full resolution down.
const STAGE_DEPTHS: [usize; 3] = [1, 2, 2];
/// Indices of the first convolution of each pooled stage.
const STAGE_STARTS: [usize; 2] = [1, 3];

impl ClassifierConfig {
    /// Builds the classifier with random weights drawn from `seed`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Classifier<B> {
        seeded_init(device, self.seed, || self.build(device))
    }

    fn build<B: Backend>(&self, device: &B::Device) -> Classifier<B> {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        let mut prev = 1;
        for (stage, &depth) in STAGE_DEPTHS.iter().enumerate() {
            let w = self.width << stage;
            for _ in 0..depth {
                convs.push(conv(prev, w, 3, device));
                norms.push(GroupNormConfig::new(8, w).init(device));
                prev = w;
            }
        }
        Classifier { convs, norms, head: LinearConfig::new(prev, NUM_CLASSES).init(device) }
    }
}

impl<B: Backend> ImageClassifier<B> for Classifier<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = x;
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            if STAGE_STARTS.contains(&i) {
                h = avg_pool2d(h, [2, 2], [2, 2], [0, 0], true, false);
            }
            h = silu(norm.forward(conv.forward(h)));
        }
        let [b, c, ..] = h.dims();
        self.head.forward(h.mean_dim(3).mean_dim(2).reshape([b, c]))
    }
}

/// Shape of a [`Judge`].
#[derive(Config, Debug)]
pub struct JudgeConfig {
    /// Channels of the first 5×5 convolution (doubled by the second).
    #[config(default = 32)]
    pub width: usize,
    /// Hidden units of the dense layer.
    #[config(default = 128)]
    pub hidden: usize,
    /// Seed of the initial weights (different from the classifier's).
    #[config(default = 7)]
    pub seed: u64,
}

/// Evaluation-only classifier with a different architecture from [`Classifier`]: two 5×5
/// conv + ReLU + max-pool stages, then a dense ReLU layer and the linear head.
#[derive(Module, Debug)]
pub struct Judge<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    dense: Linear<B>,
    head: Linear<B>,
}

impl JudgeConfig {
    /// Builds the judge with random weights drawn from `seed`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Judge<B> {
        seeded_init(device, self.seed, || Judge {
            conv1: conv(1, self.width, 5, device),
            conv2: conv(self.width, 2 * self.width, 5, device),
            dense: LinearConfig::new(2 * self.width * 8 * 8, self.hidden).init(device),
            head: LinearConfig::new(self.hidden, NUM_CLASSES).init(device),
        })
    }
}

impl<B: Backend> ImageClassifier<B> for Judge<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let pool = |h| max_pool2d(h, [2, 2], [2, 2], [0, 0], [1, 1], false);
        let h = pool(relu(self.conv1.forward(x)));
        let h = pool(relu(self.conv2.forward(h)));
        let [b, ..] = h.dims();
        self.head.forward(relu(self.dense.forward(h.reshape([b as i32, -1]))))
    }
}

/// The top-1 class of each row of `[B, 10]` class probabilities (or logits), row-major.
pub fn top_classes(probs: &[f32]) -> Vec<usize> {
    probs
        .chunks(NUM_CLASSES)
        .map(|p| (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).expect("ten classes"))
        .collect()
}

/// Per-image cross-entropy −log softmax(logits)[target] for integer targets `[B]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [b, _] = logits.dims();
    -log_softmax(logits, 1).gather(1, targets.reshape([b, 1])).reshape([b])
}

/// Guidance towards one class: per-image loss −log p(target | x1) under a frozen classifier,
/// averaged over random [`ClassViews`] of the image clamped to the data range [−1, 1].
#[derive(Debug, Clone)]
pub struct ClassGuidance<C> {
    classifier: C,
    target: usize,
    digest: String,
    views: ClassViews,
}

impl<C> ClassGuidance<C> {
    /// Guides towards class `target` (0..10) with `classifier` (its weights are hashed once here)
    /// and the default views.
    pub fn new<B: Backend>(classifier: C, target: usize) -> Self
    where
        C: Module<B>,
    {
        assert!(target < NUM_CLASSES, "class {target} out of range 0..{NUM_CLASSES}");
        let digest = weights_digest(&classifier);
        Self { classifier, target, digest, views: ClassViews::default() }
    }

    /// The same guidance averaged over other views ([`ClassViews::none`]: the image itself).
    pub fn with_views(self, views: ClassViews) -> Self {
        Self { views, ..self }
    }

    /// The target class.
    pub fn target(&self) -> usize {
        self.target
    }
}

impl<B: Backend, C: ImageClassifier<B>> Guidance<B> for ClassGuidance<C> {
    fn loss(&self, x1: Tensor<B, 4>, ctx: &GuidanceContext) -> Tensor<B, 1> {
        let [b, ..] = x1.dims();
        let device = x1.device();
        let x1 = x1.clamp(-1.0, 1.0);
        let (views, copies) = match self.views.copies {
            0 => (x1, 1),
            k => (self.views.apply(x1, ctx.seed), k),
        };
        let targets = Tensor::from_data(TensorData::new(vec![self.target as i64; b * copies], [b * copies]), &device);
        cross_entropy(self.classifier.logits(views), targets).reshape([copies, b]).mean_dim(0).reshape([b])
    }

    fn fingerprint(&self) -> String {
        let views = serde_json::to_string(&self.views).expect("views serialise");
        format!("class:{}={}:weights={}:views={views}", self.target, CLASS_NAMES[self.target], self.digest)
    }
}
