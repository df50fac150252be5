//! `train_ddim` end to end on a tiny UNet: it writes the diffusion model's files, they load as
//! DDIM's ODE, and the model card gains its section.

use flowgrad::VelocityField;
use flowgrad_models::{Assets, UNetConfig, ddim_ode, load_ddim};
use flowgrad_train::{FlowTrainConfig, LoopConfig, train_ddim, write_model_card};

#[test]
fn a_short_ddim_run_writes_a_loadable_diffusion_model_and_its_card() {
    let out = tempfile::tempdir().unwrap();
    let cfg = FlowTrainConfig {
        model: UNetConfig::new().with_base(8).with_mults(vec![1, 2]),
        run: LoopConfig { steps: 3, batch: 4, warmup: 1, checkpoint_every: 3, ..FlowTrainConfig::default().run },
        eval_images: 2,
        ..FlowTrainConfig::default()
    };
    let report = train_ddim(&cfg, out.path()).unwrap();
    for file in ["ddim.safetensors", "ddim.config.json", "ddim.report.json", "samples-ddim.png"] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    assert!(report.reconstruction_mse.is_finite() && report.reconstruction_mse > 0.0, "{report:?}");
    let noise_net =
        load_ddim::<flowgrad_train::EvalBackend>(&Assets::Dir(out.path().to_path_buf()), &Default::default()).unwrap();
    let field = ddim_ode(noise_net);
    assert!(field.fingerprint().starts_with("ddim:vp(0.1,20):v-unet:"), "{}", field.fingerprint());
    let card = std::fs::read_to_string(write_model_card(out.path(), "test", None).unwrap()).unwrap();
    assert!(card.contains("## ddim.safetensors — diffusion model (DDIM)"), "{card}");
    assert!(card.contains("β_min 0.1, β_max 20"), "{card}");
}
