//! The `flowgrad` binary end to end: parity exit codes, the demo, the benchmark smoke run.

mod common;
use common::{fixtures, flowgrad, stdout};

#[test]
fn parity_flowgrad_passes_on_the_shipped_fixture() {
    let dir = fixtures().join("flowgrad");
    let out = flowgrad(&["parity", "flowgrad", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" 0 failed"), "{text}");
    assert!(text.contains("seg_starts/seg_lengths"), "{text}");
}

#[test]
fn parity_flowgrad_exits_non_zero_above_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("flowgrad");
    std::fs::copy(source.join("data.safetensors"), dir.path().join("data.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap()).unwrap();
    config["eps"] = serde_json::json!(2e-3);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = flowgrad(&["parity", "flowgrad", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).lines().any(|l| l.starts_with("t_unit") && l.ends_with("FAIL")), "{}", stdout(&out));
    // a config that contradicts its tensors is a malformed set: exit 2 with the reason
    config["N"] = serde_json::json!(config["N"].as_u64().unwrap() + 1);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = flowgrad(&["parity", "flowgrad", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json says N"));
}

#[test]
fn parity_flowgrad_reports_a_missing_set_clearly() {
    let out = flowgrad(&["parity", "flowgrad", "/nonexistent/fixture"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/fixture/config.json"), "{err}");
}

#[test]
fn demo_edits_and_resumes_bit_identically() {
    let out = flowgrad(&["demo", "--steps", "20", "--iterations", "4"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("bit-identical = true"), "{text}");
}

#[test]
fn demo_rejects_bad_parameters() {
    let out = flowgrad(&["demo", "--steps", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid parameter `steps`"));
}

#[test]
fn table1_benchmark_runs_and_prints_its_summary() {
    for (model, controls, label) in [("bundled", "zero", "bundled UNet"), ("reflow", "noise", "bundled reflowed UNet")]
    {
        let out = flowgrad(&["bench", "table1", "--quick", "--steps", "8", "--model", model, "--controls", controls]);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}");
        assert!(text.contains(label) && text.to_lowercase().contains(&format!("controls {controls}")), "{text}");
        let summary = text.lines().find(|l| l.starts_with("table1: vjp_ratio=")).unwrap_or_else(|| panic!("{text}"));
        let cosine: f64 = summary.rsplit("cosine=").next().unwrap().parse().unwrap();
        assert!(cosine > 0.9, "{summary}");
    }
}

/// The summary line reports the variant the flags choose, in the mode they choose; every variant
/// has its own line, and an unknown name is refused.
#[test]
fn table1_summarises_the_chosen_variant() {
    let out = flowgrad(&[
        "bench",
        "table1",
        "--quick",
        "--steps",
        "8",
        "--model",
        "reflow",
        "--mode",
        "paper",
        "--segment-anchor",
        "middle",
        "--segment-gradient",
        "interpolate",
        "--xi",
        "1e-3",
        "--recorded-forwards",
        "16",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("mode Paper"), "{text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {text}"))
            .split_once(": ")
            .unwrap()
            .1
            .to_string()
    };
    for variant in ["copied", "interpolated", "middle anchor"] {
        line(&format!("xi=0.001 {variant}: vjp_ratio="));
    }
    assert_eq!(line("table1: "), line("xi=0.001 middle + interp.: "), "{text}");
    // with recorded forwards the VJPs reuse the simulation's; without them every VJP runs its
    // own, and the gradients (so their cosines to the exact one) are the same
    assert!(text.contains("record up to 16 forwards"), "{text}");
    let unrecorded = flowgrad(&[
        "bench",
        "table1",
        "--quick",
        "--steps",
        "8",
        "--model",
        "reflow",
        "--mode",
        "paper",
        "--segment-anchor",
        "middle",
        "--segment-gradient",
        "interpolate",
        "--xi",
        "1e-3",
        "--recorded-forwards",
        "0",
    ]);
    let unrecorded_text = stdout(&unrecorded);
    assert!(unrecorded.status.success() && unrecorded_text.contains("record up to 0 forwards"), "{unrecorded_text}");
    let cosine = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("table1: "))
            .and_then(|l| l.rsplit("cosine=").next())
            .map(str::to_string)
    };
    assert_eq!(cosine(&text), cosine(&unrecorded_text), "{text}\n{unrecorded_text}");
    let refused = flowgrad(&["bench", "table1", "--quick", "--segment-anchor", "end"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("expected `start` or `middle`"));
}

#[test]
fn bench_edit_times_every_workers_and_batch_pair_against_the_first() {
    let out = flowgrad(&[
        "bench",
        "edit",
        "--images",
        "2",
        "--workers",
        "1,2",
        "--batches",
        "1,2",
        "--steps",
        "4",
        "--iterations",
        "1",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| workers"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(
        rows.iter().map(|r| (r[1], r[2])).collect::<Vec<_>>(),
        [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")],
        "{text}"
    );
    assert_eq!(rows[0][5], "1.00×", "{text}");
    for row in &rows {
        assert!(row[4].parse::<f64>().is_ok_and(|rate| rate > 0.0), "{text}");
    }
}
