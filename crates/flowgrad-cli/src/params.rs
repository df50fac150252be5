//! FlowGrad's parameters on the command line. Every default is `EditParams::default()`'s (the
//! one source the job files, helm values and docs also read): a flag left out keeps it.

use clap::Args;
use flowgrad::{EditParams, Faithfulness, SegmentAnchor, SegmentGradient, UpdateRule};

fn defaults() -> EditParams {
    EditParams::default()
}

/// The edit parameters a command accepts.
#[derive(Args, Debug, Clone)]
pub struct ParamArgs {
    /// Euler steps N.
    #[arg(long, default_value_t = defaults().steps)]
    pub steps: usize,
    /// FlowGrad iterations M.
    #[arg(long, default_value_t = defaults().iterations)]
    pub iterations: usize,
    /// Update rule: `trust_region` (normalised steps, per-image radius; the default) or
    /// `gradient` (the paper's u ← u − α·∇, with `--step-size`).
    #[arg(long, value_parser = crate::serde_enum::<UpdateRule>)]
    pub update: Option<UpdateRule>,
    /// The trust region's first radius ρ: RMS change of the output per iteration, in data units.
    #[arg(long, default_value_t = defaults().trust_radius)]
    pub trust_radius: f32,
    /// Gradient step α of `--update gradient`.
    #[arg(long, default_value_t = defaults().step_size)]
    pub step_size: f32,
    /// Straightness threshold ξ.
    #[arg(long, default_value_t = defaults().xi)]
    pub xi: f32,
    /// Guidance weight η (1 − η weighs faithfulness).
    #[arg(long, default_value_t = defaults().eta)]
    pub eta: f32,
    /// Guidance scale s of the guided-sampling warm start (controls start at guided sampling's
    /// −s·∇G instead of zero); 0 starts from u = 0, as the paper does.
    #[arg(long, default_value_t = defaults().warm_start)]
    pub warm_start: f32,
    /// What faithfulness measures: `l1` (mean absolute difference) or `l1_ssim` (plus 1 − SSIM).
    #[arg(long, value_parser = crate::serde_enum::<Faithfulness>)]
    pub faithfulness: Option<Faithfulness>,
    /// How a merged segment's gradient reaches its steps: `copy` (the paper's, the default) or
    /// `interpolate` (`params.segment_gradient`).
    #[arg(long, value_parser = crate::serde_enum::<SegmentGradient>)]
    pub segment_gradient: Option<SegmentGradient>,
    /// The step a merged segment's VJP is evaluated at: `start` (the paper's, the default) or
    /// `middle` (`params.segment_anchor`).
    #[arg(long, value_parser = crate::serde_enum::<SegmentAnchor>)]
    pub segment_anchor: Option<SegmentAnchor>,
}

impl ParamArgs {
    /// The parameters: `EditParams::default()` with the given flags applied.
    pub fn to_params(&self) -> EditParams {
        let base = defaults();
        EditParams {
            steps: self.steps,
            iterations: self.iterations,
            update: self.update.unwrap_or(base.update),
            trust_radius: self.trust_radius,
            step_size: self.step_size,
            xi: self.xi,
            eta: self.eta,
            warm_start: self.warm_start,
            faithfulness: self.faithfulness.unwrap_or(base.faithfulness),
            segment_gradient: self.segment_gradient.unwrap_or(base.segment_gradient),
            segment_anchor: self.segment_anchor.unwrap_or(base.segment_anchor),
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        params: ParamArgs,
    }

    #[test]
    fn no_flags_give_the_default_parameters() {
        assert_eq!(Cli::parse_from(["flowgrad"]).params.to_params(), EditParams::default());
    }

    #[test]
    fn flags_override_only_their_parameter() {
        let p = Cli::parse_from(["flowgrad", "--steps", "25", "--update", "gradient", "--segment-anchor", "middle"]).params.to_params();
        assert_eq!(p, EditParams { steps: 25, update: UpdateRule::Gradient, segment_anchor: SegmentAnchor::Middle, ..EditParams::default() });
    }
}
