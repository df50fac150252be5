//! Parity with the original PyTorch implementation: reads fixture sets in the layout of
//! `shared/fixtures/FORMAT.md` (any seed, size, N or ξ) and reports the largest error of every
//! quantity this port can recompute, against the recommended tolerances.

pub mod clip_set;
pub mod fixture;
mod flowgrad_model;
pub mod flowgrad_set;
pub mod ncsnpp_set;
pub mod report;

pub use clip_set::check_clip;
pub use fixture::{FixtureError, TensorFile};
pub use flowgrad_set::{check_flowgrad, check_flowgrad_with_model};
pub use ncsnpp_set::check_ncsnpp;
pub use report::{Check, Outcome, ParityReport};
