//! FlowGrad's edit parameters, their one set of defaults and their validation: plain data (serde,
//! no tensors), so the job schema, the services and the CLI can use them without linking burn.
//! The algorithm crate `flowgrad` re-exports everything here.

use serde::{Deserialize, Serialize};

#[cfg(feature = "clap")]
pub mod cli;
mod direction;

pub use direction::{DIRECTION_FORMAT, DIRECTION_METADATA_KEY, DirectionHeader};

/// A parameter outside its valid range; the message names the parameter and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter `{name}`: {reason}")]
pub struct InvalidParameter {
    /// Parameter name as written in [`EditParams`].
    pub name: &'static str,
    /// What the value must satisfy, and what it was.
    pub reason: String,
}

/// Result of [`EditParams::validate`].
pub type Result<T> = std::result::Result<T, InvalidParameter>;

fn invalid(name: &'static str, reason: impl Into<String>) -> InvalidParameter {
    InvalidParameter { name, reason: reason.into() }
}

/// ODE solver for encoding (integrating from t = 1 back to t = ε).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Solver {
    /// Backward Euler-explicit steps x_k = x_{k+1} − h·v(x_{k+1}, t_{k+1}).
    Euler,
    /// Heun's second-order method.
    Heun,
    /// Classical fourth-order Runge–Kutta.
    Rk4,
    /// Solves x_k + h·v(x_k, t_k) = x_{k+1} by fixed-point iteration: the exact inverse of the
    /// Euler decoder, so encode → decode reproduces the input when the iteration converges.
    InverseEuler {
        /// Fixed-point iterations per step.
        iterations: usize,
    },
}

/// Which behaviour FlowGrad follows where the paper and the original code differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// As the paper writes it: x_{k+1} = x_k + (1/N)(v(x_k) + u_k); straightness one-sided at the
    /// ends; a segment grows while the straightness of the steps after its start stays below ξ.
    /// Here ∂L/∂u_k carries a factor 1/N, so α must be about N times larger than in `Reference`.
    Paper,
    /// As gnobitab/FlowGrad computes it: u_k is added to the state before the velocity is evaluated
    /// (x_{k+1} = x_k + u_k + v(x_k + u_k)/N); straightness wraps around at k = 0 and is one-sided
    /// at k = N−1; a segment closes once its running sum is strictly above ξ (or at the last step).
    /// The default: the paper's α = 10 was tuned for this parametrisation of the controls.
    #[default]
    Reference,
}

/// How the controls of a batch are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ControlSharing {
    /// One control sequence per image (ordinary editing).
    #[default]
    PerImage,
    /// One control sequence shared by the whole batch: a global semantic direction.
    Shared,
}

/// How a segment's gradient is assigned to the Euler steps it merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SegmentGradient {
    /// One value for all its steps (the paper's re-assignment, what the original code does).
    #[default]
    Copy,
    /// The costate interpolated linearly between the segment's two ends: the same VJPs, closer
    /// to the exact gradient where a long segment's costate changes along it.
    Interpolate,
}

/// The Euler step whose state a merged segment's one vector-Jacobian product is evaluated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SegmentAnchor {
    /// Its first step: φ'_j of Eq. 13, as the paper and the original code do.
    #[default]
    Start,
    /// Its middle step (the earlier of two): where ∂v/∂x drifts along the segment, the Jacobian
    /// there is the steps' average to first order (exact when it changes linearly in t), while
    /// the start's is off by half the drift: the same VJPs, a closer costate.
    Middle,
}

impl SegmentAnchor {
    /// The anchored step of the segment of `len` steps from `start`.
    pub fn step(self, start: usize, len: usize) -> usize {
        match self {
            SegmentAnchor::Start => start,
            SegmentAnchor::Middle => start + len.saturating_sub(1) / 2,
        }
    }
}

/// What the faithfulness term measures between the output and the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Faithfulness {
    /// Mean absolute pixel difference (data units), as the paper.
    L1,
    /// Mean absolute difference plus 1 − SSIM: also keeps the input's local structure (edges,
    /// contrast), not only its pixel values (the default: README, "Edit quality").
    L1Ssim,
}

/// Which controls an edit returns at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The controls with the lowest objective seen (including the final ones).
    #[default]
    Best,
    /// The controls after the last update (what the original code returns).
    Last,
}

/// How the controls are updated from the objective's gradient each iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpdateRule {
    /// The paper's plain gradient step u ← u − α(∂L/∂u + 2λu) (what the original code does and
    /// the parity fixtures pin). Its good α depends on N, the loss's scale and the model.
    Gradient,
    /// A normalised step inside a per-image trust region: each image's controls move by
    /// ρ_i along their gradient direction scaled to unit RMS (divided by N in `Reference` mode,
    /// where every u_k acts on the state directly, so the output moves by about ρ_i whatever N
    /// is). An iteration whose objective is no better than the image's best so far is rejected:
    /// the controls go back to the best ones and ρ_i halves; an accepted one grows ρ_i by half.
    /// Free of the loss's scale (only the direction is used) and of N; the accepted objective
    /// never rises.
    #[default]
    TrustRegion,
}

/// Factor a trust radius grows by after an accepted iteration.
pub const TRUST_GROWTH: f32 = 1.5;
/// Factor a trust radius shrinks by after a rejected iteration.
pub const TRUST_SHRINK: f32 = 0.5;

/// All FlowGrad hyper-parameters, and the one place their defaults are defined: the CLI, job
/// files, helm values and docs take them from `EditParams::default()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EditParams {
    /// N: Euler steps of the generative ODE.
    pub steps: usize,
    /// M: gradient-descent iterations.
    pub iterations: usize,
    /// How the controls are updated.
    pub update: UpdateRule,
    /// α: step size of the `gradient` rule (the paper's 10; unused by `trust_region`).
    pub step_size: f32,
    /// ρ: the `trust_region` rule's first radius, the RMS change of the output per iteration in
    /// data units (images in [−1, 1]); it adapts per image from there (unused by `gradient`).
    pub trust_radius: f32,
    /// η: weight of the guidance loss; 1 − η weighs faithfulness (to the input, see
    /// [`EditParams::faithfulness`]).
    pub eta: f32,
    /// λ: weight of the control energy Σ‖u_k‖².
    pub lambda: f32,
    /// ξ: straightness threshold of the non-uniform grid (0 = every Euler step, exact gradient).
    pub xi: f32,
    /// Paper or reference-code behaviour.
    pub mode: Mode,
    /// Per-image controls or one shared direction.
    pub sharing: ControlSharing,
    /// Best or last controls as the result.
    pub selection: Selection,
    /// Start time ε of the grid t_k = ε + (1 − ε)·k/N (models that divide by t need ε > 0).
    pub time_eps: f32,
    /// Solver used to encode the input image into noise.
    pub encode_solver: Solver,
    /// Steps of the encoder; `None` uses N (needed for `inverse_euler` to invert the decoder exactly).
    pub encode_steps: Option<usize>,
    /// Gradient of the steps inside a segment.
    pub segment_gradient: SegmentGradient,
    /// Step whose state each merged segment's VJP is evaluated at.
    pub segment_anchor: SegmentAnchor,
    /// s: guidance scale of a guided-sampling warm start. The controls start where classifier
    /// guidance through the one-step endpoint prediction would put them, u_k = −s·∇G(x̂_1) along
    /// the guided trajectory, instead of at zero; FlowGrad then improves on that sample's
    /// objective. 0 starts from u = 0 (the paper).
    pub warm_start: f32,
    /// What the faithfulness term (weight 1 − η) measures.
    pub faithfulness: Faithfulness,
}

/// ρ's default (see [`EditParams::trust_radius`]), chosen by measurement (README, "Edit quality"):
/// from the guided warm start a small first step refines; larger ones are mostly rejected.
pub const DEFAULT_TRUST_RADIUS: f32 = 0.05;

impl Default for EditParams {
    fn default() -> Self {
        Self {
            steps: 100,
            iterations: 10,
            update: UpdateRule::TrustRegion,
            step_size: 10.0,
            trust_radius: DEFAULT_TRUST_RADIUS,
            eta: 0.5,
            lambda: 1e-3,
            xi: 5e-3,
            mode: Mode::Reference,
            sharing: ControlSharing::PerImage,
            selection: Selection::Best,
            time_eps: 1e-3,
            encode_solver: Solver::InverseEuler { iterations: 4 },
            encode_steps: None,
            segment_gradient: SegmentGradient::Copy,
            segment_anchor: SegmentAnchor::Start,
            warm_start: 20.0,
            faithfulness: Faithfulness::L1Ssim,
        }
    }
}

impl EditParams {
    /// Checks every parameter and returns the first violation as a clear error.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(invalid("steps", "N must be at least 1, got 0"));
        }
        if self.encode_steps == Some(0) {
            return Err(invalid("encode_steps", "must be at least 1, got 0"));
        }
        finite_non_negative("step_size", self.step_size)?;
        if !(self.trust_radius.is_finite() && self.trust_radius > 0.0) {
            return Err(invalid("trust_radius", format!("must be finite and > 0, got {}", self.trust_radius)));
        }
        finite_non_negative("lambda", self.lambda)?;
        finite_non_negative("xi", self.xi)?;
        finite_non_negative("warm_start", self.warm_start)?;
        if !(self.eta.is_finite() && (0.0..=1.0).contains(&self.eta)) {
            return Err(invalid("eta", format!("must lie in [0, 1], got {}", self.eta)));
        }
        if !(self.time_eps.is_finite() && (0.0..1.0).contains(&self.time_eps)) {
            return Err(invalid("time_eps", format!("must lie in [0, 1), got {}", self.time_eps)));
        }
        if let Solver::InverseEuler { iterations: 0 } = self.encode_solver {
            return Err(invalid("encode_solver", "inverse_euler needs at least 1 fixed-point iteration"));
        }
        Ok(())
    }

    /// The canonical form a checkpoint's fingerprint hashes, written out field by field here
    /// (not taken from the serialised form jobs and tasks carry, so a change to the wire never
    /// changes a fingerprint): compact JSON of every field in a fixed order, less the fields added
    /// after checkpoints existed wherever they hold the value that reproduces the earlier
    /// behaviour, so checkpoints written before them keep their fingerprint.
    pub fn fingerprint_form(&self) -> String {
        fn value<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).expect("a parameter serialises")
        }
        // (name, value, the value at which a later field is left out; None: always present)
        let fields: [(&str, String, Option<&str>); 18] = [
            ("steps", value(&self.steps), None),
            ("iterations", value(&self.iterations), None),
            ("update", value(&self.update), Some("\"gradient\"")),
            ("step_size", value(&self.step_size), None),
            ("trust_radius", value(&self.trust_radius), None),
            ("eta", value(&self.eta), None),
            ("lambda", value(&self.lambda), None),
            ("xi", value(&self.xi), None),
            ("mode", value(&self.mode), None),
            ("sharing", value(&self.sharing), None),
            ("selection", value(&self.selection), None),
            ("time_eps", value(&self.time_eps), None),
            ("encode_solver", value(&self.encode_solver), None),
            ("encode_steps", value(&self.encode_steps), None),
            ("segment_gradient", value(&self.segment_gradient), Some("\"copy\"")),
            ("segment_anchor", value(&self.segment_anchor), Some("\"start\"")),
            ("warm_start", value(&self.warm_start), Some("0.0")),
            ("faithfulness", value(&self.faithfulness), Some("\"l1\"")),
        ];
        let kept: Vec<String> = fields
            .iter()
            .filter(|(_, v, earlier)| earlier.is_none_or(|earlier| v != earlier))
            .map(|(name, v, _)| format!("\"{name}\":{v}"))
            .collect();
        format!("{{{}}}", kept.join(","))
    }

    /// Steps the encoder takes.
    pub fn encoder_steps(&self) -> usize {
        self.encode_steps.unwrap_or(self.steps)
    }

    /// The parameters of the paper and the original code: the plain gradient rule with α = 10
    /// from u = 0, η = 0.7 and L1 faithfulness (everything else as [`EditParams::default`]); the parity fixtures
    /// pin this update.
    pub fn paper() -> Self {
        Self {
            update: UpdateRule::Gradient,
            eta: 0.7,
            warm_start: 0.0,
            faithfulness: Faithfulness::L1,
            ..Self::default()
        }
    }

    /// VJPs of the field the warm start costs before iteration 0 (N with a `warm_start` scale, else 0).
    pub fn warm_start_vjps(&self) -> usize {
        if self.warm_start > 0.0 { self.steps } else { 0 }
    }
}

fn finite_non_negative(name: &'static str, value: f32) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(name, format!("must be finite and ≥ 0, got {value}")))
    }
}
