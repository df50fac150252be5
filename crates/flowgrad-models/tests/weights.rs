//! Safetensors round trips and strict loading.

use burn::backend::Flex;
use burn::module::Module;
use flowgrad_models::{ClassifierConfig, JudgeConfig, UNetConfig, WeightsError, load, save, weights_digest};

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flowgrad-weights-{}-{name}.safetensors", std::process::id()))
}

fn values<M: Module<Flex>>(m: &M) -> Vec<Vec<u8>> {
    use burn::store::ModuleSnapshot;
    let mut snaps = m.collect(None, None, false);
    snaps.sort_by_key(|s| s.full_path());
    snaps.iter().map(|s| s.to_data().unwrap().as_bytes().to_vec()).collect()
}

#[test]
fn save_load_round_trip_is_bit_identical() {
    let device = Default::default();
    let path = scratch("roundtrip");
    let trained = UNetConfig::new().with_base(8).with_seed(3).init::<Flex>(&device);
    save(&trained, &path).unwrap();
    let fresh = UNetConfig::new().with_base(8).with_seed(4).init::<Flex>(&device);
    assert_ne!(values(&fresh), values(&trained));
    let loaded = load(fresh, &path).unwrap();
    assert_eq!(values(&loaded), values(&trained));
    assert_eq!(weights_digest(&loaded), weights_digest(&trained));
}

#[test]
fn mismatched_architecture_is_an_error() {
    let device = Default::default();
    let path = scratch("mismatch");
    save(&ClassifierConfig::new().init::<Flex>(&device), &path).unwrap();
    let err = load(JudgeConfig::new().init::<Flex>(&device), &path).unwrap_err();
    match &err {
        WeightsError::Mismatch { missing, unexpected, .. } => {
            assert!(missing.iter().any(|k| k.starts_with("conv1")), "{err}");
            assert!(unexpected.iter().any(|k| k.starts_with("convs")), "{err}");
        }
        other => panic!("expected a mismatch, got {other}"),
    }
    let wider = ClassifierConfig::new().with_width(8).init::<Flex>(&device);
    assert!(load(wider, &path).is_err(), "shape mismatch must not load");
}

#[test]
fn missing_file_is_an_error() {
    let err = load(ClassifierConfig::new().init::<Flex>(&Default::default()), &scratch("absent")).unwrap_err();
    assert!(matches!(err, WeightsError::Store { .. }), "{err}");
}
