//! The registry end to end on real weights: the bundled model, and an NCSN++ + CLIP pair from the
//! parity fixtures (reduced configs with the original key layouts) behind `[models]`.

use std::path::PathBuf;

use flowgrad::EditParams;
use flowgrad_catalog::CatalogError;
use flowgrad_engine::{
    BUNDLED_MODEL, ClipSource, DDIM_MODEL, EngineError, ModelCatalog, ModelRegistry, NCSNPP_MODEL, NcsnppSource,
    REFLOW_MODEL,
};
use flowgrad_jobs::GuidanceSpec;

use flowgrad_testkit::fixtures_dir as fixtures;

fn catalog() -> ModelCatalog {
    let f = fixtures();
    ModelCatalog {
        ncsnpp: Some(NcsnppSource {
            checkpoint: f.join("ncsnpp/weights.safetensors"),
            config: Some(f.join("ncsnpp/config.json")),
            weights: "ema".into(),
        }),
        clip: Some(ClipSource {
            checkpoint: f.join("clip/weights.safetensors"),
            config: Some(f.join("clip/config.json")),
        }),
    }
}

fn text(prompt: &str) -> GuidanceSpec {
    GuidanceSpec::Text(prompt.into())
}

#[test]
fn validation_names_what_is_missing() {
    let bare = ModelRegistry::new(flowgrad_engine::Assets::Embedded);
    bare.validate(BUNDLED_MODEL, &GuidanceSpec::Class("coat".into())).unwrap();
    assert!(
        matches!(
            bare.validate(NCSNPP_MODEL, &text("old")),
            Err(EngineError::Catalog(CatalogError::UnknownModel { .. }))
        ),
        "ncsnpp is served only when configured"
    );
    let no_clip = bare.validate(BUNDLED_MODEL, &text("a coat")).unwrap_err().to_string();
    assert!(no_clip.contains("[models.clip]"), "{no_clip}");
    let full = ModelRegistry::with_catalog(flowgrad_engine::Assets::Embedded, catalog());
    full.validate(NCSNPP_MODEL, &text("a smiling face")).unwrap();
    full.validate(BUNDLED_MODEL, &text("a long coat")).unwrap();
    let class_on_ncsnpp = full.validate(NCSNPP_MODEL, &GuidanceSpec::Class("coat".into())).unwrap_err().to_string();
    assert!(class_on_ncsnpp.contains("no classifier"), "{class_on_ncsnpp}");
    assert!(full.validate(BUNDLED_MODEL, &GuidanceSpec::Class("spaceship".into())).is_err());
}

#[test]
fn ncsnpp_with_text_guidance_edits_rgb_images() {
    let registry = ModelRegistry::with_catalog(flowgrad_engine::Assets::Embedded, catalog());
    let model = registry.get(NCSNPP_MODEL).unwrap();
    let shape = model.image_shape();
    assert_eq!((shape.channels, shape.height, shape.width), (3, 32, 32), "shape from the fixture's config");
    let guidance = text("a photo of a smiling face");
    let params = EditParams { steps: 5, iterations: 2, ..EditParams::default() };
    let session = model.session(&guidance, &params).unwrap();
    let images: Vec<f32> = (0..2 * shape.len()).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let mut state = session.start(&images, 2, 7, 1).unwrap();
    while !session.is_finished(&state) {
        let record = session.step(&mut state).unwrap();
        assert!(record.objective.is_finite() && record.segments >= 1 && record.segments <= 5);
    }
    let finished = session.finish(&state).unwrap();
    assert_eq!(finished.images.len(), images.len());
    assert!(finished.images.iter().all(|v| (-1.0..=1.0).contains(v)));
    let scores = model.guidance_scores(&guidance, &finished.images, 2).unwrap();
    assert_eq!(scores.len(), 2);
    assert!(scores.iter().all(|s| (-1.0..=1.0).contains(s)), "cosines: {scores:?}");
    assert!(model.judge_scores(&guidance, &finished.images, 2).unwrap().is_none(), "NCSN++ has no judge");
    assert!(model.session(&GuidanceSpec::Class("coat".into()), &params).is_err());
}

#[test]
fn text_guidance_on_the_bundled_gray_model_uses_clip_on_replicated_channels() {
    let registry = ModelRegistry::with_catalog(flowgrad_engine::Assets::Embedded, catalog());
    let model = registry.get(BUNDLED_MODEL).unwrap();
    let gray: Vec<f32> = (0..model.image_shape().len()).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect();
    let guidance = text("a coat");
    let score = model.guidance_scores(&guidance, &gray, 1).unwrap();
    assert_eq!(score.len(), 1);
    // prompts are encoded once and cached per prompt: the same prompt scores the same, another differs
    assert_eq!(model.guidance_scores(&guidance, &gray, 1).unwrap(), score);
    assert_ne!(model.guidance_scores(&text("a sneaker on the beach"), &gray, 1).unwrap(), score);
    let params = EditParams { steps: 4, iterations: 1, ..EditParams::default() };
    let session = model.session(&guidance, &params).unwrap();
    let mut state = session.start(&gray, 1, 0, 0).unwrap();
    session.step(&mut state).unwrap();
    assert!(model.judge_scores(&guidance, &gray, 1).unwrap().is_none(), "the judge scores classes, not prompts");
    let class = GuidanceSpec::Class("coat".into());
    let p = model.judge_scores(&class, &gray, 1).unwrap().unwrap();
    assert!((0.0..=1.0).contains(&p[0]));
}

#[test]
fn a_missing_checkpoint_is_a_load_error_naming_the_file() {
    let mut broken = catalog();
    broken.ncsnpp.as_mut().unwrap().checkpoint = PathBuf::from("/nonexistent/ncsnpp.pth");
    let registry = ModelRegistry::with_catalog(flowgrad_engine::Assets::Embedded, broken);
    let err = registry.get(NCSNPP_MODEL).err().expect("load fails").to_string();
    assert!(err.contains("/nonexistent/ncsnpp.pth"), "{err}");
}

/// The reflowed flow is served beside the 1-rectified one (same classifier) and, on the same test
/// image, FlowGrad's first iteration at N = 100 keeps fewer segments (VJPs) with it.
#[test]
fn reflowed_model_edits_with_fewer_vjps_than_the_bundled_flow() {
    use flowgrad_models::fashion::{DEFAULT_DIR, FashionMnist, Split};
    let registry = ModelRegistry::new(flowgrad_engine::Assets::Embedded);
    assert!(registry.available().contains(&REFLOW_MODEL), "{:?}", registry.available());
    let coat = GuidanceSpec::Class("coat".into());
    registry.validate(REFLOW_MODEL, &coat).unwrap();
    let test = FashionMnist::load(std::path::Path::new(DEFAULT_DIR), Split::Test).unwrap();
    let image = flowgrad::tensor_util::to_vec(test.images::<burn::backend::Flex>(&[1], &Default::default()));
    let params = EditParams { steps: 100, iterations: 1, xi: 5e-3, ..EditParams::default() };
    let segments = |name: &str| {
        let model = registry.get(name).unwrap();
        assert_eq!(model.name(), name);
        let session = model.session(&coat, &params).unwrap();
        let mut state = session.start(&image, 1, 3, 0).unwrap();
        session.step(&mut state).unwrap().segments
    };
    let (bundled, reflowed) = (segments(BUNDLED_MODEL), segments(REFLOW_MODEL));
    assert!(reflowed * 2 <= bundled, "segments: bundled {bundled}, reflowed {reflowed}");
}

/// The class guidance draws new random views every iteration from the state's seeds only: an
/// edit checkpointed after any iteration and resumed by a fresh session (as on another worker)
/// ends in the same bits as one that never stopped, and another seed draws other views.
#[test]
fn class_guidance_views_are_seeded_and_resume_bit_for_bit() {
    let registry = ModelRegistry::new(flowgrad_engine::Assets::Embedded);
    let model = registry.get(BUNDLED_MODEL).unwrap();
    let coat = GuidanceSpec::Class("coat".into());
    let params = EditParams { steps: 8, iterations: 4, ..EditParams::default() };
    let image: Vec<f32> = (0..model.image_shape().len()).map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0).collect();
    let session = model.session(&coat, &params).unwrap();
    let mut straight = session.start(&image, 1, 5, 9).unwrap();
    while !session.is_finished(&straight) {
        session.step(&mut straight).unwrap();
    }
    let expected = session.finish(&straight).unwrap();
    for stop in 1..params.iterations {
        let mut state = session.start(&image, 1, 5, 9).unwrap();
        for _ in 0..stop {
            session.step(&mut state).unwrap();
        }
        let mut resumed = flowgrad::ControlState::from_bytes(&state.to_bytes().unwrap()).unwrap();
        let fresh = registry.get(BUNDLED_MODEL).unwrap().session(&coat, &params).unwrap();
        while !fresh.is_finished(&resumed) {
            fresh.step(&mut resumed).unwrap();
        }
        let finished = fresh.finish(&resumed).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&finished.images), bits(&expected.images), "resumed after iteration {stop}");
        assert_eq!(resumed.history, straight.history);
    }
    let mut other_seed = session.start(&image, 1, 6, 9).unwrap();
    session.step(&mut other_seed).unwrap();
    session.step(&mut other_seed).unwrap();
    assert_ne!(other_seed.history[1].objective, straight.history[1].objective, "another seed, other views");
}

/// An image edited in a batch comes out as edited alone (per-image controls, exact gradient
/// ξ = 0, the defaults' warm start, trust region and random guidance views): every per-image
/// quantity is computed independently and the views are shared by the batch. With ξ > 0 the
/// non-uniform grid is planned from the whole batch's trajectories, so batching may change it.
#[test]
fn a_batched_edit_equals_the_images_edited_one_by_one() {
    let registry = ModelRegistry::new(flowgrad_engine::Assets::Embedded);
    let model = registry.get(BUNDLED_MODEL).unwrap();
    let per = model.image_shape().len();
    let params = EditParams { steps: 6, iterations: 3, xi: 0.0, ..EditParams::default() };
    let images: Vec<f32> = (0..3 * per).map(|i| (((i * 7919) % 211) as f32 / 105.0) - 1.0).collect();
    // the controls `[N, entries, C, H, W]` of one entry, step after step
    let entry_controls = |c: &flowgrad::HostTensor, entry: usize, entries: usize| -> Vec<f32> {
        c.values.chunks(per).skip(entry).step_by(entries).flatten().copied().collect()
    };
    for guidance in [GuidanceSpec::Class("coat".into()), GuidanceSpec::Class("sneaker".into())] {
        let session = model.session(&guidance, &params).unwrap();
        let edit = |images: &[f32], batch: usize, stream: u64| {
            let mut state = session.start(images, batch, 3, stream).unwrap();
            while !session.is_finished(&state) {
                session.step(&mut state).unwrap();
            }
            session.finish(&state).unwrap()
        };
        let batched = edit(&images, 3, 11);
        for i in 0..3 {
            let alone = edit(&images[i * per..(i + 1) * per], 1, 20 + i as u64);
            let worst = alone
                .images
                .iter()
                .zip(&batched.images[i * per..(i + 1) * per])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "{guidance:?} image {i}: batched differs from alone by {worst}");
            let moved = alone.controls.values.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            assert!(moved > 0.0, "image {i} was edited (its controls are not zero)");
            let diff = alone
                .controls
                .values
                .iter()
                .zip(entry_controls(&batched.controls, i, 3))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff <= 1e-5 * moved.max(1.0), "image {i}: controls differ by {diff}");
        }
    }
}

/// The shipped diffusion model is built in, and an edit through DDIM's ODE moves test images
/// towards the target: the judge's p(coat) rises on every image.
#[test]
fn built_in_diffusion_model_edits_test_images_towards_the_target() {
    use flowgrad_models::fashion::{DEFAULT_DIR, FashionMnist, Split};
    let registry = ModelRegistry::new(flowgrad_engine::Assets::Embedded);
    assert!(registry.available().contains(&DDIM_MODEL), "{:?}", registry.available());
    let coat = GuidanceSpec::Class("coat".into());
    let model = registry.get(DDIM_MODEL).unwrap();
    let test = FashionMnist::load(std::path::Path::new(DEFAULT_DIR), Split::Test).unwrap();
    // a t-shirt, a dress and a shirt (examples/ 00, 03, 04)
    let images = flowgrad::tensor_util::to_vec(test.images::<burn::backend::Flex>(&[19, 13, 4], &Default::default()));
    let params = EditParams { steps: 25, iterations: 4, ..EditParams::default() };
    let session = model.session(&coat, &params).unwrap();
    let mut state = session.start(&images, 3, 0, 0).unwrap();
    while !session.is_finished(&state) {
        session.step(&mut state).unwrap();
    }
    let edited = session.finish(&state).unwrap();
    let before = model.judge_scores(&coat, &images, 3).unwrap().unwrap();
    let after = model.judge_scores(&coat, &edited.images, 3).unwrap().unwrap();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a > b, "image {i}: p(coat) {b:.3} → {a:.3}");
    }
    let mean = after.iter().sum::<f32>() / 3.0;
    assert!(mean > 0.5, "mean p(coat) after the edit {mean:.3} (before {before:?})");
}

/// The diffusion model is served from any assets folder that holds `ddim.safetensors` (here a
/// seeded, untrained network beside the bundled classifier and judge), and not from one that
/// lacks it: an edit towards `coat` runs through DDIM's ODE (encode, FlowGrad iterations, decode)
/// and selects controls no worse than its start, and a flow's session refuses its checkpoint.
#[test]
fn diffusion_model_is_served_from_assets_that_hold_it() {
    use burn::config::Config;
    let repo_assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    let dir = tempfile::tempdir().unwrap();
    for stem in ["flow", "classifier", "judge"] {
        for ext in ["config.json", "safetensors"] {
            let file = format!("{stem}.{ext}");
            std::fs::copy(repo_assets.join(&file), dir.path().join(&file)).unwrap();
        }
    }
    let without = ModelRegistry::new(flowgrad_engine::Assets::Dir(dir.path().to_path_buf()));
    assert!(!without.available().contains(&DDIM_MODEL), "{:?}", without.available());
    let coat = GuidanceSpec::Class("coat".into());
    let err = without.validate(DDIM_MODEL, &coat).unwrap_err().to_string();
    assert!(err.contains(DDIM_MODEL), "{err}");

    let config = flowgrad_models::UNetConfig::new().with_seed(5);
    let untrained = config.init::<burn::backend::Flex>(&Default::default());
    flowgrad_models::save(&untrained, &dir.path().join("ddim.safetensors")).unwrap();
    config.save(dir.path().join("ddim.config.json")).unwrap();
    let registry = ModelRegistry::new(flowgrad_engine::Assets::Dir(dir.path().to_path_buf()));
    assert!(registry.available().contains(&DDIM_MODEL), "{:?}", registry.available());
    registry.validate(DDIM_MODEL, &coat).unwrap();
    let model = registry.get(DDIM_MODEL).unwrap();
    assert_eq!(model.name(), DDIM_MODEL);
    let image: Vec<f32> = (0..model.image_shape().len()).map(|i| ((i * 7 % 23) as f32 / 11.0) - 1.0).collect();
    let params = EditParams { steps: 10, iterations: 3, ..EditParams::default() };
    let session = model.session(&coat, &params).unwrap();
    let mut state = session.start(&image, 1, 3, 0).unwrap();
    let mut objectives = vec![];
    while !session.is_finished(&state) {
        objectives.push(session.step(&mut state).unwrap().objective);
    }
    let edited = session.finish(&state).unwrap();
    assert_eq!(edited.images.len(), image.len());
    assert!(edited.images.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    assert!(edited.objective <= objectives[0] + 1e-9, "selected {} vs first {}", edited.objective, objectives[0]);
    let flow = registry.get(BUNDLED_MODEL).unwrap().session(&coat, &params).unwrap();
    assert!(flow.can_resume(&state).is_err(), "a flow session must not resume a DDIM edit");
}
