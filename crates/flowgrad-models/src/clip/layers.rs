//! The transformer pieces CLIP's two towers share: LayerNorm (eps 1e-5), dense layers,
//! `nn.MultiheadAttention` (stacked q/k/v, contiguous head chunks), QuickGELU residual blocks.

use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Tensor, backend::Backend};

use super::checkpoint::{Init, ParamSource};

/// A frozen parameter: FlowGrad differentiates the input, never CLIP's weights.
pub(crate) fn frozen<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::from_tensor(tensor).set_require_grad(false)
}

/// LayerNorm over the last axis, eps 1e-5 (PyTorch's default, as CLIP uses).
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    weight: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> LayerNorm<B> {
    pub(crate) fn load(source: &mut impl ParamSource<B>, key: &str, width: usize) -> Self {
        Self {
            weight: frozen(source.take(&format!("{key}.weight"), [width], Init::Ones)),
            bias: frozen(source.take(&format!("{key}.bias"), [width], Init::Zeros)),
        }
    }

    /// Normalises `x` over its last axis.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let mean = x.clone().mean_dim(D - 1);
        let centered = x - mean;
        let var = centered.clone().powi_scalar(2).mean_dim(D - 1);
        centered / (var + 1e-5).sqrt() * self.weight.val().unsqueeze() + self.bias.val().unsqueeze()
    }
}

/// y = x·Wᵀ + b with PyTorch's `[out, in]` weight (stored transposed, `[in, out]`).
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    weight: Param<Tensor<B, 2>>,
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
    pub(crate) fn load(source: &mut impl ParamSource<B>, key: &str, inputs: usize, outputs: usize) -> Self {
        Self {
            weight: frozen(source.take(&format!("{key}.weight"), [outputs, inputs], Init::Normal).transpose()),
            bias: frozen(source.take(&format!("{key}.bias"), [outputs], Init::Zeros)),
        }
    }

    /// Applies the layer to `[B, L, in]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, l, i] = x.dims();
        let y = x.reshape([b * l, i]).matmul(self.weight.val()) + self.bias.val().unsqueeze();
        let o = y.dims()[1];
        y.reshape([b, l, o])
    }
}

/// `nn.MultiheadAttention` self-attention with `heads` contiguous chunks of the width.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    in_proj: Dense<B>,
    out_proj: Dense<B>,
    heads: usize,
}

impl<B: Backend> Attention<B> {
    pub(crate) fn load(source: &mut impl ParamSource<B>, key: &str, width: usize, heads: usize) -> Self {
        let in_proj = Dense {
            weight: frozen(source.take(&format!("{key}.in_proj_weight"), [3 * width, width], Init::Normal).transpose()),
            bias: frozen(source.take(&format!("{key}.in_proj_bias"), [3 * width], Init::Zeros)),
        };
        Self { in_proj, out_proj: Dense::load(source, &format!("{key}.out_proj"), width, width), heads }
    }

    /// Attends over `[B, L, W]`; `mask` (`[L, L]`, additive) is the causal mask of the text tower.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let [b, l, w] = x.dims();
        let (h, d) = (self.heads, w / self.heads);
        let qkv = self.in_proj.forward(x);
        let split =
            |i: usize| qkv.clone().slice([0..b, 0..l, i * w..(i + 1) * w]).reshape([b, l, h, d]).swap_dims(1, 2);
        let (q, k, v) = (split(0), split(1), split(2));
        let mut scores = q.matmul(k.swap_dims(2, 3)) * (d as f64).powf(-0.5);
        if let Some(mask) = mask {
            scores = scores + mask.unsqueeze();
        }
        let out = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, l, w]);
        self.out_proj.forward(out)
    }
}

/// Pre-norm residual block: x + attn(ln_1(x)), then x + c_proj(QuickGELU(c_fc(ln_2(x)))).
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    ln_1: LayerNorm<B>,
    attn: Attention<B>,
    ln_2: LayerNorm<B>,
    c_fc: Dense<B>,
    c_proj: Dense<B>,
}

impl<B: Backend> ResidualBlock<B> {
    pub(crate) fn load(source: &mut impl ParamSource<B>, key: &str, width: usize, heads: usize) -> Self {
        Self {
            attn: Attention::load(source, &format!("{key}.attn"), width, heads),
            ln_1: LayerNorm::load(source, &format!("{key}.ln_1"), width),
            c_fc: Dense::load(source, &format!("{key}.mlp.c_fc"), width, 4 * width),
            c_proj: Dense::load(source, &format!("{key}.mlp.c_proj"), 4 * width, width),
            ln_2: LayerNorm::load(source, &format!("{key}.ln_2"), width),
        }
    }

    /// Applies the block to `[B, L, W]`.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), mask);
        let h = self.c_fc.forward(self.ln_2.forward(x.clone()));
        let h = h.clone() * sigmoid(h * 1.702);
        x + self.c_proj.forward(h)
    }
}

/// A stack of residual blocks (`{key}.resblocks.{i}`).
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    blocks: Vec<ResidualBlock<B>>,
}

impl<B: Backend> Transformer<B> {
    pub(crate) fn load(source: &mut impl ParamSource<B>, key: &str, width: usize, layers: usize, heads: usize) -> Self {
        Self {
            blocks: (0..layers)
                .map(|i| ResidualBlock::load(source, &format!("{key}.resblocks.{i}"), width, heads))
                .collect(),
        }
    }

    /// Applies every block to `[B, L, W]`.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 2>>) -> Tensor<B, 3> {
        self.blocks.iter().fold(x, |x, block| block.forward(x, mask.clone()))
    }
}
