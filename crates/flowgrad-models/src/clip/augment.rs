//! DiffAugment as FlowGrad's CLIP loss uses it (policy "color,translation,resize,cutout"):
//! differentiable in the images, with every random choice drawn up front from a seeded ChaCha
//! stream, so a loss is a pure function of (images, seed).
//!
//! Per copy: brightness x + (r − ½); saturation (x − mean_c)·2r + mean_c; contrast
//! (x − mean)·(r + ½) + mean; translation by integers in ±round(ratio·side) with zero fill; one
//! cutout square of side round(ratio·side) zeroed. Per call (one ratio for all copies, as the
//! original): bilinear resize by r ∈ [min, max), then centre crop or zero pad back.

use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, PadMode};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which augmentations run, how many copies, and their ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Augmented copies K of every image (the original: 20).
    pub copies: usize,
    /// Brightness, saturation and contrast jitter.
    pub color: bool,
    /// Random integer translation with zero fill.
    pub translation: bool,
    /// Random bilinear zoom in or out, cropped or padded back.
    pub resize: bool,
    /// One zeroed square per copy.
    pub cutout: bool,
    /// Largest shift as a fraction of the side (0.125).
    pub translation_ratio: f64,
    /// Zoom range [min, max) (0.8, 1.2).
    pub resize_range: (f64, f64),
    /// Cutout side as a fraction of the image side (0.5).
    pub cutout_ratio: f64,
    /// ChaCha stream of the draws: different values give independent augmentations for the
    /// same per-iteration seed.
    pub seed: u64,
}

impl Default for AugmentConfig {
    /// The original: 20 copies of "color,translation,resize,cutout".
    fn default() -> Self {
        Self {
            copies: 20,
            color: true,
            translation: true,
            resize: true,
            cutout: true,
            translation_ratio: 0.125,
            resize_range: (0.8, 1.2),
            cutout_ratio: 0.5,
            seed: 0,
        }
    }
}

/// The random choices of one augmentation call for `n` copies.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentDraw {
    /// Per copy: brightness, saturation and contrast uniforms r ∈ [0, 1).
    pub color: Vec<[f32; 3]>,
    /// Per copy: (row, column) shift.
    pub shifts: Vec<(i64, i64)>,
    /// The zoom ratio shared by all copies.
    pub resize_ratio: Option<f64>,
    /// Per copy: cutout centre (row, column).
    pub cutouts: Vec<(i64, i64)>,
}

impl AugmentDraw {
    /// The draw for `images` images of each of its copies, copy-major (copy j of image i at
    /// j·images + i takes copy j's choices).
    pub fn for_images(&self, images: usize) -> Self {
        fn repeat<T: Clone>(per_copy: &[T], images: usize) -> Vec<T> {
            per_copy.iter().flat_map(|v| std::iter::repeat_n(v.clone(), images)).collect()
        }
        Self {
            color: repeat(&self.color, images),
            shifts: repeat(&self.shifts, images),
            resize_ratio: self.resize_ratio,
            cutouts: repeat(&self.cutouts, images),
        }
    }
}

/// `int(side·ratio + 0.5)` as the original computes it.
fn rounded(side: usize, ratio: f64) -> i64 {
    (side as f64 * ratio + 0.5) as i64
}

impl AugmentConfig {
    /// Draws the choices for `n` copies of `h × w` images from `seed` (deterministic).
    pub fn draw(&self, n: usize, h: usize, w: usize, seed: u64) -> AugmentDraw {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(self.seed);
        let mut color = vec![];
        if self.color {
            let mut one = || (0..n).map(|_| rng.random::<f32>()).collect::<Vec<_>>();
            let (b, s, c) = (one(), one(), one());
            color = (0..n).map(|i| [b[i], s[i], c[i]]).collect();
        }
        let mut shifts = vec![];
        if self.translation {
            let (sh, sw) = (rounded(h, self.translation_ratio), rounded(w, self.translation_ratio));
            let rows: Vec<i64> = (0..n).map(|_| rng.random_range(-sh..=sh)).collect();
            shifts = rows.into_iter().map(|r| (r, rng.random_range(-sw..=sw))).collect();
        }
        let resize_ratio = self
            .resize
            .then(|| rng.random::<f64>() * (self.resize_range.1 - self.resize_range.0) + self.resize_range.0);
        let mut cutouts = vec![];
        if self.cutout {
            let (ch, cw) = (rounded(h, self.cutout_ratio), rounded(w, self.cutout_ratio));
            let rows: Vec<i64> = (0..n).map(|_| rng.random_range(0..=(h as i64 - ch % 2))).collect();
            cutouts = rows.into_iter().map(|r| (r, rng.random_range(0..=(w as i64 - cw % 2)))).collect();
        }
        AugmentDraw { color, shifts, resize_ratio, cutouts }
    }

    /// Applies the choices to `[N, C, H, W]` (N = the copies the draw was made for).
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>, draw: &AugmentDraw) -> Tensor<B, 4> {
        let mut x = x;
        if !draw.color.is_empty() {
            x = color(x, &draw.color);
        }
        if !draw.shifts.is_empty() {
            x = translate(x, &draw.shifts);
        }
        if let Some(ratio) = draw.resize_ratio {
            x = resize(x, ratio);
        }
        if !draw.cutouts.is_empty() {
            let [_, _, h, w] = x.dims();
            let size = (rounded(h, self.cutout_ratio), rounded(w, self.cutout_ratio));
            x = cutout(x, &draw.cutouts, size);
        }
        x
    }
}

/// A per-copy factor `[N, 1, 1, 1]`.
fn per_copy<B: Backend>(values: Vec<f32>, device: &B::Device) -> Tensor<B, 4> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n, 1, 1, 1]), device)
}

fn color<B: Backend>(x: Tensor<B, 4>, r: &[[f32; 3]]) -> Tensor<B, 4> {
    let device = x.device();
    let x = x + per_copy::<B>(r.iter().map(|v| v[0] - 0.5).collect(), &device);
    let mean = x.clone().mean_dim(1);
    let x = (x - mean.clone()) * per_copy::<B>(r.iter().map(|v| v[1] * 2.0).collect(), &device) + mean;
    let mean = x.clone().mean_dim(1).mean_dim(2).mean_dim(3);
    (x - mean.clone()) * per_copy::<B>(r.iter().map(|v| v[2] + 0.5).collect(), &device) + mean
}

/// out[i, j] = x[i + dy, j + dx], zero outside: a gather from the zero-padded image.
fn translate<B: Backend>(x: Tensor<B, 4>, shifts: &[(i64, i64)]) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let (hp, wp) = (h as i64 + 2, w as i64 + 2);
    let mut index = Vec::with_capacity(n * c * h * w);
    for &(dy, dx) in shifts {
        let plane: Vec<i64> = (0..h as i64)
            .flat_map(|i| {
                (0..w as i64).map(move |j| (i + dy + 1).clamp(0, hp - 1) * wp + (j + dx + 1).clamp(0, wp - 1))
            })
            .collect();
        for _ in 0..c {
            index.extend_from_slice(&plane);
        }
    }
    let index = Tensor::<B, 3, Int>::from_data(TensorData::new(index, [n, c, h * w]), &x.device());
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0)).reshape([n, c, (hp * wp) as usize]);
    padded.gather(2, index).reshape([n, c, h, w])
}

/// Padding before and after, and crop start, that bring a side of `new` back to `old`.
fn fit(new: usize, old: usize) -> (usize, usize, usize) {
    if new < old {
        let before = (old - new) / 2;
        (before, old - new - before, 0)
    } else {
        (0, 0, (new - old) / 2)
    }
}

/// Bilinear zoom (half-pixel centres) by `ratio`, then centre crop or zero pad back to the size.
fn resize<B: Backend>(x: Tensor<B, 4>, ratio: f64) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let (nh, nw) = ((ratio * h as f64) as usize, (ratio * w as f64) as usize);
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
    let zoomed = interpolate(x, [nh, nw], options);
    let ((top, bottom, r0), (left, right, c0)) = (fit(nh, h), fit(nw, w));
    zoomed.pad((left, right, top, bottom), PadMode::Constant(0.0)).slice([0..n, 0..c, r0..r0 + h, c0..c0 + w])
}

/// Zeroes, per copy, the `size` square centred (as the original clamps it) at the given position.
fn cutout<B: Backend>(x: Tensor<B, 4>, centres: &[(i64, i64)], size: (i64, i64)) -> Tensor<B, 4> {
    let [n, _, h, w] = x.dims();
    let mut mask = vec![1.0f32; n * h * w];
    for (k, &(cy, cx)) in centres.iter().enumerate() {
        let rows = (cy - size.0 / 2).max(0)..=(cy - size.0 / 2 + size.0 - 1).min(h as i64 - 1);
        let cols = (cx - size.1 / 2).max(0)..=(cx - size.1 / 2 + size.1 - 1).min(w as i64 - 1);
        for i in rows {
            for j in cols.clone() {
                mask[k * h * w + i as usize * w + j as usize] = 0.0;
            }
        }
    }
    let mask = Tensor::<B, 4>::from_data(TensorData::new(mask, [n, 1, h, w]), &x.device());
    x * mask
}
