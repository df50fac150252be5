//! The differentiable SSIM (faithfulness term and report metric) against a direct loop over its
//! windows, and its gradient against finite differences.

mod common;

use burn::tensor::Tensor;
use common::{B, noise, tensor};
use flowgrad::tensor_util::to_vec;
use flowgrad::{SSIM_STRIDE, SSIM_WINDOW, ssim};

/// SSIM of one single-channel image pair, window by window, in f64.
fn reference(a: &[f32], b: &[f32], height: usize, width: usize) -> f64 {
    let (c1, c2) = (1e-4, 9e-4);
    let px = |v: &[f32], y: usize, x: usize| (f64::from(v[y * width + x]) + 1.0) / 2.0;
    let win = SSIM_WINDOW.min(height).min(width);
    let n = (win * win) as f64;
    let (mut total, mut windows) = (0.0, 0);
    for y0 in (0..=height - win).step_by(SSIM_STRIDE) {
        for x0 in (0..=width - win).step_by(SSIM_STRIDE) {
            let cells: Vec<(f64, f64)> = (y0..y0 + win)
                .flat_map(|y| (x0..x0 + win).map(move |x| (y, x)))
                .map(|(y, x)| (px(a, y, x), px(b, y, x)))
                .collect();
            let (ma, mb) = (cells.iter().map(|c| c.0).sum::<f64>() / n, cells.iter().map(|c| c.1).sum::<f64>() / n);
            let var = |f: &dyn Fn(&(f64, f64)) -> f64| cells.iter().map(f).sum::<f64>() / (n - 1.0);
            let (va, vb, cov) =
                (var(&|c| (c.0 - ma).powi(2)), var(&|c| (c.1 - mb).powi(2)), var(&|c| (c.0 - ma) * (c.1 - mb)));
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            windows += 1;
        }
    }
    total / f64::from(windows)
}

#[test]
fn matches_the_window_loop_and_is_one_for_identical_images() {
    let (h, w) = (16, 20);
    let a = noise(1, 2 * h * w);
    let b: Vec<f32> = a.iter().zip(noise(2, 2 * h * w)).map(|(x, n)| (x + 0.4 * n).clamp(-1.0, 1.0)).collect();
    let got = to_vec(ssim(tensor(a.clone(), [2, 1, h, w]), tensor(b.clone(), [2, 1, h, w])));
    for (i, &got) in got.iter().enumerate() {
        let plane = i * h * w..(i + 1) * h * w;
        let expected = reference(&a[plane.clone()], &b[plane], h, w);
        assert!((f64::from(got) - expected).abs() < 1e-4, "image {i}: {got} vs {expected}");
        assert!(expected > 0.05 && expected < 0.95, "a pair that is neither equal nor unrelated: {expected}");
    }
    let same = to_vec(ssim(tensor(a.clone(), [2, 1, h, w]), tensor(a, [2, 1, h, w])));
    assert!(same.iter().all(|s| (s - 1.0).abs() < 1e-5), "{same:?}");
}

#[test]
fn gradient_matches_finite_differences() {
    let shape = [1, 2, 9, 9];
    let (a, b) = (noise(3, 162), noise(4, 162));
    let value = |a: &[f32]| f64::from(to_vec(ssim::<B>(tensor(a.to_vec(), shape), tensor(b.clone(), shape)))[0]);
    let leaf: Tensor<B, 4> = tensor(a.clone(), shape).require_grad();
    let grads = ssim(leaf.clone(), tensor(b.clone(), shape)).sum().backward();
    let analytic = to_vec(leaf.grad(&grads).unwrap());
    let eps = 1e-2f32;
    for i in [0, 17, 40, 80, 81, 120, 161] {
        let (mut up, mut down) = (a.clone(), a.clone());
        up[i] += eps;
        down[i] -= eps;
        let numeric = (value(&up) - value(&down)) / (2.0 * f64::from(eps));
        let scale = numeric.abs().max(1e-3);
        assert!(
            (f64::from(analytic[i]) - numeric).abs() < 0.05 * scale + 2e-4,
            "pixel {i}: {} vs {numeric}",
            analytic[i]
        );
    }
}
