//! NCSN++ against the original PyTorch code: the shared `fixtures/ncsnpp` set and the sets in
//! `tests/data/ncsnpp-sets` (outputs and input-VJPs, per sample), the original parameter count
//! and order, strict key checking, and RectifiedFlow `.pth` checkpoints with EMA weights.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use flowgrad::VelocityField;
use flowgrad_models::ncsnpp::{
    Ncsnpp, NcsnppConfig, NcsnppError, StateDict, WeightsChoice, ema_parameter_order, read_pytorch, read_safetensors,
    read_weights, write_safetensors,
};

type B = Autodiff<Flex>;

use flowgrad_testkit::fixtures_dir as fixtures;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The f32 tensor `name` of a safetensors file: shape and values.
fn tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let dict = read_safetensors(path).unwrap();
    let p = dict.tensors.get(name).unwrap_or_else(|| panic!("{name} in {}", path.display()));
    (p.shape.clone(), p.values.clone())
}

/// Worst per-sample max|a − b| / max|b| (FORMAT.md's scaled error).
fn per_sample_error(a: &[f32], b: &[f32], batch: usize) -> f64 {
    assert_eq!(a.len(), b.len());
    let per = a.len() / batch;
    a.chunks(per)
        .zip(b.chunks(per))
        .map(|(x, y)| {
            let diff = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            diff as f64 / y.iter().map(|q| q.abs()).fold(0.0f32, f32::max) as f64
        })
        .fold(0.0, f64::max)
}

fn fixture_model(dir: &Path) -> Ncsnpp<B> {
    let config = NcsnppConfig::from_json_file(&dir.join("config.json")).unwrap();
    let weights = read_safetensors(&dir.join("weights.safetensors")).unwrap();
    Ncsnpp::from_state_dict(&config, &weights, "fixture", &Default::default()).unwrap()
}

/// Output and input-VJP errors of the set in `dir` (per sample, scaled).
fn set_errors(dir: &Path) -> (f64, f64) {
    let model = fixture_model(dir);
    let io = dir.join("io.safetensors");
    let (shape, x) = tensor(&io, "x");
    let shape: [usize; 4] = shape.try_into().unwrap();
    let device = Default::default();
    let x = Tensor::<B, 4>::from_data(TensorData::new(x, shape), &device).require_grad();
    let t = Tensor::<B, 1>::from_data(TensorData::new(tensor(&io, "t").1, [shape[0]]), &device);
    let g = Tensor::<B, 4>::from_data(TensorData::new(tensor(&io, "g").1, shape), &device);
    let v = model.forward(x.clone(), t);
    let grads = (v.clone() * g).sum().backward();
    let vjp: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
    let v: Vec<f32> = v.into_data().to_vec().unwrap();
    (per_sample_error(&v, &tensor(&io, "v").1, shape[0]), per_sample_error(&vjp, &tensor(&io, "vjp_x").1, shape[0]))
}

#[test]
fn shared_fixture_outputs_and_vjps_match_the_original() {
    let (v, vjp) = set_errors(&fixtures().join("ncsnpp"));
    eprintln!("shared ncsnpp set: v {v:.3e}, vjp_x {vjp:.3e}");
    assert!(v <= 5e-4, "v per-sample scaled error {v:e}");
    assert!(vjp <= 5e-4, "vjp_x per-sample scaled error {vjp:e}");
}

#[test]
fn other_configs_match_the_original() {
    let mut sets: Vec<PathBuf> =
        std::fs::read_dir(data().join("ncsnpp-sets")).unwrap().map(|e| e.unwrap().path()).collect();
    sets.sort();
    assert_eq!(sets.len(), 4);
    for dir in sets {
        let (v, vjp) = set_errors(&dir);
        eprintln!("{}: v {v:.3e}, vjp_x {vjp:.3e}", dir.display());
        assert!(v <= 5e-4 && vjp <= 5e-4, "{}: v {v:e}, vjp_x {vjp:e}", dir.display());
    }
}

#[test]
fn velocity_takes_unit_time_and_scales_it_by_999() {
    let dir = fixtures().join("ncsnpp");
    let model = fixture_model(&dir);
    let io = dir.join("io.safetensors");
    let (shape, x) = tensor(&io, "x");
    let (t_unit, t) = (tensor(&io, "t_unit").1, tensor(&io, "t").1);
    assert!(
        t_unit.iter().zip(&t).all(|(u, t)| (u * 999.0).to_bits() == t.to_bits()),
        "the fixture's t is t_unit·999 in f32"
    );
    let shape: [usize; 4] = shape.try_into().unwrap();
    let device = Default::default();
    let x = Tensor::<B, 4>::from_data(TensorData::new(x, shape), &device);
    let v = model.velocity(x, Tensor::from_data(TensorData::new(t_unit, [shape[0]]), &device));
    let v: Vec<f32> = v.into_data().to_vec().unwrap();
    assert!(per_sample_error(&v, &tensor(&io, "v").1, shape[0]) <= 5e-4);
}

#[test]
fn parameters_follow_the_original_names_order_and_count() {
    let dir = fixtures().join("ncsnpp");
    let model = fixture_model(&dir);
    let fixture = &read_json(&dir.join("config.json"))["fixture"];
    assert_eq!(model.num_params() as u64, fixture["num_params"].as_u64().unwrap());
    let original: Vec<&str> = fixture["state_dict_keys_in_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .filter(|k| *k != "sigmas")
        .collect();
    let ours: Vec<&str> = model.parameters().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(ours, original);
    // EMA order: the same, without the Fourier W (requires_grad = False)
    let ema = ema_parameter_order(ours.iter().copied()).unwrap();
    let trainable: Vec<&str> = ours.into_iter().filter(|k| *k != "all_modules.0.W").collect();
    assert_eq!(ema, trainable);
}

#[test]
fn celeba_hq_256_has_the_original_parameter_count() {
    // 65,574,549 = sum(p.numel() for p in NCSNpp(config).parameters()) of the original code
    // with celeba_hq_pytorch_rf_gaussian.py (tests/data/make_ncsnpp_data.py prints it).
    let model = Ncsnpp::<Flex>::random(&NcsnppConfig::celeba_hq_256(), 0, &Default::default()).unwrap();
    assert_eq!(model.num_params(), 65_574_549);
    assert_eq!(
        model.parameters().len(),
        ema_parameter_order(model.parameters().iter().map(|(k, _)| k.as_str())).unwrap().len() + 1
    );
}

#[test]
fn missing_unexpected_and_mis_shaped_keys_are_reported() {
    let dir = fixtures().join("ncsnpp");
    let config = NcsnppConfig::from_json_file(&dir.join("config.json")).unwrap();
    let mut weights = read_safetensors(&dir.join("weights.safetensors")).unwrap();
    weights.tensors.remove("all_modules.4.Conv_0.bias");
    let extra = weights.tensors["sigmas"].clone();
    weights.tensors.insert("all_modules.99.weight".into(), extra);
    weights.tensors.get_mut("all_modules.1.weight").unwrap().shape.reverse();
    let err = Ncsnpp::<Flex>::from_state_dict(&config, &weights, "tampered", &Default::default()).unwrap_err();
    let NcsnppError::Mismatch { missing, unexpected, mis_shaped, .. } = &err else { panic!("{err}") };
    assert_eq!(missing, &["all_modules.4.Conv_0.bias [16]".to_string()]);
    assert_eq!(unexpected, &["all_modules.99.weight".to_string()]);
    assert_eq!(mis_shaped.len(), 1, "{err}");
    assert!(mis_shaped[0].starts_with("all_modules.1.weight"), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("1 missing") && message.contains("1 unexpected") && message.contains("1 mis-shaped"),
        "{message}"
    );
}

#[test]
fn configs_the_original_cannot_run_are_rejected() {
    let mut config = read_json(&fixtures().join("ncsnpp/config.json"));
    config["model"]["progressive"] = "residual".into();
    assert!(NcsnppConfig::from_original_json(&config).unwrap_err().to_string().contains("progressive"));
    config["model"]["progressive"] = "output_skip".into();
    config["model"]["fir"] = false.into();
    assert!(NcsnppConfig::from_original_json(&config).unwrap_err().to_string().contains("fir"));
    config["model"]["fir"] = true.into();
    config["model"]["resblock_type"] = "ddpm".into();
    assert!(NcsnppConfig::from_original_json(&config).unwrap_err().to_string().contains("resblock_type"));
}

fn tiny() -> (PathBuf, NcsnppConfig, serde_json::Value) {
    let config_json = read_json(&data().join("ncsnpp_tiny.config.json"));
    (data().join("ncsnpp_tiny.pth"), NcsnppConfig::from_original_json(&config_json).unwrap(), config_json)
}

#[test]
fn pth_checkpoint_loads_ema_weights_by_default() {
    let (pth, config, config_json) = tiny();
    let model = read_pytorch(&pth, WeightsChoice::Model).unwrap();
    let ema = read_weights(&pth, WeightsChoice::default()).unwrap();
    assert!(model.tensors.keys().all(|k| !k.starts_with("module.")), "DataParallel prefix removed");
    assert_eq!(model.tensors.keys().collect::<Vec<_>>(), ema.tensors.keys().collect::<Vec<_>>());
    // the python side recorded named_parameters() order; shadow_params[i] = parameter + 1 + i
    let order: Vec<String> = config_json["ema_parameter_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ema_parameter_order(model.tensors.keys().map(String::as_str)).unwrap(), order);
    for (i, name) in order.iter().enumerate() {
        let (m, e) = (&model.tensors[name], &ema.tensors[name]);
        let offset = 1.0 + i as f32;
        assert!(
            m.values.iter().zip(&e.values).all(|(a, b)| (b - a - offset).abs() <= 1e-4 * offset.max(1.0)),
            "{name} is not shadow_params[{i}]"
        );
    }
    for buffer_or_frozen in ["sigmas", "all_modules.0.W"] {
        assert_eq!(
            model.tensors[buffer_or_frozen], ema.tensors[buffer_or_frozen],
            "{buffer_or_frozen} comes from `model`"
        );
    }
    // every key is consumed and every parameter filled, for both choices
    for weights in [&model, &ema] {
        let net = Ncsnpp::<Flex>::from_state_dict(&config, weights, "tiny.pth", &Default::default()).unwrap();
        assert_eq!(net.num_params() + config.num_scales, weights.num_values());
    }
    let loaded = flowgrad_models::load_ncsnpp::<Flex>(&pth, &config, WeightsChoice::Ema, &Default::default()).unwrap();
    let again = flowgrad_models::load_ncsnpp::<Flex>(&pth, &config, WeightsChoice::Ema, &Default::default()).unwrap();
    let raw = flowgrad_models::load_ncsnpp::<Flex>(&pth, &config, WeightsChoice::Model, &Default::default()).unwrap();
    assert_eq!(loaded.fingerprint(), again.fingerprint());
    assert_ne!(loaded.fingerprint(), raw.fingerprint(), "the fingerprint identifies the weights");
    // the engine shares fields across worker threads
    fn shareable<T: Send + Sync>(_: &T) {}
    shareable(&loaded);
}

#[test]
fn converted_safetensors_round_trip_bit_exactly() {
    let (pth, config, _) = tiny();
    let ema = read_pytorch(&pth, WeightsChoice::Ema).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.safetensors");
    write_safetensors(&ema, &out).unwrap();
    let back: StateDict = read_weights(&out, WeightsChoice::Model).unwrap();
    assert_eq!(back, ema);
    let a = flowgrad_models::load_ncsnpp::<Flex>(&pth, &config, WeightsChoice::Ema, &Default::default()).unwrap();
    let b = flowgrad_models::load_ncsnpp::<Flex>(&out, &config, WeightsChoice::Ema, &Default::default()).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
}

#[test]
fn wrong_checkpoints_are_clear_errors() {
    let (pth, config, _) = tiny();
    // a checkpoint for another architecture: every mismatch is named
    let mut other = config.clone();
    other.nf = 16;
    let err = flowgrad_models::load_ncsnpp::<Flex>(&pth, &other, WeightsChoice::Ema, &Default::default()).unwrap_err();
    assert!(matches!(err, NcsnppError::Mismatch { .. }), "{err}");
    // not a checkpoint at all
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let err = read_weights(&junk, WeightsChoice::Ema).unwrap_err().to_string();
    assert!(err.contains("junk.pth"), "{err}");
    let err = read_weights(&dir.path().join("absent.pth"), WeightsChoice::Ema).unwrap_err().to_string();
    assert!(err.contains("absent.pth"), "{err}");
}
