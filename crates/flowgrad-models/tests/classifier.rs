//! Classifier shapes and the class-guidance loss.

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use flowgrad::{Guidance, GuidanceContext};
use flowgrad_models::{ClassGuidance, ClassViews, ClassifierConfig, ImageClassifier, JudgeConfig};

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
    let guidance = ClassGuidance::new(classifier.clone(), 4).with_views(ClassViews::none());
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

#[test]
fn guidance_averages_the_loss_over_seeded_views() {
    let device = Default::default();
    let classifier = ClassifierConfig::new().init::<Flex>(&device);
    let x = images();
    let views = ClassViews { copies: 4, ..ClassViews::default() };
    let guidance = ClassGuidance::new(classifier.clone(), 4).with_views(views.clone());
    let loss = |seed| -> Vec<f32> {
        guidance.loss(x.clone(), &GuidanceContext { iteration: 0, seed }).into_data().to_vec().unwrap()
    };
    // by hand: the mean over the views of −log p(target)
    let probs: Vec<f32> =
        classifier.probabilities(views.apply(x.clone().clamp(-1.0, 1.0), 5)).into_data().to_vec().unwrap();
    for (i, l) in loss(5).iter().enumerate() {
        let mean = (0..4).map(|k| -probs[(k * 3 + i) * 10 + 4].ln()).sum::<f32>() / 4.0;
        assert!((l - mean).abs() < 1e-4, "image {i}: {l} vs {mean}");
    }
    assert_eq!(loss(5), loss(5), "a seed fixes the views");
    assert_ne!(loss(5), loss(6), "each iteration draws new views");
    let plain = ClassGuidance::new(classifier, 4).with_views(ClassViews::none());
    assert_ne!(
        Guidance::<Flex>::fingerprint(&guidance),
        Guidance::<Flex>::fingerprint(&plain),
        "the views are part of the fingerprint"
    );
}
