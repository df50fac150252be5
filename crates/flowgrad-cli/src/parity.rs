//! `flowgrad parity`: compare this port with fixture sets made by the original PyTorch code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

/// The fixture sets `flowgrad parity` can check (layouts of `shared/fixtures/FORMAT.md`).
#[derive(Subcommand)]
pub enum ParitySet {
    /// A `flowgrad/` fixture set (FORMAT.md part B): time grid, straightness, segments,
    /// trajectory, loss gradient, re-assignment, SGD update.
    Flowgrad {
        /// Folder with config.json and data.safetensors.
        dir: PathBuf,
        /// The `ncsnpp/` set of the network the set was made with (default: the sibling
        /// `ncsnpp/` folder, if present; otherwise the checks that need it are skipped).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// An `ncsnpp/` fixture set (FORMAT.md part A): the network built from its config and
    /// weights (every key used), parameter count and order, outputs and input-VJPs per sample.
    Ncsnpp {
        /// Folder with config.json, weights.safetensors and io.safetensors.
        dir: PathBuf,
    },
    /// A `clip/` fixture set (FORMAT.md part C): every prompt through each tokenizer stage,
    /// the token rows, and the CLIP model's features, cosines, logits and cosine gradient.
    Clip {
        /// Folder with tokenizer.json, tokens.safetensors, config.json, weights.safetensors
        /// and io.safetensors.
        dir: PathBuf,
    },
}

/// Runs one parity check and prints its report; exit 1 when a check is above tolerance.
pub fn run(set: &ParitySet) -> anyhow::Result<ExitCode> {
    match set {
        ParitySet::Flowgrad { dir, model: None } => {
            print_report("flowgrad", dir, flowgrad_parity::check_flowgrad(dir)?)
        }
        ParitySet::Flowgrad { dir, model: Some(model) } => {
            print_report("flowgrad", dir, flowgrad_parity::check_flowgrad_with_model(dir, Some(model))?)
        }
        ParitySet::Ncsnpp { dir } => print_report("ncsnpp", dir, flowgrad_parity::check_ncsnpp(dir)?),
        ParitySet::Clip { dir } => print_report("clip", dir, flowgrad_parity::check_clip(dir)?),
    }
}

fn print_report(name: &str, dir: &Path, report: flowgrad_parity::ParityReport) -> anyhow::Result<ExitCode> {
    println!("parity {name} {}", dir.display());
    println!("{report}");
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
