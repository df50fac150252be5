//! `flowgrad_parity::check_flowgrad` on the shipped fixture set, on a synthetic set of another
//! shape, N and ξ (written here in the FORMAT.md layout), and on tampered copies.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Distribution, Tensor, backend::Backend};
use flowgrad::tensor_util::to_vec;
use flowgrad::{
    Grid, Guidance, GuidanceContext, Mode, MseToTarget, SegmentAnchor, TimeGrid, decomposed_backprop, simulate,
    straightness,
};
use flowgrad_models::ConvFieldConfig;
use flowgrad_parity::{Outcome, check_flowgrad};
use flowgrad_tests::{B, fixtures_dir};
use safetensors::{Dtype, tensor::TensorView};

fn copy_set(from: &Path, to: &Path) {
    for file in ["config.json", "data.safetensors"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[test]
fn shipped_fixture_passes() {
    let report = check_flowgrad(&fixtures_dir().join("flowgrad")).expect("shipped fixture reads");
    assert!(report.passed(), "{report}");
    for quantity in [
        "t_unit",
        "straightness",
        "seg_starts/seg_lengths",
        "iteration 2 segments",
        "traj",
        "lam_N",
        "grad_u (re-assigned lam_seg)",
    ] {
        let check = report.get(quantity).unwrap_or_else(|| panic!("{quantity} not checked:\n{report}"));
        assert_eq!(check.outcome, Outcome::Pass, "{quantity}");
    }
}

#[test]
fn tampered_threshold_fails() {
    let dir = tempfile::tempdir().unwrap();
    copy_set(&fixtures_dir().join("flowgrad"), dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["xi"] = serde_json::json!(config["xi"].as_f64().unwrap() * 0.3);
    std::fs::write(&path, config.to_string()).unwrap();
    let report = check_flowgrad(dir.path()).unwrap();
    assert!(!report.passed(), "a different ξ must change the segments:\n{report}");
    assert_eq!(report.get("t_unit").unwrap().outcome, Outcome::Pass);
}

#[test]
fn missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = check_flowgrad(dir.path()).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
}

fn f32_entry(values: Vec<f32>, shape: Vec<usize>) -> (Dtype, Vec<usize>, Vec<u8>) {
    (Dtype::F32, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

fn i64_entry(values: &[usize]) -> (Dtype, Vec<usize>, Vec<u8>) {
    (Dtype::I64, vec![values.len()], values.iter().flat_map(|v| (*v as i64).to_le_bytes()).collect())
}

/// Writes a FORMAT.md set made by this implementation (reference mode) with `n` steps,
/// batch 2 and 1×4×4 images, using a conv net as the model.
fn write_synthetic_set(dir: &Path, n: usize, xi: f32) {
    let device = Default::default();
    B::seed(&device, 11);
    let field =
        ConvFieldConfig::new(1).with_hidden(6).with_depth(1).with_seed(4).with_max_frequency(3.0).init::<B>(&device);
    let shape = [2, 1, 4, 4];
    let per = 2 * 16;
    let time = TimeGrid::new(n, 1e-3);
    let z0 = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let target = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let controls: Vec<Tensor<B, 4>> =
        (0..n).map(|_| Tensor::random(shape, Distribution::Normal(0.0, 0.01), &device)).collect();
    let trajectory = simulate(&field, z0.clone(), Some(&controls), &time, Mode::Reference);
    let s = straightness(&trajectory.velocities, Mode::Reference);
    let grid = Grid::build(&s.s, xi, Mode::Reference);
    let guidance = MseToTarget::new(target.clone());
    let x1 = trajectory.last().require_grad();
    let loss = guidance.loss(x1.clone(), &GuidanceContext { iteration: 0, seed: 0 }).sum();
    let loss_value = to_vec(loss.clone());
    let lam_n = Tensor::from_inner(x1.grad(&loss.backward()).unwrap());
    let gradient = decomposed_backprop(
        &field,
        &trajectory,
        Some(&controls),
        &grid,
        &time,
        lam_n.clone(),
        Mode::Reference,
        SegmentAnchor::Start,
    );
    let flat = |ts: &[Tensor<B, 4>]| -> Vec<f32> { ts.iter().flat_map(|t| to_vec(t.clone())).collect() };
    let grad_u = flat(&gradient.per_step);
    let u_init = flat(&controls);
    let u_after1: Vec<f32> = u_init.iter().zip(&grad_u).map(|(u, g)| u - 10.0 * g).collect();
    let mut acc = vec![];
    for (&start, &len) in grid.starts.iter().zip(&grid.lengths) {
        let mut sum = 0.0f32;
        for k in start..start + len {
            sum += s.s[k];
            acc.push(sum);
        }
    }
    let step_shape = |count: usize| vec![count, 2, 1, 4, 4];
    let t_unit: Vec<f32> = (0..n).map(|k| time.t(k)).collect();
    let entries: HashMap<&str, (Dtype, Vec<usize>, Vec<u8>)> = HashMap::from([
        ("t_unit", f32_entry(t_unit.clone(), vec![n])),
        ("t_model", f32_entry(t_unit.iter().map(|t| t * 999.0).collect(), vec![n])),
        ("z0", f32_entry(to_vec(z0), shape.to_vec())),
        ("target", f32_entry(to_vec(target), shape.to_vec())),
        ("u_init", f32_entry(u_init, step_shape(n))),
        ("traj", f32_entry(flat(&trajectory.states), step_shape(n + 1))),
        ("v", f32_entry(flat(&trajectory.velocities), step_shape(n))),
        ("straightness", f32_entry(s.s.clone(), vec![n])),
        ("straightness_d1", f32_entry(s.d_prev.clone(), vec![n])),
        ("straightness_d2", f32_entry(s.d_next.clone(), vec![n])),
        ("straightness_acc", f32_entry(acc, vec![n])),
        ("seg_starts", i64_entry(&grid.starts)),
        ("seg_lengths", i64_entry(&grid.lengths)),
        ("loss", f32_entry(loss_value, vec![1])),
        ("lam_N", f32_entry(to_vec(lam_n), shape.to_vec())),
        ("lam_seg", f32_entry(flat(&gradient.segment_costates), step_shape(grid.len()))),
        ("grad_u", f32_entry(grad_u, step_shape(n))),
        ("u_after1", f32_entry(u_after1, step_shape(n))),
    ]);
    let views: Vec<(String, TensorView<'_>)> =
        entries.iter().map(|(k, (d, s, b))| (k.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(dir.join("data.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    assert_eq!(per * n, flat(&controls).len());
    let config = serde_json::json!({
        "N": n, "eps": 1e-3, "xi": xi, "lr": 10.0, "batch": 2,
        "segment_starts": grid.starts, "segment_lengths": grid.lengths,
        "iterations_3run": [{"S": s.s, "segment_starts": grid.starts, "segment_lengths": grid.lengths}],
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn other_shapes_and_hyper_parameters_are_read_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_set(dir.path(), 9, 0.05);
    let report = check_flowgrad(dir.path()).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.get("traj").unwrap().outcome, Outcome::Pass);
    assert_eq!(report.get("grad_u (re-assigned lam_seg)").unwrap().outcome, Outcome::Pass);
}
