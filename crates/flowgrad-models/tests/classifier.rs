//! Classifier shapes and the class-guidance loss.

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use flowgrad::{Guidance, GuidanceContext};
use flowgrad_models::{ClassGuidance, ClassifierConfig, ImageClassifier, JudgeConfig};

fn images() -> Tensor<Flex, 4> {
    Tensor::random([3, 1, 32, 32], Distribution::Uniform(-1.0, 1.0), &Default::default())
}

#[test]
fn both_models_give_ten_logits_per_image() {
    let device = Default::default();
    let x = images();
    assert_eq!(ClassifierConfig::new().init::<Flex>(&device).logits(x.clone()).dims(), [3, 10]);
    let p = JudgeConfig::new().init::<Flex>(&device).probabilities(x);
    let sums: Vec<f32> = p.sum_dim(1).into_data().to_vec().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
}

#[test]
fn guidance_loss_is_negative_log_probability_of_the_target() {
    let device = Default::default();
    let classifier = ClassifierConfig::new().init::<Flex>(&device);
    let x = images();
    let probs: Vec<f32> = classifier.probabilities(x.clone()).into_data().to_vec().unwrap();
    let guidance = ClassGuidance::new(classifier.clone(), 4);
    let ctx = GuidanceContext { iteration: 0, seed: 0 };
    let loss: Vec<f32> = guidance.loss(x, &ctx).into_data().to_vec().unwrap();
    for (i, l) in loss.iter().enumerate() {
        assert!((l + probs[i * 10 + 4].ln()).abs() < 1e-4, "image {i}: {l} vs p {}", probs[i * 10 + 4]);
    }
}

#[test]
fn guidance_fingerprint_names_target_and_weights() {
    let device = Default::default();
    let a = ClassifierConfig::new().with_seed(1).init::<Flex>(&device);
    let b = ClassifierConfig::new().with_seed(2).init::<Flex>(&device);
    let fp = |c, t| Guidance::<Flex>::fingerprint(&ClassGuidance::new(c, t));
    assert!(fp(a.clone(), 4).contains("class:4=coat"));
    assert_ne!(fp(a.clone(), 4), fp(a.clone(), 5));
    assert_ne!(fp(a.clone(), 4), fp(b, 4));
    assert_eq!(fp(a.clone(), 4), fp(a, 4));
}
