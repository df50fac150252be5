//! A small time-conditioned convolutional velocity field with seeded random weights: the test and
//! benchmark network for the gradient machinery (not a trained generative model).

use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::{AutodiffBackend, Backend};
use flowgrad::{DifferentiableField, VelocityField};

use crate::time_embedding::sinusoidal_up_to;

/// Shape of a [`ConvField`].
#[derive(Config, Debug)]
pub struct ConvFieldConfig {
    /// Image channels.
    pub channels: usize,
    /// Hidden channels.
    #[config(default = 32)]
    pub hidden: usize,
    /// Hidden 3×3 convolutions between input and output convolutions.
    #[config(default = 2)]
    pub depth: usize,
    /// Seed of the random weights.
    #[config(default = 0)]
    pub seed: u64,
    /// Highest frequency (cycles per unit time) of the time features: low values give the
    /// smooth, nearly straight trajectories of a trained rectified flow.
    #[config(default = 1.0)]
    pub max_frequency: f32,
}

/// v(x, t) = conv_out(SiLU(… SiLU(conv_in(x) + W·emb(t)) …)), weights frozen.
#[derive(Module, Debug)]
pub struct ConvField<B: Backend> {
    input: Conv2d<B>,
    time: Linear<B>,
    hidden: Vec<Conv2d<B>>,
    output: Conv2d<B>,
    seed: u64,
    max_frequency: f32,
}

const TIME_FEATURES: usize = 16;

impl ConvFieldConfig {
    /// Builds the field with weights drawn from `seed`, frozen (no parameter gradients).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvField<B> {
        B::seed(device, self.seed);
        let conv = |i, o| Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Same).init(device);
        ConvField {
            input: conv(self.channels, self.hidden),
            time: LinearConfig::new(TIME_FEATURES, self.hidden).init(device),
            hidden: (0..self.depth).map(|_| conv(self.hidden, self.hidden)).collect(),
            output: conv(self.hidden, self.channels),
            seed: self.seed,
            max_frequency: self.max_frequency,
        }
        .no_grad()
    }
}

impl<B: Backend> VelocityField<B> for ConvField<B> {
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        let [b, ..] = x.dims();
        let hidden = self.time.weight.dims()[1];
        let bias = self.time.forward(sinusoidal_up_to(t, TIME_FEATURES, self.max_frequency)).reshape([b, hidden, 1, 1]);
        let mut h = silu(self.input.forward(x) + bias);
        for conv in &self.hidden {
            h = silu(conv.forward(h));
        }
        self.output.forward(h)
    }

    fn fingerprint(&self) -> String {
        format!(
            "conv-field:seed={}:hidden={}:depth={}:max_frequency={}",
            self.seed,
            self.time.weight.dims()[1],
            self.hidden.len(),
            self.max_frequency
        )
    }
}

impl<B: AutodiffBackend> DifferentiableField<B> for ConvField<B> {
    type Values = ConvField<B::InnerBackend>;
    fn values(&self) -> Self::Values {
        self.valid()
    }
}
