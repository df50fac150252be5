//! Typed errors of the algorithm crate.

use thiserror::Error;

/// Everything that can go wrong inside FlowGrad itself (no I/O errors: this crate does none).
#[derive(Debug, Error)]
pub enum FlowGradError {
    /// A parameter is out of its valid range; the message names the parameter and the rule.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Parameter name as written in `EditParams`.
        name: &'static str,
        /// What the value must satisfy, and what it was.
        reason: String,
    },
    /// Two tensors that must agree in shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// Which tensor was checked.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape found.
        actual: Vec<usize>,
    },
    /// A resumed state was made for a different model, guidance, parameters or input.
    #[error("control state fingerprint {found} does not match this editor and input ({expected})")]
    FingerprintMismatch {
        /// Fingerprint the editor computes for the state's input.
        expected: String,
        /// Fingerprint stored in the state.
        found: String,
    },
    /// The state has already run every iteration asked for.
    #[error("all {0} iterations are already done")]
    AlreadyFinished(usize),
    /// A serialised control state could not be decoded.
    #[error("corrupt control state: {0}")]
    CorruptState(String),
    /// A loss or gradient became NaN or infinite.
    #[error("non-finite {what} at iteration {iteration}")]
    NonFinite {
        /// Which quantity was not finite.
        what: &'static str,
        /// The iteration it happened in.
        iteration: usize,
    },
}

impl From<flowgrad_params::InvalidParameter> for FlowGradError {
    fn from(err: flowgrad_params::InvalidParameter) -> Self {
        FlowGradError::InvalidParameter { name: err.name, reason: err.reason }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, FlowGradError>;

/// Builds an [`FlowGradError::InvalidParameter`].
pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> FlowGradError {
    FlowGradError::InvalidParameter { name, reason: reason.into() }
}
