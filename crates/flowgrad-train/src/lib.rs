//! Seeded, resumable training of the bundled FlowGrad models on Fashion-MNIST, their evaluation,
//! and the model card.
//!
//! Public entry points (all write into `out_dir`, usually `assets/`):
//!
//! ```text
//! pub fn train_flow(cfg: &FlowTrainConfig, out_dir: &Path) -> anyhow::Result<FlowReport>
//!     // flow.safetensors, flow.config.json, samples.png, flow.report.json
//! pub fn train_ddim(cfg: &FlowTrainConfig, out_dir: &Path) -> anyhow::Result<FlowReport>
//!     // ddim.safetensors, ddim.config.json, samples-ddim.png, ddim.report.json
//! pub fn train_classifier(cfg: &ClassifierTrainConfig, out_dir: &Path) -> anyhow::Result<ClassifierReport>
//!     // classifier.safetensors, classifier.config.json, classifier.report.json
//! pub fn train_reflow(cfg: &ReflowTrainConfig, out_dir: &Path) -> anyhow::Result<ReflowReport>
//!     // flow-reflow.safetensors, flow-reflow.config.json, samples-reflow.png, flow-reflow.report.json
//! pub fn train_judge(cfg: &JudgeTrainConfig, out_dir: &Path) -> anyhow::Result<ClassifierReport>
//!     // judge.safetensors, judge.config.json, judge.report.json
//! pub fn write_model_card(out_dir: &Path, command: &str, total_wall_s: Option<f64>) -> anyhow::Result<PathBuf>
//!     // MODEL_CARD.md and metrics.json from the *.report.json files present
//! ```
//!
//! Every config is serde with defaults (`FlowTrainConfig::default()` etc.); the shared loop
//! settings live in `cfg.run` ([`LoopConfig`]: `steps`, `batch`, `lr`, `warmup`, `seed`,
//! `checkpoint_every`, `resume`, `data_dir`). With `cfg.run.resume = true` a run continues from
//! `out_dir/checkpoints/{flow,ddim,reflow,classifier,judge}/` (a further reflow round: `reflow-from-<digest
//! of its starting weights>/`) (model, Adam state, step, seed); batches, noise
//! and times of step k depend only on (seed, k), so a resumed run matches an uninterrupted one.
//! Training runs on `flowgrad_backend::Backend`: the CPU `flex` backend, or CUDA in a `cuda` build.

pub mod card;
pub mod classify;
pub mod data;
pub mod eval;
pub mod flow;
pub mod reflow;
pub mod trainer;

use std::path::Path;

use anyhow::Context;

pub use card::{update_model_card, write_model_card};
pub use classify::{
    ClassifierReport, ClassifierTrainConfig, JudgeTrainConfig, SupervisedConfig, train_classifier, train_judge,
};
pub use flow::{FlowReport, FlowTrainConfig, train_ddim, train_flow};
pub use reflow::{ReflowReport, ReflowTrainConfig, train_reflow};
pub use trainer::LoopConfig;

/// The backend models are trained on (the binaries' one backend choice).
pub type TrainBackend = flowgrad_backend::Backend;
/// The backend trained models are evaluated on (the same, without autodiff).
pub type EvalBackend = flowgrad_backend::InnerBackend;

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?).with_context(|| format!("writing {}", path.display()))
}

/// Reads `<name>.report.json` from `out_dir`: `None` when there is none.
fn read_report<T: serde::de::DeserializeOwned>(out_dir: &Path, name: &str) -> anyhow::Result<Option<T>> {
    let path = out_dir.join(format!("{name}.report.json"));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
}
