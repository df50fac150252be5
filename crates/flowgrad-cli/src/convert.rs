//! `flowgrad convert`: a RectifiedFlow checkpoint (`.pth`) or safetensors state dict to a
//! safetensors state dict under the original NCSN++ keys (no `module.` prefix).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use flowgrad_models::ncsnpp::{Ncsnpp, NcsnppConfig, WeightsChoice, read_weights, write_safetensors};

/// Options of `flowgrad convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint: `.pth` (torch zip format) or `.safetensors`.
    pub input: PathBuf,
    /// The safetensors file to write.
    pub output: PathBuf,
    /// Weights to take from a training checkpoint: `ema` or `model`.
    #[arg(long, default_value = "ema")]
    pub weights: WeightsChoice,
    /// An original config as JSON (`data` and `model` blocks): the weights are then checked to
    /// fill exactly that architecture (every key used, every parameter present, shapes equal).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Converts and reports the number of tensors and values written.
pub fn run(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    let dict = read_weights(&args.input, args.weights)?;
    if let Some(path) = &args.config {
        let config = NcsnppConfig::from_json_file(path)?;
        let model = Ncsnpp::<flowgrad_backend::InnerBackend>::from_state_dict(
            &config,
            &dict,
            &args.input.display().to_string(),
            &Default::default(),
        )?;
        println!("checked against {}: {} parameters", path.display(), model.num_params());
    }
    write_safetensors(&dict, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {} tensors ({} values, {:?} weights) to {}",
        dict.tensors.len(),
        dict.num_values(),
        args.weights,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
