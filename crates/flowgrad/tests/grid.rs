//! Straightness (Eq. 11) and grid (Eq. 12) against hand-computed sequences, both modes.

use flowgrad::{Grid, Mode, straightness, straightness_from_sums};

type B = burn::backend::Flex;

fn tensors(values: &[[f32; 2]]) -> Vec<burn::tensor::Tensor<B, 4>> {
    let device = Default::default();
    values.iter().map(|v| flowgrad::tensor_util::from_vec::<B, 4>(v.to_vec(), [1, 1, 1, 2], &device)).collect()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{a:?} vs {b:?}");
    }
}

#[test]
fn straightness_by_hand_paper_and_reference() {
    // v0 = (1,0), v1 = (1,1), v2 = (2,1)
    // d(v0,v1) = |(0,-1)|²/|v1|² = 1/2, d(v2,v1) = 1/2, d(v1,v0) = 1/1, d(v1,v2) = 1/5, d(v2,v0) = 2/1
    let vs = tensors(&[[1.0, 0.0], [1.0, 1.0], [2.0, 1.0]]);
    let paper = straightness(&vs, Mode::Paper);
    close(&paper.d_prev, &[0.0, 0.5, 0.2]);
    close(&paper.d_next, &[1.0, 0.5, 0.0]);
    close(&paper.s, &[1.0, 0.5, 0.2]);
    let reference = straightness(&vs, Mode::Reference);
    // k = 0 wraps: d(v2, v0) = |(1,1)|²/|v0|² = 2
    close(&reference.d_prev, &[2.0, 0.5, 0.2]);
    close(&reference.s, &[2.0, 0.5, 0.2]);
}

#[test]
fn straightness_boundaries() {
    // N = 1: nothing to compare with in paper mode; the wrap compares v0 with itself.
    let one = tensors(&[[3.0, 4.0]]);
    close(&straightness(&one, Mode::Paper).s, &[0.0]);
    close(&straightness(&one, Mode::Reference).s, &[0.0]);
    // N = 2
    let two = tensors(&[[1.0, 0.0], [0.0, 1.0]]);
    close(&straightness(&two, Mode::Paper).s, &[2.0, 2.0]);
    // all-equal velocities are perfectly straight
    let equal = tensors(&[[0.5, -1.0]; 4]);
    close(&straightness(&equal, Mode::Paper).s, &[0.0; 4]);
    // zero velocity everywhere: 0/0 is defined as 0 in paper mode, NaN in reference mode
    let zero = tensors(&[[0.0, 0.0]; 3]);
    close(&straightness(&zero, Mode::Paper).s, &[0.0; 3]);
    let reference_zero = straightness(&zero, Mode::Reference);
    assert!(reference_zero.d_prev.iter().all(|s| s.is_nan()) && reference_zero.s[..2].iter().all(|s| s.is_nan()));
    // a velocity that drops to zero after a non-zero one: infinite change
    let drop = straightness_from_sums(&[1.0, 0.0], &[1.0], 1.0, Mode::Paper);
    assert!(drop.s[1].is_infinite());
}

#[test]
fn paper_grid_by_hand() {
    let s = [9.0, 0.1, 0.2, 0.3, 5.0, 0.1];
    // from 0: S1=.1, +S2=.3, +S3=.6 ≥ .5 → m = 3; from 3: S4 = 5 ≥ .5 → m = 1;
    // from 4: S5 = .1, then the end → m = 2.
    assert_eq!(Grid::build(&s, 0.5, Mode::Paper), Grid { starts: vec![0, 3, 4], lengths: vec![3, 1, 2] });
    // ξ = 0 gives every Euler step, even where S = 0.
    assert_eq!(Grid::build(&[0.0; 5], 0.0, Mode::Paper), Grid::uniform(5));
    // ξ larger than Σ S: one segment.
    assert_eq!(Grid::build(&s, 100.0, Mode::Paper), Grid { starts: vec![0], lengths: vec![6] });
    // N = 1 and N = 2
    assert_eq!(Grid::build(&[0.0], 1.0, Mode::Paper), Grid { starts: vec![0], lengths: vec![1] });
    assert_eq!(Grid::build(&[0.0, 2.0], 1.0, Mode::Paper), Grid::uniform(2));
    assert_eq!(Grid::build(&[0.0, 0.5], 1.0, Mode::Paper), Grid { starts: vec![0], lengths: vec![2] });
}

#[test]
fn reference_grid_by_hand() {
    let s = [9.0, 0.1, 0.2, 0.3, 5.0, 0.1];
    // acc includes S_start; closes when acc > ξ (crossing step included) or at the last step:
    // [0] (9 > .5), [1,2,3] (.6 > .5), [4] (5), [5] (last).
    assert_eq!(Grid::build(&s, 0.5, Mode::Reference), Grid { starts: vec![0, 1, 4, 5], lengths: vec![1, 3, 1, 1] });
    // strictness: acc == ξ does not close
    assert_eq!(Grid::build(&[0.5, 0.5, 0.5], 0.5, Mode::Reference), Grid { starts: vec![0, 2], lengths: vec![2, 1] });
    assert_eq!(Grid::build(&s, 100.0, Mode::Reference), Grid { starts: vec![0], lengths: vec![6] });
    assert_eq!(Grid::build(&[0.0], 0.0, Mode::Reference), Grid { starts: vec![0], lengths: vec![1] });
}

#[test]
fn grids_cover_every_step() {
    let s: Vec<f32> = (0..37).map(|i| ((i * 7919) % 13) as f32 / 10.0).collect();
    for mode in [Mode::Paper, Mode::Reference] {
        for xi in [0.0, 0.05, 0.3, 1.0, 3.0, 1e9] {
            let grid = Grid::build(&s, xi, mode);
            assert_eq!(grid.steps(), s.len());
            assert_eq!(grid.segment_of_step().len(), s.len());
            assert!(grid.starts.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(grid.starts[0], 0);
        }
    }
}

#[test]
fn a_straightness_prefix_fixes_only_the_segments_the_full_grid_has() {
    let s: Vec<f32> = (0..41).map(|i| ((i * 7919) % 17) as f32 / 20.0).collect();
    let n = s.len();
    for mode in [Mode::Paper, Mode::Reference] {
        for xi in [0.0, 0.05, 0.4, 1.5, 1e9] {
            let full = Grid::build(&s, xi, mode);
            assert_eq!(Grid::build_prefix(&s, n, xi, mode).closed, full, "{mode:?} xi={xi}");
            for known in 0..=n {
                let prefix = Grid::build_prefix(&s[..known], n, xi, mode);
                let closed = prefix.closed.len();
                // what the prefix fixed is the full grid's first segments, and the open segment
                // starts where the full grid's next one does and is at least as long as promised
                assert_eq!(prefix.closed.starts[..], full.starts[..closed], "{mode:?} xi={xi} known={known}");
                assert_eq!(prefix.closed.lengths[..], full.lengths[..closed], "{mode:?} xi={xi} known={known}");
                if closed < full.len() {
                    assert_eq!(prefix.open_start, full.starts[closed]);
                    assert!(
                        prefix.open_min_len <= full.lengths[closed],
                        "{mode:?} xi={xi} known={known}: {prefix:?} vs {full:?}"
                    );
                } else {
                    assert_eq!(prefix.open_start, n);
                }
            }
        }
    }
    // nothing known: nothing closed (Paper's first segment needs S_1; Reference's needs S_0)
    assert_eq!(Grid::build_prefix(&[], 5, 0.5, Mode::Paper).open_start, 0);
    assert_eq!(Grid::build_prefix(&[], 5, 0.5, Mode::Reference).open_start, 0);
    // Reference: a large S_0 closes step 0 at once
    assert_eq!(Grid::build_prefix(&[9.0], 5, 0.5, Mode::Reference).closed, Grid { starts: vec![0], lengths: vec![1] });
}
