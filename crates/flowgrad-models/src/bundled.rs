//! The bundled models of an [`Assets`] folder: the flow, its reflowed variant, the diffusion
//! model (DDIM), the guidance classifier and the judge, each built from its `{name}.config.json` and loaded from its
//! `{name}.safetensors`.

use burn::config::Config;
use burn::module::Module;
use burn::store::SafetensorsStore;
use burn::tensor::backend::Backend;
use flowgrad::diffusion::{DiffusionOde, VpSchedule};

use crate::assets::Assets;
use crate::classifier::{Classifier, ClassifierConfig, Judge, JudgeConfig};
use crate::unet::{UNet, UNetConfig, VPredictionUNet};
use crate::weights::{WeightsError, load_from_store};

/// Builds the model described by `{name}.config.json` of `assets` with `init` and loads
/// `{name}.safetensors` into it (strictly, see [`load`]).
fn load_bundled<B: Backend, C: Config, M: Module<B>>(
    assets: &Assets,
    name: &str,
    init: impl FnOnce(&C) -> M,
) -> Result<M, WeightsError> {
    let config_file = format!("{name}.config.json");
    let config_error = |message: String| WeightsError::Config { path: assets.locate(&config_file), message };
    let config =
        C::load_binary(&assets.read(&config_file).map_err(config_error)?).map_err(|e| config_error(e.to_string()))?;
    let weights_file = format!("{name}.safetensors");
    let path = assets.locate(&weights_file);
    let bytes = assets.read(&weights_file).map_err(|message| WeightsError::Store {
        action: "load",
        path: path.clone(),
        message,
    })?;
    load_from_store(init(&config), SafetensorsStore::from_bytes(Some(bytes.into_owned())), &path)
}

/// The trained velocity field `flow.safetensors` of `assets`.
pub fn load_flow<B: Backend>(assets: &Assets, device: &B::Device) -> Result<UNet<B>, WeightsError> {
    load_bundled(assets, "flow", |c: &UNetConfig| c.init(device))
}

/// File stem of the reflowed (2-rectified) flow: `flow-reflow.safetensors`, `.config.json`.
pub const REFLOW_STEM: &str = "flow-reflow";

/// The reflowed (2-rectified) velocity field `flow-reflow.safetensors` of `assets`.
pub fn load_reflow<B: Backend>(assets: &Assets, device: &B::Device) -> Result<UNet<B>, WeightsError> {
    load_bundled(assets, REFLOW_STEM, |c: &UNetConfig| c.init(device))
}

/// File stem of the diffusion model: `ddim.safetensors`, `ddim.config.json`.
pub const DDIM_STEM: &str = "ddim";

/// The schedule the bundled diffusion model is trained and sampled with.
pub const DDIM_SCHEDULE: VpSchedule = VpSchedule::DDPM;

/// The trained diffusion network `ddim.safetensors` of `assets` (a [`UNet`] predicting v under
/// [`DDIM_SCHEDULE`]; serve it through [`ddim_ode`]).
pub fn load_ddim<B: Backend>(assets: &Assets, device: &B::Device) -> Result<UNet<B>, WeightsError> {
    load_bundled(assets, DDIM_STEM, |c: &UNetConfig| c.init(device))
}

/// A v-predicting UNet as DDIM's ODE under [`DDIM_SCHEDULE`]: the velocity field of the bundled
/// diffusion model.
pub fn ddim_ode<B: Backend>(unet: UNet<B>) -> DiffusionOde<VPredictionUNet<B>> {
    DiffusionOde::new(VPredictionUNet { unet, schedule: DDIM_SCHEDULE }, DDIM_SCHEDULE)
}

/// The trained guidance classifier `classifier.safetensors` of `assets`.
pub fn load_classifier<B: Backend>(assets: &Assets, device: &B::Device) -> Result<Classifier<B>, WeightsError> {
    load_bundled(assets, "classifier", |c: &ClassifierConfig| c.init(device))
}

/// The trained evaluation judge `judge.safetensors` of `assets`.
pub fn load_judge<B: Backend>(assets: &Assets, device: &B::Device) -> Result<Judge<B>, WeightsError> {
    load_bundled(assets, "judge", |c: &JudgeConfig| c.init(device))
}
