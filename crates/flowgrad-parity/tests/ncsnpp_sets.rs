//! `check_ncsnpp` on the shared `ncsnpp/` set and on the reduced configs of flowgrad-models'
//! test data, and `check_flowgrad` with the network: one FlowGrad iteration (and the recorded
//! later ones) on the part-A model reproduces the original's segments, gradients and controls.

use std::path::PathBuf;

use flowgrad_parity::{Outcome, check_flowgrad, check_flowgrad_with_model, check_ncsnpp};

use flowgrad_testkit::fixtures_dir as fixtures;

#[test]
fn shared_ncsnpp_set_passes() {
    let report = check_ncsnpp(&fixtures().join("ncsnpp")).unwrap();
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
    for quantity in [
        "num_params",
        "parameter order",
        "t = t_unit·999 (f32)",
        "v (per sample)",
        "vjp_x (per sample)",
        "velocity(x, t_unit) (per sample)",
    ] {
        assert_eq!(
            report.get(quantity).unwrap_or_else(|| panic!("{quantity}:\n{report}")).outcome,
            Outcome::Pass,
            "{quantity}"
        );
    }
}

#[test]
fn reduced_config_sets_pass() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../flowgrad-models/tests/data/ncsnpp-sets");
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        let report = check_ncsnpp(&dir).unwrap();
        assert!(report.passed(), "{}:\n{report}", dir.display());
        assert!(report.get("vjp_x (per sample)").is_some());
    }
}

#[test]
fn tampered_ncsnpp_sets_fail() {
    let source = fixtures().join("ncsnpp");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "weights.safetensors", "io.safetensors"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    // another Fourier scale of the output: the outputs no longer match
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model"]["scale_by_sigma"] = false.into();
    std::fs::write(&path, config.to_string()).unwrap();
    let report = check_ncsnpp(dir.path()).unwrap();
    assert!(!report.passed());
    assert_eq!(report.get("v (per sample)").unwrap().outcome, Outcome::Fail, "{report}");
    // a config the weights do not fit: a clear error naming the keys
    config["model"]["num_res_blocks"] = 2.into();
    std::fs::write(&path, config.to_string()).unwrap();
    let err = check_ncsnpp(dir.path()).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains("all_modules"), "{err}");
}

#[test]
fn flowgrad_iterations_on_the_network_match_the_original() {
    let report = check_flowgrad(&fixtures().join("flowgrad")).unwrap();
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
    assert!(report.checks.iter().all(|c| !matches!(c.outcome, Outcome::Skipped(_))), "nothing skipped:\n{report}");
    for quantity in [
        "v (recomputed, per step)",
        "iteration 0 segments (model)",
        "iteration 2 segments (model)",
        "lam_seg",
        "iter1_lam_seg",
        "iter2_lam_seg",
        "grad_u (model, per step)",
        "grad_full (per step)",
        "u_after1 - u_init (model)",
        "u_after3 - u_init (model)",
        "u_after3 - u_init (Editor)",
        "loss_iters (model)",
    ] {
        assert_eq!(
            report.get(quantity).unwrap_or_else(|| panic!("{quantity}:\n{report}")).outcome,
            Outcome::Pass,
            "{quantity}"
        );
    }
}

#[test]
fn flowgrad_set_without_its_network_skips_those_checks() {
    let report = check_flowgrad_with_model(&fixtures().join("flowgrad"), None).unwrap();
    assert!(report.passed(), "{report}");
    assert!(matches!(report.get("lam_seg").unwrap().outcome, Outcome::Skipped(_)));
}
