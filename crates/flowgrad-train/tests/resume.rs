//! The training loop is reproducible and resuming from a checkpoint matches an uninterrupted run.

use std::path::PathBuf;

use burn::tensor::Int;
use flowgrad_models::{ClassifierConfig, ImageClassifier, cross_entropy, weights_digest};
use flowgrad_train::TrainBackend;
use flowgrad_train::data::{normal, step_rng, tensor};
use flowgrad_train::trainer::{LoopConfig, run};
use rand::Rng;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowgrad-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Trains a tiny classifier on seeded noise; `fail_at` makes that step's loss NaN (an interruption).
fn train(cfg: &LoopConfig, out: &std::path::Path, fail_at: Option<usize>) -> anyhow::Result<String> {
    let device = Default::default();
    let model = ClassifierConfig::new().with_width(8).init::<TrainBackend>(&device);
    let outcome = run("tiny", cfg, out, model, |m, step| {
        let mut rng = step_rng(cfg.seed, step);
        let x = tensor(normal(&mut rng, 4 * 32 * 32), [4, 1, 32, 32], &device);
        let labels: Vec<i64> = (0..4).map(|_| rng.random_range(0..10)).collect();
        let y = burn::tensor::Tensor::<TrainBackend, 1, Int>::from_ints(labels.as_slice(), &device);
        let loss = cross_entropy(m.logits(x), y).mean();
        if fail_at == Some(step) { loss * f32::NAN } else { loss }
    })?;
    Ok(weights_digest(&outcome.model))
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let base = LoopConfig { steps: 4, batch: 4, warmup: 1, checkpoint_every: 2, ..LoopConfig::default() };
    let straight = train(&base, &scratch("straight"), None).unwrap();
    assert_eq!(straight, train(&base, &scratch("again"), None).unwrap(), "training is not reproducible");

    let out = scratch("split");
    let err = train(&base, &out, Some(3)).unwrap_err();
    assert!(err.to_string().contains("loss is NaN at step 3"), "{err}");
    let resumed = train(&LoopConfig { resume: true, ..base.clone() }, &out, None).unwrap();
    assert_eq!(straight, resumed);
    let other_seed = train(&LoopConfig { seed: 9, ..base }, &scratch("seed"), None).unwrap();
    assert_ne!(straight, other_seed);
}

#[test]
fn learning_rate_warms_up_then_decays() {
    let cfg = LoopConfig { steps: 100, warmup: 10, lr: 1.0, ..LoopConfig::default() };
    assert!((cfg.lr_at(0) - 0.1).abs() < 1e-12);
    assert!((cfg.lr_at(10) - 1.0).abs() < 1e-12);
    assert!(cfg.lr_at(50) < cfg.lr_at(20));
    assert!((cfg.lr_at(99) - 0.02).abs() < 0.01);
}
