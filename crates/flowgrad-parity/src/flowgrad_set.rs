//! Parity of the FlowGrad algorithm with a `flowgrad/` fixture set (FORMAT.md part B).

use std::cell::Cell;
use std::path::Path;

use burn::tensor::Tensor;
use flowgrad::tensor_util::{from_vec, to_vec};
use flowgrad::{Grid, Guidance, GuidanceContext, Mode, MseToTarget, TimeGrid, VelocityField, simulate, straightness};

use crate::fixture::{FixtureError, TensorFile, format_error, read_json};
use crate::flowgrad_model::{Recorded, check_with_model};
use crate::ncsnpp_set::load_fixture_model;
use crate::report::{ParityReport, chunked_scaled_error, relative_error, scaled_error};

/// The binaries' backend: parity is checked where the edits run.
type B = flowgrad_backend::Backend;

/// Replays recorded velocities in call order: the k-th evaluation returns v_k whatever x is.
/// Lets the simulation code run on a fixture's trajectory without its network (its Jacobian is
/// zero, so no gradients).
struct ReplayField {
    next: Cell<usize>,
    velocities: Vec<Tensor<B, 4>>,
}

impl VelocityField<B> for ReplayField {
    fn velocity(&self, _x: Tensor<B, 4>, _t: Tensor<B, 1>) -> Tensor<B, 4> {
        let k = self.next.get();
        self.next.set(k + 1);
        self.velocities[k].clone()
    }
    fn fingerprint(&self) -> String {
        "replay".into()
    }
}

fn per_step(values: &[f32], shape: &[usize]) -> Vec<Tensor<B, 4>> {
    let step: [usize; 4] = shape[1..].try_into().expect("[N, B, C, H, W]");
    let per = step.iter().product::<usize>();
    values.chunks(per).map(|c| from_vec(c.to_vec(), step, &Default::default())).collect()
}

fn usize_list(config: &serde_json::Value, key: &str, path: &Path) -> Result<Vec<usize>, FixtureError> {
    config[key]
        .as_array()
        .and_then(|a| a.iter().map(|v| v.as_u64().map(|x| x as usize)).collect())
        .ok_or_else(|| format_error(path, format!("`{key}` must be a list of integers")))
}

/// Checks everything about the FlowGrad algorithm that can be recomputed from the fixture in
/// `dir`, with the network of the sibling `ncsnpp/` set when there is one (FORMAT.md: part B
/// runs the part-A model); without it, the checks that need the network are skipped.
pub fn check_flowgrad(dir: &Path) -> Result<ParityReport, FixtureError> {
    let sibling = dir.parent().map(|p| p.join("ncsnpp")).filter(|p| p.join("weights.safetensors").is_file());
    check_flowgrad_with_model(dir, sibling.as_deref())
}

/// Like [`check_flowgrad`] with the NCSN++ set of the network given explicitly (`None`: skip the
/// checks that need it).
pub fn check_flowgrad_with_model(dir: &Path, model_dir: Option<&Path>) -> Result<ParityReport, FixtureError> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let data = TensorFile::open(&dir.join("data.safetensors"))?;
    let number =
        |key: &str| config[key].as_f64().ok_or_else(|| format_error(&config_path, format!("`{key}` must be a number")));
    let n = number("N")? as usize;
    let eps = number("eps")? as f32;
    let xi = number("xi")? as f32;
    let data_path = dir.join("data.safetensors");
    for (name, leading) in
        [("t_unit", n), ("t_model", n), ("v", n), ("u_init", n), ("traj", n + 1), ("grad_u", n), ("u_after1", n)]
    {
        let (shape, _) = data.f32(name)?;
        if shape.first() != Some(&leading) {
            return Err(format_error(
                &data_path,
                format!("`{name}` has shape {shape:?}, but config.json says N = {n}"),
            ));
        }
    }
    let mut report = ParityReport::default();

    // 1. time grid, bit for bit
    let time = TimeGrid::new(n, eps);
    let (_, t_unit) = data.f32("t_unit")?;
    let (_, t_model) = data.f32("t_model")?;
    let ours: Vec<f32> = (0..n).map(|k| time.t(k)).collect();
    let same_t = ours.len() == t_unit.len() && ours.iter().zip(&t_unit).all(|(a, b)| a.to_bits() == b.to_bits());
    report.exact("t_unit", same_t, "time grid differs");
    let same_model_t = ours.iter().zip(&t_model).all(|(a, b)| (a * 999.0).to_bits() == b.to_bits());
    report.exact("t_model", same_model_t, "t·999 differs");

    // 2. straightness from the recorded velocities (reference quirks)
    let (v_shape, v) = data.f32("v")?;
    let velocities = per_step(&v, &v_shape);
    let s = straightness(&velocities, Mode::Reference);
    for (name, ours) in [("straightness", &s.s), ("straightness_d1", &s.d_prev), ("straightness_d2", &s.d_next)] {
        report.measure(name, "relative", relative_error(ours, &data.f32(name)?.1), 1e-3);
    }

    // 3. the non-uniform grid: from our S, and from the S of every recorded iteration
    let grid = Grid::build(&s.s, xi, Mode::Reference);
    let expected = Grid {
        starts: data.ints("seg_starts")?.1.iter().map(|&x| x as usize).collect(),
        lengths: data.ints("seg_lengths")?.1.iter().map(|&x| x as usize).collect(),
    };
    report.exact("seg_starts/seg_lengths", grid == expected, format!("ours {grid:?}"));
    let config_grid = Grid {
        starts: usize_list(&config, "segment_starts", &config_path)?,
        lengths: usize_list(&config, "segment_lengths", &config_path)?,
    };
    report.exact("config segments", config_grid == expected, "config.json and data.safetensors disagree");
    let mut segments = vec![expected.clone()];
    let mut acc = Vec::with_capacity(n);
    for (&start, &len) in grid.starts.iter().zip(&grid.lengths) {
        let mut sum = 0.0f32;
        for k in start..start + len {
            sum += s.s[k];
            acc.push(sum);
        }
    }
    report.measure("straightness_acc", "relative", relative_error(&acc, &data.f32("straightness_acc")?.1), 1e-3);
    if let Some(iterations) = config["iterations_3run"].as_array() {
        for (i, it) in iterations.iter().enumerate() {
            let s_i: Vec<f32> = it["S"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect())
                .unwrap_or_default();
            let want = Grid {
                starts: usize_list(it, "segment_starts", &config_path)?,
                lengths: usize_list(it, "segment_lengths", &config_path)?,
            };
            let got = Grid::build(&s_i, xi, Mode::Reference);
            report.exact(format!("iteration {i} segments"), got == want, format!("ours {got:?}"));
            if i > 0 {
                segments.push(want);
            }
        }
    }

    // 4. the controlled Euler update, replaying the recorded velocities
    let (u_shape, u_init) = data.f32("u_init")?;
    let controls = per_step(&u_init, &u_shape);
    let (z_shape, z0) = data.f32("z0")?;
    let image_shape: [usize; 4] = z_shape
        .clone()
        .try_into()
        .map_err(|_| format_error(&dir.join("data.safetensors"), "z0 must be [B,C,H,W]".into()))?;
    let replay = ReplayField { next: Cell::new(0), velocities };
    let trajectory =
        simulate(&replay, from_vec(z0, image_shape, &Default::default()), Some(&controls), &time, Mode::Reference);
    let traj: Vec<f32> = trajectory.states.iter().flat_map(|x| to_vec(x.clone())).collect();
    let (_, expected_traj) = data.f32("traj")?;
    report.measure("traj", "scaled", scaled_error(&traj, &expected_traj), 1e-4);

    // 5. loss and its gradient at z_N
    let (_, target) = data.f32("target")?;
    let guidance = MseToTarget::new(from_vec::<B, 4>(target, image_shape, &Default::default()));
    let x1 = trajectory.last().require_grad();
    let loss = guidance.loss(x1.clone(), &GuidanceContext { iteration: 0, seed: 0 }).sum();
    let loss_value = to_vec(loss.clone())[0];
    report.measure("loss", "relative", relative_error(&[loss_value], &data.f32("loss")?.1), 1e-5);
    let lam_n = to_vec(x1.grad(&loss.backward()).expect("loss depends on x1"));
    report.measure("lam_N", "scaled", scaled_error(&lam_n, &data.f32("lam_N")?.1), 2e-4);

    // 6. re-assignment of segment gradients to every step, and the SGD update
    let (_, lam_seg) = data.f32("lam_seg")?;
    let per = image_shape.iter().product::<usize>();
    if lam_seg.len() != expected.len() * per {
        return Err(format_error(
            &dir.join("data.safetensors"),
            format!("lam_seg has {} values, expected {} segments × {per}", lam_seg.len(), expected.len()),
        ));
    }
    // re-assign with the fixture's own segments, so this row checks only the re-assignment
    let reassigned: Vec<f32> =
        expected.segment_of_step().iter().flat_map(|&j| lam_seg[j * per..(j + 1) * per].to_vec()).collect();
    report.measure(
        "grad_u (re-assigned lam_seg)",
        "scaled",
        chunked_scaled_error(&reassigned, &data.f32("grad_u")?.1, per),
        2e-4,
    );
    let lr = number("lr")? as f32;
    let (_, u_after1) = data.f32("u_after1")?;
    let ours_delta: Vec<f32> = reassigned.iter().map(|g| -lr * g).collect();
    let their_delta: Vec<f32> = u_after1.iter().zip(&u_init).map(|(a, b)| a - b).collect();
    report.measure("u_after1 - u_init", "scaled", scaled_error(&ours_delta, &their_delta), 5e-4);

    // 7. everything that needs the network
    match model_dir {
        Some(model_dir) => {
            let model = load_fixture_model(model_dir)?;
            let recorded = Recorded { data: &data, data_path: &data_path, time, xi, lr, image_shape, segments };
            check_with_model(&mut report, &model, &recorded)?;
        }
        None => {
            for name in ["v (recomputed)", "lam_seg", "grad_full", "u_after3", "iter1_lam_seg", "iter2_lam_seg"] {
                report.skip(name, format!("needs the NCSN++ network: no ncsnpp/ set beside {}", dir.display()));
            }
        }
    }
    Ok(report)
}
