//! The NCSN++ network (`ncsnpp.py`): built module by module in the original registration order,
//! so every parameter gets its original `all_modules.{i}…` key.

use burn::tensor::{
    Int, Tensor, TensorData,
    backend::{AutodiffBackend, Backend},
};
use flowgrad::{DifferentiableField, Untracked, VelocityField};

use super::NcsnppError;
use super::blocks::{AttnBlock, Combine, ConvDownsample, ResBlock, Resample, Resampler};
use super::config::{CombineMethod, Embedding, NcsnppConfig, Progressive, ProgressiveInput};
use super::layers::{Conv, GroupNorm, Linear, activate};
use super::state_dict::{Builder, Init, StateDict};

/// The model time the original receives: FlowGrad passes t·999.
pub const TIME_SCALE: f32 = 999.0;

/// How the input pyramid enters a level's transition.
#[derive(Debug, Clone)]
enum PyramidIn<B: Backend> {
    None,
    Skip(Combine<B>),
    Residual(ConvDownsample<B>),
}

/// The end of a down level (all but the last): a downsampling block and the input pyramid.
#[derive(Debug, Clone)]
struct Transition<B: Backend> {
    down: ResBlock<B>,
    pyramid: PyramidIn<B>,
}

#[derive(Debug, Clone)]
struct DownLevel<B: Backend> {
    blocks: Vec<(ResBlock<B>, Option<AttnBlock<B>>)>,
    transition: Option<Transition<B>>,
}

#[derive(Debug, Clone)]
struct UpLevel<B: Backend> {
    blocks: Vec<ResBlock<B>>,
    attn: Option<AttnBlock<B>>,
    /// GroupNorm + 3×3 conv to image channels (`output_skip`).
    pyramid: Option<(GroupNorm<B>, Conv<B>)>,
    up: Option<ResBlock<B>>,
}

/// NCSN++ with BigGAN blocks, as RectifiedFlow uses it; a FlowGrad [`VelocityField`].
///
/// Weights are constants: on an autodiff backend only the input is differentiated.
#[derive(Debug, Clone)]
pub struct Ncsnpp<B: Backend> {
    config: NcsnppConfig,
    sigmas: Tensor<B, 1>,
    fourier: Option<Tensor<B, 2>>,
    dense: Option<(Linear<B>, Linear<B>)>,
    conv_in: Conv<B>,
    down: Vec<DownLevel<B>>,
    middle: (ResBlock<B>, AttnBlock<B>, ResBlock<B>),
    up: Vec<UpLevel<B>>,
    head: Option<(GroupNorm<B>, Conv<B>)>,
    resampler: Resampler<B>,
    parameters: Vec<(String, Vec<usize>)>,
    fingerprint: String,
}

/// Names the modules `all_modules.0`, `all_modules.1`, … in construction order.
struct Names(usize);

impl Names {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("all_modules.{}", self.0 - 1)
    }
}

impl<B: Backend> Ncsnpp<B> {
    /// Builds the model of `config` from `weights` (original keys, no `module.` prefix): every
    /// model tensor must be present with its shape and every weight must be used, otherwise the
    /// error lists all missing, unexpected and mis-shaped keys. `origin` names the weights.
    pub fn from_state_dict(
        config: &NcsnppConfig,
        weights: &StateDict,
        origin: &str,
        device: &B::Device,
    ) -> Result<Self, NcsnppError> {
        config.validate()?;
        let mut builder = Builder::from_state_dict(weights, device);
        let mut model = Self::build(config, &mut builder, device);
        model.parameters = builder.finish(origin)?;
        model.parameters.retain(|(name, _)| name != SIGMAS);
        model.fingerprint = format!("ncsnpp:{}:{}", config_digest(config), state_dict_digest(weights));
        Ok(model)
    }

    /// Builds the model of `config` with seeded random weights (benchmarks, architecture checks).
    pub fn random(config: &NcsnppConfig, seed: u64, device: &B::Device) -> Result<Self, NcsnppError> {
        config.validate()?;
        let mut builder = Builder::random(seed, device);
        let mut model = Self::build(config, &mut builder, device);
        model.parameters = builder.finish("random initialisation")?;
        model.parameters.retain(|(name, _)| name != SIGMAS);
        model.fingerprint = format!("ncsnpp:{}:random:{seed}", config_digest(config));
        Ok(model)
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &NcsnppConfig {
        &self.config
    }

    /// Parameter keys and shapes in the original `named_parameters()` order (buffers excluded).
    pub fn parameters(&self) -> &[(String, Vec<usize>)] {
        &self.parameters
    }

    /// Number of parameter values (what `sum(p.numel() for p in model.parameters())` counts).
    pub fn num_params(&self) -> usize {
        self.parameters.iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    fn build(config: &NcsnppConfig, b: &mut Builder<'_, B>, device: &B::Device) -> Self {
        let c = config;
        let nf = c.nf;
        let resampler = Resampler::new(c, device);
        let sigmas = b.tensor(SIGMAS, [c.num_scales], Init::Values(c.sigmas()));
        let mut names = Names(0);
        let (fourier, embed_dim) = match c.embedding {
            Embedding::Fourier => (
                Some(b.tensor(&format!("{}.W", names.next()), [nf], Init::Normal(c.fourier_scale)).reshape([1, nf])),
                2 * nf,
            ),
            Embedding::Positional => (None, nf),
        };
        let mut dense = None;
        if c.conditional {
            let first = Linear::build(b, &names.next(), embed_dim, 4 * nf);
            dense = Some((first, Linear::build(b, &names.next(), 4 * nf, 4 * nf)));
        }
        let conv_in = Conv::build(b, &names.next(), c.channels, nf, 3);
        let resolutions = c.resolutions();
        let levels = c.ch_mult.len();
        let res = |b: &mut Builder<'_, B>, name: String, i: usize, o: usize, r: Resample| {
            ResBlock::build(b, &name, c, &resampler, i, o, r)
        };
        let attn = |b: &mut Builder<'_, B>, name: String, ch: usize| AttnBlock::build(b, &name, ch, c.skip_rescale);

        let mut hs_c = vec![nf];
        let mut in_ch = nf;
        let mut pyramid_ch = c.channels;
        let mut down = Vec::with_capacity(levels);
        for (level, (&mult, &resolution)) in c.ch_mult.iter().zip(&resolutions).enumerate() {
            let mut blocks = vec![];
            for _ in 0..c.num_res_blocks {
                let out_ch = nf * mult;
                let block = res(b, names.next(), in_ch, out_ch, Resample::Keep);
                in_ch = out_ch;
                let a = c.attn_resolutions.contains(&resolution).then(|| attn(b, names.next(), in_ch));
                blocks.push((block, a));
                hs_c.push(in_ch);
            }
            let mut transition = None;
            if level + 1 < levels {
                let down = res(b, names.next(), in_ch, in_ch, Resample::Down);
                let pyramid = match c.progressive_input {
                    ProgressiveInput::None => PyramidIn::None,
                    ProgressiveInput::InputSkip => {
                        let combine = Combine::build(b, &names.next(), pyramid_ch, in_ch, c.combine);
                        if c.combine == CombineMethod::Cat {
                            in_ch *= 2;
                        }
                        PyramidIn::Skip(combine)
                    }
                    ProgressiveInput::Residual => {
                        let conv = ConvDownsample::build(b, &names.next(), c, pyramid_ch, in_ch);
                        pyramid_ch = in_ch;
                        PyramidIn::Residual(conv)
                    }
                };
                hs_c.push(in_ch);
                transition = Some(Transition { down, pyramid });
            }
            down.push(DownLevel { blocks, transition });
        }

        in_ch = *hs_c.last().expect("hs_c starts with nf");
        let middle = (
            res(b, names.next(), in_ch, in_ch, Resample::Keep),
            attn(b, names.next(), in_ch),
            res(b, names.next(), in_ch, in_ch, Resample::Keep),
        );

        let mut up = Vec::with_capacity(levels);
        for level in (0..levels).rev() {
            let mut blocks = vec![];
            for _ in 0..=c.num_res_blocks {
                let out_ch = nf * c.ch_mult[level];
                let skip = hs_c.pop().expect("one skip per block");
                blocks.push(res(b, names.next(), in_ch + skip, out_ch, Resample::Keep));
                in_ch = out_ch;
            }
            let a = c.attn_resolutions.contains(&resolutions[level]).then(|| attn(b, names.next(), in_ch));
            let mut pyramid = None;
            if c.progressive == Progressive::OutputSkip {
                let norm = GroupNorm::build(b, &names.next(), in_ch);
                pyramid = Some((norm, Conv::build(b, &names.next(), in_ch, c.channels, 3)));
            }
            let upsample = (level != 0).then(|| res(b, names.next(), in_ch, in_ch, Resample::Up));
            up.push(UpLevel { blocks, attn: a, pyramid, up: upsample });
        }
        debug_assert!(hs_c.is_empty());
        let mut head = None;
        if c.progressive != Progressive::OutputSkip {
            let norm = GroupNorm::build(b, &names.next(), in_ch);
            head = Some((norm, Conv::build(b, &names.next(), in_ch, c.channels, 3)));
        }
        Self {
            config: c.clone(),
            sigmas,
            fourier,
            dense,
            conv_in,
            down,
            middle,
            up,
            head,
            resampler,
            parameters: vec![],
            fingerprint: String::new(),
        }
    }

    /// The original `NCSNpp.forward(x, time_cond)`: `time_cond` is the model time (t·999 in
    /// FlowGrad), `[B]`; returns `[B, C, H, W]`, divided by σ when `scale_by_sigma`.
    pub fn forward(&self, x: Tensor<B, 4>, time_cond: Tensor<B, 1>) -> Tensor<B, 4> {
        let c = &self.config;
        let act = |t: Tensor<B, 4>| activate(c.activation, t);
        let (embedding, sigma) = self.embed(time_cond);
        let temb =
            self.dense.as_ref().map(|(first, second)| second.forward(activate(c.activation, first.forward(embedding))));
        let temb = temb.as_ref();
        let x = if c.centered { x } else { x.mul_scalar(2.0).sub_scalar(1.0) };

        let mut input_pyramid = x.clone();
        let mut hs = vec![self.conv_in.forward(x)];
        for level in &self.down {
            for (block, attn) in &level.blocks {
                let mut h = block.forward(hs.last().expect("non-empty").clone(), temb);
                if let Some(attn) = attn {
                    h = attn.forward(h);
                }
                hs.push(h);
            }
            if let Some(t) = &level.transition {
                let mut h = t.down.forward(hs.last().expect("non-empty").clone(), temb);
                match &t.pyramid {
                    PyramidIn::None => {}
                    PyramidIn::Skip(combine) => {
                        input_pyramid = self.resampler.down(input_pyramid);
                        h = combine.forward(input_pyramid.clone(), h);
                    }
                    PyramidIn::Residual(conv) => {
                        let sum = conv.forward(input_pyramid) + h;
                        input_pyramid = if c.skip_rescale { sum.div_scalar(std::f32::consts::SQRT_2) } else { sum };
                        h = input_pyramid.clone();
                    }
                }
                hs.push(h);
            }
        }

        let mut h = hs.last().expect("non-empty").clone();
        h = self.middle.0.forward(h, temb);
        h = self.middle.1.forward(h);
        h = self.middle.2.forward(h, temb);

        let mut pyramid: Option<Tensor<B, 4>> = None;
        for level in &self.up {
            for block in &level.blocks {
                h = block.forward(Tensor::cat(vec![h, hs.pop().expect("one skip per block")], 1), temb);
            }
            if let Some(attn) = &level.attn {
                h = attn.forward(h);
            }
            if let Some((norm, conv)) = &level.pyramid {
                let out = conv.forward(act(norm.forward(h.clone())));
                pyramid = Some(match pyramid {
                    None => out,
                    Some(p) => self.resampler.up(p) + out,
                });
            }
            if let Some(block) = &level.up {
                h = block.forward(h, temb);
            }
        }
        let out = match (&self.head, pyramid) {
            (Some((norm, conv)), _) => conv.forward(act(norm.forward(h))),
            (None, Some(p)) => p,
            (None, None) => unreachable!("output_skip builds a pyramid at every level"),
        };
        if c.scale_by_sigma {
            let batch = out.dims()[0];
            out / sigma.reshape([batch, 1, 1, 1])
        } else {
            out
        }
    }

    /// The time embedding and σ of `time_cond`: Fourier features of ln(time_cond) with
    /// σ = time_cond, or sinusoidal features of time_cond with σ = sigmas[⌊time_cond⌋].
    fn embed(&self, time_cond: Tensor<B, 1>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let [batch] = time_cond.dims();
        let nf = self.config.nf;
        match &self.fourier {
            Some(w) => {
                // ((ln t · W) · 2) · π in f32, in this order (FORMAT.md: the phase reaches ~2e3)
                let phase = (time_cond.clone().log().reshape([batch, 1]) * w.clone())
                    .mul_scalar(2.0)
                    .mul_scalar(std::f32::consts::PI);
                (Tensor::cat(vec![phase.clone().sin(), phase.cos()], 1), time_cond)
            }
            None => {
                let half = nf / 2;
                let step = (10000f64.ln() / (half as f64 - 1.0)) as f32;
                let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
                let device = time_cond.device();
                let freqs = Tensor::<B, 2>::from_data(TensorData::new(freqs, [1, half]), &device);
                let phase = time_cond.clone().reshape([batch, 1]) * freqs;
                let mut parts = vec![phase.clone().sin(), phase.cos()];
                if nf % 2 == 1 {
                    parts.push(Tensor::zeros([batch, 1], &device));
                }
                let index: Tensor<B, 1, Int> = time_cond.detach().int();
                (Tensor::cat(parts, 1), self.sigmas.clone().select(0, index))
            }
        }
    }
}

impl<B: Backend> VelocityField<B> for Ncsnpp<B> {
    /// v(x, t) = model(x, t·999), the FlowGrad convention.
    fn velocity(&self, x: Tensor<B, 4>, t: Tensor<B, 1>) -> Tensor<B, 4> {
        self.forward(x, t.mul_scalar(TIME_SCALE))
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// NCSN++ is a plain struct of tensors rather than a burn module: its values-only forwards run
/// through autodiff, releasing the graph entries after each ([`Untracked`]).
impl<B: AutodiffBackend> DifferentiableField<B> for Ncsnpp<B> {
    type Values = Untracked<B, Ncsnpp<B>>;
    fn values(&self) -> Self::Values {
        Untracked::new(self.clone())
    }
}

/// The key of the original's `sigmas` buffer.
pub(crate) const SIGMAS: &str = "sigmas";

/// SHA-256 (hex, first 16) of every hyper-parameter of `config`.
fn config_digest(config: &NcsnppConfig) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("{config:?}").as_bytes()))[..16].to_string()
}

/// SHA-256 (hex, first 16) over keys, shapes and values of `weights`.
fn state_dict_digest(weights: &StateDict) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, p) in &weights.tensors {
        hasher.update(name.as_bytes());
        hasher.update(format!("{:?}", p.shape).as_bytes());
        for v in &p.values {
            hasher.update(v.to_le_bytes());
        }
    }
    hex::encode(hasher.finalize())[..16].to_string()
}
