//! Sinusoidal embeddings of the ODE time t ∈ [0, 1].

use burn::tensor::{Tensor, backend::Backend};

/// `[B]` times → `[B, dim]` features sin(2π·f_i·t), cos(2π·f_i·t) with geometric frequencies
/// f_i from 1 to 1000 (`dim` must be even).
pub fn sinusoidal<B: Backend>(t: Tensor<B, 1>, dim: usize) -> Tensor<B, 2> {
    sinusoidal_up_to(t, dim, 1000.0)
}

/// Like [`sinusoidal`] with geometric frequencies from 1 to `max_frequency` cycles per unit time.
pub fn sinusoidal_up_to<B: Backend>(t: Tensor<B, 1>, dim: usize, max_frequency: f32) -> Tensor<B, 2> {
    assert!(dim.is_multiple_of(2) && dim > 0, "embedding dimension must be even");
    let half = dim / 2;
    let device = t.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| 2.0 * std::f32::consts::PI * max_frequency.powf(i as f32 / (half.max(2) - 1) as f32))
        .collect();
    let freqs = Tensor::<B, 1>::from_floats(freqs.as_slice(), &device).reshape([1, half]);
    let [batch] = t.dims();
    let phase = t.reshape([batch, 1]) * freqs;
    Tensor::cat(vec![phase.clone().sin(), phase.cos()], 1)
}
