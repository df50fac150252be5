//! The basic layers of NCSN++ with the original parameter names and layouts: `Conv2d`,
//! `Linear`, `GroupNorm` (groups = min(C/4, 32), eps 1e-6) and `NIN` (`W` is `[in, out]`).

use burn::tensor::activation::{elu, leaky_relu, relu, silu};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, backend::Backend};

use super::config::Activation;
use super::state_dict::{Builder, Init};

/// Applies the configured nonlinearity.
pub(crate) fn activate<B: Backend, const D: usize>(act: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match act {
        Activation::Swish => silu(x),
        Activation::Relu => relu(x),
        Activation::LeakyRelu => leaky_relu(x, 0.2),
        Activation::Elu => elu(x, 1.0),
    }
}

/// A square convolution with bias (`weight [out, in, k, k]`, `bias [out]`), stride 1 and
/// "same" padding k/2 unless built with other options.
#[derive(Debug, Clone)]
pub(crate) struct Conv<B: Backend> {
    pub(crate) weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    stride: usize,
    padding: usize,
}

impl<B: Backend> Conv<B> {
    /// `{name}.weight`, `{name}.bias` of a k×k convolution `in → out` (stride 1, padding k/2).
    pub(crate) fn build(b: &mut Builder<'_, B>, name: &str, in_ch: usize, out_ch: usize, k: usize) -> Self {
        Self::build_strided(b, name, in_ch, out_ch, k, 1, k / 2)
    }

    /// Like [`Conv::build`] with an explicit stride and padding.
    pub(crate) fn build_strided(
        b: &mut Builder<'_, B>,
        name: &str,
        in_ch: usize,
        out_ch: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        let std = 1.0 / ((in_ch * k * k) as f32).sqrt();
        let weight = b.tensor(&format!("{name}.weight"), [out_ch, in_ch, k, k], Init::Normal(std));
        let bias = b.tensor(&format!("{name}.bias"), [out_ch], Init::Zeros);
        Self { weight, bias, stride, padding }
    }

    /// The convolution of `x`.
    pub(crate) fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (s, p) = (self.stride, self.padding);
        conv2d(x, self.weight.clone(), Some(self.bias.clone()), ConvOptions::new([s, s], [p, p], [1, 1], 1))
    }

    /// Adds the bias to an output computed from [`Conv::weight`] by a fused resampling op.
    pub(crate) fn add_bias(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = self.bias.dims()[0];
        x + self.bias.clone().reshape([1, out, 1, 1])
    }
}

/// `nn.Linear`: y = x·Wᵀ + b with `weight [out, in]`.
#[derive(Debug, Clone)]
pub(crate) struct Linear<B: Backend> {
    weight_t: Tensor<B, 2>,
    bias: Tensor<B, 2>,
}

impl<B: Backend> Linear<B> {
    /// `{name}.weight`, `{name}.bias`.
    pub(crate) fn build(b: &mut Builder<'_, B>, name: &str, in_dim: usize, out_dim: usize) -> Self {
        let std = 1.0 / (in_dim as f32).sqrt();
        let weight = b.tensor(&format!("{name}.weight"), [out_dim, in_dim], Init::Normal(std));
        let bias = b.tensor(&format!("{name}.bias"), [out_dim], Init::Zeros);
        Self { weight_t: weight.transpose(), bias: bias.reshape([1, out_dim]) }
    }

    /// `[B, in]` → `[B, out]`.
    pub(crate) fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.weight_t.clone()) + self.bias.clone()
    }
}

/// `nn.GroupNorm(min(C/4, 32), C, eps=1e-6)` with affine `weight`, `bias`.
#[derive(Debug, Clone)]
pub(crate) struct GroupNorm<B: Backend> {
    weight: Tensor<B, 4>,
    bias: Tensor<B, 4>,
    groups: usize,
}

impl<B: Backend> GroupNorm<B> {
    /// `{name}.weight`, `{name}.bias` over `channels`.
    pub(crate) fn build(b: &mut Builder<'_, B>, name: &str, channels: usize) -> Self {
        let weight = b.tensor(&format!("{name}.weight"), [channels], Init::Ones);
        let bias = b.tensor(&format!("{name}.bias"), [channels], Init::Zeros);
        Self {
            weight: weight.reshape([1, channels, 1, 1]),
            bias: bias.reshape([1, channels, 1, 1]),
            groups: (channels / 4).min(32),
        }
    }

    /// Normalises each group of channels of each sample to zero mean and unit (biased)
    /// variance, then applies the affine map.
    pub(crate) fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let grouped = x.reshape([b, self.groups, (c / self.groups) * h * w]);
        let centred = grouped.clone() - grouped.mean_dim(2);
        let var = centred.clone().powi_scalar(2).mean_dim(2);
        let normed = centred / (var + 1e-6).sqrt();
        normed.reshape([b, c, h, w]) * self.weight.clone() + self.bias.clone()
    }
}

/// `NIN`: a per-pixel linear map over channels, y = x·W + b with `W [in, out]`.
#[derive(Debug, Clone)]
pub(crate) struct Nin<B: Backend> {
    /// Wᵀ as a 1×1 convolution weight `[out, in, 1, 1]`.
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
}

impl<B: Backend> Nin<B> {
    /// `{name}.W`, `{name}.b`.
    pub(crate) fn build(b: &mut Builder<'_, B>, name: &str, in_dim: usize, out_dim: usize) -> Self {
        let std = 1.0 / (in_dim as f32).sqrt();
        let w = b.tensor(&format!("{name}.W"), [in_dim, out_dim], Init::Normal(std));
        let bias = b.tensor(&format!("{name}.b"), [out_dim], Init::Zeros);
        Self { weight: w.transpose().reshape([out_dim, in_dim, 1, 1]), bias }
    }

    /// `[B, in, H, W]` → `[B, out, H, W]`.
    pub(crate) fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv2d(x, self.weight.clone(), Some(self.bias.clone()), ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
    }
}
