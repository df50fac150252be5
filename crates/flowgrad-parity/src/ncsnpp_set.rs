//! Parity of the NCSN++ port with an `ncsnpp/` fixture set (FORMAT.md part A): the model is
//! built from the set's `config.json` and `weights.safetensors` (every key consumed), then its
//! outputs and input-VJPs are compared with `io.safetensors`, per sample.

use std::path::Path;

use burn::tensor::Tensor;
use flowgrad::VelocityField;
use flowgrad::tensor_util::{from_vec, to_vec};
use flowgrad_models::ncsnpp::{Ncsnpp, NcsnppConfig, read_safetensors};

use crate::fixture::{FixtureError, TensorFile, format_error, read_json};
use crate::report::{ParityReport, chunked_scaled_error};

/// The binaries' backend: parity is checked where the edits run.
type B = flowgrad_backend::Backend;

/// Recommended tolerance for `v` and `vjp_x` (per-sample scaled error, FORMAT.md).
const TOLERANCE: f64 = 5e-4;

/// The model of the `ncsnpp/` set in `dir`, built from its config and weights.
pub fn load_fixture_model(dir: &Path) -> Result<Ncsnpp<B>, FixtureError> {
    let config_path = dir.join("config.json");
    let config = NcsnppConfig::from_original_json(&read_json(&config_path)?)
        .map_err(|e| format_error(&config_path, e.to_string()))?;
    let weights_path = dir.join("weights.safetensors");
    if !weights_path.is_file() {
        return Err(FixtureError::Io { path: weights_path, source: std::io::ErrorKind::NotFound.into() });
    }
    let weights = read_safetensors(&weights_path).map_err(|e| format_error(&weights_path, e.to_string()))?;
    Ncsnpp::from_state_dict(&config, &weights, &weights_path.display().to_string(), &Default::default())
        .map_err(|e| format_error(&weights_path, e.to_string()))
}

/// Checks the NCSN++ port against the set in `dir`: parameter count and key order (when the
/// config's `fixture` block lists them), the time convention, outputs and input-VJPs.
pub fn check_ncsnpp(dir: &Path) -> Result<ParityReport, FixtureError> {
    let model = load_fixture_model(dir)?;
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let io_path = dir.join("io.safetensors");
    let io = TensorFile::open(&io_path)?;
    let mut report = ParityReport::default();

    let fixture = &config["fixture"];
    if let Some(n) = fixture["num_params"].as_u64() {
        report.exact(
            "num_params",
            model.num_params() as u64 == n,
            format!("ours {}, original {n}", model.num_params()),
        );
    }
    if let Some(keys) = fixture["state_dict_keys_in_order"].as_array() {
        let theirs: Vec<&str> = keys.iter().filter_map(|k| k.as_str()).filter(|k| *k != "sigmas").collect();
        let ours: Vec<&str> = model.parameters().iter().map(|(k, _)| k.as_str()).collect();
        report.exact("parameter order", ours == theirs, "named_parameters() order differs");
    }

    let (x_shape, x) = io.f32("x")?;
    let c = model.config();
    let shape: [usize; 4] = x_shape
        .clone()
        .try_into()
        .map_err(|_| format_error(&io_path, format!("x has shape {x_shape:?}, expected [B,C,H,W]")))?;
    if shape[1] != c.channels || shape[2] != c.image_size || shape[3] != c.image_size {
        return Err(format_error(
            &io_path,
            format!("x has shape {x_shape:?}, but config.json says {} channels of {}²", c.channels, c.image_size),
        ));
    }
    let batch = shape[0];
    let per_sample = x.len() / batch.max(1);
    let vector = |name: &str| -> Result<Vec<f32>, FixtureError> {
        let (s, v) = io.f32(name)?;
        if s != [batch] {
            return Err(format_error(&io_path, format!("{name} has shape {s:?}, expected [{batch}]")));
        }
        Ok(v)
    };
    let (t, t_unit) = (vector("t")?, vector("t_unit")?);
    let device = Default::default();
    let image = |name: &str| -> Result<Tensor<B, 4>, FixtureError> {
        let (s, v) = io.f32(name)?;
        if s != x_shape {
            return Err(format_error(&io_path, format!("{name} has shape {s:?}, expected {x_shape:?}")));
        }
        Ok(from_vec(v, shape, &device))
    };
    let (expected_v, g, expected_vjp) = (io.f32("v")?.1, image("g")?, io.f32("vjp_x")?.1);

    if c.embedding == flowgrad_models::ncsnpp::Embedding::Fourier {
        let same =
            t_unit.iter().zip(&t).all(|(u, t)| (u * flowgrad_models::ncsnpp::TIME_SCALE).to_bits() == t.to_bits());
        report.exact("t = t_unit·999 (f32)", same, "the model time is not t_unit·999 in f32");
    }

    let x = from_vec::<B, 4>(x, shape, &device).require_grad();
    let v = model.forward(x.clone(), from_vec(t, [batch], &device));
    let grads = (v.clone() * g).sum().backward();
    let vjp = to_vec(
        x.grad(&grads)
            .map(Tensor::<B, 4>::from_inner)
            .ok_or_else(|| format_error(&io_path, "the output does not depend on x".into()))?,
    );
    report.measure("v (per sample)", "scaled", chunked_scaled_error(&to_vec(v), &expected_v, per_sample), TOLERANCE);
    report.measure("vjp_x (per sample)", "scaled", chunked_scaled_error(&vjp, &expected_vjp, per_sample), TOLERANCE);
    if c.embedding == flowgrad_models::ncsnpp::Embedding::Fourier {
        let v_unit = model.velocity(x.detach(), from_vec(t_unit, [batch], &device));
        report.measure(
            "velocity(x, t_unit) (per sample)",
            "scaled",
            chunked_scaled_error(&to_vec(v_unit), &expected_v, per_sample),
            TOLERANCE,
        );
    }
    Ok(report)
}
