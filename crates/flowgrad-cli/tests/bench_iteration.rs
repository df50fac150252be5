//! `flowgrad bench iteration` end to end through the binary, and the `--help` of the PyTorch
//! side-by-side script (which must not need torch for it).

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::fixtures;

/// stdout of a successful `flowgrad bench iteration` on the fixture's NCSN++ at N = 4, one
/// repetition, with `extra` arguments.
fn bench_iteration(extra: &[&str]) -> String {
    let fixture = fixtures().join("ncsnpp");
    let out = Command::new(env!("CARGO_BIN_EXE_flowgrad"))
        .args(["bench", "iteration", "--fixture", fixture.to_str().unwrap(), "--steps", "4", "--repeats", "1"])
        .args(extra)
        .output()
        .expect("flowgrad runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn bench_iteration_prints_a_parsable_summary() {
    let stdout = bench_iteration(&["--network"]);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("iteration: "))
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    let field = |key: &str| -> f64 {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
    };
    assert!(field("seconds") > 0.0, "{line}");
    assert_eq!(field("steps"), 4.0, "{line}");
    let segments = field("segments");
    assert!((1.0..=4.0).contains(&segments) && segments.fract() == 0.0, "{line}");
    let network = stdout.lines().find_map(|l| l.strip_prefix("network: ")).unwrap_or_else(|| panic!("{stdout}"));
    let seconds: Vec<f64> = network.split(' ').filter_map(|kv| kv.split_once('=')?.1.parse().ok()).collect();
    assert_eq!(seconds.len(), 2, "{network}");
    assert!(seconds[0] > 0.0 && seconds[1] > seconds[0], "a VJP costs more than its forward: {network}");
    assert!(stdout.contains("\nsimulation alone, "), "the simulation timed three ways: {stdout}");
}

#[test]
fn iteration_only_times_the_iteration_and_nothing_after_it() {
    // the side-by-side script's flags at 256² and N = 100: no warm-up iteration, no simulation
    // comparison (it keeps every step's graph)
    let stdout = bench_iteration(&["--iteration-only", "--no-warmup"]);
    assert!(stdout.lines().any(|l| l.starts_with("iteration: seconds=")), "{stdout}");
    assert!(!stdout.contains("simulation alone"), "--iteration-only still compared the simulations: {stdout}");
}

#[test]
fn side_by_side_script_help_works_without_torch() {
    // a `torch` module that fails to import: --help must not reach it
    let blocker = tempfile::tempdir().unwrap();
    std::fs::write(blocker.path().join("torch.py"), "raise ImportError('torch must be imported lazily')\n").unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/pytorch_side_by_side.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--help")
        .env("PYTHONPATH", blocker.path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for option in [
        "--flowgrad ",
        "--rectified-flow",
        "--fixtures",
        "--generate",
        "--flowgrad-bin",
        "--device",
        "--threads",
        "--repeats",
        "--rounds",
        "--segments",
        "--no-iteration-warmup",
    ] {
        assert!(stdout.contains(option), "{option} missing from:\n{stdout}");
    }
}
