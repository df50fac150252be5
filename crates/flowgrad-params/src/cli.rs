//! The edit parameters as command-line flags (feature `clap`). Every default is
//! `EditParams::default()`'s (the one source the job files, helm values and docs also read): a
//! flag left out keeps it.

use clap::Args;

use crate::{EditParams, Faithfulness, SegmentAnchor, SegmentGradient, UpdateRule};

/// Parses a value by its serialised (job parameter) name, e.g. `paper` or `interpolate`: the
/// `value_parser` of every enum flag, so flags and job files spell values alike.
pub fn parse_enum<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|e| e.to_string())
}

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
    #[arg(long, value_parser = parse_enum::<UpdateRule>)]
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
    #[arg(long, value_parser = parse_enum::<Faithfulness>)]
    pub faithfulness: Option<Faithfulness>,
    /// How a merged segment's gradient reaches its steps: `copy` (the paper's, the default) or
    /// `interpolate` (`params.segment_gradient`).
    #[arg(long, value_parser = parse_enum::<SegmentGradient>)]
    pub segment_gradient: Option<SegmentGradient>,
    /// The step a merged segment's VJP is evaluated at: `start` (the paper's, the default) or
    /// `middle` (`params.segment_anchor`).
    #[arg(long, value_parser = parse_enum::<SegmentAnchor>)]
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
    fn an_unknown_value_is_refused_with_the_reason() {
        let err = Cli::try_parse_from(["flowgrad", "--update", "newton"]).err().unwrap().to_string();
        assert!(err.contains("newton") && err.contains("trust_region"), "{err}");
    }

    #[test]
    fn flags_override_only_their_parameter() {
        let p = Cli::parse_from(["flowgrad", "--steps", "25", "--update", "gradient", "--segment-anchor", "middle"])
            .params
            .to_params();
        assert_eq!(
            p,
            EditParams {
                steps: 25,
                update: UpdateRule::Gradient,
                segment_anchor: SegmentAnchor::Middle,
                ..EditParams::default()
            }
        );
    }
}
