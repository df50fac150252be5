//! `flowgrad bench straightness` end to end through the binary on the built-in models.

use std::process::Command;

#[test]
fn the_reflowed_flow_is_straighter_than_the_flow_it_came_from() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowgrad"))
        .args(["bench", "straightness", "--draws", "6", "--steps", "40", "--output"])
        .arg(out_dir.path())
        .output()
        .expect("flowgrad runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("straightness.json")).unwrap()).unwrap();
    let families = report["families"].as_array().unwrap();
    let segments = |model: &str| {
        let family = families.iter().find(|f| f["model"] == model).unwrap_or_else(|| panic!("{model}: {report}"));
        assert_eq!(family["mean_s"].as_array().unwrap().len(), 40);
        family["mean_segments"].as_f64().unwrap()
    };
    let (flow, reflow) = (segments("fashion-mnist"), segments("fashion-mnist-reflow"));
    assert!(reflow < flow, "segments: flow {flow}, reflowed {reflow}");
    assert!(stdout.contains("fashion-mnist-reflow"), "{stdout}");
    let png = image::open(out_dir.path().join("straightness.png")).expect("a PNG plot");
    assert!(png.width() > 100 && png.height() > 100);
}
