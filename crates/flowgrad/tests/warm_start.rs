//! The guided-sampling warm start: the controls it starts from replay guided sampling exactly,
//! the trust region then never ends worse than that sample, and the paper starts from zero.

mod common;

use burn::tensor::Tensor;
use common::{Affine, B, noise, tensor};
use flowgrad::baselines::guided_sample;
use flowgrad::tensor_util::to_vec;
use flowgrad::{ControlSharing, ControlState, EditParams, Editor, GuidanceContext, Mode, MseToTarget};

const SHAPE: [usize; 4] = [2, 3, 2, 2];

fn params(mode: Mode, warm_start: f32) -> EditParams {
    EditParams { steps: 16, iterations: 6, xi: 0.02, eta: 0.9, lambda: 1e-4, mode, warm_start, ..EditParams::default() }
}

fn editor(params: EditParams) -> Editor<B, flowgrad::analytic::AffineField<B>, MseToTarget<B>> {
    Editor::new(Affine::new(3).field(), MseToTarget::new(tensor(noise(5, 24), SHAPE)), params, Default::default())
        .unwrap()
}

fn image() -> Tensor<B, 4> {
    tensor(noise(9, 24), SHAPE)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// In the paper's parametrisation the warm controls decode to guided sampling's images exactly;
/// in the reference one they are the same guidance terms times h (u_k acts on the state there).
#[test]
fn warm_controls_are_guided_sampling_s() {
    let scale = 3.0;
    let paper = editor(params(Mode::Paper, scale));
    let state = paper.start(image(), 7, 1).unwrap();
    let ctx = GuidanceContext { iteration: 0, seed: state.iteration_seed(0) };
    let guidance = MseToTarget::new(tensor(noise(5, 24), SHAPE));
    let sample = guided_sample(
        paper.field(),
        &guidance,
        state.x0.to_tensor::<B, 4>(&Default::default()).unwrap(),
        &paper.time_grid(),
        scale,
        &ctx,
    );
    let decoded = to_vec(paper.decode(&state, &state.controls).unwrap());
    let err = max_abs_diff(&decoded, &to_vec(sample.images.clone()));
    assert!(err < 1e-5, "warm controls replay the guided sample to {err:e}");
    let sampled: Vec<f32> = sample.controls.iter().flat_map(|u| to_vec(u.clone())).collect();
    assert!(sampled.iter().any(|&u| u.abs() > 1e-3), "the guidance moved the sample");
    assert_eq!(state.controls.values, sampled, "stored step by step, [N, B, C, H, W]");

    let reference = editor(params(Mode::Reference, scale));
    let state = reference.start(image(), 7, 1).unwrap();
    let h = reference.time_grid().dt();
    let err = max_abs_diff(&state.controls.values, &sampled.iter().map(|u| u * h).collect::<Vec<_>>());
    assert!(err < 1e-6, "reference controls are the paper's times h, off by {err:e}");
}

/// The paper (and a scale of 0) starts from u = 0, and so does an image whose guided sample is
/// worse than its unedited reconstruction (an overshooting scale); shared controls start from
/// the batch mean.
#[test]
fn no_warm_start_is_zero_and_shared_controls_average() {
    assert_eq!(EditParams::paper().warm_start, 0.0);
    let state = editor(params(Mode::Reference, 0.0)).start(image(), 7, 1).unwrap();
    assert!(state.controls.values.iter().all(|&u| u == 0.0));
    let overshot = editor(params(Mode::Paper, 1e4)).start(image(), 7, 1).unwrap();
    assert!(overshot.controls.values.iter().all(|&u| u == 0.0), "a sample worse than the input is not a start");

    let per_image = editor(params(Mode::Reference, 3.0)).start(image(), 7, 1).unwrap().controls;
    let shared = editor(EditParams { sharing: ControlSharing::Shared, ..params(Mode::Reference, 3.0) })
        .start(image(), 7, 1)
        .unwrap()
        .controls;
    assert_eq!(shared.shape, vec![16, 1, 3, 2, 2]);
    let per = 12;
    for k in 0..16 {
        for i in 0..per {
            let mean = (per_image.values[k * 2 * per + i] + per_image.values[k * 2 * per + per + i]) / 2.0;
            assert!((shared.values[k * per + i] - mean).abs() < 1e-6);
        }
    }
}

/// From the warm start the trust region only accepts improvements: the result is never worse
/// than the guided sample's objective (iteration 0's), and a checkpoint of the warm state
/// resumes to the same bits.
#[test]
fn the_edit_never_ends_worse_than_the_guided_sample_and_resumes_bit_for_bit() {
    for mode in [Mode::Reference, Mode::Paper] {
        let editor = editor(params(mode, 3.0));
        let mut state = editor.start(image(), 2, 3).unwrap();
        let saved = ControlState::from_bytes(&state.to_bytes().unwrap()).unwrap();
        let outcome = editor.run(&mut state, |_, _| {}).unwrap();
        let guided = state.history[0].objective;
        assert!(outcome.objective <= guided, "{mode:?}: {} > the guided sample's {guided}", outcome.objective);
        assert!(outcome.objective < guided, "{mode:?}: FlowGrad improves on the sample: {:?}", state.history);
        let mut resumed = saved;
        let again = editor.run(&mut resumed, |_, _| {}).unwrap();
        assert_eq!(again.controls, outcome.controls, "{mode:?}");
    }
}
