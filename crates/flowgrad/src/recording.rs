//! Forward passes kept from the simulation at the steps where decomposed back-propagation will
//! evaluate its VJPs, so that those VJPs run only their backward half.
//!
//! A VJP of the field re-runs its step's forward pass under autodiff before going backwards, and
//! that forward costs about half of the backward. The simulation evaluates the same network at
//! the same inputs anyway: recording it there (the input as a graph leaf) saves the second
//! forward. Which steps will be anchors is known only once the straightness of the steps after
//! them is, so the simulation plans as the velocities arrive ([`Grid::build_prefix`]) and holds
//! the forwards of every step that may still be one, at most a fixed number at once: memory stays
//! independent of N. Correctness never depends on the plan: a VJP at a step whose forward was not
//! recorded runs both halves as before, with the same result.

use std::collections::BTreeMap;

use burn::tensor::{Tensor, backend::AutodiffBackend};

use crate::params::{Mode, SegmentAnchor};
use crate::straightness::{Grid, straightness_from_sums};
use crate::tensor_util::scalar;

/// What the simulation plans for: the grid's rule and threshold, where each segment's VJP is
/// evaluated, and how many forwards it may hold at once (0 records none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorPlan {
    /// ξ of the grid the backward pass will build.
    pub xi: f32,
    /// The grid's and straightness's convention.
    pub mode: Mode,
    /// Where each segment's VJP is evaluated.
    pub anchor: SegmentAnchor,
    /// Most forwards held at once.
    pub capacity: usize,
}

/// One recorded forward: the model input as a graph leaf and the velocity computed from it.
struct Recorded<B: AutodiffBackend> {
    input: Tensor<B, 4>,
    velocity: Tensor<B, 4>,
}

/// The forwards a simulation recorded, by Euler step; each serves one VJP.
pub struct RecordedForwards<B: AutodiffBackend> {
    entries: BTreeMap<usize, Recorded<B>>,
}

impl<B: AutodiffBackend> Default for RecordedForwards<B> {
    fn default() -> Self {
        Self { entries: BTreeMap::new() }
    }
}

impl<B: AutodiffBackend> RecordedForwards<B> {
    /// No recorded forward: every VJP runs its own.
    pub fn none() -> Self {
        Self::default()
    }

    /// The steps whose forwards are held, ascending.
    pub fn steps(&self) -> Vec<usize> {
        self.entries.keys().copied().collect()
    }

    /// Number of forwards held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no forward is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Evaluates the field at `input` (made a graph leaf) and keeps the forward for `step`;
    /// returns the velocity's values, on the inner backend.
    fn record(
        &mut self,
        step: usize,
        input: Tensor<B::InnerBackend, 4>,
        velocity: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
    ) -> Tensor<B::InnerBackend, 4> {
        let input = Tensor::<B, 4>::from_inner(input).require_grad();
        let velocity = velocity(input.clone());
        let values = velocity.clone().inner();
        self.entries.insert(step, Recorded { input, velocity });
        values
    }

    /// λ ↦ Jᵥᵀ λ at `step` from its recorded forward, which it uses up; `None` when none is held.
    pub fn vjp(&mut self, step: usize, cotangent: Tensor<B, 4>) -> Option<Tensor<B, 4>> {
        let Recorded { input, velocity } = self.entries.remove(&step)?;
        Some(backward_vjp(input, velocity, cotangent))
    }
}

/// Jᵀλ of `output` with respect to the graph leaf `input`, by one backward pass.
pub(crate) fn backward_vjp<B: AutodiffBackend>(
    input: Tensor<B, 4>,
    output: Tensor<B, 4>,
    cotangent: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let grads = (output * cotangent.detach()).sum().backward();
    match input.grad(&grads) {
        Some(g) => Tensor::from_inner(g),
        None => input.zeros_like(),
    }
}

/// The simulation's side of the plan: the straightness sums of the velocities so far, and the
/// forwards held.
pub(crate) struct Recorder<B: AutodiffBackend> {
    plan: AnchorPlan,
    steps: usize,
    norm_sq: Vec<f32>,
    diff_next_sq: Vec<f32>,
    first: Option<Tensor<B::InnerBackend, 4>>,
    previous: Option<Tensor<B::InnerBackend, 4>>,
    pub(crate) forwards: RecordedForwards<B>,
}

impl<B: AutodiffBackend> Recorder<B> {
    /// A recorder for an N = `steps` simulation.
    pub(crate) fn new(plan: AnchorPlan, steps: usize) -> Self {
        Self {
            plan,
            steps,
            norm_sq: Vec::with_capacity(steps),
            diff_next_sq: Vec::with_capacity(steps),
            first: None,
            previous: None,
            forwards: RecordedForwards::none(),
        }
    }

    /// Evaluates step `step`'s velocity at `input`: with `tracked` (the field on `B`), recording
    /// the forward, while there is room; otherwise with `values` (its inner-backend twin). Then
    /// lets go of the forwards that can no longer be anchors. Returns the velocity's values.
    pub(crate) fn step(
        &mut self,
        step: usize,
        input: Tensor<B::InnerBackend, 4>,
        tracked: impl FnOnce(Tensor<B, 4>) -> Tensor<B, 4>,
        values: impl FnOnce(Tensor<B::InnerBackend, 4>) -> Tensor<B::InnerBackend, 4>,
    ) -> Tensor<B::InnerBackend, 4> {
        if self.plan.capacity == 0 {
            return values(input);
        }
        let v = if self.forwards.len() < self.plan.capacity {
            self.forwards.record(step, input, tracked)
        } else {
            values(input)
        };
        self.observe(&v);
        let keep = self.possible_anchors();
        self.forwards.entries.retain(|step, _| keep(*step));
        v
    }

    /// Adds the sums of the straightness that involve `v`, the next step's velocity.
    fn observe(&mut self, v: &Tensor<B::InnerBackend, 4>) {
        self.norm_sq.push(scalar(v.clone().powi_scalar(2).sum()) as f32);
        if let Some(previous) = &self.previous {
            self.diff_next_sq.push(scalar((v.clone() - previous.clone()).powi_scalar(2).sum()) as f32);
        }
        self.first.get_or_insert_with(|| v.clone());
        self.previous = Some(v.clone());
    }

    /// Which evaluated steps may still anchor a segment, given the straightness known so far:
    /// the anchors of the segments already closed; of the open segment, the steps its anchor may
    /// still fall on; and every step past its least length, which a later segment may hold.
    fn possible_anchors(&self) -> impl Fn(usize) -> bool + use<B> {
        let evaluated = self.norm_sq.len();
        let done = evaluated == self.steps;
        // S_k needs v_{k+1}; `Reference` mode's S_0 also needs v_{N−1} (it wraps around) and is
        // taken as unbounded until then, closing step 0 alone, as it almost always does
        let wrap_sq = match (done, &self.first, &self.previous) {
            (true, Some(first), Some(last)) => scalar((last.clone() - first.clone()).powi_scalar(2).sum()) as f32,
            _ => f32::INFINITY,
        };
        let known = if done { evaluated } else { evaluated - 1 };
        let s = straightness_from_sums(&self.norm_sq, &self.diff_next_sq, wrap_sq, self.plan.mode).s;
        let prefix = Grid::build_prefix(&s[..known], self.steps, self.plan.xi, self.plan.mode);
        let anchor = self.plan.anchor;
        let closed: Vec<usize> = prefix
            .closed
            .starts
            .iter()
            .zip(&prefix.closed.lengths)
            .map(|(&start, &len)| anchor.step(start, len))
            .collect();
        let (open_start, past_open) = (prefix.open_start, prefix.open_start + prefix.open_min_len);
        let earliest_open_anchor = anchor.step(open_start, prefix.open_min_len);
        move |step| {
            closed.contains(&step)
                || step >= past_open
                || (step >= earliest_open_anchor && (anchor == SegmentAnchor::Middle || step == open_start))
        }
    }
}
