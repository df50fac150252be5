//! `check_clip` on the shared `clip/` set and on the sets flowgrad-models ships in
//! `tests/data/clip-sets/` (made by the original code with other shapes, head counts, batch,
//! prompts and seed: see `make_clip_set.py`), and on tampered copies.

use std::path::{Path, PathBuf};

use flowgrad_parity::{Outcome, ParityReport, check_clip};

use flowgrad_testkit::fixtures_dir as fixtures;

fn shipped_sets() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flowgrad-models/tests/data/clip-sets");
    let mut sets: Vec<PathBuf> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    sets.sort();
    sets.insert(0, fixtures().join("clip"));
    sets
}

fn assert_all_checked(dir: &Path, report: &ParityReport) {
    assert!(report.passed(), "{}:\n{report}", dir.display());
    let skipped = report.checks.iter().filter(|c| matches!(c.outcome, Outcome::Skipped(_))).count();
    assert_eq!(skipped, 0, "{}:\n{report}", dir.display());
    for quantity in [
        "bpe vocabulary sha256",
        "io text = tokenize(text_prompts)",
        "image_features",
        "text_features",
        "cos",
        "logits_per_image",
        "grad_image (d sum cos / d image)",
    ] {
        assert!(report.get(quantity).is_some(), "{quantity} not checked for {}:\n{report}", dir.display());
    }
}

#[test]
fn every_clip_set_passes() {
    let sets = shipped_sets();
    assert!(sets.len() >= 2, "{sets:?}");
    for dir in sets {
        let report = check_clip(&dir).unwrap();
        eprintln!("{}\n{report}", dir.display());
        assert_all_checked(&dir, &report);
    }
}

#[test]
fn io_of_another_shape_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = &shipped_sets()[1];
    for file in ["tokenizer.json", "tokens.safetensors", "config.json", "weights.safetensors"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    // io.safetensors of another set: same tensor names, other shapes → a clear format error
    std::fs::copy(fixtures().join("clip/io.safetensors"), dir.path().join("io.safetensors")).unwrap();
    let err = check_clip(dir.path()).unwrap_err().to_string();
    assert!(err.contains("io.safetensors") && err.contains("image has shape"), "{err}");
}
