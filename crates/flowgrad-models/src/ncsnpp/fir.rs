//! Resampling as the original `up_or_down_sampling.py` does it: FIR up/down (`upfirdn2d` with a
//! separable kernel), the fused FIR + strided convolution, and the naive nearest/average ones.
//! All are expressed with burn's (transposed) convolutions so autodiff provides their VJPs.

use burn::tensor::module::{avg_pool2d, conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, PadMode};
use burn::tensor::{Tensor, TensorData, backend::Backend};

/// A 2-D FIR kernel `outer(k, k) / sum(k)²`, times a gain, as a `[1, 1, K, K]` tensor.
#[derive(Debug, Clone)]
pub(crate) struct FirKernel<B: Backend> {
    kernel: Tensor<B, 4>,
    flipped: Tensor<B, 4>,
    taps: usize,
}

impl<B: Backend> FirKernel<B> {
    /// The normalised outer product of `k` scaled by `gain` (the upsampling gain is 4).
    pub(crate) fn new(k: &[f32], gain: f32, device: &B::Device) -> Self {
        let taps = k.len();
        let sum: f32 = k.iter().sum();
        let at = |i: usize, j: usize| k[i] * k[j] / (sum * sum) * gain;
        let values: Vec<f32> = (0..taps * taps).map(|n| at(n / taps, n % taps)).collect();
        let flipped: Vec<f32> = (0..taps * taps).map(|n| at(taps - 1 - n / taps, taps - 1 - n % taps)).collect();
        let make = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [1, 1, taps, taps]), device);
        Self { kernel: make(values), flipped: make(flipped), taps }
    }

    /// `upfirdn2d(x, k, up=1, down=stride, pad=(p0, p1))`: pad (negative pads crop), then
    /// convolve every channel with the kernel (a true convolution, as the original flips it).
    pub(crate) fn filter(&self, x: Tensor<B, 4>, p0: isize, p1: isize, stride: usize) -> Tensor<B, 4> {
        let channels = x.dims()[1];
        let x = pad_or_crop(x, p0, p1);
        let weight = self.flipped.clone().repeat_dim(0, channels);
        conv2d(x, weight, None, ConvOptions::new([stride, stride], [0, 0], [1, 1], channels))
    }

    /// `upsample_2d`: zero-insertion ×2, then the FIR (kernel gain 4 gives unit DC gain).
    pub(crate) fn upsample(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, channels, h, w] = x.dims();
        let k = self.taps;
        // upfirdn2d pads (p+1)/2 + 1 in front with p = K − 2; a transposed convolution of the
        // unflipped kernel covers the full support, from which the window starts at K − 1 − p0.
        let p0 = (k - 1) / 2 + 1;
        let offset = k - 1 - p0;
        let weight = self.kernel.clone().repeat_dim(0, channels);
        let full =
            conv_transpose2d(x, weight, None, ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], channels));
        full.slice([0..batch, 0..channels, offset..offset + 2 * h, offset..offset + 2 * w])
    }

    /// `downsample_2d`: the FIR with pads ((K−1)/2, (K−2)/2), keeping every second sample.
    pub(crate) fn downsample(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let k = self.taps as isize;
        self.filter(x, (k - 1) / 2, (k - 2) / 2, 2)
    }

    /// `conv_downsample_2d`: the FIR with pads from K and the conv size, then a stride-2
    /// convolution with `weight` (this kernel must carry gain 1).
    pub(crate) fn conv_downsample(&self, x: Tensor<B, 4>, weight: Tensor<B, 4>) -> Tensor<B, 4> {
        let kw = weight.dims()[3] as isize;
        let p = (self.taps as isize - 2) + (kw - 1);
        let x = self.filter(x, (p + 1).div_euclid(2), p.div_euclid(2), 1);
        conv2d(x, weight, None, ConvOptions::new([2, 2], [0, 0], [1, 1], 1))
    }
}

/// Pads (positive) or crops (negative) the two spatial dimensions by `p0` before and `p1` after.
fn pad_or_crop<B: Backend>(x: Tensor<B, 4>, p0: isize, p1: isize) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    let (c0, c1) = ((-p0).max(0) as usize, (-p1).max(0) as usize);
    let x = if c0 + c1 > 0 { x.slice([0..b, 0..c, c0..h - c1, c0..w - c1]) } else { x };
    let (a0, a1) = (p0.max(0) as usize, p1.max(0) as usize);
    if a0 + a1 > 0 { x.pad([(a0, a1), (a0, a1)], PadMode::Constant(0.0)) } else { x }
}

/// `naive_upsample_2d`: every pixel repeated 2×2 (nearest neighbour).
pub(crate) fn nearest_upsample<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).repeat_dim(3, 2).repeat_dim(5, 2).reshape([b, c, 2 * h, 2 * w])
}

/// `naive_downsample_2d` / `avg_pool2d(2, 2)`: the mean of every 2×2 block.
pub(crate) fn average_downsample<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    avg_pool2d(x, [2, 2], [2, 2], [0, 0], true, false)
}
