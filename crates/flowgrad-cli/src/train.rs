//! `flowgrad train flow|ddim|reflow|classifier|judge`: reproducible (seeded), resumable training of the
//! bundled models, writing weights, reports and the model card.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use flowgrad_train::{ClassifierTrainConfig, FlowTrainConfig, JudgeTrainConfig, LoopConfig, ReflowTrainConfig};

/// Which model to train.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    /// The rectified-flow UNet.
    Flow,
    /// The diffusion model: the same UNet trained for v-prediction, sampled and edited as DDIM's ODE.
    Ddim,
    /// The reflowed (2-rectified) UNet, fine-tuned from the flow (or, with `--init`, from an
    /// earlier round) on the flow's own samples.
    Reflow,
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
    /// Reflow: folder of the teacher flow (default: `--out`).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Reflow: (noise, sample) pairs drawn from the teacher (default: the recipe's).
    #[arg(long)]
    pairs: Option<usize>,
    /// Reflow: the teacher's Euler steps per pair (default: the recipe's).
    #[arg(long)]
    pair_steps: Option<usize>,
    /// Reflow: seed of the pairs' noise (default: the recipe's; another seed draws fresh pairs).
    #[arg(long)]
    pair_seed: Option<u64>,
    /// Reflow: continue from the reflowed flow in this folder (a further round; default: start
    /// from the teacher).
    #[arg(long)]
    init: Option<PathBuf>,
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
        Which::Ddim => {
            let mut cfg = FlowTrainConfig::default();
            apply(&mut cfg.run, args);
            flowgrad_train::train_ddim(&cfg, &args.out)?;
            return refresh_card(args, started);
        }
        Which::Reflow => {
            let mut cfg = ReflowTrainConfig::default();
            apply(&mut cfg.run, args);
            cfg.teacher_dir = args.teacher.clone().unwrap_or_else(|| args.out.clone());
            cfg.pairs = args.pairs.unwrap_or(cfg.pairs);
            cfg.pair_steps = args.pair_steps.unwrap_or(cfg.pair_steps);
            cfg.pair_seed = args.pair_seed.unwrap_or(cfg.pair_seed);
            cfg.init_dir = args.init.clone();
            flowgrad_train::train_reflow(&cfg, &args.out)?;
            return refresh_card(args, started);
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

/// Renders the model card again after a model trained on its own (reflow, ddim), keeping the
/// set's command and wall time.
fn refresh_card(args: &TrainArgs, started: Instant) -> anyhow::Result<ExitCode> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let card = flowgrad_train::update_model_card(&args.out, &command, started.elapsed().as_secs_f64())?;
    println!("model card: {}", card.display());
    Ok(ExitCode::SUCCESS)
}
