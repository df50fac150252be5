//! FlowGrad's gradient of one iteration, in one place: ∂L/∂x_N of a loss at the end of a
//! simulated trajectory, the straightness of its velocities (Eq. 11), the segment grid of ξ
//! (Eq. 12), and decomposed back-propagation over that grid (Eq. 13). The editor, the noise
//! baseline, the benchmarks and the parity checks all take their gradient here, so they share one
//! grid rule.

use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::backprop::{DecomposedGradient, decomposed_backprop_recorded};
use crate::field::VelocityField;
use crate::params::{EditParams, Mode, SegmentAnchor};
use crate::recording::RecordedForwards;
use crate::straightness::{Grid, Straightness, straightness};
use crate::trajectory::{TimeGrid, Trajectory};

/// How an iteration's gradient is decomposed: the straightness threshold ξ, the mode (which
/// straightness and grid rule), and the step each segment's VJP is evaluated at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientRule {
    /// Straightness threshold ξ (0: every step its own segment, the exact gradient).
    pub xi: f32,
    /// `Paper` or `Reference` straightness, grid and gradient units.
    pub mode: Mode,
    /// The step of a merged segment its VJP is evaluated at.
    pub anchor: SegmentAnchor,
}

impl GradientRule {
    /// The rule of an edit with `params`.
    pub fn of(params: &EditParams) -> Self {
        Self { xi: params.xi, mode: params.mode, anchor: params.segment_anchor }
    }
}

/// The gradient of one iteration and how it was decomposed.
#[derive(Debug, Clone)]
pub struct IterationGradient<B: AutodiffBackend> {
    /// The decomposed back-propagation's result (per-step gradients, costates, VJP counts).
    pub decomposed: DecomposedGradient<B>,
    /// The segments the VJPs were evaluated on.
    pub grid: Grid,
    /// The trajectory's straightness; `None` where the grid needs none (`Paper` mode at ξ = 0).
    pub straightness: Option<Straightness>,
}

/// ∂L/∂x_N: back-propagates `loss` (any shape; summed) to `x1`, which must have been marked with
/// `require_grad` before the loss was computed from it. `None` when the loss does not depend on it.
pub fn endpoint_gradient<B: AutodiffBackend, const D: usize>(
    x1: &Tensor<B, 4>,
    loss: Tensor<B, D>,
) -> Option<Tensor<B, 4>> {
    let grads = loss.sum().backward();
    x1.grad(&grads).map(Tensor::from_inner)
}

/// The one grid rule: Eq. 12's segments of the straightness of `velocities` under `rule`. In
/// `Paper` mode ξ = 0 gives every step its own segment whatever the straightness, so it is not
/// computed there.
pub fn segment_grid<B: Backend>(velocities: &[Tensor<B, 4>], rule: GradientRule) -> (Grid, Option<Straightness>) {
    if rule.xi == 0.0 && rule.mode == Mode::Paper {
        return (Grid::uniform(velocities.len()), None);
    }
    let s = straightness(velocities, rule.mode);
    (Grid::build(&s.s, rule.xi, rule.mode), Some(s))
}

/// FlowGrad's gradient of every control from ∂L/∂x_N = `grad_x1` at the end of `trajectory`
/// (simulated with `controls` on `time`): the grid of [`segment_grid`], then one VJP per segment,
/// reusing the forwards the simulation `recorded` (pass [`RecordedForwards::none`] for none).
#[allow(clippy::too_many_arguments)]
pub fn flowgrad_gradient<B: AutodiffBackend, F: VelocityField<B>>(
    field: &F,
    trajectory: &Trajectory<B>,
    recorded: &mut RecordedForwards<B>,
    controls: Option<&[Tensor<B, 4>]>,
    time: &TimeGrid,
    grad_x1: Tensor<B, 4>,
    rule: GradientRule,
) -> IterationGradient<B> {
    let (grid, straightness) = segment_grid(&trajectory.velocities, rule);
    let decomposed = decomposed_backprop_recorded(
        field,
        trajectory,
        recorded,
        controls,
        &grid,
        time,
        grad_x1,
        rule.mode,
        rule.anchor,
    );
    IterationGradient { decomposed, grid, straightness }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    fn velocities(values: &[f32]) -> Vec<Tensor<Flex, 4>> {
        values
            .iter()
            .map(|&v| Tensor::<Flex, 1>::from_floats([v, 1.0], &Default::default()).reshape([1, 1, 1, 2]))
            .collect()
    }

    #[test]
    fn paper_mode_at_zero_xi_is_uniform_without_straightness() {
        let rule = GradientRule { xi: 0.0, mode: Mode::Paper, anchor: SegmentAnchor::Start };
        let (grid, s) = segment_grid(&velocities(&[1.0, 1.0, 1.0, 5.0]), rule);
        assert_eq!(grid, Grid::uniform(4));
        assert!(s.is_none());
    }

    #[test]
    fn straight_steps_merge_and_the_straightness_is_returned() {
        // three equal velocities then a turn: the straight run merges at a small ξ
        let vs = velocities(&[1.0, 1.0, 1.0, 5.0]);
        for mode in [Mode::Paper, Mode::Reference] {
            let rule = GradientRule { xi: 1e-3, mode, anchor: SegmentAnchor::Start };
            let (grid, s) = segment_grid(&vs, rule);
            let s = s.expect("ξ > 0 needs the straightness");
            assert_eq!(grid, Grid::build(&s.s, rule.xi, mode), "{mode:?}");
            assert!(grid.len() < 4, "{mode:?}: {grid:?}");
        }
    }

    #[test]
    fn the_endpoint_gradient_of_a_sum_of_squares_is_twice_the_point() {
        let x1 = Tensor::<B, 1>::from_floats([1.0, -2.0, 0.5, 3.0], &Default::default())
            .reshape([1, 1, 2, 2])
            .require_grad();
        let grad = endpoint_gradient(&x1, x1.clone().powi_scalar(2)).unwrap();
        let values = grad.into_data().to_vec::<f32>().unwrap();
        assert_eq!(values, vec![2.0, -4.0, 1.0, 6.0]);
        let unrelated = Tensor::<B, 1>::from_floats([1.0], &Default::default()).require_grad();
        assert!(endpoint_gradient(&x1, unrelated * 2.0).is_none(), "a loss without x1 has no gradient for it");
    }
}
