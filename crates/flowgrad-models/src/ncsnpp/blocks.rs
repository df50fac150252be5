//! The composite modules of NCSN++ (`layerspp.py`): the BigGAN residual block, the attention
//! block, the input-pyramid combiner and the resampling modules of the pyramids.

use burn::tensor::activation::softmax;
use burn::tensor::ops::PadMode;
use burn::tensor::{Tensor, backend::Backend};

use super::config::{Activation, CombineMethod, NcsnppConfig};
use super::fir::{FirKernel, average_downsample, nearest_upsample};
use super::layers::{Conv, GroupNorm, Linear, Nin, activate};
use super::state_dict::Builder;

/// (x + h)/√2 with `skip_rescale`, else x + h.
fn residual<B: Backend>(x: Tensor<B, 4>, h: Tensor<B, 4>, skip_rescale: bool) -> Tensor<B, 4> {
    if skip_rescale { (x + h).div_scalar(std::f32::consts::SQRT_2) } else { x + h }
}

/// Parameter-free ×2 resampling: FIR (`upsample_2d` / `downsample_2d`) or nearest / average.
#[derive(Debug, Clone)]
pub(crate) struct Resampler<B: Backend> {
    fir: Option<(FirKernel<B>, FirKernel<B>)>,
}

impl<B: Backend> Resampler<B> {
    /// The resampling of `config` (FIR with its kernel when `fir`).
    pub(crate) fn new(config: &NcsnppConfig, device: &B::Device) -> Self {
        let fir = config.fir.then(|| {
            (FirKernel::new(&config.fir_kernel, 4.0, device), FirKernel::new(&config.fir_kernel, 1.0, device))
        });
        Self { fir }
    }

    /// ×2 upsampling.
    pub(crate) fn up(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match &self.fir {
            Some((up, _)) => up.upsample(x),
            None => nearest_upsample(x),
        }
    }

    /// ×2 downsampling.
    pub(crate) fn down(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match &self.fir {
            Some((_, down)) => down.downsample(x),
            None => average_downsample(x),
        }
    }
}

/// Whether a residual block changes the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resample {
    /// Same resolution.
    Keep,
    /// ×2 up (both branches).
    Up,
    /// ×2 down (both branches).
    Down,
}

/// `ResnetBlockBigGANpp`: GroupNorm_0, Conv_0, Dense_0, GroupNorm_1, Conv_1 and a 1×1 Conv_2
/// shortcut when the width or resolution changes.
#[derive(Debug, Clone)]
pub(crate) struct ResBlock<B: Backend> {
    norm0: GroupNorm<B>,
    conv0: Conv<B>,
    dense: Linear<B>,
    norm1: GroupNorm<B>,
    conv1: Conv<B>,
    shortcut: Option<Conv<B>>,
    resample: Resample,
    resampler: Resampler<B>,
    act: Activation,
    skip_rescale: bool,
}

impl<B: Backend> ResBlock<B> {
    /// The block `name` mapping `in_ch` to `out_ch` channels, conditioned on a `temb_dim` embedding.
    pub(crate) fn build(
        b: &mut Builder<'_, B>,
        name: &str,
        config: &NcsnppConfig,
        resampler: &Resampler<B>,
        in_ch: usize,
        out_ch: usize,
        resample: Resample,
    ) -> Self {
        let temb_dim = 4 * config.nf;
        let norm0 = GroupNorm::build(b, &format!("{name}.GroupNorm_0"), in_ch);
        let conv0 = Conv::build(b, &format!("{name}.Conv_0"), in_ch, out_ch, 3);
        let dense = Linear::build(b, &format!("{name}.Dense_0"), temb_dim, out_ch);
        let norm1 = GroupNorm::build(b, &format!("{name}.GroupNorm_1"), out_ch);
        let conv1 = Conv::build(b, &format!("{name}.Conv_1"), out_ch, out_ch, 3);
        let shortcut = (in_ch != out_ch || resample != Resample::Keep)
            .then(|| Conv::build(b, &format!("{name}.Conv_2"), in_ch, out_ch, 1));
        Self {
            norm0,
            conv0,
            dense,
            norm1,
            conv1,
            shortcut,
            resample,
            resampler: resampler.clone(),
            act: config.activation,
            skip_rescale: config.skip_rescale,
        }
    }

    /// The block on `x` with the (un-activated) time embedding `temb`, if conditional.
    pub(crate) fn forward(&self, x: Tensor<B, 4>, temb: Option<&Tensor<B, 2>>) -> Tensor<B, 4> {
        let mut h = activate(self.act, self.norm0.forward(x.clone()));
        let x = match self.resample {
            Resample::Keep => x,
            Resample::Up => {
                h = self.resampler.up(h);
                self.resampler.up(x)
            }
            Resample::Down => {
                h = self.resampler.down(h);
                self.resampler.down(x)
            }
        };
        let mut h = self.conv0.forward(h);
        if let Some(temb) = temb {
            let [batch, channels, ..] = h.dims();
            h = h + self.dense.forward(activate(self.act, temb.clone())).reshape([batch, channels, 1, 1]);
        }
        let h = self.conv1.forward(activate(self.act, self.norm1.forward(h)));
        let x = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        residual(x, h, self.skip_rescale)
    }
}

/// `AttnBlockpp`: single-head self-attention over all positions, NIN projections.
#[derive(Debug, Clone)]
pub(crate) struct AttnBlock<B: Backend> {
    norm: GroupNorm<B>,
    q: Nin<B>,
    k: Nin<B>,
    v: Nin<B>,
    out: Nin<B>,
    skip_rescale: bool,
}

impl<B: Backend> AttnBlock<B> {
    /// The block `name` over `channels`.
    pub(crate) fn build(b: &mut Builder<'_, B>, name: &str, channels: usize, skip_rescale: bool) -> Self {
        let norm = GroupNorm::build(b, &format!("{name}.GroupNorm_0"), channels);
        let mut nin = |i: usize| Nin::build(b, &format!("{name}.NIN_{i}"), channels, channels);
        let (q, k, v, out) = (nin(0), nin(1), nin(2), nin(3));
        Self { norm, q, k, v, out, skip_rescale }
    }

    /// x + NIN_3(softmax(qᵀk/√C)·v), rescaled by 1/√2 with `skip_rescale`.
    pub(crate) fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let normed = self.norm.forward(x.clone());
        let flat = |t: Tensor<B, 4>| t.reshape([b, c, h * w]);
        let (q, k, v) =
            (flat(self.q.forward(normed.clone())), flat(self.k.forward(normed.clone())), flat(self.v.forward(normed)));
        let scores = q.swap_dims(1, 2).matmul(k).mul_scalar((c as f64).powf(-0.5) as f32);
        let weights = softmax(scores, 2);
        let attended = v.matmul(weights.swap_dims(1, 2)).reshape([b, c, h, w]);
        residual(x, self.out.forward(attended), self.skip_rescale)
    }
}

/// `Combine`: a 1×1 conv of the input pyramid, summed with or concatenated to the features.
#[derive(Debug, Clone)]
pub(crate) struct Combine<B: Backend> {
    conv: Conv<B>,
    method: CombineMethod,
}

impl<B: Backend> Combine<B> {
    /// `{name}.Conv_0` mapping the pyramid's `dim1` channels to the features' `dim2`.
    pub(crate) fn build(b: &mut Builder<'_, B>, name: &str, dim1: usize, dim2: usize, method: CombineMethod) -> Self {
        Self { conv: Conv::build(b, &format!("{name}.Conv_0"), dim1, dim2, 1), method }
    }

    /// Combines pyramid `x` with features `y`.
    pub(crate) fn forward(&self, x: Tensor<B, 4>, y: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv.forward(x);
        match self.method {
            CombineMethod::Sum => h + y,
            CombineMethod::Cat => Tensor::cat(vec![h, y], 1),
        }
    }
}

/// `layerspp.Downsample` with `with_conv=True` (the `residual` input pyramid): the fused FIR +
/// stride-2 3×3 convolution (`Conv2d_0`), or, without FIR, a stride-2 convolution (`Conv_0`) of
/// the input padded by one row and column at the end.
#[derive(Debug, Clone)]
pub(crate) struct ConvDownsample<B: Backend> {
    conv: Conv<B>,
    fir: Option<FirKernel<B>>,
}

impl<B: Backend> ConvDownsample<B> {
    /// The module `name` mapping `in_ch` to `out_ch`.
    pub(crate) fn build(
        b: &mut Builder<'_, B>,
        name: &str,
        config: &NcsnppConfig,
        in_ch: usize,
        out_ch: usize,
    ) -> Self {
        let device = b.device().clone();
        if config.fir {
            let conv = Conv::build(b, &format!("{name}.Conv2d_0"), in_ch, out_ch, 3);
            Self { conv, fir: Some(FirKernel::new(&config.fir_kernel, 1.0, &device)) }
        } else {
            Self { conv: Conv::build_strided(b, &format!("{name}.Conv_0"), in_ch, out_ch, 3, 2, 0), fir: None }
        }
    }

    /// The downsampled, convolved `x`.
    pub(crate) fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match &self.fir {
            Some(fir) => self.conv.add_bias(fir.conv_downsample(x, self.conv.weight.clone())),
            None => self.conv.forward(x.pad([(0, 1), (0, 1)], PadMode::Constant(0.0))),
        }
    }
}
