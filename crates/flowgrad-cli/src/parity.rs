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
    },
}

/// Runs one parity check and prints its report; exit 1 when a check is above tolerance.
pub fn run(set: &ParitySet) -> anyhow::Result<ExitCode> {
    match set {
        ParitySet::Flowgrad { dir } => print_report("flowgrad", dir, flowgrad_parity::check_flowgrad(dir)?),
    }
}

fn print_report(name: &str, dir: &Path, report: flowgrad_parity::ParityReport) -> anyhow::Result<ExitCode> {
    println!("parity {name} {}", dir.display());
    println!("{report}");
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
