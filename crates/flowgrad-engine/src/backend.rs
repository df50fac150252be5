//! The one place the binaries choose their burn backend.

/// CPU: burn's `flex` backend with autodiff.
#[cfg(not(feature = "cuda"))]
pub type Backend = burn::backend::Autodiff<burn::backend::Flex>;

/// GPU: burn's CUDA backend with autodiff.
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Autodiff<burn::backend::Cuda>;

/// The default device of [`Backend`].
pub fn device() -> burn::tensor::Device<Backend> {
    Default::default()
}

/// Human-readable backend name for reports.
pub fn name() -> &'static str {
    if cfg!(feature = "cuda") { "cuda" } else { "flex (CPU)" }
}
