//! The checks of a `flowgrad/` set that need its NCSN++ network (the part-A model): the
//! recomputed velocities and trajectory, the segment costates and per-step gradients of
//! decomposed back-propagation, the exact gradient, and the controls after 1 and after all
//! recorded iterations (by the same components, and end to end through the `Editor`).

use std::path::Path;

use burn::tensor::Tensor;
use flowgrad::tensor_util::{from_vec, to_vec};
use flowgrad::{
    EditParams, Editor, GradientRule, Grid, Guidance, GuidanceContext, HostTensor, IterationGradient, Mode,
    MseToTarget, RecordedForwards, SegmentAnchor, Selection, TimeGrid, UpdateRule, endpoint_gradient,
    flowgrad_gradient, full_backprop, simulate,
};
use flowgrad_models::ncsnpp::Ncsnpp;

use crate::fixture::{FixtureError, TensorFile, format_error};
use crate::report::{ParityReport, chunked_scaled_error, relative_error, scaled_error};

/// The binaries' backend: parity is checked where the edits run.
type B = flowgrad_backend::Backend;

/// What the set records, read by `flowgrad_set`.
pub(crate) struct Recorded<'a> {
    pub(crate) data: &'a TensorFile,
    pub(crate) data_path: &'a Path,
    pub(crate) time: TimeGrid,
    pub(crate) xi: f32,
    pub(crate) lr: f32,
    pub(crate) image_shape: [usize; 4],
    /// Segments of every recorded iteration (iteration 0 from data.safetensors).
    pub(crate) segments: Vec<Grid>,
}

fn flat(tensors: &[Tensor<B, 4>]) -> Vec<f32> {
    tensors.iter().flat_map(|t| to_vec(t.clone())).collect()
}

fn steps(values: &[f32], shape: [usize; 4]) -> Vec<Tensor<B, 4>> {
    let per = shape.iter().product::<usize>();
    values.chunks(per).map(|c| from_vec(c.to_vec(), shape, &Default::default())).collect()
}

/// Runs the recorded iterations with `model` and adds their checks to `report`.
pub(crate) fn check_with_model(
    report: &mut ParityReport,
    model: &Ncsnpp<B>,
    r: &Recorded<'_>,
) -> Result<(), FixtureError> {
    let (data, shape) = (r.data, r.image_shape);
    let per = shape.iter().product::<usize>();
    let device = Default::default();
    let z0: Tensor<B, 4> = from_vec(data.f32("z0")?.1, shape, &device);
    let guidance = MseToTarget::new(from_vec::<B, 4>(data.f32("target")?.1, shape, &device));
    let ctx = GuidanceContext { iteration: 0, seed: 0 };
    let u_init = data.f32("u_init")?.1;
    let mut controls = steps(&u_init, shape);
    let mode = Mode::Reference;
    let mut losses = vec![];
    for (it, expected_grid) in r.segments.iter().enumerate() {
        let trajectory = simulate(model, z0.clone(), Some(&controls), &r.time, mode);
        let x1 = trajectory.last().require_grad();
        let loss = guidance.loss(x1.clone(), &ctx).sum();
        losses.push(to_vec(loss.clone())[0]);
        let grad_x1 = endpoint_gradient(&x1, loss).expect("the loss depends on x1");
        let rule = GradientRule { xi: r.xi, mode, anchor: SegmentAnchor::Start };
        let IterationGradient { decomposed: gradient, grid, straightness } = flowgrad_gradient(
            model,
            &trajectory,
            &mut RecordedForwards::none(),
            Some(&controls),
            &r.time,
            grad_x1,
            rule,
        );
        let s = straightness.expect("Reference mode computes the straightness");
        if it == 0 {
            report.measure(
                "v (recomputed, per step)",
                "scaled",
                chunked_scaled_error(&flat(&trajectory.velocities), &data.f32("v")?.1, per),
                5e-4,
            );
            report.measure(
                "traj (model)",
                "scaled",
                scaled_error(&flat(&trajectory.states), &data.f32("traj")?.1),
                1e-4,
            );
            report.measure(
                "straightness (model)",
                "relative",
                relative_error(&s.s, &data.f32("straightness")?.1),
                1e-3,
            );
        }
        report.exact(
            format!("iteration {it} segments (model)"),
            grid == *expected_grid,
            format!("ours {grid:?}, original {expected_grid:?}"),
        );
        let name = if it == 0 { "lam_seg".to_string() } else { format!("iter{it}_lam_seg") };
        if data.contains(&name) && grid == *expected_grid {
            let error = chunked_scaled_error(&flat(&gradient.segment_costates), &data.f32(&name)?.1, per);
            report.measure(name, "scaled", error, 2e-4);
        }
        if it == 0 {
            report.measure(
                "grad_u (model, per step)",
                "scaled",
                chunked_scaled_error(&flat(&gradient.per_step), &data.f32("grad_u")?.1, per),
                2e-4,
            );
        }
        controls =
            controls.iter().zip(&gradient.per_step).map(|(u, g)| u.clone() - g.clone().mul_scalar(r.lr)).collect();
        let after = format!("u_after{}", it + 1);
        if data.contains(&after) {
            let ours: Vec<f32> = flat(&controls).iter().zip(&u_init).map(|(a, b)| a - b).collect();
            let theirs: Vec<f32> = data.f32(&after)?.1.iter().zip(&u_init).map(|(a, b)| a - b).collect();
            report.measure(format!("{after} - u_init (model)"), "scaled", scaled_error(&ours, &theirs), 5e-4);
        }
    }
    if data.contains("loss_iters") {
        report.measure("loss_iters (model)", "relative", relative_error(&losses, &data.f32("loss_iters")?.1), 1e-5);
    }

    let full =
        full_backprop(model, z0.clone(), &steps(&u_init, shape), &r.time, mode, |x1| guidance.loss(x1, &ctx).sum());
    report.measure(
        "grad_full (per step)",
        "scaled",
        chunked_scaled_error(&flat(&full.per_step), &data.f32("grad_full")?.1, per),
        2e-4,
    );
    report.measure("loss_full", "relative", relative_error(&[full.loss as f32], &data.f32("loss_full")?.1), 1e-5);

    check_editor(report, model, r, z0, guidance, &u_init)
}

/// The same iterations through the production `Editor` (η = 1, λ = 0, α = lr, Reference mode):
/// the controls it ends with must match the original's last recorded controls.
fn check_editor(
    report: &mut ParityReport,
    model: &Ncsnpp<B>,
    r: &Recorded<'_>,
    z0: Tensor<B, 4>,
    guidance: MseToTarget<B>,
    u_init: &[f32],
) -> Result<(), FixtureError> {
    let iterations = r.segments.len();
    let name = format!("u_after{iterations}");
    if !r.data.contains(&name) {
        return Ok(());
    }
    let params = EditParams {
        steps: r.time.steps,
        iterations,
        update: UpdateRule::Gradient,
        step_size: r.lr,
        eta: 1.0,
        lambda: 0.0,
        xi: r.xi,
        mode: Mode::Reference,
        time_eps: r.time.eps,
        selection: Selection::Last,
        ..EditParams::paper()
    };
    let editor_error = |e: flowgrad::FlowGradError| format_error(r.data_path, format!("editor: {e}"));
    let editor = Editor::new(model, guidance, params, Default::default()).map_err(editor_error)?;
    let z0 = HostTensor::from_tensor(z0);
    let mut state = editor.start_encoded(z0.clone(), z0, 0, 0).map_err(editor_error)?;
    state.controls.values = u_init.to_vec();
    for _ in 0..iterations {
        editor.step(&mut state).map_err(editor_error)?;
    }
    let ours: Vec<f32> = state.controls.values.iter().zip(u_init).map(|(a, b)| a - b).collect();
    let theirs: Vec<f32> = r.data.f32(&name)?.1.iter().zip(u_init).map(|(a, b)| a - b).collect();
    report.measure(format!("{name} - u_init (Editor)"), "scaled", scaled_error(&ours, &theirs), 5e-4);
    Ok(())
}
