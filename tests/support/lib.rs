//! Helpers shared by the workspace-level tests.

pub mod fleet;
pub mod s3_server;

/// The binaries' backend (flex on the CPU; CUDA in a `cuda` build, so the parity and gradient
/// checks run where the edits do).
pub type B = flowgrad_backend::Backend;

pub use flowgrad_testkit::fixtures_dir;

/// Relative L2 error ‖a − b‖ / ‖b‖ in f64.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}
