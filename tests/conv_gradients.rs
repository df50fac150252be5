//! Decomposed back-propagation against autograd through all N steps, and against finite
//! differences, on a convolutional velocity field.

use burn::tensor::{Distribution, Tensor, backend::Backend};
use flowgrad::tensor_util::to_vec;
use flowgrad::{
    Grid, Guidance, GuidanceContext, Mode, MseToTarget, SegmentAnchor, TimeGrid, decomposed_backprop, full_backprop,
    simulate,
};
use flowgrad_models::{ConvField, ConvFieldConfig};
use flowgrad_tests::{B, relative_l2};

const CTX: GuidanceContext = GuidanceContext { iteration: 0, seed: 0 };

fn field(seed: u64) -> ConvField<B> {
    ConvFieldConfig::new(2)
        .with_hidden(8)
        .with_depth(1)
        .with_seed(seed)
        .with_max_frequency(4.0)
        .init(&Default::default())
}

fn random(shape: [usize; 4], std: f64) -> Tensor<B, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, std), &Default::default())
}

fn decomposed(
    field: &ConvField<B>,
    x0: Tensor<B, 4>,
    controls: &[Tensor<B, 4>],
    time: &TimeGrid,
    mode: Mode,
    guidance: &MseToTarget<B>,
) -> Vec<f32> {
    let trajectory = simulate(field, x0, Some(controls), time, mode);
    let x1 = trajectory.last().require_grad();
    let grads = guidance.loss(x1.clone(), &CTX).sum().backward();
    let grad_x1 = Tensor::from_inner(x1.grad(&grads).unwrap());
    let g = decomposed_backprop(
        field,
        &trajectory,
        Some(controls),
        &Grid::uniform(time.steps),
        time,
        grad_x1,
        mode,
        SegmentAnchor::Start,
    );
    g.per_step.into_iter().flat_map(to_vec).collect()
}

#[test]
fn decomposed_matches_full_backprop() {
    B::seed(&Default::default(), 1);
    let field = field(3);
    let shape = [2, 2, 8, 8];
    let time = TimeGrid::new(12, 1e-3);
    let x0 = random(shape, 1.0);
    let controls: Vec<_> = (0..12).map(|_| random(shape, 0.05)).collect();
    let guidance = MseToTarget::new(random(shape, 1.0));
    for mode in [Mode::Paper, Mode::Reference] {
        let ours = decomposed(&field, x0.clone(), &controls, &time, mode, &guidance);
        let full = full_backprop(&field, x0.clone(), &controls, &time, mode, |x1| guidance.loss(x1, &CTX).sum());
        let oracle: Vec<f32> = full.per_step.into_iter().flat_map(to_vec).collect();
        let err = relative_l2(&ours, &oracle);
        assert!(err <= 1e-5, "{mode:?}: decomposed vs full back-prop relative error {err:e}");
        assert!(oracle.iter().any(|g| g.abs() > 1e-6), "the oracle gradient must not vanish");
    }
}

#[test]
fn decomposed_matches_finite_differences() {
    B::seed(&Default::default(), 2);
    let field = field(5);
    let shape = [1, 2, 8, 8];
    let time = TimeGrid::new(10, 1e-3);
    let x0 = random(shape, 1.0);
    let controls: Vec<_> = (0..10).map(|_| random(shape, 0.05)).collect();
    for mode in [Mode::Paper, Mode::Reference] {
        // target close to the output: a small loss keeps f32 rounding far below the differences
        let x1 = simulate(&field, x0.clone(), Some(&controls), &time, mode).last();
        let guidance = MseToTarget::new(x1 + random(shape, 0.2));
        let loss_at = |controls: &[Tensor<B, 4>]| -> f64 {
            let x1 = simulate(&field, x0.clone(), Some(controls), &time, mode).last();
            to_vec(guidance.loss(x1, &CTX))[0] as f64
        };
        let analytic = decomposed(&field, x0.clone(), &controls, &time, mode, &guidance);
        let per = shape.iter().product::<usize>();
        let eps = 1e-2f32;
        for (step, element) in [(0usize, 3usize), (4, 70), (9, 127), (6, 17)] {
            let bump = |sign: f32| -> Vec<Tensor<B, 4>> {
                let mut bumped = controls.clone();
                let mut values = to_vec(bumped[step].clone());
                values[element] += sign * eps;
                bumped[step] = flowgrad::tensor_util::from_vec(values, shape, &Default::default());
                bumped
            };
            let numeric = (loss_at(&bump(1.0)) - loss_at(&bump(-1.0))) / (2.0 * eps as f64);
            let ours = analytic[step * per + element] as f64;
            let err = (ours - numeric).abs() / numeric.abs().max(1e-8);
            assert!(err < 2e-2, "{mode:?} u[{step}][{element}]: decomposed {ours:e} vs finite difference {numeric:e}");
            assert!(numeric.abs() > 1e-6, "the probed entry must matter");
        }
    }
}
