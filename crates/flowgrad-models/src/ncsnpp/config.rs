//! The NCSN++ hyper-parameters, read from the original RectifiedFlow config (its `data` and
//! `model` blocks, as dumped to JSON), with the CelebA-HQ 256² preset.

use serde_json::Value;

use super::NcsnppError;

/// Output-side progressive growing (`model.progressive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progressive {
    /// A plain GroupNorm + conv head on the last feature map.
    None,
    /// An image pyramid summed over resolutions (`output_skip`).
    OutputSkip,
}

/// Input-side progressive growing (`model.progressive_input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressiveInput {
    /// No input pyramid.
    None,
    /// A downsampled input image combined into each level (`input_skip`).
    InputSkip,
    /// A learned downsampling of the input mixed into `h` (`residual`).
    Residual,
}

/// How `input_skip` combines the pyramid with the features (`model.progressive_combine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CombineMethod {
    /// `conv1x1(pyramid) + h`.
    Sum,
    /// `cat([conv1x1(pyramid), h])` (doubles the channels).
    Cat,
}

/// The time embedding (`model.embedding_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// Gaussian Fourier features of log(time), with a `W` parameter.
    Fourier,
    /// Transformer sinusoidal features of the time; σ = sigmas[time as integer].
    Positional,
}

/// The activation (`model.nonlinearity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (`swish`).
    Swish,
    /// ReLU.
    Relu,
    /// Leaky ReLU with slope 0.2 (`lrelu`).
    LeakyRelu,
    /// ELU with α = 1.
    Elu,
}

/// Hyper-parameters of NCSN++ with BigGAN residual blocks (`resblock_type = biggan`), the
/// architecture RectifiedFlow trains.
#[derive(Debug, Clone, PartialEq)]
pub struct NcsnppConfig {
    /// Image side (`data.image_size`).
    pub image_size: usize,
    /// Image channels (`data.num_channels`).
    pub channels: usize,
    /// Inputs are in [−1, 1] (`data.centered`); otherwise x ↦ 2x − 1 first.
    pub centered: bool,
    /// Base width (`model.nf`).
    pub nf: usize,
    /// Width multiplier per resolution level (`model.ch_mult`).
    pub ch_mult: Vec<usize>,
    /// Residual blocks per level on the way down (`model.num_res_blocks`).
    pub num_res_blocks: usize,
    /// Feature-map sides that get self-attention (`model.attn_resolutions`).
    pub attn_resolutions: Vec<usize>,
    /// FIR resampling (`model.fir`); otherwise nearest/average resampling.
    pub fir: bool,
    /// The separable FIR kernel (`model.fir_kernel`).
    pub fir_kernel: Vec<f32>,
    /// Divide residual sums by √2 (`model.skip_rescale`).
    pub skip_rescale: bool,
    /// Output pyramid mode.
    pub progressive: Progressive,
    /// Input pyramid mode.
    pub progressive_input: ProgressiveInput,
    /// Combination of the input pyramid.
    pub combine: CombineMethod,
    /// Time embedding.
    pub embedding: Embedding,
    /// Standard deviation of the Fourier `W` at initialisation (`model.fourier_scale`).
    pub fourier_scale: f32,
    /// Time-conditioned (`model.conditional`).
    pub conditional: bool,
    /// Divide the output by σ (`model.scale_by_sigma`): the model time t·999 for Fourier.
    pub scale_by_sigma: bool,
    /// Activation.
    pub activation: Activation,
    /// Largest σ of the `sigmas` buffer (`model.sigma_max`).
    pub sigma_max: f64,
    /// Smallest σ of the `sigmas` buffer (`model.sigma_min`).
    pub sigma_min: f64,
    /// Length of the `sigmas` buffer (`model.num_scales`).
    pub num_scales: usize,
}

impl NcsnppConfig {
    /// The RectifiedFlow CelebA-HQ 256² model (`celeba_hq_pytorch_rf_gaussian.py` on the LSUN
    /// defaults): nf 128, ch_mult (1,1,2,2,2,2,2), 2 blocks, attention at 16.
    pub fn celeba_hq_256() -> Self {
        Self {
            image_size: 256,
            channels: 3,
            centered: true,
            nf: 128,
            ch_mult: vec![1, 1, 2, 2, 2, 2, 2],
            num_res_blocks: 2,
            attn_resolutions: vec![16],
            fir: true,
            fir_kernel: vec![1.0, 3.0, 3.0, 1.0],
            skip_rescale: true,
            progressive: Progressive::OutputSkip,
            progressive_input: ProgressiveInput::InputSkip,
            combine: CombineMethod::Sum,
            embedding: Embedding::Fourier,
            fourier_scale: 16.0,
            conditional: true,
            scale_by_sigma: true,
            activation: Activation::Swish,
            sigma_max: 378.0,
            sigma_min: 0.01,
            num_scales: 2000,
        }
    }

    /// Reads the original config as JSON: an object with `data` and `model` blocks (the
    /// fixtures' `config.json`). Fields absent from the blocks take the CelebA-HQ values.
    pub fn from_original_json(config: &Value) -> Result<Self, NcsnppError> {
        let mut c = Self::celeba_hq_256();
        let (data, model) = (&config["data"], &config["model"]);
        if !model.is_object() {
            return Err(bad("model", "the config has no `model` block"));
        }
        if let Some(name) = model.get("name")
            && name.as_str() != Some("ncsnpp")
        {
            return Err(bad("model.name", format!("{name} is not ncsnpp")));
        }
        if let Some(kind) = model.get("resblock_type")
            && kind.as_str().map(str::to_lowercase).as_deref() != Some("biggan")
        {
            return Err(bad("model.resblock_type", format!("{kind} is not supported (only biggan)")));
        }
        read_usize(data, "image_size", &mut c.image_size)?;
        read_usize(data, "num_channels", &mut c.channels)?;
        read_bool(data, "centered", &mut c.centered)?;
        read_usize(model, "nf", &mut c.nf)?;
        read_usizes(model, "ch_mult", &mut c.ch_mult)?;
        read_usize(model, "num_res_blocks", &mut c.num_res_blocks)?;
        read_usizes(model, "attn_resolutions", &mut c.attn_resolutions)?;
        read_bool(model, "fir", &mut c.fir)?;
        if let Some(v) = model.get("fir_kernel") {
            c.fir_kernel = v
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect())
                .ok_or_else(|| bad("model.fir_kernel", "must be a list of numbers"))?;
        }
        read_bool(model, "skip_rescale", &mut c.skip_rescale)?;
        read_bool(model, "conditional", &mut c.conditional)?;
        read_bool(model, "scale_by_sigma", &mut c.scale_by_sigma)?;
        if let Some(v) = model.get("fourier_scale") {
            c.fourier_scale = v.as_f64().ok_or_else(|| bad("model.fourier_scale", "must be a number"))? as f32;
        }
        for (key, field) in [("sigma_max", &mut c.sigma_max), ("sigma_min", &mut c.sigma_min)] {
            if let Some(v) = model.get(key) {
                *field = v.as_f64().ok_or_else(|| bad(key, "must be a number"))?;
            }
        }
        read_usize(model, "num_scales", &mut c.num_scales)?;
        if let Some(mode) = read_str(model, "progressive")? {
            c.progressive = match mode.as_str() {
                "none" => Progressive::None,
                "output_skip" => Progressive::OutputSkip,
                // layerspp.Upsample(with_conv=True) fails in the original: `w[..., ::-1, ::-1]`
                // with FIR, `F.interpolate(x, size, 'nearest')` without.
                "residual" => {
                    return Err(bad(
                        "model.progressive",
                        "`residual` cannot run in the original code (its pyramid upsampling raises), so it is not supported",
                    ));
                }
                other => return Err(bad("model.progressive", format!("unknown mode `{other}`"))),
            };
        }
        if let Some(mode) = read_str(model, "progressive_input")? {
            c.progressive_input = match mode.as_str() {
                "none" => ProgressiveInput::None,
                "input_skip" => ProgressiveInput::InputSkip,
                "residual" => ProgressiveInput::Residual,
                other => return Err(bad("model.progressive_input", format!("unknown mode `{other}`"))),
            };
        }
        if let Some(mode) = read_str(model, "progressive_combine")? {
            c.combine = match mode.as_str() {
                "sum" => CombineMethod::Sum,
                "cat" => CombineMethod::Cat,
                other => return Err(bad("model.progressive_combine", format!("unknown method `{other}`"))),
            };
        }
        if let Some(kind) = read_str(model, "embedding_type")? {
            c.embedding = match kind.as_str() {
                "fourier" => Embedding::Fourier,
                "positional" => Embedding::Positional,
                other => return Err(bad("model.embedding_type", format!("unknown embedding `{other}`"))),
            };
        }
        if let Some(act) = read_str(model, "nonlinearity")? {
            c.activation = match act.as_str() {
                "swish" => Activation::Swish,
                "relu" => Activation::Relu,
                "lrelu" => Activation::LeakyRelu,
                "elu" => Activation::Elu,
                other => return Err(bad("model.nonlinearity", format!("unknown activation `{other}`"))),
            };
        }
        if let Some(norm) = read_str(model, "normalization")?
            && norm != "groupnorm"
        {
            return Err(bad("model.normalization", format!("`{norm}` is not supported (only GroupNorm)")));
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks that the architecture can be built: positive sizes, an image side divisible by
    /// every downsampling, channel counts GroupNorm accepts, a FIR kernel of length ≥ 2.
    pub fn validate(&self) -> Result<(), NcsnppError> {
        if self.nf == 0 || self.ch_mult.is_empty() || self.ch_mult.contains(&0) || self.channels == 0 {
            return Err(bad("model", "nf, ch_mult and num_channels must be positive"));
        }
        if self.image_size == 0 || !self.image_size.is_multiple_of(1 << (self.ch_mult.len() - 1)) {
            return Err(bad(
                "data.image_size",
                format!("{} is not divisible by 2^{}", self.image_size, self.ch_mult.len() - 1),
            ));
        }
        if self.fir && self.fir_kernel.len() < 2 {
            return Err(bad("model.fir_kernel", "needs at least 2 taps"));
        }
        if !self.fir && self.progressive == Progressive::OutputSkip {
            // the non-FIR pyramid upsampling calls F.interpolate(x, size, 'nearest'), which raises
            return Err(bad(
                "model.fir",
                "output_skip without FIR cannot run in the original code, so it is not supported",
            ));
        }
        if self.nf < 4 {
            return Err(bad("model.nf", "GroupNorm needs at least 4 channels (groups = min(C/4, 32))"));
        }
        if self.embedding == Embedding::Positional && self.num_scales == 0 {
            return Err(bad("model.num_scales", "positional embedding indexes `sigmas`, which is empty"));
        }
        Ok(())
    }

    /// Side of the feature maps at each level: image_size / 2^level.
    pub fn resolutions(&self) -> Vec<usize> {
        (0..self.ch_mult.len()).map(|i| self.image_size >> i).collect()
    }

    /// The `sigmas` buffer the original registers: exp(linspace(ln σ_max, ln σ_min, num_scales)).
    pub fn sigmas(&self) -> Vec<f32> {
        let (hi, lo, n) = (self.sigma_max.ln(), self.sigma_min.ln(), self.num_scales);
        (0..n)
            .map(|i| {
                let frac = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 };
                (hi + (lo - hi) * frac).exp() as f32
            })
            .collect()
    }
}

fn bad(field: &str, reason: impl Into<String>) -> NcsnppError {
    NcsnppError::Config { field: field.to_string(), reason: reason.into() }
}

fn read_usize(block: &Value, key: &str, out: &mut usize) -> Result<(), NcsnppError> {
    if let Some(v) = block.get(key) {
        *out = v.as_u64().ok_or_else(|| bad(key, format!("{v} is not a non-negative integer")))? as usize;
    }
    Ok(())
}

fn read_usizes(block: &Value, key: &str, out: &mut Vec<usize>) -> Result<(), NcsnppError> {
    if let Some(v) = block.get(key) {
        *out = v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
            .ok_or_else(|| bad(key, format!("{v} is not a list of integers")))?;
    }
    Ok(())
}

fn read_bool(block: &Value, key: &str, out: &mut bool) -> Result<(), NcsnppError> {
    if let Some(v) = block.get(key) {
        *out = v.as_bool().ok_or_else(|| bad(key, format!("{v} is not a boolean")))?;
    }
    Ok(())
}

fn read_str(block: &Value, key: &str) -> Result<Option<String>, NcsnppError> {
    block
        .get(key)
        .map(|v| v.as_str().map(str::to_lowercase).ok_or_else(|| bad(key, format!("{v} is not a string"))))
        .transpose()
}
