//! The shared training loop: Adam with warm-up + cosine learning rate, progress bar, periodic
//! checkpoints (model, optimizer state, step, seed) and resumption.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer, adaptor::OptimizerAdaptor};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{ElementConversion, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::TrainBackend;

/// Settings shared by every training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopConfig {
    /// Optimisation steps in total (a resumed run continues up to this many).
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Peak learning rate of Adam.
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup: usize,
    /// Seed of batches, noise and times (the model's initial weights have their own seed).
    pub seed: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Continue from the last checkpoint under `out_dir/checkpoints/` if there is one.
    pub resume: bool,
    /// Fashion-MNIST folder.
    pub data_dir: PathBuf,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            steps: 1500,
            batch: 64,
            lr: 2e-3,
            warmup: 100,
            seed: 0,
            checkpoint_every: 250,
            resume: false,
            data_dir: PathBuf::from(flowgrad_models::fashion::DEFAULT_DIR),
        }
    }
}

impl LoopConfig {
    /// Learning rate of `step`: linear warm-up, then cosine decay to 2% of the peak.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let progress = (step - self.warmup) as f64 / (self.steps - self.warmup).max(1) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
        self.lr * (0.02 + 0.98 * cosine)
    }
}

/// Progress saved with each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    /// Steps completed.
    step: usize,
    /// The loop seed (step RNGs are derived from it and the step index).
    seed: u64,
    /// Training seconds spent so far, over all runs.
    elapsed_s: f64,
    /// Mean loss of each logging window so far.
    loss_curve: Vec<(usize, f64)>,
}

/// What a finished loop hands back.
pub struct LoopOutcome<M> {
    /// The trained model.
    pub model: M,
    /// Training seconds over all runs (excluding evaluation).
    pub wall_s: f64,
    /// Mean seconds per step in this run.
    pub step_s: f64,
    /// Mean loss of each logging window.
    pub loss_curve: Vec<(usize, f64)>,
}

type Adaptor<M> = OptimizerAdaptor<Adam, M, TrainBackend>;

const LOG_EVERY: usize = 50;

/// Trains `model` for `cfg.steps` steps of `loss(model, step)` under `out_dir/checkpoints/name`.
pub fn run<M, F>(name: &str, cfg: &LoopConfig, out_dir: &Path, model: M, mut loss: F) -> anyhow::Result<LoopOutcome<M>>
where
    M: AutodiffModule<TrainBackend>,
    F: FnMut(&M, usize) -> Tensor<TrainBackend, 1>,
{
    if cfg.steps == 0 || cfg.batch == 0 || cfg.checkpoint_every == 0 {
        bail!("{name}: steps, batch and checkpoint_every must be positive");
    }
    let dir = out_dir.join("checkpoints").join(name);
    let mut model = model;
    let mut optim: Adaptor<M> = AdamConfig::new().init();
    let mut state = CheckpointState { step: 0, seed: cfg.seed, elapsed_s: 0.0, loss_curve: Vec::new() };
    if cfg.resume && dir.join("state.json").exists() {
        (model, optim, state) = load_checkpoint(&dir, model, optim)?;
        if state.seed != cfg.seed {
            bail!("{name}: checkpoint was trained with seed {}, config has {}", state.seed, cfg.seed);
        }
        eprintln!("{name}: resuming at step {}", state.step);
    }
    let bar = ProgressBar::new(cfg.steps as u64).with_position(state.step as u64);
    bar.set_style(ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {elapsed}<{eta} {msg}")?);
    bar.set_prefix(name.to_string());
    let start_step = state.step;
    let started = Instant::now();
    let (mut window, mut window_n) = (0.0, 0usize);
    for step in state.step..cfg.steps {
        let value = loss(&model, step);
        let loss_value: f64 = value.clone().into_scalar().elem();
        if !loss_value.is_finite() {
            bail!("{name}: loss is {loss_value} at step {step}");
        }
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optim.step(cfg.lr_at(step), model, grads);
        window += loss_value;
        window_n += 1;
        bar.inc(1);
        let done = step + 1;
        if done % LOG_EVERY == 0 || done == cfg.steps {
            let mean = window / window_n as f64;
            state.loss_curve.push((done, mean));
            bar.set_message(format!("loss {mean:.4}"));
            if bar.is_hidden() {
                let secs = started.elapsed().as_secs_f64();
                eprintln!("{name}: step {done}/{} loss {mean:.4} ({secs:.0} s)", cfg.steps);
            }
            (window, window_n) = (0.0, 0);
        }
        if done % cfg.checkpoint_every == 0 || done == cfg.steps {
            state.step = done;
            let run_s = started.elapsed().as_secs_f64();
            let saved = CheckpointState { elapsed_s: state.elapsed_s + run_s, ..state.clone() };
            save_checkpoint(&dir, &model, &optim, &saved)?;
        }
    }
    bar.finish();
    let run_s = started.elapsed().as_secs_f64();
    let steps_run = (cfg.steps - start_step).max(1);
    Ok(LoopOutcome {
        model,
        wall_s: state.elapsed_s + run_s,
        step_s: run_s / steps_run as f64,
        loss_curve: state.loss_curve,
    })
}

fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::new()
}

fn save_checkpoint<M: AutodiffModule<TrainBackend>>(
    dir: &Path,
    model: &M,
    optim: &Adaptor<M>,
    state: &CheckpointState,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    model.clone().save_file(dir.join("model"), &recorder()).context("saving model checkpoint")?;
    recorder().record(optim.to_record(), dir.join("optim")).context("saving optimizer checkpoint")?;
    // state.json last: its presence marks a complete checkpoint.
    std::fs::write(dir.join("state.json"), serde_json::to_string_pretty(state)?)?;
    Ok(())
}

fn load_checkpoint<M: AutodiffModule<TrainBackend>>(
    dir: &Path,
    model: M,
    optim: Adaptor<M>,
) -> anyhow::Result<(M, Adaptor<M>, CheckpointState)> {
    let device = Default::default();
    let state: CheckpointState = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)
        .with_context(|| format!("reading {}/state.json", dir.display()))?;
    let model = model.load_file(dir.join("model"), &recorder(), &device).context("loading model checkpoint")?;
    let record = recorder().load(dir.join("optim"), &device).context("loading optimizer checkpoint")?;
    Ok((model, optim.load_record(record), state))
}
