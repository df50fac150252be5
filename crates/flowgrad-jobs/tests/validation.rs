//! Job validation rules and the lease rule, one case per rule.

use flowgrad_jobs::{GuidanceSpec, InputSpec, JobSpec, Lease, SCHEMA_VERSION, ValidationError};

fn job() -> JobSpec {
    JobSpec::new(InputSpec::Prefix("in/".into()), "out/", "fashion-mnist", GuidanceSpec::Class("coat".into()))
}

fn field_of(job: &JobSpec) -> &'static str {
    match job.validate() {
        Err(ValidationError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn a_default_job_is_valid_and_round_trips_through_json() {
    let job = job();
    job.validate().unwrap();
    assert_eq!(JobSpec::from_json(&flowgrad_jobs::to_json(&job)).unwrap(), job);
}

#[test]
fn outputs_and_inputs_may_not_live_in_the_fleets_own_folders() {
    for prefix in ["jobs/", "active/", "jobs/x/", "active/y/"] {
        let bad = JobSpec { output_prefix: prefix.into(), ..job() };
        assert_eq!(field_of(&bad), "output_prefix", "{prefix}");
    }
    let bad = JobSpec { input: InputSpec::Manifest(vec!["jobs/a/spec.json".into()]), ..job() };
    assert_eq!(field_of(&bad), "input.manifest");
    // a folder merely starting with the same letters is fine
    JobSpec { output_prefix: "jobsite/".into(), ..job() }.validate().unwrap();
}

#[test]
fn oversize_fields_are_rejected() {
    let long_key = format!("in/{}.png", "k".repeat(1100));
    assert_eq!(field_of(&JobSpec { input: InputSpec::Manifest(vec![long_key]), ..job() }), "input.manifest");
    assert_eq!(field_of(&JobSpec { model: "m".repeat(200), ..job() }), "model");
    assert_eq!(field_of(&JobSpec { guidance: GuidanceSpec::Class("c".repeat(200)), ..job() }), "guidance.class");
    let params = flowgrad_params::EditParams { iterations: flowgrad_jobs::job::MAX_STEPS + 1, ..Default::default() };
    assert_eq!(field_of(&JobSpec { params, ..job() }), "params.iterations");
    let keys: Vec<String> = (0..=flowgrad_jobs::job::MAX_MANIFEST_KEYS).map(|i| format!("in/{i}.png")).collect();
    assert_eq!(field_of(&JobSpec { input: InputSpec::Manifest(keys), ..job() }), "input.manifest");
}

#[test]
fn a_lease_is_free_for_its_owner_or_once_expired() {
    let lease = Lease { schema: SCHEMA_VERSION, coordinator: "a".into(), renewed_at: 100.0 };
    assert!(lease.available_to("a", 100.5, 30.0));
    assert!(!lease.available_to("b", 129.0, 30.0));
    assert!(lease.available_to("b", 131.0, 30.0));
}

#[test]
fn text_guidance_is_a_non_empty_bounded_prompt() {
    JobSpec { guidance: GuidanceSpec::Text("a smiling face".into()), ..job() }.validate().unwrap();
    assert_eq!(field_of(&JobSpec { guidance: GuidanceSpec::Text("  ".into()), ..job() }), "guidance.text");
    assert_eq!(field_of(&JobSpec { guidance: GuidanceSpec::Text("x".repeat(2000)), ..job() }), "guidance.text");
    let parsed = JobSpec::from_json(br#"{"schema":1,"job_id":"6f1c1d4e-3b7a-4c1e-9d2a-0b5c6d7e8f90","input":{"prefix":"in/"},"output_prefix":"out/","model":"ncsnpp","guidance":{"text":"old"}}"#).unwrap();
    assert_eq!(parsed.guidance, GuidanceSpec::Text("old".into()));
}

#[test]
fn directions_are_written_as_toml_and_json_and_validated() {
    use flowgrad_jobs::DirectionSpec;
    let toml_job = r#"
schema = 1
job_id = "6f1c1c6e-1d7c-4c1e-9a51-2f0e3c1d9b10"
input = { prefix = "in/" }
output_prefix = "out/"
model = "fashion-mnist"
guidance = { class = "coat" }
direction = { learn = "directions/coat.safetensors" }
"#;
    let parsed: JobSpec = toml::from_str(toml_job).unwrap();
    assert_eq!(parsed.direction, Some(DirectionSpec::Learn("directions/coat.safetensors".into())));
    parsed.validate().unwrap();
    let json = flowgrad_jobs::to_json(&parsed);
    assert!(String::from_utf8_lossy(&json).contains(r#""learn": "directions/coat.safetensors""#));
    assert_eq!(JobSpec::from_json(&json).unwrap(), parsed);
    // no direction: the field is absent from the JSON, as before it existed
    assert!(!String::from_utf8_lossy(&flowgrad_jobs::to_json(&job())).contains("direction"));

    let apply = |key: &str| JobSpec { direction: Some(DirectionSpec::Apply(key.into())), ..job() };
    apply("directions/coat.safetensors").validate().unwrap();
    for bad in ["", "/abs.safetensors", "a/../b", "jobs/x.safetensors", "in/inside-the-input.safetensors"] {
        assert_eq!(field_of(&apply(bad)), "direction", "{bad:?}");
    }
    let many: Vec<String> = (0..=flowgrad_jobs::job::MAX_BATCH).map(|i| format!("in/{i}.png")).collect();
    let learn_many = JobSpec {
        input: InputSpec::Manifest(many.clone()),
        direction: Some(DirectionSpec::Learn("d.safetensors".into())),
        ..job()
    };
    assert_eq!(field_of(&learn_many), "direction");
    JobSpec { direction: Some(DirectionSpec::Apply("d.safetensors".into())), ..learn_many }.validate().unwrap();
}

/// A job file that leaves `params` out (or any of its fields) edits with `EditParams::default()`,
/// the same parameters `flowgrad run` uses without flags: JSON and TOML alike.
#[test]
fn job_files_without_params_take_the_one_set_of_defaults() {
    let toml_job = "input = { prefix = \"in/\" }\noutput_prefix = \"out/\"\nmodel = \"fashion-mnist\"\nguidance = { class = \"coat\" }\n";
    let json_job = r#"{"input": {"prefix": "in/"}, "output_prefix": "out/", "model": "fashion-mnist", "guidance": {"class": "coat"}}"#;
    for (text, json) in [(toml_job, false), (json_job, true)] {
        let job = JobSpec::from_job_file(text, json).unwrap();
        assert_eq!(job.params, flowgrad_params::EditParams::default(), "json: {json}");
        assert!(!job.job_id.is_nil());
    }
    let partial = JobSpec::from_job_file(&format!("{toml_job}params = {{ steps = 20 }}\n"), false).unwrap();
    assert_eq!(partial.params, flowgrad_params::EditParams { steps: 20, ..flowgrad_params::EditParams::default() });
    let err = JobSpec::from_job_file("input = [", false).unwrap_err().to_string();
    assert!(err.contains("malformed job file"), "{err}");
}

#[test]
fn a_job_of_another_schema_version_says_so_before_any_field() {
    // a version-2 job lacks fields this version needs: the version is what the error names
    let toml = "schema = 2\noutput_prefix = \"out/\"\nmodel = \"fashion-mnist\"\n";
    let err = JobSpec::from_job_file(toml, false).unwrap_err().to_string();
    assert!(err.contains("version 2 is not supported") && err.contains(&format!("version {SCHEMA_VERSION}")), "{err}");
    assert!(!err.contains("missing field"), "{err}");
    let json = format!("{{\"schema\": 7, \"job_id\": \"{}\"}}", uuid::Uuid::new_v4());
    assert!(JobSpec::from_json(json.as_bytes()).unwrap_err().to_string().contains("version 7 is not supported"));
}

#[test]
fn a_bad_value_in_a_job_file_is_named_by_its_field_path() {
    let toml = "input = { prefix = \"in/\" }\noutput_prefix = \"out/\"\nmodel = \"fashion-mnist\"\nguidance = { class = \"coat\" }\nseed = 0\nbatch_size = 1\n[params]\nsteps = -5\n";
    let err = JobSpec::from_job_file(toml, false).unwrap_err().to_string();
    assert!(err.contains("params.steps") && err.contains("-5"), "{err}");
}

#[test]
fn job_states_print_as_status_json_spells_them() {
    use flowgrad_jobs::JobState::*;
    for state in [Accepted, Running, Completed, CompletedWithFailures, Rejected, Cancelled] {
        assert_eq!(serde_json::to_value(state).unwrap(), serde_json::Value::String(state.to_string()));
    }
}
