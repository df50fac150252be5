//! Supervised training of the guidance classifier and the evaluation judge.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::config::Config;
use burn::module::AutodiffModule;
use flowgrad_models::fashion::{FashionMnist, Split};
use flowgrad_models::{ClassViews, ClassifierConfig, ImageClassifier, JudgeConfig, cross_entropy, save};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::{image_batch, sample_indices, step_rng};
use crate::eval::accuracy;
use crate::trainer::{LoopConfig, run};
use crate::{EvalBackend, TrainBackend, write_json};

/// Configuration of [`train_classifier`] (`M` = [`ClassifierConfig`]) and [`train_judge`]
/// (`M` = [`JudgeConfig`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, bound(serialize = "M: Serialize", deserialize = "M: DeserializeOwned, SupervisedConfig<M>: Default"))]
pub struct SupervisedConfig<M> {
    /// Architecture and initial-weight seed.
    pub model: M,
    /// Optimisation settings (batches are mirrored left–right at random as augmentation).
    pub run: LoopConfig,
    /// Random views each training image is replaced by (shifts, mirroring, Gaussian noise; a
    /// classifier trained on noisy views has input gradients that look like its classes, which
    /// is what guidance needs). `None`: mirroring only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<ClassViews>,
}

/// Configuration of [`train_classifier`].
pub type ClassifierTrainConfig = SupervisedConfig<ClassifierConfig>;
/// Configuration of [`train_judge`].
pub type JudgeTrainConfig = SupervisedConfig<JudgeConfig>;

impl Default for ClassifierTrainConfig {
    fn default() -> Self {
        Self {
            model: ClassifierConfig::new(),
            run: LoopConfig { steps: 3000, ..LoopConfig::default() },
            views: Some(ROBUST_VIEWS),
        }
    }
}

impl Default for JudgeTrainConfig {
    fn default() -> Self {
        Self { model: JudgeConfig::new(), run: LoopConfig::default(), views: None }
    }
}

/// Results of a classifier run, also written to `out_dir/{name}.report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierReport {
    /// "classifier" or "judge".
    pub name: String,
    /// Loop settings used.
    pub run: LoopConfig,
    /// Trainable parameters.
    pub parameters: usize,
    /// Training seconds (over all resumed runs).
    pub wall_s: f64,
    /// Mean seconds per step of the last run.
    pub step_s: f64,
    /// Mean training loss per logging window.
    pub loss_curve: Vec<(usize, f64)>,
    /// Accuracy on the full 10 000-image test set.
    pub test_accuracy: f64,
    /// Accuracy on the first 1 000 test images (the subset the shipped-weights test checks).
    pub subset_accuracy: f64,
    /// The weights file.
    pub weights: PathBuf,
    /// The random training views (`None`: mirroring only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<ClassViews>,
}

/// The guidance classifier's training views: one per image, shifted by up to 2 pixels, mirrored
/// at random, with Gaussian noise of σ = 0.4 (images in [−1, 1]).
pub const ROBUST_VIEWS: ClassViews = ClassViews { copies: 1, max_shift: 2, flip: true, noise_std: 0.4, fill: -1.0 };

/// Test images of the fixed subset that the tests re-check.
pub const SUBSET: usize = 1000;

/// Trains the guidance classifier; writes `classifier.safetensors`, `classifier.config.json`
/// and `classifier.report.json` into `out_dir`.
pub fn train_classifier(cfg: &ClassifierTrainConfig, out_dir: &Path) -> anyhow::Result<ClassifierReport> {
    let device = Default::default();
    train_supervised(
        "classifier",
        &cfg.model,
        cfg.model.init::<TrainBackend>(&device),
        &cfg.run,
        cfg.views.as_ref(),
        out_dir,
    )
}

/// Trains the evaluation judge; writes `judge.safetensors`, `judge.config.json` and
/// `judge.report.json` into `out_dir`.
pub fn train_judge(cfg: &JudgeTrainConfig, out_dir: &Path) -> anyhow::Result<ClassifierReport> {
    let device = Default::default();
    train_supervised(
        "judge",
        &cfg.model,
        cfg.model.init::<TrainBackend>(&device),
        &cfg.run,
        cfg.views.as_ref(),
        out_dir,
    )
}

fn train_supervised<C, M>(
    name: &str,
    model_cfg: &C,
    model: M,
    cfg: &LoopConfig,
    views: Option<&ClassViews>,
    out_dir: &Path,
) -> anyhow::Result<ClassifierReport>
where
    C: Config,
    M: AutodiffModule<TrainBackend> + ImageClassifier<TrainBackend>,
    M::InnerModule: ImageClassifier<EvalBackend>,
{
    let device = Default::default();
    let data = FashionMnist::load(&cfg.data_dir, Split::Train)?;
    let parameters = model.num_params();
    let outcome = run(name, cfg, out_dir, model, |model, step| {
        let mut rng = step_rng(cfg.seed, step);
        let indices = sample_indices(&mut rng, data.len(), cfg.batch);
        let images = image_batch::<TrainBackend>(&data, &indices, views.is_none(), &mut rng, &device);
        let images = match views {
            Some(views) => views.apply(images, rng.random()),
            None => images,
        };
        cross_entropy(model.logits(images), data.labels(&indices, &device)).mean()
    })?;
    let model = outcome.model.valid();
    std::fs::create_dir_all(out_dir)?;
    let weights = out_dir.join(format!("{name}.safetensors"));
    save(&model, &weights)?;
    model_cfg
        .save(out_dir.join(format!("{name}.config.json")))
        .with_context(|| format!("writing {name}.config.json"))?;

    let test = FashionMnist::load(&cfg.data_dir, Split::Test)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let report = ClassifierReport {
        name: name.to_string(),
        run: cfg.clone(),
        parameters,
        wall_s: outcome.wall_s,
        step_s: outcome.step_s,
        loss_curve: outcome.loss_curve,
        test_accuracy: accuracy(&model, &test, &all, 500, &device),
        subset_accuracy: accuracy(&model, &test, &all[..SUBSET], 500, &device),
        weights,
        views: views.cloned(),
    };
    write_json(&out_dir.join(format!("{name}.report.json")), &report)?;
    Ok(report)
}
