//! Parity of the CLIP port with a `clip/` fixture set (FORMAT.md part C): every prompt of
//! `tokenizer.json` through each tokenizer stage, the token rows of `tokens.safetensors`, and
//! the model built from `config.json` + `weights.safetensors` against `io.safetensors`
//! (features, cosines, logits, and the cosine gradient with respect to the image).

use std::path::Path;

use burn::tensor::Tensor;
use flowgrad::tensor_util::{from_vec, to_vec};
use flowgrad_models::clip::{ClipConfig, ClipModel, Tokenizer, vocabulary_sha256};

use crate::fixture::{FixtureError, TensorFile, format_error, read_json};
use crate::report::{ParityReport, scaled_error};

/// The binaries' backend: parity is checked where the edits run.
type B = flowgrad_backend::Backend;

/// Recommended tolerance for features, cosines and logits (scaled error, FORMAT.md).
const FEATURE_TOLERANCE: f64 = 1e-4;
/// Recommended tolerance for the cosine gradient.
const GRADIENT_TOLERANCE: f64 = 2e-4;

fn strings(value: &serde_json::Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|s| s.as_str().map(String::from)).collect()
}

fn ids(value: &serde_json::Value) -> Option<Vec<u32>> {
    value.as_array()?.iter().map(|s| s.as_u64().map(|v| v as u32)).collect()
}

/// Prompts whose stage `what` differs, as an exact check.
fn exact_per_prompt(report: &mut ParityReport, what: &str, failures: &[usize], total: usize) {
    report.exact(format!("{what} ({total} prompts)"), failures.is_empty(), format!("differs for prompts {failures:?}"));
}

/// Tokenizer checks: every stage of every prompt, and `tokens.safetensors`.
fn check_tokenizer(dir: &Path, tokenizer: &Tokenizer, report: &mut ParityReport) -> Result<usize, FixtureError> {
    let path = dir.join("tokenizer.json");
    let spec = read_json(&path)?;
    let context = spec["context_length"]
        .as_u64()
        .ok_or_else(|| format_error(&path, "`context_length` must be an integer".into()))? as usize;
    if let Some(hash) = spec["bpe_sha256"].as_str() {
        let ours = vocabulary_sha256();
        report.exact("bpe vocabulary sha256", ours == hash, format!("embedded {ours}"));
    }
    let prompts = spec["prompts"].as_array().ok_or_else(|| format_error(&path, "`prompts` must be a list".into()))?;
    let tokens_path = dir.join("tokens.safetensors");
    let (shape, rows) = TensorFile::open(&tokens_path)?.ints("tokens")?;
    if shape != [prompts.len(), context] {
        return Err(format_error(
            &tokens_path,
            format!("tokens has shape {shape:?}, expected [{}, {context}]", prompts.len()),
        ));
    }
    let stages =
        ["cleaned", "pieces", "bpe_strings", "bpe_ids", "tokens", "truncated, eot_position", "tokens.safetensors"];
    let mut failures: Vec<Vec<usize>> = vec![vec![]; stages.len()];
    for (i, p) in prompts.iter().enumerate() {
        let bad = |field: &str| format_error(&path, format!("prompt {i}: `{field}` is missing or malformed"));
        let text = p["text"].as_str().ok_or_else(|| bad("text"))?;
        let cleaned = tokenizer.clean(text);
        let pieces = tokenizer.pieces(&cleaned);
        let bpe: Vec<String> = pieces.iter().flat_map(|piece| tokenizer.bpe(piece)).collect();
        let tokens = tokenizer.tokenize(text, context, true).map_err(|e| format_error(&path, e.to_string()))?;
        let largest = tokens.iter().copied().max().unwrap_or(0);
        let eot_position = tokens.iter().position(|&t| t == largest).unwrap_or(0) as u64;
        let truncated = tokenizer.tokenize(text, context, false).is_err();
        let row: Vec<u32> = rows[i * context..(i + 1) * context].iter().map(|&v| v as u32).collect();
        let same = [
            cleaned == p["cleaned"].as_str().ok_or_else(|| bad("cleaned"))?,
            pieces == strings(&p["pieces"]).ok_or_else(|| bad("pieces"))?,
            bpe == strings(&p["bpe_strings"]).ok_or_else(|| bad("bpe_strings"))?,
            tokenizer.encode(text) == ids(&p["bpe_ids"]).ok_or_else(|| bad("bpe_ids"))?,
            tokens == ids(&p["tokens"]).ok_or_else(|| bad("tokens"))?,
            Some(truncated) == p["truncated"].as_bool() && Some(eot_position) == p["eot_position"].as_u64(),
            tokens == row,
        ];
        for (stage, ok) in same.iter().enumerate() {
            if !ok {
                failures[stage].push(i);
            }
        }
    }
    for (stage, failed) in stages.iter().zip(&failures) {
        exact_per_prompt(report, stage, failed, prompts.len());
    }
    Ok(context)
}

/// Checks the tokenizer and the tiny CLIP of the `clip/` set in `dir`.
pub fn check_clip(dir: &Path) -> Result<ParityReport, FixtureError> {
    let mut report = ParityReport::default();
    let tokenizer = Tokenizer::default();
    let context = check_tokenizer(dir, &tokenizer, &mut report)?;

    let config_path = dir.join("config.json");
    let config_json = read_json(&config_path)?;
    let config =
        ClipConfig::from_json(&config_json["model"]).map_err(|e| format_error(&config_path, format!("model: {e}")))?;
    if config.context_length != context {
        return Err(format_error(
            &config_path,
            format!("context_length {} differs from tokenizer.json's {context}", config.context_length),
        ));
    }
    let weights_path = dir.join("weights.safetensors");
    let device = Default::default();
    let model = ClipModel::<B>::load(&weights_path, &config, &device)
        .map_err(|e| format_error(&weights_path, e.to_string()))?;

    let io_path = dir.join("io.safetensors");
    let io = TensorFile::open(&io_path)?;
    let (image_shape, image) = io.f32("image")?;
    let expected_image =
        [image_shape.first().copied().unwrap_or(0), 3, config.image_resolution, config.image_resolution];
    if image_shape != expected_image {
        return Err(format_error(
            &io_path,
            format!("image has shape {image_shape:?}, but config.json says {expected_image:?}"),
        ));
    }
    let (text_shape, text) = io.ints("text")?;
    if text_shape.len() != 2 || text_shape[1] != context {
        return Err(format_error(&io_path, format!("text has shape {text_shape:?}, expected [T, {context}]")));
    }
    let rows: Vec<Vec<u32>> = text.chunks(context).map(|r| r.iter().map(|&v| v as u32).collect()).collect();
    if let Some(prompts) = strings(&config_json["text_prompts"]) {
        let ours: Result<Vec<Vec<u32>>, _> = prompts.iter().map(|p| tokenizer.tokenize(p, context, true)).collect();
        report.exact("io text = tokenize(text_prompts)", ours.ok().as_ref() == Some(&rows), "token rows differ");
    }

    let image = from_vec::<B, 4>(image, expected_image, &device).require_grad();
    let image_features = model.encode_image(image.clone().detach());
    let text_features = model.encode_text(&rows);
    let cos = model.cosine(image.clone(), &rows);
    let logits = cos.clone().detach() * model.logit_scale().unsqueeze();
    for (name, ours) in [
        ("image_features", image_features),
        ("text_features", text_features),
        ("cos", cos.clone().detach()),
        ("logits_per_image", logits),
    ] {
        report.measure(name, "scaled", scaled_error(&to_vec(ours), &io.f32(name)?.1), FEATURE_TOLERANCE);
    }
    let grads = cos.sum().backward();
    let grad = image
        .grad(&grads)
        .map(Tensor::<B, 4>::from_inner)
        .ok_or_else(|| format_error(&io_path, "the cosine does not depend on the image".into()))?;
    report.measure(
        "grad_image (d sum cos / d image)",
        "scaled",
        scaled_error(&to_vec(grad), &io.f32("grad_image")?.1),
        GRADIENT_TOLERANCE,
    );
    Ok(report)
}
