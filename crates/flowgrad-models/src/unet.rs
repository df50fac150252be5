//! A small time-conditioned UNet: the rectified-flow velocity field trained on Fashion-MNIST.
//!
//! Convention: x_0 is noise at t = 0, data at t = 1, and the network predicts v ≈ x_1 − x_0.

use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use flowgrad::diffusion::{DifferentiablePredictor, NoisePredictor, VpSchedule};
use flowgrad::{DifferentiableField, VelocityField};

use crate::time_embedding::sinusoidal;
use crate::weights::{seeded_init, weights_digest};

/// Shape of a [`UNet`].
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Image channels.
    #[config(default = 1)]
    pub channels: usize,
    /// Channels of the first level (24 keeps a training step on 2 CPU cores near one second).
    #[config(default = 24)]
    pub base: usize,
    /// Channel multiplier of each level; every level after the first halves the resolution.
    #[config(default = "vec![1, 2, 2]")]
    pub mults: Vec<usize>,
    /// GroupNorm groups (must divide every channel count).
    #[config(default = 8)]
    pub groups: usize,
    /// Seed of the initial weights.
    #[config(default = 0)]
    pub seed: u64,
}

/// GroupNorm → SiLU → conv, twice, with the time embedding added in between and a residual path.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv2d<B>,
    time: Linear<B>,
    norm2: GroupNorm<B>,
    conv2: Conv2d<B>,
    skip: Option<Conv2d<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn new(cin: usize, cout: usize, temb: usize, groups: usize, device: &B::Device) -> Self {
        Self {
            norm1: GroupNormConfig::new(groups, cin).init(device),
            conv1: conv3(cin, cout, 1, device),
            time: LinearConfig::new(temb, cout).init(device),
            norm2: GroupNormConfig::new(groups, cout).init(device),
            conv2: conv3(cout, cout, 1, device),
            skip: (cin != cout).then(|| Conv2dConfig::new([cin, cout], [1, 1]).init(device)),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        let [b, ..] = x.dims();
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let cout = h.dims()[1];
        let h = h + self.time.forward(temb).reshape([b, cout, 1, 1]);
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let residual = match &self.skip {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + residual
    }
}

/// Time-conditioned UNet v(x, t) on `[B, C, 32, 32]` images.
#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    time1: Linear<B>,
    time2: Linear<B>,
    input: Conv2d<B>,
    down: Vec<ResBlock<B>>,
    downsample: Vec<Conv2d<B>>,
    mid: ResBlock<B>,
    up: Vec<ResBlock<B>>,
    upsample: Vec<Conv2d<B>>,
    out_norm: GroupNorm<B>,
    output: Conv2d<B>,
    base: usize,
}

fn conv3<B: Backend>(cin: usize, cout: usize, stride: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Nearest-neighbour 2× upsampling by broadcasting (differentiable on every backend). The up
/// path convolves before upsampling, at a quarter of the cost of convolving after it.
fn upsample2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
}

impl UNetConfig {
    /// Builds the UNet with random weights drawn from `seed` (trainable; drawn eagerly, so the
    /// weights depend on the seed alone).
    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        assert!(!self.mults.is_empty(), "a UNet needs at least one level");
        seeded_init(device, self.seed, || self.build(device))
    }

    fn build<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        let temb = 4 * self.base;
        let chans: Vec<usize> = self.mults.iter().map(|m| m * self.base).collect();
        let block = |cin, cout| ResBlock::new(cin, cout, temb, self.groups, device);
        let mut down = Vec::new();
        let mut prev = self.base;
        for &c in &chans {
            down.push(block(prev, c));
            prev = c;
        }
        let last = *chans.last().expect("non-empty");
        // Up path, deepest level first: each block sees its input concatenated with the skip
        // of the same level and outputs that level's channels.
        let up = (0..chans.len())
            .rev()
            .map(|i| block(if i + 1 == chans.len() { last } else { chans[i + 1] } + chans[i], chans[i]))
            .collect();
        let levels = chans.len() - 1;
        UNet {
            time1: LinearConfig::new(self.base, temb).init(device),
            time2: LinearConfig::new(temb, temb).init(device),
            input: conv3(self.channels, self.base, 1, device),
            downsample: chans[..levels].iter().map(|&c| conv3(c, c, 2, device)).collect(),
            down,
            mid: block(last, last),
            up,
            upsample: chans[1..].iter().rev().map(|&c| conv3(c, c, 1, device)).collect(),
            out_norm: GroupNormConfig::new(self.groups, self.base).init(device),
            output: conv3(self.base, self.channels, 1, device),
            base: self.base,
        }
    }
}

impl<B: Backend> UNet<B> {
    /// Velocity `[B, C, H, W]` at images `x` and times `t` (`[B]`, in [0, 1]).
    pub fn forward(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let temb = self.time2.forward(silu(self.time1.forward(sinusoidal(t, self.base))));
        let mut h = self.input.forward(x);
        let mut skips = Vec::with_capacity(self.down.len());
        for (i, block) in self.down.iter().enumerate() {
            h = block.forward(h, temb.clone());
            skips.push(h.clone());
            if let Some(down) = self.downsample.get(i) {
                h = down.forward(h);
            }
        }
        h = self.mid.forward(h, temb.clone());
        for (i, block) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per level");
            h = block.forward(Tensor::cat(vec![h, skip], 1), temb.clone());
            if let Some(up) = self.upsample.get(i) {
                h = upsample2(up.forward(h));
            }
        }
        self.output.forward(silu(self.out_norm.forward(h)))
    }
}

impl<B: Backend> VelocityField<B> for UNet<B> {
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        self.forward(x, t)
    }

    fn fingerprint(&self) -> String {
        format!("unet:base={}:levels={}:weights={}", self.base, self.down.len(), weights_digest(self))
    }
}

impl<B: AutodiffBackend> DifferentiableField<B> for UNet<B> {
    type Values = UNet<B::InnerBackend>;
    fn values(&self) -> Self::Values {
        self.valid()
    }
}

/// A [`UNet`] trained to predict v = α_t x₀ − β_t x₁ for X_t = α_t x₁ + β_t x₀ under `schedule`
/// (v-prediction): DDIM's network, read as the noise predictor ε̂ = β_t X + α_t v̂ and turned into
/// a velocity field by [`flowgrad::diffusion::DiffusionOde`].
#[derive(Debug, Clone)]
pub struct VPredictionUNet<B: Backend> {
    /// The network v̂(X, t).
    pub unet: UNet<B>,
    /// The schedule it was trained with.
    pub schedule: VpSchedule,
}

impl<B: Backend> NoisePredictor<B> for VPredictionUNet<B> {
    fn predict_noise(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let v = self.unet.forward(x.clone(), t.clone());
        self.schedule.noise_from_v(x, v, t)
    }

    fn fingerprint(&self) -> String {
        format!("v-{}", self.unet.fingerprint())
    }
}

impl<B: AutodiffBackend> DifferentiablePredictor<B> for VPredictionUNet<B> {
    type Values = VPredictionUNet<B::InnerBackend>;
    fn values(&self) -> Self::Values {
        VPredictionUNet { unet: self.unet.valid(), schedule: self.schedule }
    }
}
