//! The editor: objective decreases, checkpoint/resume is bit-identical, states round-trip,
//! fingerprints guard against resuming the wrong edit, directions share one control sequence.

mod common;

use common::{Affine, B, noise, tensor};
use flowgrad::{
    ControlSharing, ControlState, EditParams, Editor, FlowGradError, GlobalDirection, Mode, MseToTarget, SegmentAnchor,
    SegmentGradient, Selection, Solver, TimeGrid, UpdateRule, round_trip,
};

const SHAPE: [usize; 4] = [2, 3, 2, 2];

fn params() -> EditParams {
    EditParams {
        steps: 12,
        iterations: 6,
        update: UpdateRule::Gradient,
        step_size: 2.0,
        xi: 0.05,
        eta: 0.8,
        lambda: 1e-2,
        mode: Mode::Paper,
        ..Default::default()
    }
}

fn editor(params: EditParams) -> Editor<B, flowgrad::analytic::AffineField<B>, MseToTarget<B>> {
    let affine = Affine::new(3);
    Editor::new(affine.field(), MseToTarget::new(tensor(noise(5, 24), SHAPE)), params, Default::default()).unwrap()
}

fn image() -> burn::tensor::Tensor<B, 4> {
    tensor(noise(9, 24), SHAPE)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn objective_decreases_and_history_is_recorded() {
    for mode in [Mode::Paper, Mode::Reference] {
        // u enters the state directly in reference mode, so its gradient is N times larger.
        let step_size = if mode == Mode::Paper { 2.0 } else { 2.0 / 12.0 };
        let editor = editor(EditParams { mode, step_size, ..params() });
        let mut state = editor.start(image(), 1, 2).unwrap();
        let outcome = editor.run(&mut state, |_, _| {}).unwrap();
        assert_eq!(state.iteration, 6);
        assert_eq!(state.history.len(), 6);
        let first = state.history[0].objective;
        assert!(outcome.objective < 0.9 * first, "{mode:?}: {first} → {}", outcome.objective);
        assert!(state.history.iter().all(|r| r.segments >= 1 && r.segments <= 12));
        assert!(matches!(editor.step(&mut state), Err(FlowGradError::AlreadyFinished(6))));
    }
}

#[test]
fn resume_from_every_iteration_is_bit_identical() {
    let editor = editor(params());
    let mut straight = editor.start(image(), 42, 7).unwrap();
    let expected = editor.run(&mut straight, |_, _| {}).unwrap();
    let expected_image = flowgrad::tensor_util::to_vec(expected.images.inner());
    for stop in 0..=6 {
        let mut state = editor.start(image(), 42, 7).unwrap();
        for _ in 0..stop {
            editor.step(&mut state).unwrap();
        }
        let bytes = state.to_bytes().unwrap();
        let mut resumed = ControlState::from_bytes(&bytes).unwrap();
        assert_eq!(resumed, state, "round trip at iteration {stop}");
        // a fresh editor, as on another worker
        let other = self::editor(params());
        let outcome = other.run(&mut resumed, |_, _| {}).unwrap();
        assert_eq!(
            bits(&outcome.controls.values),
            bits(&expected.controls.values),
            "controls after resuming at {stop}"
        );
        assert_eq!(
            bits(&flowgrad::tensor_util::to_vec(outcome.images.inner())),
            bits(&expected_image),
            "image after resuming at {stop}"
        );
        assert_eq!(resumed.history, straight.history);
        assert_eq!(outcome.selected_iteration, expected.selected_iteration);
    }
}

#[test]
fn best_and_last_selection() {
    // A huge step size makes later iterations worse: Best must return an earlier iteration.
    let wild = EditParams { step_size: 400.0, iterations: 4, ..params() };
    let best_editor = editor(EditParams { selection: Selection::Best, ..wild.clone() });
    let mut state = best_editor.start(image(), 0, 0).unwrap();
    let best = best_editor.run(&mut state, |_, _| {}).unwrap();
    let min_seen = state.history.iter().map(|r| r.objective).fold(f64::INFINITY, f64::min);
    assert!(best.objective <= min_seen);
    let last_editor = editor(EditParams { selection: Selection::Last, ..wild });
    let mut state = last_editor.start(image(), 0, 0).unwrap();
    let last = last_editor.run(&mut state, |_, _| {}).unwrap();
    assert_eq!(last.selected_iteration, 4);
    assert!(state.best.is_none());
    assert!(best.objective <= last.objective);
}

#[test]
fn fingerprint_guards_resume() {
    let editor_a = editor(params());
    let state = editor_a.start(image(), 1, 1).unwrap();
    let editor_b = editor(EditParams { xi: 0.1, ..params() });
    let mut moved = state.clone();
    assert!(matches!(editor_b.step(&mut moved), Err(FlowGradError::FingerprintMismatch { .. })));
    let mut other_seed = state.clone();
    other_seed.seed = 2;
    assert!(matches!(editor_a.step(&mut other_seed), Err(FlowGradError::FingerprintMismatch { .. })));
    assert!(matches!(ControlState::from_bytes(b"not a checkpoint"), Err(FlowGradError::CorruptState(_))));
    let mut truncated = state.to_bytes().unwrap();
    truncated.truncate(truncated.len() - 9);
    assert!(ControlState::from_bytes(&truncated).is_err());
}

#[test]
fn iteration_seeds_differ_by_seed_and_iteration_not_by_stream() {
    let editor = editor(params());
    let a = editor.start(image(), 1, 1).unwrap();
    let other_task = editor.start(image(), 1, 2).unwrap();
    let other_job = editor.start(image(), 2, 1).unwrap();
    assert_ne!(a.iteration_seed(0), a.iteration_seed(1));
    assert_ne!(a.iteration_seed(0), other_job.iteration_seed(0));
    // an image's views must not depend on which task (batch) it was edited in
    assert_eq!(a.iteration_seed(0), other_task.iteration_seed(0));
    assert_ne!(a.fingerprint, other_task.fingerprint, "the stream still separates checkpoints");
    assert_eq!(a.iteration_seed(3), a.clone().iteration_seed(3));
}

#[test]
fn shared_direction_sums_the_batch_and_applies_to_new_images() {
    let one_step = EditParams { iterations: 1, lambda: 0.0, warm_start: 0.0, ..params() };
    let per_image = editor(one_step.clone());
    let mut state = per_image.start(image(), 0, 0).unwrap();
    per_image.step(&mut state).unwrap();
    let shared_params = EditParams { sharing: ControlSharing::Shared, ..one_step };
    let shared = editor(shared_params.clone());
    let mut direction_state = shared.start(image(), 0, 0).unwrap();
    shared.step(&mut direction_state).unwrap();
    let [n, b, c, h, w]: [usize; 5] = state.controls.shape.clone().try_into().unwrap();
    assert_eq!(direction_state.controls.shape, vec![n, 1, c, h, w]);
    let per = c * h * w;
    for k in 0..n {
        for i in 0..per {
            let sum: f32 = (0..b).map(|img| state.controls.values[(k * b + img) * per + i]).sum();
            let got = direction_state.controls.values[k * per + i];
            assert!((sum - got).abs() <= 1e-5 * sum.abs().max(1e-3), "step {k} element {i}: {sum} vs {got}");
        }
    }
    assert!(GlobalDirection::from_controls(state.controls.clone(), shared_params.clone()).is_err());
    let direction = GlobalDirection::from_outcome(&shared.finish(&direction_state).unwrap(), &shared_params).unwrap();
    assert_eq!(direction.controls(), &direction_state.controls, "one step improves: the final controls are selected");
    let new_images = tensor(noise(77, 3 * 12), [3, 3, 2, 2]);
    let edited = direction.apply(&shared, new_images.clone()).unwrap();
    let plain = shared
        .apply_controls(new_images, &flowgrad::HostTensor { shape: vec![n, 1, c, h, w], values: vec![0.0; n * per] })
        .unwrap();
    assert_eq!(edited.dims(), [3, 3, 2, 2]);
    let moved: f32 = flowgrad::tensor_util::to_vec((edited - plain).abs().sum().inner())[0];
    assert!(moved > 1e-4, "the direction must change new images");
}

#[test]
fn encoders_and_round_trip_error() {
    let field = Affine::new(3).field();
    let x1 = image();
    let grid = TimeGrid::new(20, 1e-3);
    let inverse = round_trip(&field, x1.clone(), &grid, &grid, Solver::InverseEuler { iterations: 8 });
    let euler = round_trip(&field, x1.clone(), &grid, &grid, Solver::Euler);
    let rk4 = round_trip(&field, x1, &grid, &grid, Solver::Rk4);
    assert!(inverse.max_abs < 1e-4, "{inverse:?}");
    assert!(euler.max_abs > 10.0 * inverse.max_abs, "{euler:?} vs {inverse:?}");
    assert!(rk4.mean_abs.is_finite());
}

#[test]
fn bad_inputs_are_rejected() {
    assert!(matches!(
        Editor::new(
            Affine::new(3).field(),
            MseToTarget::new(image()),
            EditParams { steps: 0, ..params() },
            Default::default()
        ),
        Err(FlowGradError::InvalidParameter { name: "steps", .. })
    ));
    let editor = editor(params());
    let mut state = editor.start(image(), 0, 0).unwrap();
    state.controls.shape[0] = 3;
    state.controls.values.truncate(3 * 24);
    assert!(matches!(editor.step(&mut state), Err(FlowGradError::ShapeMismatch { what: "controls", .. })));
}

/// The segment options (interpolated costates, middle-anchored VJPs): the objective still
/// decreases, the first update differs from the paper's where the grid merges steps, and each is
/// part of the fingerprint only when it is not the default (older checkpoints keep theirs).
#[test]
fn segment_options_edit_and_are_fingerprinted() {
    let options = [
        (
            "\"segment_gradient\":\"interpolate\"",
            EditParams { segment_gradient: SegmentGradient::Interpolate, ..params() },
        ),
        ("\"segment_anchor\":\"middle\"", EditParams { segment_anchor: SegmentAnchor::Middle, ..params() }),
    ];
    let default_form = params().fingerprint_form();
    assert!(!default_form.contains("segment_gradient") && !default_form.contains("segment_anchor"), "{default_form}");
    let paper = editor(params());
    let mut reference = paper.start(image(), 1, 2).unwrap();
    let record = paper.step(&mut reference).unwrap();
    assert!(record.segments < 12, "the grid must merge steps: {} segments", record.segments);
    for (serialised, option) in options {
        assert!(option.fingerprint_form().contains(serialised), "{option:?}");
        let varied = editor(option);
        let mut state = varied.start(image(), 1, 2).unwrap();
        assert_ne!(state.fingerprint, reference.fingerprint, "{serialised}");
        varied.step(&mut state).unwrap();
        assert_ne!(bits(&reference.controls.values), bits(&state.controls.values), "{serialised}");
        let outcome = varied.run(&mut state, |_, _| {}).unwrap();
        assert!(outcome.objective < 0.9 * state.history[0].objective, "{serialised}: {:?}", state.history);
    }
}

/// Workers may hold different numbers of recorded forwards: an edit gives the same controls bit
/// for bit whether its VJPs reuse the simulation's forwards or run their own, also when a worker
/// with none resumes one checkpointed by a worker with some.
#[test]
fn recorded_forwards_do_not_change_the_edit() {
    for (mode, anchor) in [(Mode::Paper, SegmentAnchor::Middle), (Mode::Reference, SegmentAnchor::Start)] {
        let step_size = if mode == Mode::Paper { 2.0 } else { 2.0 / 12.0 };
        let params = EditParams { mode, step_size, segment_anchor: anchor, ..params() };
        let recording = editor(params.clone()).with_recorded_forwards(4);
        let plain = editor(params).with_recorded_forwards(0);
        let mut expected = plain.start(image(), 3, 1).unwrap();
        let expected = plain.run(&mut expected, |_, _| {}).unwrap();
        let mut state = recording.start(image(), 3, 1).unwrap();
        for _ in 0..3 {
            recording.step(&mut state).unwrap();
        }
        let outcome = plain.run(&mut ControlState::from_bytes(&state.to_bytes().unwrap()).unwrap(), |_, _| {}).unwrap();
        assert_eq!(bits(&outcome.controls.values), bits(&expected.controls.values), "{mode:?} {anchor:?}");
        let mut all_recorded = recording.start(image(), 3, 1).unwrap();
        let outcome = recording.run(&mut all_recorded, |_, _| {}).unwrap();
        assert_eq!(bits(&outcome.controls.values), bits(&expected.controls.values), "{mode:?} {anchor:?}");
    }
}

/// `l1_ssim` faithfulness is mean |x_1 − input| + 1 − SSIM(x_1, input) per image, and the
/// structure term changes the gradient.
#[test]
fn l1_ssim_faithfulness_adds_one_minus_ssim() {
    use flowgrad::tensor_util::to_vec;
    let base = EditParams { iterations: 2, warm_start: 0.0, faithfulness: flowgrad::Faithfulness::L1, ..params() };
    let l1 = editor(base.clone());
    let both = editor(EditParams { faithfulness: flowgrad::Faithfulness::L1Ssim, ..base });
    let (mut a, mut b) = (l1.start(image(), 0, 0).unwrap(), both.start(image(), 0, 0).unwrap());
    let (ra, rb) = (l1.step(&mut a).unwrap(), both.step(&mut b).unwrap());
    assert_eq!(ra.guidance, rb.guidance, "same controls, same guidance");
    assert_ne!(a.controls, b.controls, "the structure term changes the gradient");
    // after one step the output differs from the input: check the term on it
    let x1 = both.decode(&b, &b.controls).unwrap();
    let l1_part: f64 = to_vec(flowgrad::mean_abs_diff(x1.clone(), image())).iter().map(|&v| f64::from(v)).sum();
    let dissimilarity: f64 = to_vec(flowgrad::ssim(x1, image())).iter().map(|s| 1.0 - f64::from(*s)).sum();
    assert!(dissimilarity > 1e-3, "the step moved the output: {dissimilarity}");
    let record = both.step(&mut b).unwrap();
    assert!(
        (record.faithfulness - l1_part - dissimilarity).abs() < 1e-4,
        "{} vs {l1_part} + {dissimilarity}",
        record.faithfulness
    );
}
