//! The research harness behind `flowgrad eval`, `flowgrad bench` and `flowgrad demo`, and the
//! metrics and pictures of a run's report (per-image L1/SSIM, labelled grids). Everything here
//! measures the product; nothing here is on the path of a fleet's edit.

pub mod bench;
pub mod demo;
pub mod eval;
pub mod font;
pub mod grid;
pub mod report;
