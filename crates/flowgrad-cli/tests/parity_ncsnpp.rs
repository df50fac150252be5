//! `flowgrad parity ncsnpp`, `parity flowgrad` with the network, `flowgrad convert` and the
//! `bench ncsnpp` wiring, end to end through the binary.

use std::path::{Path, PathBuf};

mod common;
use common::{fixtures, flowgrad, text};

fn model_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flowgrad-models/tests/data")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn parity_ncsnpp_passes_on_shipped_and_reduced_sets() {
    for dir in [fixtures().join("ncsnpp"), model_data().join("ncsnpp-sets/positional_inres")] {
        let out = flowgrad(&["parity", "ncsnpp", path(&dir)]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(" 0 failed"), "{stdout}");
        assert!(stdout.lines().any(|l| l.starts_with("vjp_x (per sample)") && l.ends_with("ok")), "{stdout}");
    }
}

#[test]
fn parity_ncsnpp_exits_1_above_tolerance_and_2_on_bad_sets() {
    let source = fixtures().join("ncsnpp");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "weights.safetensors", "io.safetensors"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["data"]["centered"] = false.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = flowgrad(&["parity", "ncsnpp", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("v (per sample)") && l.ends_with("FAIL")),
        "{}",
        text(&out)
    );

    std::fs::remove_file(dir.path().join("weights.safetensors")).unwrap();
    let out = flowgrad(&["parity", "ncsnpp", path(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("weights.safetensors"), "{}", text(&out));
}

#[test]
fn parity_flowgrad_runs_the_network_checks() {
    let out = flowgrad(&["parity", "flowgrad", path(&fixtures().join("flowgrad"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains(" 0 failed, 0 skipped"), "{stdout}");
    for row in ["lam_seg ", "iter2_lam_seg", "grad_full (per step)", "u_after3 - u_init (Editor)"] {
        assert!(stdout.lines().any(|l| l.starts_with(row) && l.ends_with("ok")), "{row}:\n{stdout}");
    }
    // an explicit --model that does not exist is an error, not a silent skip
    let out = flowgrad(&["parity", "flowgrad", path(&fixtures().join("flowgrad")), "--model", "/nonexistent/ncsnpp"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn convert_writes_ema_or_model_weights_as_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let pth = model_data().join("ncsnpp_tiny.pth");
    let config = model_data().join("ncsnpp_tiny.config.json");
    let (ema, raw) = (dir.path().join("ema.safetensors"), dir.path().join("model.safetensors"));
    let out = flowgrad(&["convert", path(&pth), path(&ema), "--config", path(&config)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Ema weights"), "{}", text(&out));
    let out = flowgrad(&["convert", path(&pth), path(&raw), "--weights", "model"]);
    assert!(out.status.success(), "{}", text(&out));
    let (a, b) = (std::fs::read(&ema).unwrap(), std::fs::read(&raw).unwrap());
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b, "EMA and raw weights differ");
    // safetensors in, safetensors out (bit-identical), and the result fits the architecture
    let again = dir.path().join("again.safetensors");
    let out = flowgrad(&["convert", path(&ema), path(&again), "--config", path(&config)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&again).unwrap(), a);
    // the wrong architecture names the keys; a bad choice is rejected
    let out =
        flowgrad(&["convert", path(&pth), path(&again), "--config", path(&fixtures().join("ncsnpp/config.json"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("missing"), "{}", text(&out));
    let out = flowgrad(&["convert", path(&pth), path(&again), "--weights", "best"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn bench_ncsnpp_measures_time_and_memory() {
    let config = model_data().join("ncsnpp_tiny.config.json");
    let out = flowgrad(&[
        "bench",
        "ncsnpp",
        "--config",
        path(&config),
        "--fixture",
        path(&fixtures().join("ncsnpp")),
        "--steps",
        "2",
        "--repeats",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("forward + input VJP"), "{stdout}");
    for method in ["decomposed", "recorded", "full"] {
        // method, N, baseline and peak MiB, VJPs
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(method))
            .unwrap_or_else(|| panic!("no {method} row in {stdout}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((columns[1], columns[4]), ("2", "2"), "{row}");
    }
}
