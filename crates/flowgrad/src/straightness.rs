//! Straightness of a trajectory (Eq. 11) and the non-uniform grid built from it (Eq. 12).

use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::params::Mode;
use crate::tensor_util::to_vec;

/// Straightness S_k = max(d_prev_k, d_next_k) of every step, with d(a, b) = ‖a − b‖² / ‖b‖²,
/// d_prev_k = d(v_{k−1}, v_k) and d_next_k = d(v_{k+1}, v_k), summed over the whole batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Straightness {
    /// d(v_{k−1}, v_k) (0 at k = 0 in `Paper` mode; v_{N−1} wraps in `Reference` mode).
    pub d_prev: Vec<f32>,
    /// d(v_{k+1}, v_k) (0 at k = N − 1 in both modes).
    pub d_next: Vec<f32>,
    /// S_k = max(d_prev_k, d_next_k).
    pub s: Vec<f32>,
}

/// Relative change ‖a − b‖²/‖b‖² from its two sums of squares. `Paper` mode defines 0/0 as 0
/// (both velocities zero); `Reference` keeps IEEE arithmetic as the original does.
fn relative_change(diff_sq: f32, norm_sq: f32, mode: Mode) -> f32 {
    if mode == Mode::Paper && diff_sq == 0.0 { 0.0 } else { diff_sq / norm_sq }
}

/// Computes the straightness of the velocities `vs` (one `[B, C, H, W]` tensor per step).
pub fn straightness<B: Backend>(vs: &[Tensor<B, 4>], mode: Mode) -> Straightness {
    let n = vs.len();
    if n == 0 {
        return Straightness { d_prev: vec![], d_next: vec![], s: vec![] };
    }
    let flat: Vec<Tensor<B, 2>> = vs.iter().map(|v| v.clone().reshape([1, -1])).collect();
    let stacked = Tensor::cat(flat, 0);
    let norm_sq = to_vec(stacked.clone().powi_scalar(2).sum_dim(1).reshape([n]));
    let diff_next_sq = if n > 1 {
        let ahead = stacked.clone().narrow(0, 1, n - 1);
        let here = stacked.clone().narrow(0, 0, n - 1);
        to_vec((ahead - here).powi_scalar(2).sum_dim(1).reshape([n - 1]))
    } else {
        vec![]
    };
    let wrap_sq = to_vec((stacked.clone().narrow(0, n - 1, 1) - stacked.narrow(0, 0, 1)).powi_scalar(2).sum())[0];
    straightness_from_sums(&norm_sq, &diff_next_sq, wrap_sq, mode)
}

/// Straightness from host sums: `norm_sq[k] = ‖v_k‖²`, `diff_next_sq[k] = ‖v_{k+1} − v_k‖²`
/// (length N − 1) and `wrap_sq = ‖v_{N−1} − v_0‖²` (used by `Reference` mode at k = 0).
pub fn straightness_from_sums(norm_sq: &[f32], diff_next_sq: &[f32], wrap_sq: f32, mode: Mode) -> Straightness {
    let n = norm_sq.len();
    let mut d_prev = vec![0.0; n];
    let mut d_next = vec![0.0; n];
    for k in 0..n {
        d_prev[k] = match (k, mode) {
            (0, Mode::Paper) => 0.0,
            (0, Mode::Reference) => relative_change(wrap_sq, norm_sq[0], mode),
            _ => relative_change(diff_next_sq[k - 1], norm_sq[k], mode),
        };
        if k + 1 < n {
            d_next[k] = relative_change(diff_next_sq[k], norm_sq[k], mode);
        }
    }
    let s = d_prev.iter().zip(&d_next).map(|(a, b)| a.max(*b)).collect();
    Straightness { d_prev, d_next, s }
}

/// What a prefix of the straightness fixes of the grid (see [`Grid::build_prefix`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridPrefix {
    /// The segments already closed, from step 0.
    pub closed: Grid,
    /// First step of the segment still open (N when every segment is closed).
    pub open_start: usize,
    /// A lower bound on the open segment's length: its steps whose straightness is known.
    pub open_min_len: usize,
}

/// A non-uniform grid: the Euler steps split into contiguous segments, each simulated (for the
/// backward pass) as one step of its length from its first step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    /// First Euler step of each segment, ascending, starting at 0.
    pub starts: Vec<usize>,
    /// Number of Euler steps in each segment; they add up to N.
    pub lengths: Vec<usize>,
}

impl Grid {
    /// Every Euler step its own segment (ξ = 0).
    pub fn uniform(steps: usize) -> Self {
        Self { starts: (0..steps).collect(), lengths: vec![1; steps] }
    }

    /// Builds the grid of Eq. 12 from the straightness `s` and threshold `xi`.
    ///
    /// `Paper`: from a start j, the segment length m is the smallest m with
    /// Σ_{i=1..m} S_{j+i} ≥ ξ, capped at the end (so ξ = 0 gives every step).
    /// `Reference`: the running sum includes S_j itself; the segment closes at the first step
    /// where the sum is strictly above ξ (that step included) or at the last step.
    pub fn build(s: &[f32], xi: f32, mode: Mode) -> Self {
        Self::build_prefix(s, s.len(), xi, mode).closed
    }

    /// The segments of [`Grid::build`] that a prefix of the straightness already fixes, for
    /// planning while the simulation still runs: `known` holds S_0 … S_{K−1} of an N-step
    /// trajectory (K ≤ N = `steps`). With K = N this is [`Grid::build`].
    pub fn build_prefix(known: &[f32], steps: usize, xi: f32, mode: Mode) -> GridPrefix {
        let n = steps;
        let mut closed = Self { starts: vec![], lengths: vec![] };
        let mut start = 0;
        // each arm: Some(length) once the segment from `start` is fixed, None while it is open
        while start < n {
            let len = match mode {
                Mode::Paper => {
                    let (mut m, mut acc) = (1, 0.0f32);
                    loop {
                        if start + m >= n {
                            break Some(m);
                        }
                        let Some(s) = known.get(start + m) else { break None };
                        acc += s;
                        if acc >= xi {
                            break Some(m);
                        }
                        m += 1;
                    }
                }
                Mode::Reference => {
                    let mut acc = 0.0f32;
                    let mut k = start;
                    loop {
                        let Some(s) = known.get(k) else { break None };
                        acc += s;
                        if acc > xi || k == n - 1 {
                            break Some(k + 1 - start);
                        }
                        k += 1;
                    }
                }
            };
            let Some(len) = len else { break };
            closed.starts.push(start);
            closed.lengths.push(len);
            start += len;
        }
        GridPrefix { closed, open_start: start, open_min_len: known.len().saturating_sub(start).max(1) }
    }

    /// Number of segments (= VJPs per backward pass).
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when the grid has no segment (N = 0 never happens after validation).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Total number of Euler steps covered.
    pub fn steps(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// For every Euler step, the index of the segment containing it.
    pub fn segment_of_step(&self) -> Vec<usize> {
        self.lengths.iter().enumerate().flat_map(|(j, &len)| std::iter::repeat_n(j, len)).collect()
    }
}
