//! `flowgrad run` end to end with the shipped model on examples/, and its clear errors.

use std::path::PathBuf;

mod common;
use common::{fixtures, flowgrad, repo, stdout, text};

/// Edits that look like edits at the default update rule (reduced N and M to stay fast): the
/// independent judge calls at least 5 of the 8 examples a coat and they keep a mean SSIM of at
/// least 0.35 to their inputs. Two embedded workers edit concurrently in one process: this once
/// deadlocked inside burn-autodiff when the frozen models' parameters were tracked.
#[test]
fn run_on_examples_edits_towards_the_target_and_keeps_the_garment() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let result = flowgrad(&[
        "run",
        "--input",
        &repo("examples"),
        "--output",
        dir,
        "--target",
        "coat",
        "--steps",
        "25",
        "--iterations",
        "5",
        "--workers",
        "2",
    ]);
    assert!(result.status.success(), "{}", text(&result));
    let stdout = String::from_utf8_lossy(&result.stdout).to_string();
    let summary =
        stdout.lines().find(|l| l.starts_with("summary: ")).unwrap_or_else(|| panic!("no summary line: {stdout}"));
    let number = |after: &str| -> f64 {
        summary
            .split(after)
            .nth(1)
            .and_then(|r| r.split([',', ' ', '/']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("`{after}` in {summary}"))
    };
    let judged = number("summary: ");
    let ssim = number("mean SSIM ");
    assert!(judged >= 5.0 && ssim >= 0.35, "{summary}");
    let grid = image::open(out.path().join("grid.png")).unwrap();
    assert!(
        grid.width() >= 2 * 128 && grid.height() >= 8 * 128,
        "grid.png shows the images enlarged: {}x{}",
        grid.width(),
        grid.height()
    );
    assert!(out.path().join("report.json").exists());
    assert!(out.path().join("report.json").exists());
    let mut moved = 0;
    let mut reports = 0;
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") && !path.ends_with("report.json") {
            let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            assert!(path.with_extension("png").exists(), "{path:?} has its image");
            assert_eq!(report["loss_per_iteration"].as_array().unwrap().len(), 5);
            let (before, after) = (
                report["judge_target_prob_before"].as_f64().unwrap(),
                report["judge_target_prob_after"].as_f64().unwrap(),
            );
            if after > before {
                moved += 1;
            }
            assert!(report["ssim"].as_f64().unwrap() <= 1.0 && report["l1"].as_f64().unwrap() >= 0.0);
            reports += 1;
        }
    }
    assert_eq!(reports, 8, "one report per example image");
    assert!(moved * 4 >= reports * 3, "the judge must move towards the target on most images ({moved}/{reports})");
}

#[test]
fn bad_inputs_are_clear_errors_and_do_not_stop_other_images() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let missing = flowgrad(&["run", "--input", "/nonexistent/images", "--output", dir, "--target", "coat"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("/nonexistent/images does not exist"), "{}", text(&missing));

    let class = flowgrad(&["run", "--input", &repo("examples"), "--output", dir, "--target", "spaceship"]);
    assert_eq!(class.status.code(), Some(2));
    assert!(text(&class).contains("spaceship") && text(&class).contains("coat"), "{}", text(&class));

    let empty = tempfile::tempdir().unwrap();
    let none = flowgrad(&["run", "--input", empty.path().to_str().unwrap(), "--output", dir, "--target", "coat"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none).contains("no PNG or JPEG images"), "{}", text(&none));

    let mixed = tempfile::tempdir().unwrap();
    std::fs::copy(repo("examples/00-tshirt-test19.png"), mixed.path().join("good.png")).unwrap();
    std::fs::write(mixed.path().join("corrupt.png"), b"definitely not a png").unwrap();
    let result = flowgrad(&[
        "run",
        "--input",
        mixed.path().to_str().unwrap(),
        "--output",
        dir,
        "--target",
        "coat",
        "--steps",
        "8",
        "--iterations",
        "1",
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", text(&result));
    assert!(text(&result).contains("corrupt.png"), "the failure names the file: {}", text(&result));
    assert!(out.path().join("0001-good.png").exists(), "the good image is still edited: {}", text(&result));
}

/// With a guidance weight too small to pay for any change, neither the warm start nor a trial
/// beats the reconstruction: the report says the output is unedited and why, and the summary
/// counts it; at the defaults the same image is edited and its report has no such reason.
#[test]
fn an_image_no_trial_improves_is_reported_unedited() {
    let input = tempfile::tempdir().unwrap();
    std::fs::copy(repo("examples/00-tshirt-test19.png"), input.path().join("shirt.png")).unwrap();
    let reason = |eta: &str| {
        let out = tempfile::tempdir().unwrap();
        let args = [
            "run",
            "--input",
            input.path().to_str().unwrap(),
            "--output",
            out.path().to_str().unwrap(),
            "--target",
            "coat",
            "--steps",
            "10",
            "--iterations",
            "2",
            "--eta",
            eta,
        ];
        let result = flowgrad(&args);
        assert!(result.status.success(), "{}", text(&result));
        let json = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("report.json"))
            .expect("the image's report");
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        (report["no_edit_reason"].as_str().map(str::to_string), stdout(&result))
    };
    let (unedited, printed) = reason("0.0001");
    let unedited =
        unedited.unwrap_or_else(|| panic!("an edit that cannot pay for itself is reported unedited: {printed}"));
    assert!(unedited.contains("warm start") && unedited.contains("objective per iteration"), "{unedited}");
    assert!(printed.contains("1 returned unedited"), "{printed}");
    let (edited, printed) = reason("0.5");
    assert_eq!(edited, None, "{printed}");
}

fn fixture(path: &str) -> String {
    fixtures().join(path).to_string_lossy().into_owned()
}

#[test]
fn edit_with_an_ncsnpp_checkpoint_and_a_text_prompt_end_to_end() {
    let out = tempfile::tempdir().unwrap();
    let edited = out.path().join("edited.png");
    let (checkpoint, config, clip, clip_config) = (
        fixture("ncsnpp/weights.safetensors"),
        fixture("ncsnpp/config.json"),
        fixture("clip/weights.safetensors"),
        fixture("clip/config.json"),
    );
    let input = repo("examples/03-dress-test13.png");
    let base = [
        "edit",
        "--input",
        &input,
        "--output",
        edited.to_str().unwrap(),
        "--model",
        "ncsnpp",
        "--checkpoint",
        &checkpoint,
        "--model-config",
        &config,
        "--steps",
        "5",
        "--iterations",
        "2",
    ];
    let result = flowgrad(
        &[&base[..], &["--text", "a photo of a smiling face", "--clip", &clip, "--clip-config", &clip_config]].concat(),
    );
    assert!(result.status.success(), "{}", text(&result));
    let png = std::fs::read(&edited).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let (width, height, colour) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
        png[25],
    );
    assert_eq!((width, height, colour), (32, 32, 2), "an RGB PNG at the model's resolution");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(edited.with_extension("json")).unwrap()).unwrap();
    assert_eq!(report["target"], "a photo of a smiling face");
    assert!(report["judge_target_prob_before"].is_null(), "no judge for text prompts");
    for key in ["guidance_score_before", "guidance_score_after"] {
        let cosine = report[key].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&cosine), "{key} = {cosine}");
    }
    assert_eq!(report["loss_per_iteration"].as_array().unwrap().len(), 2);
    assert!(report["vjps"].as_u64().unwrap() >= 2);
    assert!(report["note"].as_str().unwrap().contains("RGB"), "gray input converted for the RGB model");

    let no_clip = flowgrad(&[&base[..], &["--text", "old"]].concat());
    assert_eq!(no_clip.status.code(), Some(2));
    assert!(text(&no_clip).contains("CLIP checkpoint"), "{}", text(&no_clip));
    let class = flowgrad(&[&base[..], &["--target", "coat"]].concat());
    assert_eq!(class.status.code(), Some(2));
    assert!(text(&class).contains("no classifier"), "{}", text(&class));
    let no_checkpoint = flowgrad(&[
        "edit",
        "--input",
        &input,
        "--output",
        edited.to_str().unwrap(),
        "--model",
        "ncsnpp",
        "--text",
        "old",
    ]);
    assert_eq!(no_checkpoint.status.code(), Some(2));
    assert!(text(&no_checkpoint).contains("--checkpoint"), "{}", text(&no_checkpoint));
}

/// A direction learned on four examples is saved, then applied to four others without
/// optimisation; a file that is not a direction is refused with a clear error.
#[test]
fn learn_a_direction_on_some_images_and_apply_it_to_others() {
    let (learn_in, apply_in, out) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let examples: Vec<PathBuf> = {
        let mut all: Vec<PathBuf> = std::fs::read_dir(repo("examples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        all.sort();
        all
    };
    for (i, path) in examples.iter().enumerate() {
        let folder = if i < 4 { learn_in.path() } else { apply_in.path() };
        std::fs::copy(path, folder.join(path.file_name().unwrap())).unwrap();
    }
    let direction = out.path().join("coat.safetensors");
    let learned_dir = out.path().join("learned");
    let learn = flowgrad(&[
        "run",
        "--input",
        learn_in.path().to_str().unwrap(),
        "--output",
        learned_dir.to_str().unwrap(),
        "--target",
        "coat",
        "--steps",
        "8",
        "--iterations",
        "3",
        "--learn-direction",
        direction.to_str().unwrap(),
    ]);
    assert!(learn.status.success(), "{}", text(&learn));
    let bytes = std::fs::read(&direction).expect("direction saved");
    let (saved, labels) = flowgrad::GlobalDirection::from_bytes(&bytes).unwrap();
    assert_eq!((saved.controls().shape.clone(), labels["images"].as_str()), (vec![8, 1, 1, 32, 32], "4"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(learned_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["results"].as_array().unwrap().len(), 1, "one shared task: {report}");

    let applied_dir = out.path().join("applied");
    let apply = flowgrad(&[
        "run",
        "--input",
        apply_in.path().to_str().unwrap(),
        "--output",
        applied_dir.to_str().unwrap(),
        "--target",
        "coat",
        "--steps",
        "100",
        "--apply-direction",
        direction.to_str().unwrap(),
    ]);
    assert!(apply.status.success(), "{}", text(&apply));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(applied_dir.join("report.json")).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r["iterations_run"] == 0 && r["vjps"] == 0), "{report}");
    let edited = std::fs::read_dir(&applied_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"))
        .count();
    assert_eq!(edited, 5, "four edited images and grid.png");

    let not_a_direction = flowgrad(&[
        "run",
        "--input",
        apply_in.path().to_str().unwrap(),
        "--output",
        out.path().join("refused").to_str().unwrap(),
        "--target",
        "coat",
        "--apply-direction",
        examples[0].to_str().unwrap(),
    ]);
    assert!(!not_a_direction.status.success());
    assert!(text(&not_a_direction).contains("unusable direction"), "{}", text(&not_a_direction));
}

/// The binary carries its bundled models: a copy in a folder far from the checkout, run there on
/// copies of the examples with no `--assets`, edits them.
#[test]
fn a_copied_binary_edits_with_its_built_in_models() {
    let place = tempfile::tempdir().unwrap();
    let binary = place.path().join("flowgrad");
    std::fs::copy(env!("CARGO_BIN_EXE_flowgrad"), &binary).unwrap();
    let inputs = place.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for name in ["00-tshirt-test19.png", "02-pullover-test1.png"] {
        std::fs::copy(PathBuf::from(repo("examples")).join(name), inputs.join(name)).unwrap();
    }
    let result = std::process::Command::new(&binary)
        .current_dir(place.path())
        .args(["run", "--input", "in", "--output", "out", "--target", "coat", "--steps", "4", "--iterations", "1"])
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", text(&result));
    let edited = std::fs::read_dir(place.path().join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "png") && e.file_name() != "grid.png")
        .count();
    assert_eq!(edited, 2, "{}", text(&result));
    // nothing points back at the machine that built it
    let help = std::process::Command::new(&binary).args(["run", "--help"]).output().unwrap();
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(!stdout(&help).contains(&checkout), "`run --help` names the build checkout {checkout}");
}
