//! `flowgrad train flow|classifier|judge`: reproducible (seeded), resumable training of the
//! bundled models, writing weights, reports and the model card.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use flowgrad_train::{ClassifierTrainConfig, FlowTrainConfig, JudgeTrainConfig, LoopConfig};

/// Which model to train.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    /// The rectified-flow UNet.
    Flow,
    /// The guidance classifier.
    Classifier,
    /// The independent judge (evaluation only).
    Judge,
}

/// Options of `flowgrad train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The model.
    which: Which,
    /// Output folder (weights, configs, reports, MODEL_CARD.md).
    #[arg(long, default_value = "assets")]
    out: PathBuf,
    /// Optimisation steps (default: the recipe's).
    #[arg(long)]
    steps: Option<usize>,
    /// Continue from `<out>/checkpoints/<model>/`.
    #[arg(long)]
    resume: bool,
    /// Seed (default: the recipe's).
    #[arg(long)]
    seed: Option<u64>,
}

fn apply(run: &mut LoopConfig, args: &TrainArgs) {
    if let Some(steps) = args.steps {
        run.steps = steps;
    }
    if let Some(seed) = args.seed {
        run.seed = seed;
    }
    run.resume = args.resume;
}

/// Trains one model and refreshes the model card.
pub fn run(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.out)?;
    match args.which {
        Which::Flow => {
            let mut cfg = FlowTrainConfig::default();
            apply(&mut cfg.run, args);
            flowgrad_train::train_flow(&cfg, &args.out)?;
        }
        Which::Classifier => {
            let mut cfg = ClassifierTrainConfig::default();
            apply(&mut cfg.run, args);
            flowgrad_train::train_classifier(&cfg, &args.out)?;
        }
        Which::Judge => {
            let mut cfg = JudgeTrainConfig::default();
            apply(&mut cfg.run, args);
            flowgrad_train::train_judge(&cfg, &args.out)?;
        }
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let card = flowgrad_train::write_model_card(&args.out, &command, Some(started.elapsed().as_secs_f64()))?;
    println!("model card: {}", card.display());
    Ok(ExitCode::SUCCESS)
}
