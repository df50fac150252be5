//! `flowgrad`: edit images with FlowGrad, check parity with the original code, benchmark.

mod bench;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// FlowGrad Fleet command line.
#[derive(Parser)]
#[command(name = "flowgrad", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Edit a small synthetic batch on a built-in analytic ODE (no model needed) and show the
    /// objective per iteration, a checkpoint/resume round trip and the gradient cost.
    Demo(demo::DemoArgs),
    /// Compare this implementation with fixtures produced by the original PyTorch code.
    Parity {
        #[command(subcommand)]
        set: ParitySet,
    },
    /// Benchmarks, reported as ratios measured in one run.
    Bench {
        #[command(subcommand)]
        suite: bench::Suite,
    },
}

#[derive(Subcommand)]
enum ParitySet {
    /// A `flowgrad/` fixture set (FORMAT.md part B): time grid, straightness, segments,
    /// trajectory, loss gradient, re-assignment, SGD update.
    Flowgrad {
        /// Folder with config.json and data.safetensors.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Parity { set: ParitySet::Flowgrad { dir } } => parity_flowgrad(&dir),
        Command::Bench { suite } => bench::run(&suite),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn parity_flowgrad(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let report = flowgrad_parity::check_flowgrad(dir)?;
    println!("parity flowgrad {}", dir.display());
    println!("{report}");
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
