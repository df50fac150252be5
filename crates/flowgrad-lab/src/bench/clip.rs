//! `flowgrad bench clip`: cost of FlowGrad's text guidance on this machine. Forward + backward
//! (to the image) of the augmented CLIP loss with K copies on ViT-B/32 (random weights: the
//! cost does not depend on them), relative to one forward of a random NCSN++ CelebA-HQ 256².

use std::process::ExitCode;

use burn::tensor::{Distribution, Tensor, backend::Backend as _};
use flowgrad::tensor_util::to_vec;
use flowgrad::{Guidance, GuidanceContext, VelocityField};
use flowgrad_backend::{self as backend, Backend};
use flowgrad_models::clip::{AugmentConfig, ClipConfig, ClipGuidance, ClipModel, Tokenizer};
use flowgrad_models::ncsnpp::{Ncsnpp, NcsnppConfig};

/// Times the CLIP loss with `copies` augmentations of one `size`² image and one NCSN++ forward.
pub fn run(copies: usize, size: usize, repeats: usize) -> anyhow::Result<ExitCode> {
    let device = backend::device();
    let model = ClipModel::<Backend>::random(&ClipConfig::vit_b32(), 0, &device);
    let guidance = ClipGuidance::new(
        &model,
        &Tokenizer::default(),
        "a photo of a smiling face",
        AugmentConfig { copies, ..AugmentConfig::default() },
    )?;
    Backend::seed(&device, 0);
    let x = Tensor::<Backend, 4>::random([1, 3, size, size], Distribution::Uniform(-1.0, 1.0), &device);
    let mut iteration = 0;
    let clip = super::median_seconds(repeats, || {
        let leaf = x.clone().require_grad();
        let ctx = GuidanceContext { iteration, seed: iteration as u64 };
        iteration += 1;
        let grads = guidance.loss(leaf.clone(), &ctx).sum().backward();
        let _ = to_vec(Tensor::<Backend, 4>::from_inner(leaf.grad(&grads).expect("the loss depends on the image")));
    });

    let config = NcsnppConfig::celeba_hq_256();
    let ncsnpp = Ncsnpp::<Backend>::random(&config, 0, &device)?;
    let z = Tensor::<Backend, 4>::random(
        [1, config.channels, config.image_size, config.image_size],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let t = Tensor::<Backend, 1>::full([1], 0.5, &device);
    let forward = super::median_seconds(repeats, || {
        let _ = to_vec(ncsnpp.velocity(z.clone(), t.clone()));
    });

    println!("backend {}, median of {} after one warm-up", backend::name(), repeats.max(1));
    println!("CLIP ViT-B/32 augmented loss, K={copies}, {size}² input → 224²: forward + backward {:.2} s", clip);
    println!(
        "NCSN++ {}² (nf {}, {} parameters) forward: {:.2} s",
        config.image_size,
        config.nf,
        ncsnpp.num_params(),
        forward
    );
    println!("clip: ratio={:.2} (CLIP loss forward+backward / one NCSN++ forward)", clip / forward);
    Ok(ExitCode::SUCCESS)
}
