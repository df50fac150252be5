//! Random views for the classifier guidance: the loss of an image is the mean cross-entropy of
//! K copies, each shifted by whole pixels (background fill), mirrored left–right at random and
//! with Gaussian pixel noise, all drawn from the iteration's seed (a loss is a pure function of
//! images and seed, so a resumed edit draws the same views). Every image of a batch gets the same
//! K views, so an image's loss does not depend on the images batched with it. A gradient that only exploits one
//! exact pixel grid of the guidance classifier does not survive the averaging; one that changes
//! what the garment looks like does.

use burn::tensor::ops::PadMode;
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// How many views the classifier guidance averages and how they vary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassViews {
    /// Views K per image (0: the image itself, no randomness).
    pub copies: usize,
    /// Largest shift in pixels along each axis.
    pub max_shift: usize,
    /// Mirror each view left–right with probability ½.
    pub flip: bool,
    /// Standard deviation of the added pixel noise (images in [−1, 1]).
    pub noise_std: f32,
    /// The value shifted-in pixels take (the data's background: −1 for Fashion-MNIST).
    pub fill: f32,
}

impl Default for ClassViews {
    fn default() -> Self {
        Self { copies: 8, max_shift: 2, flip: true, noise_std: 0.1, fill: -1.0 }
    }
}

/// The random choices of one call, per view j (shared by every image of the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewDraw {
    /// (row, column) shift per view.
    pub shifts: Vec<(i64, i64)>,
    /// Mirrored or not, per view.
    pub flips: Vec<bool>,
    /// Noise per view and pixel.
    pub noise: Vec<f32>,
}

impl ClassViews {
    /// No views: the loss of the image itself.
    pub fn none() -> Self {
        Self { copies: 0, ..Self::default() }
    }

    /// Draws the choices for `views` views of a `[c, h, w]` image from `seed` (deterministic).
    pub fn draw(&self, views: usize, [c, h, w]: [usize; 3], seed: u64) -> ViewDraw {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let s = self.max_shift as i64;
        let shifts = (0..views).map(|_| (rng.random_range(-s..=s), rng.random_range(-s..=s))).collect();
        let flips = (0..views).map(|_| self.flip && rng.random_bool(0.5)).collect();
        let noise = if self.noise_std > 0.0 {
            (0..views * c * h * w).map(|_| rng.sample::<f32, _>(StandardNormal) * self.noise_std).collect()
        } else {
            vec![]
        };
        ViewDraw { shifts, flips, noise }
    }

    /// The K views of `x` (`[B, C, H, W]`) as `[K·B, C, H, W]`, copy-major (view j of image i is
    /// j·B + i, drawn as view j of every image); differentiable in `x`.
    pub fn apply<B: Backend>(&self, x: Tensor<B, 4>, seed: u64) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let views = self.copies * b;
        let draw = self.draw(self.copies, [c, h, w], seed);
        let pad = self.max_shift;
        let (hp, wp) = ((h + 2 * pad) as i64, (w + 2 * pad) as i64);
        let mut index = Vec::with_capacity(views * c * h * w);
        for (&(dy, dx), &flip) in draw.shifts.iter().zip(&draw.flips) {
            let plane: Vec<i64> = (0..h as i64)
                .flat_map(|i| {
                    (0..w as i64).map(move |j| {
                        let j = if flip { w as i64 - 1 - j } else { j };
                        (i + dy + pad as i64) * wp + (j + dx + pad as i64)
                    })
                })
                .collect();
            for _ in 0..b * c {
                index.extend_from_slice(&plane);
            }
        }
        let device = x.device();
        let index = Tensor::<B, 3, Int>::from_data(TensorData::new(index, [views, c, h * w]), &device);
        let padded = Tensor::cat(vec![x; self.copies], 0)
            .pad((pad, pad, pad, pad), PadMode::Constant(self.fill))
            .reshape([views, c, (hp * wp) as usize]);
        let shifted = padded.gather(2, index).reshape([views, c, h, w]);
        if draw.noise.is_empty() {
            shifted
        } else {
            let noise = Tensor::<B, 5>::from_data(TensorData::new(draw.noise, [self.copies, 1, c, h, w]), &device);
            shifted + noise.expand([self.copies, b, c, h, w]).reshape([views, c, h, w])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn image() -> Tensor<Flex, 4> {
        let values: Vec<f32> = (0..2 * 4 * 4).map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, [2, 1, 4, 4]), &Default::default())
    }

    fn values(t: Tensor<Flex, 4>) -> Vec<f32> {
        t.into_data().to_vec().unwrap()
    }

    #[test]
    fn views_are_shifted_mirrored_copies_drawn_from_the_seed() {
        let views = ClassViews { copies: 3, max_shift: 1, flip: true, noise_std: 0.0, fill: -1.0 };
        let x = image();
        let out = values(views.apply(x.clone(), 11));
        let draw = views.draw(3, [1, 4, 4], 11);
        let src = values(x);
        for view in 0..6 {
            let (dy, dx) = draw.shifts[view / 2];
            let image = view % 2;
            for i in 0..4i64 {
                for j in 0..4i64 {
                    let jj = if draw.flips[view / 2] { 3 - j } else { j };
                    let (si, sj) = (i + dy, jj + dx);
                    let expected = if (0..4).contains(&si) && (0..4).contains(&sj) {
                        src[image * 16 + (si * 4 + sj) as usize]
                    } else {
                        -1.0
                    };
                    assert_eq!(out[view * 16 + (i * 4 + j) as usize], expected, "view {view} pixel ({i}, {j})");
                }
            }
        }
        assert_eq!(out, values(views.apply(image(), 11)), "same seed, same views");
        assert_ne!(out, values(views.apply(image(), 12)), "another seed, other views");
    }

    #[test]
    fn an_image_gets_the_same_views_alone_as_in_a_batch() {
        let views = ClassViews { copies: 3, max_shift: 1, flip: true, noise_std: 0.1, fill: -1.0 };
        let batched = values(views.apply(image(), 5));
        for i in 0..2 {
            let alone = values(views.apply(image().narrow(0, i, 1), 5));
            for view in 0..3 {
                assert_eq!(
                    alone[view * 16..(view + 1) * 16],
                    batched[(view * 2 + i) * 16..(view * 2 + i + 1) * 16],
                    "image {i} view {view}"
                );
            }
        }
    }

    #[test]
    fn noise_has_the_configured_spread() {
        let views = ClassViews { copies: 4, max_shift: 0, flip: false, noise_std: 0.1, fill: -1.0 };
        let draw = views.draw(400, [1, 8, 8], 3);
        let n = draw.noise.len() as f32;
        let std = (draw.noise.iter().map(|v| v * v).sum::<f32>() / n).sqrt();
        assert!((std - 0.1).abs() < 0.005, "{std}");
    }
}
