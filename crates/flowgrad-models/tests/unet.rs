//! UNet shape, determinism and weight-sensitive fingerprints.

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use flowgrad::VelocityField;
use flowgrad_models::UNetConfig;

#[test]
fn output_has_input_shape() {
    let device = Default::default();
    let net = UNetConfig::new().with_base(8).init::<Flex>(&device);
    let x = Tensor::<Flex, 4>::random([2, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let v = net.velocity(x, Tensor::from_floats([0.1, 0.9], &device));
    assert_eq!(v.dims(), [2, 1, 32, 32]);
}

#[test]
fn fingerprint_follows_the_weights() {
    let device = Default::default();
    let a = UNetConfig::new().with_base(8).with_seed(1).init::<Flex>(&device);
    let a2 = UNetConfig::new().with_base(8).with_seed(1).init::<Flex>(&device);
    let b = UNetConfig::new().with_base(8).with_seed(2).init::<Flex>(&device);
    assert_eq!(a.fingerprint(), a2.fingerprint());
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert!(a.fingerprint().starts_with("unet:base=8:levels=3:weights="), "{}", a.fingerprint());
}
