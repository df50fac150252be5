//! Helpers shared by the workspace-level tests.

pub mod fleet;
pub mod s3_server;

/// The CPU test backend.
pub type B = burn::backend::Autodiff<burn::backend::Flex>;

pub use flowgrad_testkit::fixtures_dir;

/// Relative L2 error ‖a − b‖ / ‖b‖ in f64.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}
