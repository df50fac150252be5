//! Edit parameters: defined in the tensor-free crate `flowgrad-params` (so the job schema and the
//! services need no burn), re-exported here.

pub use flowgrad_params::*;
