//! `flowgrad`: edit images with FlowGrad, check parity with the original code, benchmark.

mod convert;
mod fleet;
mod parity;
mod run;
mod train;

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
    Demo(flowgrad_lab::demo::DemoArgs),
    /// Compare this implementation with fixtures produced by the original PyTorch code.
    Parity {
        #[command(subcommand)]
        set: parity::ParitySet,
    },
    /// Edit images towards a class with the bundled model, in one process (embedded fleet: the
    /// same coordinator and workers over a local store and an in-process broker).
    Run(run::RunArgs),
    /// Edit one image (`--input` is the file, `--output` the edited PNG).
    Edit(run::RunArgs),
    /// Submit a job file (TOML or JSON) to a running fleet; prints the job id.
    Submit {
        #[command(flatten)]
        fleet: fleet::FleetArgs,
        /// The job file.
        job: PathBuf,
    },
    /// Show a job's progress: counts, rate, ETA, failures with reasons.
    Status {
        #[command(flatten)]
        fleet: fleet::FleetArgs,
        /// The job id.
        job_id: uuid::Uuid,
        /// Keep polling until the job ends.
        #[arg(long)]
        watch: bool,
        /// With --watch: seconds to wait for a job that has no status yet before reporting it
        /// unknown (exit code 3).
        #[arg(long, default_value_t = 60)]
        wait_seconds: u64,
    },
    /// Cancel a running job: queued and running tasks stop (recorded as cancelled), the job ends
    /// as `cancelled`; outputs already written stay.
    Cancel {
        #[command(flatten)]
        fleet: fleet::FleetArgs,
        /// The job id.
        job_id: uuid::Uuid,
        /// Reason recorded in the job status.
        #[arg(long, default_value = "cancelled by the user")]
        reason: String,
    },
    /// Train a bundled model (seeded, resumable) and refresh assets/MODEL_CARD.md.
    Train(train::TrainArgs),
    /// Table-2 analog: FlowGrad vs exact gradient vs x_0-only vs guided sampling on Fashion-MNIST
    /// test images, judged by the independent judge; ξ and N sweeps; JSON, table and PNG plots.
    Eval(flowgrad_lab::eval::EvalArgs),
    /// Convert a RectifiedFlow NCSN++ checkpoint (`.pth`, EMA weights by default) or state dict to
    /// safetensors under the original keys.
    Convert(convert::ConvertArgs),
    /// Benchmarks, reported as ratios measured in one run.
    Bench {
        #[command(subcommand)]
        suite: flowgrad_lab::bench::Suite,
    },
}

fn main() -> ExitCode {
    flowgrad_backend::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => flowgrad_lab::demo::run(&args),
        Command::Parity { set } => parity::run(&set),
        Command::Bench { suite } => flowgrad_lab::bench::run(&suite),
        Command::Convert(args) => convert::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => flowgrad_lab::eval::run(&args),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run::run(&args))),
        Command::Edit(args) => {
            let (input, output) = (args.input.first().cloned().unwrap_or_default(), args.output.clone());
            runtime().and_then(|rt| rt.block_on(run::edit(&input, &output, args)))
        }
        Command::Submit { fleet, job } => {
            runtime().and_then(|rt| rt.block_on(fleet::submit(fleet.config.as_deref(), &job)))
        }
        Command::Cancel { fleet, job_id, reason } => {
            runtime().and_then(|rt| rt.block_on(fleet::cancel(fleet.config.as_deref(), job_id, &reason)))
        }
        Command::Status { fleet, job_id, watch, wait_seconds } => {
            runtime().and_then(|rt| rt.block_on(fleet::status(fleet.config.as_deref(), job_id, watch, wait_seconds)))
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
