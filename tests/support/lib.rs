//! Helpers shared by the workspace-level tests.

pub mod fleet;
pub mod s3_server;

use std::path::PathBuf;

/// The CPU test backend.
pub type B = burn::backend::Autodiff<burn::backend::Flex>;

/// `shared/fixtures` beside the checkout (override with `FLOWGRAD_FIXTURES`).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("FLOWGRAD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

/// Relative L2 error ‖a − b‖ / ‖b‖ in f64.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}
