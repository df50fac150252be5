//! `flowgrad eval` on a tiny setting: every method and metric is reported, the costs relate as
//! the algorithms say, and the plots are PNG images.

use std::process::Command;

use serde_json::Value;

const METHODS: [&str; 5] = ["input", "flowgrad", "decomposed_xi0", "noise_only", "guided_sampling"];
const METRICS: [&str; 9] = [
    "images",
    "success_rate",
    "judge_target_prob",
    "l1",
    "ssim",
    "seconds_per_image",
    "vjps_per_image",
    "control_energy",
    "x0_shift",
];
const STEPS: f64 = 6.0;
const ITERATIONS: f64 = 2.0;

fn metric(m: &Value, name: &str) -> f64 {
    m[name].as_f64().unwrap_or_else(|| panic!("metric {name} missing in {m}"))
}

/// Width and height of a PNG file, after checking its signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn tiny_eval_reports_every_method_sweep_and_plot() {
    let out = tempfile::tempdir().unwrap();
    let args = [
        "eval",
        "--images",
        "4",
        "--classes",
        "coat",
        "--steps",
        "6",
        "--iterations",
        "2",
        "--batch",
        "4",
        "--sweep-images",
        "3",
        "--sweep-steps",
        "4,6",
        "--output",
    ];
    let result = Command::new(env!("CARGO_BIN_EXE_flowgrad")).args(args).arg(out.path()).output().unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&result.stdout), String::from_utf8_lossy(&result.stderr));
    assert!(result.status.success(), "{text}");
    let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("eval.json")).unwrap()).unwrap();

    let methods = report["methods"].as_array().unwrap();
    let by_key = |key: &str| {
        &methods.iter().find(|m| m["method"] == key).unwrap_or_else(|| panic!("method {key} missing"))["overall"]
    };
    assert_eq!(methods.len(), METHODS.len());
    let images = metric(by_key("input"), "images");
    assert!((1.0..=4.0).contains(&images), "coats among the 4 images are skipped: {images}");
    for key in METHODS {
        let m = by_key(key);
        for name in METRICS {
            assert!(metric(m, name).is_finite() && metric(m, name) >= 0.0, "{key}.{name} = {}", m[name]);
        }
        assert_eq!(metric(m, "images"), images, "{key} edits the same images");
        for name in ["success_rate", "judge_target_prob", "ssim"] {
            assert!(metric(m, name) <= 1.0 + 1e-9, "{key}.{name} = {} must lie in [0, 1]", metric(m, name));
        }
        // The judge's top-1 is the target only where p(target) ≥ 1/10, so on average p ≥ success/10.
        assert!(metric(m, "judge_target_prob") + 1e-9 >= metric(m, "success_rate") / 10.0, "{key}: {m}");
    }
    let input = by_key("input");
    assert_eq!((metric(input, "l1"), metric(input, "vjps_per_image")), (0.0, 0.0));
    assert!((metric(input, "ssim") - 1.0).abs() < 1e-9, "the input is its own perfect match");

    let (fast, exact) = (by_key("flowgrad"), by_key("decomposed_xi0"));
    assert_eq!(
        metric(exact, "vjps_per_image"),
        STEPS * (ITERATIONS + 1.0),
        "ξ = 0: one VJP per step and iteration, and N for the warm start"
    );
    assert!(
        metric(fast, "vjps_per_image") <= metric(exact, "vjps_per_image"),
        "FlowGrad never needs more VJPs than ξ = 0"
    );
    assert!(
        metric(fast, "control_energy") > 0.0 && metric(fast, "x0_shift") == 0.0,
        "FlowGrad moves the controls only"
    );
    let noise = by_key("noise_only");
    assert!(metric(noise, "control_energy") == 0.0 && metric(noise, "x0_shift") > 0.0, "the baseline moves x_0 only");
    assert!(metric(noise, "vjps_per_image") <= STEPS * ITERATIONS);
    assert_eq!(metric(by_key("guided_sampling"), "vjps_per_image"), STEPS, "guided sampling: one VJP per step");
    for key in ["flowgrad", "decomposed_xi0", "noise_only", "guided_sampling"] {
        assert!(metric(by_key(key), "l1") > 0.0, "{key} changes the images");
    }

    let sweep = report["xi_sweep"].as_array().unwrap();
    assert_eq!(sweep.len(), 6);
    let first_segments: Vec<u64> = sweep.iter().map(|r| r["segments"][0].as_u64().unwrap()).collect();
    assert_eq!((first_segments[0], first_segments[5]), (6, 1), "ξ = 0 is every step, the last entry a single segment");
    assert!(
        first_segments.windows(2).all(|w| w[0] >= w[1]),
        "larger ξ, fewer segments on the same trajectory: {first_segments:?}"
    );
    let starts: Vec<f64> = sweep.iter().map(|r| r["objective"][0].as_f64().unwrap()).collect();
    assert!(starts.iter().all(|s| (s - starts[0]).abs() < 1e-9), "every ξ starts from u = 0: {starts:?}");
    for r in sweep {
        assert_eq!(r["objective"].as_array().unwrap().len(), 3);
        assert_eq!(r["seconds"].as_array().unwrap().len(), 3);
    }
    let steps: Vec<u64> =
        report["steps_sweep"].as_array().unwrap().iter().map(|r| r["steps"].as_u64().unwrap()).collect();
    assert_eq!(steps, [4, 6]);
    assert_eq!(report["settings"]["model"], "fashion-mnist");
    let curve = &report["straightness"];
    assert_eq!(curve["mean_s"].as_array().unwrap().len(), 6);
    assert_eq!(curve["trajectories"], 4);

    let table = std::fs::read_to_string(out.path().join("table.md")).unwrap();
    assert!(table.contains("| FlowGrad ξ = 5e-3 |") && table.contains("| optimise x_0 only |"), "{table}");
    for plot in ["straightness.png", "xi_sweep.png", "steps_sweep.png", "frontier_l1.png", "frontier_ssim.png"] {
        assert_eq!(png_size(&std::fs::read(out.path().join(plot)).unwrap()), (800, 500), "{plot}");
    }

    // the frontier: FlowGrad at every η, guided sampling at every scale, on the same edits; the
    // default η and scale are the comparison's own rows
    let frontier = report["frontier"].as_array().unwrap();
    let settings: Vec<(String, f64)> =
        frontier.iter().map(|p| (p["method"].as_str().unwrap().to_string(), p["value"].as_f64().unwrap())).collect();
    assert_eq!(settings.len(), 10, "six η and four scales by default: {settings:?}");
    let default_eta = f64::from(flowgrad_params::EditParams::default().eta);
    for (method, value, row) in [("flowgrad", default_eta, "flowgrad"), ("guided_sampling", 20.0, "guided_sampling")] {
        let point = frontier
            .iter()
            .find(|p| p["method"] == method && (p["value"].as_f64().unwrap() - value).abs() < 1e-6)
            .unwrap();
        for name in ["success_rate", "l1", "ssim", "images"] {
            assert_eq!(metric(point, name), metric(by_key(row), name), "{method} at {value}: {name}");
        }
    }
    let etas: Vec<f64> = frontier.iter().filter(|p| p["method"] == "flowgrad").map(|p| metric(p, "l1")).collect();
    assert!(etas.iter().all(|l1| *l1 > 0.0), "every η edits: {etas:?}");
    for key in METHODS {
        let m = by_key(key);
        assert!(
            (0.0..=1.0).contains(&metric(m, "guidance_success_rate")) && (0.0..=1.0).contains(&metric(m, "agreement")),
            "{key}: {m}"
        );
    }
    assert!(table.contains("Frontier") && table.contains("FlowGrad reaches guided sampling's success"), "{table}");
}

/// `--model` picks the evaluated model: it is named in the settings, and the reflowed flow's and
/// the diffusion model's trajectories differ in straightness from the 1-rectified flow's on the
/// same images.
#[test]
fn eval_evaluates_the_chosen_model() {
    let curve = |extra: &[&str]| {
        let out = tempfile::tempdir().unwrap();
        let args = [
            "eval",
            "--images",
            "2",
            "--classes",
            "coat",
            "--steps",
            "4",
            "--iterations",
            "1",
            "--batch",
            "2",
            "--sweep-images",
            "1",
            "--sweep-steps",
            "4",
            "--output",
        ];
        let result =
            Command::new(env!("CARGO_BIN_EXE_flowgrad")).args(args).arg(out.path()).args(extra).output().unwrap();
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("eval.json")).unwrap()).unwrap();
        (report["settings"]["model"].as_str().unwrap().to_string(), report["straightness"]["mean_s"].clone())
    };
    let bundled = curve(&[]);
    assert_eq!(bundled.0, "fashion-mnist");
    for model in ["fashion-mnist-reflow", "fashion-mnist-ddim"] {
        let other = curve(&["--model", model]);
        assert_eq!(other.0, model);
        assert_ne!(bundled.1, other.1, "{model}: same straightness as the bundled flow's");
    }
}

#[test]
fn bad_eval_arguments_are_clear_errors() {
    let out = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let result = Command::new(env!("CARGO_BIN_EXE_flowgrad"))
            .args(["eval", "--output"])
            .arg(out.path())
            .args(extra)
            .output()
            .unwrap();
        (result.status.code(), String::from_utf8_lossy(&result.stderr).into_owned())
    };
    let (code, err) = run(&["--classes", "spaceship"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("spaceship"), "{err}");
    let (code, err) = run(&["--batch", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--batch"), "{err}");
}

/// A small evaluation (N = 4, M = 2, towards coat, a 2-point frontier) into `out`, with `extra`
/// flags; returns eval.json and stderr.
fn small_eval(out: &std::path::Path, extra: &[&str]) -> (Value, String) {
    let args = [
        "eval",
        "--classes",
        "coat",
        "--steps",
        "4",
        "--iterations",
        "2",
        "--sweep-images",
        "1",
        "--sweep-steps",
        "4",
        "--frontier-etas",
        "0.9",
        "--frontier-scales",
        "10",
        "--output",
    ];
    let result = Command::new(env!("CARGO_BIN_EXE_flowgrad")).args(args).arg(out).args(extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    assert!(result.status.success(), "{stderr}");
    (serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap(), stderr)
}

/// Every score of a report, with the wall times (which depend on the machine) taken out.
fn scores(report: &Value) -> Value {
    fn strip_seconds(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("seconds_per_image");
                map.values_mut().for_each(strip_seconds);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_seconds),
            _ => {}
        }
    }
    let xi_objectives: Vec<Value> =
        report["xi_sweep"].as_array().unwrap().iter().map(|r| r["objective"].clone()).collect();
    let mut v = serde_json::json!({
        "methods": report["methods"],
        "frontier": report["frontier"],
        "straightness": report["straightness"],
        "steps_sweep": report["steps_sweep"],
        "xi_objectives": xi_objectives,
    });
    strip_seconds(&mut v);
    v
}

/// An evaluation stores each finished batch and reuses it: a run extended from 2 to 3 images
/// computes only the third batch, and reports exactly what one uninterrupted run on 2 threads
/// does; a frontier on fewer images keeps the batches inside it; parts computed under other
/// settings are not reused.
#[test]
fn an_extended_eval_reuses_its_finished_batches_and_matches_a_fresh_run() {
    let parts = |report: &Value| (report["parts"].as_u64().unwrap(), report["resumed_parts"].as_u64().unwrap());
    let fresh = tempfile::tempdir().unwrap();
    let (whole, _) = small_eval(fresh.path(), &["--images", "3", "--workers", "2"]);
    assert_eq!(parts(&whole), (4, 0), "three batches of one image and the sweeps");

    let extended = tempfile::tempdir().unwrap();
    let (first, _) = small_eval(extended.path(), &["--images", "2", "--workers", "1"]);
    assert_eq!(parts(&first), (3, 0));
    let (second, stderr) = small_eval(extended.path(), &["--images", "3", "--workers", "1"]);
    assert_eq!(parts(&second), (4, 3), "two batches and the sweeps come from the first run: {stderr}");
    assert!(!stderr.contains("batch 0:") && !stderr.contains("batch 1:"), "batches 0 and 1 were not redone: {stderr}");
    assert_eq!(scores(&second), scores(&whole), "resumed on 1 thread vs uninterrupted on 2");
    assert_ne!(scores(&first), scores(&whole), "the third image changes the scores");
    assert_eq!(whole["settings"]["frontier_images"], 3, "the default frontier covers 3 images");

    // The frontier on the first 2 images only: batches 0 and 1 keep their parts (they hold the
    // frontier), batch 2 is computed again without it, and the frontier is the 2-image run's.
    let (subset, stderr) = small_eval(extended.path(), &["--images", "3", "--workers", "1", "--frontier-images", "2"]);
    assert_eq!(parts(&subset), (4, 3), "{stderr}");
    assert!(!stderr.contains("batch 0:") && !stderr.contains("batch 1:"), "{stderr}");
    assert_eq!(subset["settings"]["frontier_images"], 2);
    assert_eq!(scores(&subset)["methods"], scores(&whole)["methods"], "the comparison still has every image");
    assert_eq!(scores(&subset)["frontier"], scores(&first)["frontier"], "the frontier of the first 2 images");

    let (other, stderr) = small_eval(extended.path(), &["--images", "3", "--workers", "1", "--eta", "0.6"]);
    assert_eq!(parts(&other), (4, 0), "another η reuses nothing: {stderr}");
    assert!(stderr.contains("computed under other settings"), "{stderr}");
}
