//! `flowgrad parity clip` end to end: passes on the shipped set, exits 1 when a set disagrees
//! with this build (tampered tokens, other head count), exits 2 on a missing set.

use std::path::{Path, PathBuf};

mod common;
use common::{flowgrad, stdout};

/// The shipped CLIP fixture set.
fn clip_set() -> PathBuf {
    common::fixtures().join("clip")
}

fn copy_set(to: &Path) {
    for file in ["tokenizer.json", "tokens.safetensors", "config.json", "weights.safetensors", "io.safetensors"] {
        std::fs::copy(clip_set().join(file), to.join(file)).unwrap();
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

fn failed_rows(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.ends_with("FAIL")).collect()
}

#[test]
fn parity_clip_passes_on_the_shipped_set() {
    let out = flowgrad(&["parity", "clip", clip_set().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" 0 failed, 0 skipped"), "{text}");
    for row in [
        "bpe vocabulary sha256",
        "tokens (42 prompts)",
        "cleaned (42 prompts)",
        "image_features",
        "text_features",
        "grad_image",
    ] {
        assert!(text.lines().any(|l| l.starts_with(row) && l.ends_with("ok")), "{row} missing:\n{text}");
    }
}

#[test]
fn parity_clip_exits_non_zero_when_the_set_disagrees() {
    let dir = tempfile::tempdir().unwrap();
    copy_set(dir.path());
    // one prompt's expected ids changed: only the id stages fail
    edit_json(&dir.path().join("tokenizer.json"), |v| v["prompts"][3]["bpe_ids"][0] = serde_json::json!(1));
    let out = flowgrad(&["parity", "clip", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert_eq!(failed_rows(&text).len(), 1, "{text}");
    assert!(failed_rows(&text)[0].starts_with("bpe_ids (42 prompts) (differs for prompts [3])"), "{text}");

    // the head count comes from config.json: one text head computes other features
    copy_set(dir.path());
    edit_json(&dir.path().join("config.json"), |v| v["model"]["transformer_heads"] = serde_json::json!(1));
    let out = flowgrad(&["parity", "clip", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(failed_rows(&text).iter().any(|l| l.starts_with("text_features")), "{text}");
    assert!(!failed_rows(&text).iter().any(|l| l.starts_with("image_features")), "{text}");
}

#[test]
fn parity_clip_reports_a_missing_or_inconsistent_set_clearly() {
    let out = flowgrad(&["parity", "clip", "/nonexistent/clip-set"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/clip-set/tokenizer.json"));

    let dir = tempfile::tempdir().unwrap();
    copy_set(dir.path());
    edit_json(&dir.path().join("config.json"), |v| v["model"]["vision_width"] = serde_json::json!(32));
    let out = flowgrad(&["parity", "clip", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("weights.safetensors") && err.contains("visual.conv1.weight"), "{err}");
}
