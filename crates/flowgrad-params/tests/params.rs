//! Parameter validation: the defaults are the paper's and every bad value is named.

use flowgrad_params::{
    ControlSharing, EditParams, Faithfulness, InvalidParameter, Mode, SegmentAnchor, SegmentGradient, Selection,
    Solver, UpdateRule,
};

fn rejected(params: EditParams, name: &str) {
    match params.validate() {
        Err(InvalidParameter { name: got, .. }) => assert_eq!(got, name),
        other => panic!("expected `{name}` to be rejected, got {other:?}"),
    }
}

#[test]
fn paper_parameters_and_the_defaults_built_on_them() {
    let p = EditParams::paper();
    assert_eq!((p.steps, p.iterations), (100, 10));
    assert_eq!((p.step_size, p.eta, p.lambda, p.xi, p.warm_start), (10.0, 0.7, 1e-3, 5e-3, 0.0));
    assert_eq!(p.update, flowgrad_params::UpdateRule::Gradient);
    assert_eq!(p.mode, flowgrad_params::Mode::Reference, "the parametrisation α = 10 was tuned for");
    p.validate().unwrap();
    let d = EditParams::default();
    assert_eq!(
        (d.steps, d.iterations, d.lambda, d.xi, d.mode),
        (p.steps, p.iterations, p.lambda, p.xi, p.mode),
        "the paper's size and grid"
    );
    assert_eq!(
        (d.update, d.eta, d.warm_start, d.faithfulness),
        (flowgrad_params::UpdateRule::TrustRegion, 0.5, 20.0, Faithfulness::L1Ssim),
        "the edit-quality defaults"
    );
    assert_eq!(p.faithfulness, Faithfulness::L1);
    d.validate().unwrap();
    assert_eq!(EditParams { warm_start: -1.0, ..d }.validate().unwrap_err().name, "warm_start");
}

#[test]
fn bad_values_are_rejected_with_their_name() {
    rejected(EditParams { steps: 0, ..Default::default() }, "steps");
    rejected(EditParams { step_size: f32::NAN, ..Default::default() }, "step_size");
    rejected(EditParams { step_size: f32::INFINITY, ..Default::default() }, "step_size");
    rejected(EditParams { xi: -1e-3, ..Default::default() }, "xi");
    rejected(EditParams { lambda: -1.0, ..Default::default() }, "lambda");
    rejected(EditParams { eta: 1.5, ..Default::default() }, "eta");
    rejected(EditParams { time_eps: 1.0, ..Default::default() }, "time_eps");
    rejected(EditParams { encode_steps: Some(0), ..Default::default() }, "encode_steps");
    rejected(
        EditParams { encode_solver: Solver::InverseEuler { iterations: 0 }, ..Default::default() },
        "encode_solver",
    );
}

#[test]
fn unknown_fields_are_rejected_in_json() {
    let err = serde_json::from_str::<EditParams>(r#"{"stepz": 3}"#).unwrap_err();
    assert!(err.to_string().contains("stepz"), "{err}");
    let p: EditParams = serde_json::from_str(r#"{"steps": 20, "xi": 0.01}"#).unwrap();
    assert_eq!((p.steps, p.xi, p.iterations), (20, 0.01, 10));
}

/// Every choice survives the serialised form a job or task carries (a job asking for the paper's
/// gradient rule, no warm start or L1 faithfulness gets them on the worker), while the
/// fingerprint form leaves the later fields out at their earlier behaviour's values, so
/// checkpoints written before those fields existed keep their fingerprint.
#[test]
fn every_choice_survives_the_wire_and_old_fingerprints_stay() {
    for params in [EditParams::paper(), EditParams::default()] {
        let wire: EditParams = serde_json::from_str(&serde_json::to_string(&params).unwrap()).unwrap();
        assert_eq!(wire, params);
    }
    let paper = EditParams::paper().fingerprint_form();
    for later in ["update", "warm_start", "faithfulness", "segment_gradient", "segment_anchor"] {
        assert!(!paper.contains(later), "{later} in {paper}");
    }
    assert!(
        paper.starts_with("{\"steps\":100,\"iterations\":10,\"step_size\":10.0,")
            && paper.ends_with("\"encode_steps\":null}"),
        "{paper}"
    );
    let default = EditParams::default().fingerprint_form();
    for later in ["\"update\":\"trust_region\"", "\"warm_start\":20.0", "\"faithfulness\":\"l1_ssim\""] {
        assert!(default.contains(later), "{later} missing from {default}");
    }
}

/// The canonical fingerprint form equals, for every kind of parameter set, the form checkpoints
/// were fingerprinted with when it was derived from the wire JSON: no checkpoint changes its
/// fingerprint, and from now on the wire can change without changing any.
#[test]
fn the_canonical_fingerprint_form_is_the_one_checkpoints_carry() {
    fn wire_derived(params: &EditParams) -> String {
        let mut json = serde_json::to_string(params).unwrap();
        for (field, earlier) in [
            ("update", "\"gradient\""),
            ("segment_gradient", "\"copy\""),
            ("segment_anchor", "\"start\""),
            ("warm_start", "0.0"),
            ("faithfulness", "\"l1\""),
        ] {
            json = json.replace(&format!(",\"{field}\":{earlier}"), "");
        }
        json
    }
    let variants = [
        EditParams::default(),
        EditParams::paper(),
        EditParams { steps: 7, encode_steps: Some(3), xi: 0.05, eta: 0.123_456_7, ..EditParams::paper() },
        EditParams {
            segment_gradient: SegmentGradient::Interpolate,
            segment_anchor: SegmentAnchor::Middle,
            ..EditParams::default()
        },
        EditParams {
            warm_start: 0.0,
            faithfulness: Faithfulness::L1,
            update: UpdateRule::Gradient,
            ..EditParams::default()
        },
        EditParams {
            mode: Mode::Paper,
            sharing: ControlSharing::Shared,
            selection: Selection::Last,
            ..EditParams::default()
        },
        EditParams {
            encode_solver: Solver::InverseEuler { iterations: 3 },
            time_eps: 0.0,
            lambda: 1e-7,
            ..EditParams::default()
        },
    ];
    for params in variants {
        assert_eq!(params.fingerprint_form(), wire_derived(&params), "{params:?}");
    }
}
