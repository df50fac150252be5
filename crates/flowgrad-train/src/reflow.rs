//! Reflow (a 2-rectified flow): the bundled 1-rectified flow, fine-tuned on (noise, sample) pairs
//! drawn from itself, so its ODE trajectories straighten and FlowGrad merges more Euler steps into
//! one segment (fewer VJPs per gradient).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::tensor::{Tensor, backend::Backend};
use flowgrad::{Grid, Mode, TimeGrid, VelocityField, simulate, straightness};
use flowgrad_models::fashion::{FashionMnist, SIDE, Split};
use flowgrad_models::{Assets, UNetConfig, load_flow, load_reflow, save, weights_digest};
use indicatif::{ProgressBar, ProgressStyle};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::data::{normal, sample_indices, step_rng, tensor};
use crate::eval::{ODE_STEPS, TIME_EPS, reconstruction_mse, samples, save_grid};
use crate::flow::flow_matching_loss;
use crate::trainer::{LoopConfig, run};
use crate::{EvalBackend, TrainBackend, write_json};

/// Base name of the reflowed model's files (`flow-reflow.safetensors`, `.config.json`, …).
pub const REFLOW_NAME: &str = flowgrad_models::REFLOW_STEM;

/// Configuration of [`train_reflow`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReflowTrainConfig {
    /// Folder of the 1-rectified teacher (`flow.safetensors`, `flow.config.json`); the student
    /// starts from its weights unless `init_dir` is set.
    pub teacher_dir: PathBuf,
    /// Folder of an earlier round's reflowed flow (`flow-reflow.safetensors` and its report)
    /// that the student continues from, on this round's pairs; `None`: start from the teacher.
    pub init_dir: Option<PathBuf>,
    /// (noise, sample) pairs drawn from the teacher.
    pub pairs: usize,
    /// Euler steps of the teacher per pair.
    pub pair_steps: usize,
    /// Pairs simulated at once.
    pub pair_batch: usize,
    /// Seed of the pairs' noise.
    pub pair_seed: u64,
    /// Optimisation settings.
    pub run: LoopConfig,
    /// Noise draws whose trajectories the straightness comparison uses.
    pub straightness_draws: usize,
    /// Test images used for the reconstruction MSE.
    pub eval_images: usize,
    /// Seed of the noise of the sample grid (and of the straightness draws).
    pub sample_seed: u64,
}

impl Default for ReflowTrainConfig {
    fn default() -> Self {
        Self {
            teacher_dir: PathBuf::from("assets"),
            init_dir: None,
            pairs: 4096,
            pair_steps: 32,
            pair_batch: 128,
            pair_seed: 1,
            run: LoopConfig { steps: 1500, batch: 32, lr: 3e-4, warmup: 100, ..LoopConfig::default() },
            straightness_draws: 16,
            eval_images: 32,
            sample_seed: 2024,
        }
    }
}

/// Segments FlowGrad's grid keeps on N = 100 generation trajectories (ξ = 5e-3, reference mode),
/// averaged over the draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StraightnessStats {
    /// Mean number of segments (VJPs per gradient) at ξ = 5e-3.
    pub mean_segments: f64,
    /// Mean Σ_k S_k over the trajectory.
    pub mean_total_s: f64,
}

/// Results of [`train_reflow`], also written to `out_dir/flow-reflow.report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReflowReport {
    /// The configuration used.
    pub config: ReflowTrainConfig,
    /// Trainable parameters.
    pub parameters: usize,
    /// Seconds spent drawing the pairs (0 when they came from the cache).
    pub pairs_wall_s: f64,
    /// Training seconds (over all resumed runs).
    pub wall_s: f64,
    /// Mean seconds per step of the last run.
    pub step_s: f64,
    /// Mean training loss per logging window.
    pub loss_curve: Vec<(usize, f64)>,
    /// Reconstruction MSE as in the flow's report (first `eval_images` test images).
    pub reconstruction_mse: f64,
    /// The teacher's straightness on the comparison draws.
    pub teacher_straightness: StraightnessStats,
    /// The reflowed model's straightness on the same draws.
    pub straightness: StraightnessStats,
    /// The weights file.
    pub weights: PathBuf,
    /// The 8×8 sample grid.
    pub samples: PathBuf,
    /// The report of the round this one continued from (`init_dir`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<ReflowReport>>,
}

impl ReflowReport {
    /// The rounds that made these weights, first to last (this report is the last).
    pub fn rounds(&self) -> Vec<&ReflowReport> {
        let mut rounds: Vec<&ReflowReport> = std::iter::successors(Some(self), |r| r.previous.as_deref()).collect();
        rounds.reverse();
        rounds
    }
}

/// Threshold ξ of the straightness comparison (FlowGrad's default).
pub const COMPARISON_XI: f32 = 5e-3;

/// Straightness of the N = 100 generation trajectories from `x0` (one trajectory per image).
pub fn straightness_stats<B: Backend, F: VelocityField<B>>(field: &F, x0: Tensor<B, 4>) -> StraightnessStats {
    let per_draw = trajectory_straightness(field, x0, ODE_STEPS, COMPARISON_XI);
    let (mut segments, mut total) = (0.0, 0.0);
    for draw in &per_draw {
        segments += draw.segments as f64;
        total += draw.s.iter().map(|&v| v as f64).sum::<f64>();
    }
    let count = per_draw.len() as f64;
    StraightnessStats { mean_segments: segments / count, mean_total_s: total / count }
}

/// One generation trajectory's straightness (see [`trajectory_straightness`]).
#[derive(Debug, Clone)]
pub struct DrawStraightness {
    /// S(t_k), k = 0..N−1 (Reference mode).
    pub s: Vec<f32>,
    /// Segments FlowGrad's grid keeps at the given ξ (VJPs per gradient).
    pub segments: usize,
}

/// The straightness of each generation trajectory from `x0` (one per image, `steps` Euler steps
/// without controls, Reference mode) and the segments its grid keeps at `xi`.
pub fn trajectory_straightness<B: Backend, F: VelocityField<B>>(
    field: &F,
    x0: Tensor<B, 4>,
    steps: usize,
    xi: f32,
) -> Vec<DrawStraightness> {
    let [count, ..] = x0.dims();
    let trajectory = simulate(field, x0, None, &TimeGrid::new(steps, TIME_EPS), Mode::Reference);
    (0..count)
        .map(|i| {
            let velocities: Vec<Tensor<B, 4>> =
                trajectory.velocities.iter().map(|v| v.clone().narrow(0, i, 1)).collect();
            let s = straightness(&velocities, Mode::Reference).s;
            DrawStraightness { segments: Grid::build(&s, xi, Mode::Reference).len(), s }
        })
        .collect()
}

/// The `cfg.straightness_draws` noise images the report's straightness comparison starts from.
pub fn comparison_noise<B: Backend>(cfg: &ReflowTrainConfig, device: &B::Device) -> Tensor<B, 4> {
    let noise = normal(&mut step_rng(cfg.sample_seed, 1), cfg.straightness_draws * SIDE * SIDE);
    tensor(noise, [cfg.straightness_draws, 1, SIDE, SIDE], device)
}

/// The teacher's (noise, sample) pairs, flattened `[pairs·32·32]` each.
struct Pairs {
    noise: Vec<f32>,
    sample: Vec<f32>,
}

impl Pairs {
    fn len(&self) -> usize {
        self.noise.len() / (SIDE * SIDE)
    }

    /// Pairs `indices` as `(noise, sample)` batches.
    fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let pick = |all: &[f32]| -> Vec<f32> {
            indices.iter().flat_map(|&i| all[i * SIDE * SIDE..(i + 1) * SIDE * SIDE].iter().copied()).collect()
        };
        let shape = [indices.len(), 1, SIDE, SIDE];
        (tensor(pick(&self.noise), shape, device), tensor(pick(&self.sample), shape, device))
    }
}

/// What a pairs cache must match to be reused.
fn cache_key(cfg: &ReflowTrainConfig, teacher_digest: &str) -> HashMap<String, String> {
    HashMap::from([
        ("teacher".to_string(), teacher_digest.to_string()),
        ("pairs".to_string(), cfg.pairs.to_string()),
        ("pair_steps".to_string(), cfg.pair_steps.to_string()),
        ("pair_seed".to_string(), cfg.pair_seed.to_string()),
        ("pair_batch".to_string(), cfg.pair_batch.to_string()),
    ])
}

fn read_cache(path: &Path, key: &HashMap<String, String>) -> Option<Pairs> {
    let bytes = std::fs::read(path).ok()?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).ok()?;
    if metadata.metadata().as_ref() != Some(key) {
        return None;
    }
    let tensors = SafeTensors::deserialize(&bytes).ok()?;
    let floats = |name: &str| -> Option<Vec<f32>> {
        let view = tensors.tensor(name).ok()?;
        Some(view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    };
    Some(Pairs { noise: floats("noise")?, sample: floats("sample")? })
}

fn write_cache(path: &Path, pairs: &Pairs, key: HashMap<String, String>) -> anyhow::Result<()> {
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (noise, sample) = (bytes(&pairs.noise), bytes(&pairs.sample));
    let shape = vec![pairs.len(), 1, SIDE, SIDE];
    let views = [
        ("noise", TensorView::new(Dtype::F32, shape.clone(), &noise)?),
        ("sample", TensorView::new(Dtype::F32, shape, &sample)?),
    ];
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    safetensors::serialize_to_file(views, Some(key), path).with_context(|| format!("writing {}", path.display()))
}

/// Draws `cfg.pairs` pairs: noise x₀ (seeded per chunk) and the teacher's Euler sample from it.
fn draw_pairs<F: VelocityField<EvalBackend>>(teacher: &F, cfg: &ReflowTrainConfig) -> anyhow::Result<Pairs> {
    anyhow::ensure!(
        cfg.pairs > 0 && cfg.pair_steps > 0 && cfg.pair_batch > 0,
        "reflow: pairs, pair_steps and pair_batch must be positive"
    );
    let device = Default::default();
    let grid = TimeGrid::new(cfg.pair_steps, TIME_EPS);
    let bar = ProgressBar::new(cfg.pairs as u64);
    bar.set_style(ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {elapsed}<{eta}")?);
    bar.set_prefix("reflow pairs");
    let mut pairs = Pairs {
        noise: Vec::with_capacity(cfg.pairs * SIDE * SIDE),
        sample: Vec::with_capacity(cfg.pairs * SIDE * SIDE),
    };
    for (chunk, start) in (0..cfg.pairs).step_by(cfg.pair_batch).enumerate() {
        let count = cfg.pair_batch.min(cfg.pairs - start);
        let noise = normal(&mut step_rng(cfg.pair_seed, chunk), count * SIDE * SIDE);
        let x0 = tensor::<EvalBackend, 4>(noise.clone(), [count, 1, SIDE, SIDE], &device);
        let sample = simulate(teacher, x0, None, &grid, Mode::Paper).last();
        pairs.noise.extend(noise);
        pairs.sample.extend(flowgrad::tensor_util::to_vec(sample));
        bar.inc(count as u64);
        if bar.is_hidden() {
            eprintln!("reflow pairs: {}/{}", start + count, cfg.pairs);
        }
    }
    bar.finish();
    Ok(pairs)
}

/// Trains the reflowed flow and writes `flow-reflow.safetensors`, `flow-reflow.config.json`,
/// `samples-reflow.png` and `flow-reflow.report.json` into `out_dir`.
///
/// Draws (x₀, x₁ = teacher's Euler sample from x₀) pairs once (cached under
/// `out_dir/checkpoints/reflow/`), then regresses v(t·x₁ + (1 − t)·x₀, t) onto x₁ − x₀ on those
/// pairs, starting from the teacher's weights, or from an earlier round's (`cfg.init_dir`), whose
/// report the new one keeps as `previous`.
pub fn train_reflow(cfg: &ReflowTrainConfig, out_dir: &Path) -> anyhow::Result<ReflowReport> {
    let device = Default::default();
    let teacher = load_flow::<EvalBackend>(&Assets::Dir(cfg.teacher_dir.clone()), &device)
        .with_context(|| format!("loading the teacher from {}", cfg.teacher_dir.display()))?;
    let key = cache_key(cfg, &weights_digest(&teacher));
    let cache = out_dir.join("checkpoints").join("reflow").join("pairs.safetensors");
    let started = Instant::now();
    let (pairs, pairs_wall_s) = match read_cache(&cache, &key) {
        Some(pairs) => (pairs, 0.0),
        None => {
            let pairs = draw_pairs(&teacher, cfg)?;
            write_cache(&cache, &pairs, key)?;
            (pairs, started.elapsed().as_secs_f64())
        }
    };

    let (student, previous) = match &cfg.init_dir {
        None => (load_flow::<TrainBackend>(&Assets::Dir(cfg.teacher_dir.clone()), &device)?, None),
        Some(dir) => {
            let previous: ReflowReport = crate::read_report(dir, REFLOW_NAME)?
                .with_context(|| format!("no earlier round's {REFLOW_NAME}.report.json in {}", dir.display()))?;
            let student = load_reflow::<TrainBackend>(&Assets::Dir(dir.clone()), &device)
                .with_context(|| format!("loading the earlier round from {}", dir.display()))?;
            (student, Some(Box::new(previous)))
        }
    };
    let parameters = student.num_params();
    // a further round checkpoints apart, keyed by the weights it starts from, so that `--resume`
    // continues this round and never an earlier one (whose checkpoint sits in `reflow/`)
    let run_name = match &previous {
        None => "reflow".to_string(),
        Some(_) => format!("reflow-from-{}", &weights_digest(&student)[..12]),
    };
    let outcome = run(&run_name, &cfg.run, out_dir, student, |model, step| {
        let mut rng = step_rng(cfg.run.seed, step);
        let (x0, x1) = pairs.batch::<TrainBackend>(&sample_indices(&mut rng, pairs.len(), cfg.run.batch), &device);
        flow_matching_loss(model, x0, x1, &mut rng, &device)
    })?;
    let model = outcome.model.valid();
    std::fs::create_dir_all(out_dir)?;
    let weights = out_dir.join(format!("{REFLOW_NAME}.safetensors"));
    save(&model, &weights)?;
    let teacher_config =
        UNetConfig::load(cfg.teacher_dir.join("flow.config.json")).context("reading the teacher's flow.config.json")?;
    teacher_config
        .save(out_dir.join(format!("{REFLOW_NAME}.config.json")))
        .with_context(|| format!("writing {REFLOW_NAME}.config.json"))?;

    let test = FashionMnist::load(&cfg.run.data_dir, Split::Test)?;
    let first: Vec<usize> = (0..cfg.eval_images.min(test.len())).collect();
    let reconstruction_mse = reconstruction_mse(&model, test.images(&first, &device));
    let teacher_straightness = straightness_stats(&teacher, comparison_noise(cfg, &device));
    let straightness = straightness_stats(&model, comparison_noise(cfg, &device));
    let samples_path = out_dir.join("samples-reflow.png");
    save_grid(samples(&model, 64, cfg.sample_seed, &device), 8, &samples_path)?;
    let report = ReflowReport {
        config: cfg.clone(),
        parameters,
        pairs_wall_s,
        wall_s: outcome.wall_s,
        step_s: outcome.step_s,
        loss_curve: outcome.loss_curve,
        reconstruction_mse,
        teacher_straightness,
        straightness,
        weights,
        samples: samples_path,
        previous,
    };
    write_json(&out_dir.join(format!("{REFLOW_NAME}.report.json")), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use flowgrad_models::ConvFieldConfig;

    #[test]
    fn pairs_cache_round_trips_and_rejects_another_key() {
        let dir = std::env::temp_dir().join(format!("flowgrad-reflow-cache-{}", std::process::id()));
        let path = dir.join("pairs.safetensors");
        let pairs = Pairs {
            noise: (0..2048).map(|i| i as f32 * 0.5).collect(),
            sample: (0..2048).map(|i| -(i as f32)).collect(),
        };
        let cfg = ReflowTrainConfig::default();
        write_cache(&path, &pairs, cache_key(&cfg, "abc")).unwrap();
        let back = read_cache(&path, &cache_key(&cfg, "abc")).expect("same key reads back");
        assert_eq!((back.noise, back.sample), (pairs.noise.clone(), pairs.sample.clone()));
        assert!(read_cache(&path, &cache_key(&cfg, "other teacher")).is_none());
        let more = ReflowTrainConfig { pairs: cfg.pairs + 1, ..cfg.clone() };
        assert!(read_cache(&path, &cache_key(&more, "abc")).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pair_batches_pick_matching_noise_and_samples() {
        let pairs = Pairs {
            noise: (0..3 * 1024).map(|i| (i / 1024) as f32).collect(),
            sample: (0..3 * 1024).map(|i| 10.0 + (i / 1024) as f32).collect(),
        };
        let (noise, sample) = pairs.batch::<EvalBackend>(&[2, 0], &Default::default());
        assert_eq!(noise.dims(), [2, 1, SIDE, SIDE]);
        let firsts = |t: Tensor<EvalBackend, 4>| -> Vec<f32> {
            flowgrad::tensor_util::to_vec(t.narrow(2, 0, 1).narrow(3, 0, 1))
        };
        assert_eq!(firsts(noise), vec![2.0, 0.0]);
        assert_eq!(firsts(sample), vec![12.0, 10.0]);
    }

    /// A field whose velocity depends on neither x nor t has straight trajectories: every S_k is
    /// 0 (the reference mode's wrap-around at k = 0 included) and the grid is one segment; a
    /// random conv field's is not.
    #[test]
    fn straightness_of_a_constant_field_is_zero() {
        struct Constant;
        impl VelocityField<EvalBackend> for Constant {
            fn velocity(&self, x: Tensor<EvalBackend, 4>, _t: Tensor<EvalBackend, 1>) -> Tensor<EvalBackend, 4> {
                x.zeros_like() + 0.3
            }

            fn fingerprint(&self) -> String {
                "constant".into()
            }
        }
        let x0 = Tensor::<EvalBackend, 4>::from_data(
            TensorData::new(vec![0.1f32; 2 * 1024], [2, 1, 32, 32]),
            &Default::default(),
        );
        let stats = straightness_stats(&Constant, x0.clone());
        assert_eq!(stats, StraightnessStats { mean_segments: 1.0, mean_total_s: 0.0 });
        // a field that rotates its velocity along the path is not straight
        let curved = ConvFieldConfig::new(1).with_hidden(8).with_seed(3).init::<EvalBackend>(&Default::default());
        assert!(straightness_stats(&curved, x0).mean_total_s > 0.0);
    }
}
