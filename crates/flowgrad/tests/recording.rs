//! Forwards recorded during the simulation give the same decomposed gradient as VJPs that run
//! their own, for every mode, anchor and capacity, and only as many are held as allowed.

mod common;

use common::{Affine, noise, tensor};
use flowgrad::tensor_util::to_vec;
use flowgrad::{
    AnchorPlan, DifferentiableField, Grid, Guidance, GuidanceContext, Mode, MseToTarget, SegmentAnchor, TimeGrid,
    decomposed_backprop, decomposed_backprop_recorded, simulate, simulate_recording, simulate_untracked, straightness,
};

const SHAPE: [usize; 4] = [2, 3, 2, 2];
const N: usize = 40;

/// (gradient with recorded forwards, gradient without, VJPs, VJPs that used a recorded forward,
/// forwards held after the simulation, whether those are exactly the grid's anchor steps)
fn both(
    mode: Mode,
    xi: f32,
    anchor: SegmentAnchor,
    capacity: usize,
) -> (Vec<f32>, Vec<f32>, usize, usize, usize, bool) {
    let affine = Affine::new(3);
    let field = affine.field();
    let n = 2 * affine.dims;
    let x0 = tensor(noise(21, n), SHAPE);
    let controls: Vec<_> =
        (0..N).map(|k| tensor(noise(300 + k as u64, n).iter().map(|v| v * 0.02).collect(), SHAPE)).collect();
    let target = MseToTarget::new(tensor(noise(22, n), SHAPE));
    let time = TimeGrid::new(N, 1e-3);
    let plan = AnchorPlan { xi, mode, anchor, capacity };
    let values = field.values();
    let (trajectory, mut recorded) =
        simulate_recording(&field, &values, x0.clone(), Some(&controls), &time, mode, plan);
    let plain = simulate_untracked(&values, x0.clone(), Some(&controls), &time, mode);
    assert_eq!(to_vec(trajectory.last()), to_vec(plain.last()), "recording changes nothing of the trajectory");
    let tracked = simulate(&field, x0, Some(&controls), &time, mode);
    for (k, (twin, autodiff)) in plain.states.iter().zip(&tracked.states).enumerate() {
        assert_eq!(to_vec(twin.clone()), to_vec(autodiff.clone()), "state {k}: the inner-backend twin's values");
    }
    let held = recorded.len();
    assert!(held <= capacity, "{held} forwards held, capacity {capacity}");
    let grad_x1 = {
        let x1 = trajectory.last().detach().require_grad();
        let grads = target.loss(x1.clone(), &GuidanceContext { iteration: 0, seed: 0 }).sum().backward();
        burn::tensor::Tensor::from_inner(x1.grad(&grads).unwrap())
    };
    let grid = Grid::build(&straightness(&trajectory.velocities, mode).s, xi, mode);
    let anchors: Vec<usize> =
        grid.starts.iter().zip(&grid.lengths).map(|(&start, &len)| anchor.step(start, len)).collect();
    let held_anchors = recorded.steps() == anchors;
    let with = decomposed_backprop_recorded(
        &field,
        &trajectory,
        &mut recorded,
        Some(&controls),
        &grid,
        &time,
        grad_x1.clone(),
        mode,
        anchor,
    );
    let without = decomposed_backprop(&field, &plain, Some(&controls), &grid, &time, grad_x1, mode, anchor);
    assert_eq!(without.recorded_vjps, 0);
    let flat = |g: Vec<burn::tensor::Tensor<common::B, 4>>| -> Vec<f32> { g.into_iter().flat_map(to_vec).collect() };
    (flat(with.per_step), flat(without.per_step), with.vjps, with.recorded_vjps, held, held_anchors)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6 * scale, "{what}: {x} vs {y}");
    }
}

#[test]
fn recorded_forwards_give_the_same_gradient_with_only_backward_halves() {
    for mode in [Mode::Paper, Mode::Reference] {
        for anchor in [SegmentAnchor::Start, SegmentAnchor::Middle] {
            for xi in [0.0, 1e-3, 5e-3, 5e-2] {
                let what = format!("{mode:?} {anchor:?} xi={xi}");
                let (with, without, vjps, recorded, held, held_anchors) = both(mode, xi, anchor, 64);
                assert_close(&with, &without, &what);
                // with room for every candidate, every anchor's forward was kept, and nothing else
                assert_eq!(recorded, vjps, "{what}: {recorded} of {vjps} VJPs used a recorded forward");
                assert_eq!(held, vjps, "{what}: only the anchors' forwards are left after the simulation");
                assert!(held_anchors, "{what}: the forwards left are not the anchors'");
            }
        }
    }
}

#[test]
fn a_small_capacity_bounds_the_forwards_held_and_the_rest_run_their_own() {
    for mode in [Mode::Paper, Mode::Reference] {
        for anchor in [SegmentAnchor::Start, SegmentAnchor::Middle] {
            // ξ = 0: every step is a segment, so N anchors compete for 5 places
            let (with, without, vjps, recorded, held, _) = both(mode, 0.0, anchor, 5);
            assert_close(&with, &without, &format!("{mode:?} {anchor:?}"));
            assert_eq!(vjps, N);
            assert_eq!((recorded, held), (5, 5), "{mode:?} {anchor:?}");
            let (with, without, _, recorded, held, _) = both(mode, 5e-3, anchor, 0);
            assert_close(&with, &without, &format!("{mode:?} {anchor:?} capacity 0"));
            assert_eq!((recorded, held), (0, 0));
        }
    }
}
