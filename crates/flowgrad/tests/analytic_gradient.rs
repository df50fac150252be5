//! Decomposed back-propagation against the closed-form gradient of an affine field.

mod common;

use common::{Affine, noise, rel_err, tensor};
use flowgrad::{
    Grid, Guidance, GuidanceContext, Mode, MseToTarget, SegmentAnchor, TimeGrid, decomposed_backprop, simulate,
    straightness,
};

const BATCH: usize = 2;
const SHAPE: [usize; 4] = [BATCH, 3, 2, 2];
const N: usize = 24;

struct Problem {
    affine: Affine,
    x0: Vec<f32>,
    target: Vec<f32>,
    controls: Vec<Vec<f32>>,
    time: TimeGrid,
}

impl Problem {
    fn new() -> Self {
        let affine = Affine::new(7);
        let n = BATCH * affine.dims;
        Self {
            x0: noise(11, n),
            target: noise(12, n),
            controls: (0..N).map(|k| noise(100 + k as u64, n).iter().map(|v| v * 0.3).collect()).collect(),
            time: TimeGrid::new(N, 1e-3),
            affine,
        }
    }

    /// Exact ∂L/∂u_k for L = Σ_images mean((x_N − y)²), in f64.
    fn exact_gradient(&self, mode: Mode) -> Vec<f64> {
        let d = self.affine.dims;
        let h = 1.0 / N as f64;
        let mut out = vec![vec![0.0f64; BATCH * d]; N];
        for img in 0..BATCH {
            let slice = |v: &[f32]| v[img * d..(img + 1) * d].iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let mut xs = vec![slice(&self.x0)];
            for k in 0..N {
                let t = self.time.t(k) as f64;
                let u = slice(&self.controls[k]);
                let x = xs[k].clone();
                let next: Vec<f64> = match mode {
                    Mode::Paper => {
                        let ax = self.affine.apply(t, &x);
                        (0..d).map(|i| x[i] + h * (ax[i] + self.affine.b[i] as f64 + u[i])).collect()
                    }
                    Mode::Reference => {
                        let z: Vec<f64> = (0..d).map(|i| x[i] + u[i]).collect();
                        let az = self.affine.apply(t, &z);
                        (0..d).map(|i| z[i] + h * (az[i] + self.affine.b[i] as f64)).collect()
                    }
                };
                xs.push(next);
            }
            let y = slice(&self.target);
            let mut lambda: Vec<f64> = (0..d).map(|i| 2.0 * (xs[N][i] - y[i]) / d as f64).collect();
            for k in (0..N).rev() {
                let t = self.time.t(k) as f64;
                let at = self.affine.apply_t(t, &lambda);
                let before: Vec<f64> = (0..d).map(|i| lambda[i] + h * at[i]).collect();
                let grad = match mode {
                    Mode::Paper => lambda.iter().map(|l| h * l).collect::<Vec<f64>>(),
                    Mode::Reference => before.clone(),
                };
                out[k][img * d..(img + 1) * d].copy_from_slice(&grad);
                lambda = before;
            }
        }
        out.concat()
    }

    /// Decomposed gradient on the grid chosen by `xi` (None = uniform).
    fn decomposed(&self, mode: Mode, xi: Option<f32>) -> (Vec<f64>, usize) {
        let (copied, _, vjps) = self.decomposed_both(mode, xi, SegmentAnchor::Start);
        (copied, vjps)
    }

    /// The decomposed gradient as the original assigns it (copied inside segments), with
    /// interpolated costates, and the VJPs; each segment's VJP at its `anchor` step.
    fn decomposed_both(&self, mode: Mode, xi: Option<f32>, anchor: SegmentAnchor) -> (Vec<f64>, Vec<f64>, usize) {
        let field = self.affine.field();
        let controls: Vec<_> = self.controls.iter().map(|u| tensor(u.clone(), SHAPE)).collect();
        let traj = simulate(&field, tensor(self.x0.clone(), SHAPE), Some(&controls), &self.time, mode);
        let x1 = traj.last().require_grad();
        let loss = MseToTarget::new(tensor(self.target.clone(), SHAPE))
            .loss(x1.clone(), &GuidanceContext { iteration: 0, seed: 0 });
        let grads = loss.sum().backward();
        let grad_x1 = burn::tensor::Tensor::from_inner(x1.grad(&grads).unwrap());
        let grid = match xi {
            None => Grid::uniform(N),
            Some(xi) => Grid::build(&straightness(&traj.velocities, mode).s, xi, mode),
        };
        let g = decomposed_backprop(&field, &traj, Some(&controls), &grid, &self.time, grad_x1, mode, anchor);
        assert_eq!(g.vjps, grid.len());
        let flat = |steps: Vec<burn::tensor::Tensor<common::B, 4>>| -> Vec<f64> {
            steps.into_iter().flat_map(|t| flowgrad::tensor_util::to_vec(t.inner())).map(f64::from).collect()
        };
        let interpolated = flat(g.interpolated(&grid, &self.time, mode));
        (flat(g.per_step), interpolated, grid.len())
    }
}

#[test]
fn uniform_decomposed_gradient_matches_closed_form() {
    let problem = Problem::new();
    for mode in [Mode::Paper, Mode::Reference] {
        let exact = problem.exact_gradient(mode);
        let (ours, vjps) = problem.decomposed(mode, None);
        let err = rel_err(&ours, &exact);
        assert_eq!(vjps, N);
        assert!(err <= 1e-5, "{mode:?}: relative error {err:e}");
        // ξ = 0 in paper mode is the uniform grid
        if mode == Mode::Paper {
            let (zero_xi, vjps) = problem.decomposed(mode, Some(0.0));
            assert_eq!(vjps, N);
            assert!(rel_err(&zero_xi, &exact) <= 1e-5);
        }
    }
}

#[test]
fn fast_gradient_error_shrinks_as_xi_goes_to_zero() {
    let problem = Problem::new();
    for mode in [Mode::Paper, Mode::Reference] {
        let exact = problem.exact_gradient(mode);
        let mut previous = (f64::INFINITY, 0usize);
        let mut errors = vec![];
        for xi in [10.0, 0.5, 0.1, 0.02, 0.0] {
            let (ours, vjps) = problem.decomposed(mode, Some(xi));
            let err = rel_err(&ours, &exact);
            errors.push((xi, vjps, err));
            assert!(vjps >= previous.1, "{mode:?}: fewer segments for a smaller ξ: {errors:?}");
            assert!(err <= previous.0 * 1.05 + 1e-7, "{mode:?}: error grew as ξ shrank: {errors:?}");
            previous = (err, vjps);
        }
        let (first, last) = (errors[0], errors[errors.len() - 1]);
        assert!(first.1 < N && first.2 > 1e-3, "{mode:?}: a coarse grid must differ: {errors:?}");
        assert!(last.2 < 1e-4, "{mode:?}: fine grid error: {errors:?}");
    }
}

/// Interpolating the costate inside each segment costs no VJP: it equals the exact gradient on
/// the uniform grid and is closer to it than the copied gradient on every coarse grid.
#[test]
fn interpolated_costates_are_closer_to_the_exact_gradient() {
    let problem = Problem::new();
    for mode in [Mode::Paper, Mode::Reference] {
        let exact = problem.exact_gradient(mode);
        let (copied, interpolated, _) = problem.decomposed_both(mode, None, SegmentAnchor::Start);
        assert_eq!(copied, interpolated, "{mode:?}: uniform grid");
        for xi in [10.0, 0.5, 0.1] {
            let (copied, interpolated, vjps) = problem.decomposed_both(mode, Some(xi), SegmentAnchor::Start);
            let (copy_err, interp_err) = (rel_err(&copied, &exact), rel_err(&interpolated, &exact));
            assert!(vjps < N, "{mode:?} ξ = {xi}: the grid must merge steps");
            assert!(
                interp_err < copy_err,
                "{mode:?} ξ = {xi} ({vjps} VJPs): interpolated {interp_err:e}, copied {copy_err:e}"
            );
        }
    }
}

/// This field's Jacobian A₀ + t·A₁ drifts linearly along every segment, so a VJP at the middle
/// step stands for the segment's Jacobians better than one at its start: closer to the exact
/// gradient on every coarse grid, copied or interpolated, and identical on the uniform grid.
#[test]
fn middle_anchored_vjps_are_closer_to_the_exact_gradient() {
    let problem = Problem::new();
    assert_eq!(SegmentAnchor::Middle.step(10, 1), 10);
    assert_eq!(SegmentAnchor::Middle.step(10, 4), 11);
    assert_eq!(SegmentAnchor::Middle.step(10, 5), 12);
    // thresholds that merge the 24 steps into 3–10 segments in each mode (Paper mode needs
    // smaller ones: its grid leaves S_j of the segment start out of the running sum)
    for (mode, xis) in [(Mode::Paper, [0.05, 0.02, 0.01]), (Mode::Reference, [0.5, 0.2, 0.1])] {
        let exact = problem.exact_gradient(mode);
        assert_eq!(
            problem.decomposed_both(mode, None, SegmentAnchor::Middle),
            problem.decomposed_both(mode, None, SegmentAnchor::Start),
            "{mode:?}: uniform grid"
        );
        for xi in xis {
            let (start_copied, start_interpolated, vjps) =
                problem.decomposed_both(mode, Some(xi), SegmentAnchor::Start);
            let (middle_copied, middle_interpolated, middle_vjps) =
                problem.decomposed_both(mode, Some(xi), SegmentAnchor::Middle);
            assert_eq!(vjps, middle_vjps, "{mode:?} ξ = {xi}: the anchor must not change the grid");
            assert!(
                vjps > 1 && vjps < N,
                "{mode:?} ξ = {xi}: the grid must merge steps into several segments ({vjps})"
            );
            for (what, start, middle) in
                [("copied", &start_copied, &middle_copied), ("interpolated", &start_interpolated, &middle_interpolated)]
            {
                let (start_err, middle_err) = (rel_err(start, &exact), rel_err(middle, &exact));
                assert!(
                    middle_err < start_err,
                    "{mode:?} ξ = {xi} ({vjps} VJPs), {what}: middle {middle_err:e}, start {start_err:e}"
                );
            }
        }
    }
}
