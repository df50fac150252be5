//! FlowGrad: edit the output of a frozen generative ODE by optimising per-step controls with
//! gradients from decomposed back-propagation on a non-uniform, straightness-adaptive grid.
//!
//! Pure algorithm: no I/O, no threads of its own, generic over burn backends
//! (`Autodiff<Flex>` on CPU, `Autodiff<Cuda>` on NVIDIA GPUs).

pub mod analytic;
pub mod backprop;
pub mod baselines;
pub mod diffusion;
pub mod direction;
pub mod editor;
pub mod error;
pub mod field;
pub mod gradient;
pub mod guided;
pub mod host;
pub mod params;
pub mod recording;
pub mod state;
pub mod straightness;
pub mod tensor_util;
pub mod trajectory;
pub mod trust;

pub use backprop::{
    DecomposedGradient, FullGradient, RecordedSimulation, decomposed_backprop, decomposed_backprop_recorded,
    full_backprop, record_simulation, velocity_vjp,
};
pub use direction::GlobalDirection;
pub use editor::{EditOutcome, Editor, energy};
pub use error::{FlowGradError, Result};
pub use field::{
    DifferentiableField, Guidance, GuidanceContext, MseToTarget, SSIM_STRIDE, SSIM_WINDOW, Untracked, VelocityField,
    mean_abs_diff, ssim,
};
pub use gradient::{GradientRule, IterationGradient, endpoint_gradient, flowgrad_gradient, segment_grid};
pub use params::{
    ControlSharing, DEFAULT_TRUST_RADIUS, EditParams, Faithfulness, Mode, SegmentAnchor, SegmentGradient, Selection,
    TRUST_GROWTH, TRUST_SHRINK, UpdateRule,
};
pub use recording::{AnchorPlan, RecordedForwards};
pub use state::{BestControls, ControlState, HostTensor, IterationRecord};
pub use straightness::{Grid, GridPrefix, Straightness, straightness, straightness_from_sums};
pub use trajectory::{
    RoundTrip, Solver, TimeGrid, Trajectory, encode, round_trip, simulate, simulate_recording, simulate_untracked,
};
pub use trust::TrustRegion;
