//! Models by name: the bundled Fashion-MNIST models — the rectified flow, its reflowed variant and
//! the diffusion model (DDIM), each with the guidance classifier and independent judge — and, when
//! configured, an NCSN++ checkpoint; CLIP text guidance for any of them when a CLIP checkpoint is
//! configured. Loaded once, frozen, shared by every session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::module::Module;
use flowgrad::diffusion::DiffusionOde;
use flowgrad::{DifferentiableField, EditParams};
use flowgrad_catalog::{
    BUNDLED_MODEL, CLASS_NAMES, CatalogError, ClipSource, DDIM_MODEL, ModelCatalog, NCSNPP_MODEL, NcsnppSource,
    REFLOW_MODEL, class_index,
};
use flowgrad_jobs::GuidanceSpec;
use flowgrad_models::classifier::ImageClassifier;
use flowgrad_models::clip::{ClipConfig, ClipModel, Tokenizer};
use flowgrad_models::ncsnpp::{NcsnppConfig, WeightsChoice, load_ncsnpp};
use flowgrad_models::{Assets, ClassGuidance, Classifier, Judge, UNet, VPredictionUNet, top_classes};

use crate::error::{EngineError, ImageShape};
use crate::guidance::{AnyGuidance, TextGuidance};
use crate::session::{EditSession, Session};
use flowgrad_backend::{Backend, device};

/// A generative model and the scorers of its edits.
pub trait Model: Send + Sync {
    /// Registry name.
    fn name(&self) -> &str;
    /// Image shape the model works at.
    fn image_shape(&self) -> ImageShape;
    /// Class names its guidance classifier understands (empty without one).
    fn classes(&self) -> &[&'static str];
    /// Whether inputs smaller than [`Model::image_shape`] are centred on black (as the model's
    /// training images were padded) rather than stretched; their edits are cropped back.
    fn pads_small_inputs(&self) -> bool {
        false
    }
    /// Opens an edit session towards `guidance` with `params` (checks both).
    fn session(&self, guidance: &GuidanceSpec, params: &EditParams) -> Result<Box<dyn EditSession>, EngineError>;
    /// Per-image score of the guidance target: the guidance classifier's probability of the
    /// class, or CLIP's cosine to the prompt.
    fn guidance_scores(&self, guidance: &GuidanceSpec, images: &[f32], batch: usize) -> Result<Vec<f32>, EngineError>;
    /// Per-image probability of a class target under an independent judge (evaluation only);
    /// `None` when the model has no judge for this guidance.
    fn judge_scores(
        &self,
        guidance: &GuidanceSpec,
        images: &[f32],
        batch: usize,
    ) -> Result<Option<Vec<f32>>, EngineError>;
    /// Per-image top-1 class name under the independent judge; `None` for models without one.
    fn judge_classes(&self, _images: &[f32], _batch: usize) -> Result<Option<Vec<&'static str>>, EngineError> {
        Ok(None)
    }
}

/// Encoded prompts a CLIP model keeps (a fleet's jobs use few); the cache is emptied when full.
const CACHED_PROMPTS: usize = 64;

/// A loaded CLIP model with its tokenizer and the prompts it encoded (shared by its clones).
#[derive(Clone)]
struct Clip {
    model: ClipModel<Backend>,
    tokenizer: Arc<Tokenizer>,
    prompts: Arc<Mutex<HashMap<String, TextGuidance>>>,
}

impl Clip {
    /// The guidance towards `prompt`, encoded once per prompt (sessions and scores share it).
    fn guidance(clip: Option<&Clip>, prompt: &str) -> Result<TextGuidance, EngineError> {
        let clip = clip.ok_or(CatalogError::NoClip)?;
        let mut prompts = clip.prompts.lock().expect("prompt cache lock");
        if let Some(guidance) = prompts.get(prompt) {
            return Ok(guidance.clone());
        }
        let guidance = TextGuidance::new(&clip.model, &clip.tokenizer, prompt)?;
        if prompts.len() >= CACHED_PROMPTS {
            prompts.clear();
        }
        prompts.insert(prompt.to_string(), guidance.clone());
        Ok(guidance)
    }

    fn scores(
        clip: Option<&Clip>,
        prompt: &str,
        shape: ImageShape,
        images: &[f32],
        batch: usize,
    ) -> Result<Vec<f32>, EngineError> {
        let guidance = Self::guidance(clip, prompt)?;
        let x = shape.batch_tensor(images, batch, &device())?;
        Ok(flowgrad::tensor_util::to_vec(guidance.cosine(x).inner()))
    }
}

/// The bundled Fashion-MNIST models: one of the three generative ODEs, with the classifier and judge.
struct FashionModels<F> {
    /// [`BUNDLED_MODEL`], [`REFLOW_MODEL`] or [`DDIM_MODEL`].
    name: &'static str,
    /// The flow's UNet, or DDIM's ODE of the v-predicting UNet.
    flow: F,
    classifier: Classifier<Backend>,
    judge: Judge<Backend>,
    clip: Option<Clip>,
    /// Forwards an edit's simulation may hold for its VJPs.
    recorded_forwards: usize,
}

fn class_probabilities<C: ImageClassifier<Backend>>(
    classifier: &C,
    shape: ImageShape,
    images: &[f32],
    batch: usize,
    target: usize,
) -> Result<Vec<f32>, EngineError> {
    let x = shape.batch_tensor(images, batch, &device())?;
    let probs = flowgrad::tensor_util::to_vec(classifier.probabilities(x).inner());
    Ok(probs.chunks(CLASS_NAMES.len()).map(|p| p[target]).collect())
}

fn class_target(class: &str) -> Result<usize, EngineError> {
    Ok(class_index(class)?)
}

impl<F> FashionModels<F> {
    fn guidance(&self, guidance: &GuidanceSpec) -> Result<AnyGuidance, EngineError> {
        Ok(match guidance {
            GuidanceSpec::Class(class) => {
                AnyGuidance::Class(ClassGuidance::new::<Backend>(self.classifier.clone(), class_target(class)?))
            }
            GuidanceSpec::Text(prompt) => AnyGuidance::Text(Clip::guidance(self.clip.as_ref(), prompt)?),
        })
    }
}

impl<F> Model for FashionModels<F>
where
    F: DifferentiableField<Backend> + Clone + Send + Sync + 'static,
    F::Values: Send + Sync + 'static,
{
    fn name(&self) -> &str {
        self.name
    }

    fn image_shape(&self) -> ImageShape {
        ImageShape { channels: 1, height: flowgrad_models::fashion::SIDE, width: flowgrad_models::fashion::SIDE }
    }

    fn pads_small_inputs(&self) -> bool {
        // Fashion-MNIST's 28×28 images are padded to 32×32 for training
        true
    }

    fn classes(&self) -> &[&'static str] {
        &CLASS_NAMES
    }

    fn session(&self, guidance: &GuidanceSpec, params: &EditParams) -> Result<Box<dyn EditSession>, EngineError> {
        let editor = flowgrad::Editor::new(self.flow.clone(), self.guidance(guidance)?, params.clone(), device())?
            .with_recorded_forwards(self.recorded_forwards);
        Ok(Box::new(Session { editor, shape: self.image_shape() }))
    }

    fn guidance_scores(&self, guidance: &GuidanceSpec, images: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        match guidance {
            GuidanceSpec::Class(class) => {
                class_probabilities(&self.classifier, self.image_shape(), images, batch, class_target(class)?)
            }
            GuidanceSpec::Text(prompt) => Clip::scores(self.clip.as_ref(), prompt, self.image_shape(), images, batch),
        }
    }

    fn judge_scores(
        &self,
        guidance: &GuidanceSpec,
        images: &[f32],
        batch: usize,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        match guidance {
            GuidanceSpec::Class(class) => {
                class_probabilities(&self.judge, self.image_shape(), images, batch, class_target(class)?).map(Some)
            }
            GuidanceSpec::Text(_) => Ok(None),
        }
    }

    fn judge_classes(&self, images: &[f32], batch: usize) -> Result<Option<Vec<&'static str>>, EngineError> {
        let x = self.image_shape().batch_tensor(images, batch, &device())?;
        let probs = flowgrad::tensor_util::to_vec(self.judge.probabilities(x).inner());
        Ok(Some(top_classes(&probs).into_iter().map(|c| CLASS_NAMES[c]).collect()))
    }
}

/// A configured NCSN++ rectified flow; text guidance only (it has no classifier).
struct NcsnppModel {
    flow: flowgrad_models::ncsnpp::Ncsnpp<Backend>,
    shape: ImageShape,
    clip: Option<Clip>,
    /// Forwards an edit's simulation may hold for its VJPs.
    recorded_forwards: usize,
}

impl Model for NcsnppModel {
    fn name(&self) -> &str {
        NCSNPP_MODEL
    }

    fn image_shape(&self) -> ImageShape {
        self.shape
    }

    fn classes(&self) -> &[&'static str] {
        &[]
    }

    fn session(&self, guidance: &GuidanceSpec, params: &EditParams) -> Result<Box<dyn EditSession>, EngineError> {
        let guidance = match guidance {
            GuidanceSpec::Class(class) => return Err(no_classifier(class)),
            GuidanceSpec::Text(prompt) => AnyGuidance::Text(Clip::guidance(self.clip.as_ref(), prompt)?),
        };
        let editor = flowgrad::Editor::new(self.flow.clone(), guidance, params.clone(), device())?
            .with_recorded_forwards(self.recorded_forwards);
        Ok(Box::new(Session { editor, shape: self.shape }))
    }

    fn guidance_scores(&self, guidance: &GuidanceSpec, images: &[f32], batch: usize) -> Result<Vec<f32>, EngineError> {
        match guidance {
            GuidanceSpec::Class(class) => Err(no_classifier(class)),
            GuidanceSpec::Text(prompt) => Clip::scores(self.clip.as_ref(), prompt, self.shape, images, batch),
        }
    }

    fn judge_scores(
        &self,
        _guidance: &GuidanceSpec,
        _images: &[f32],
        _batch: usize,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        Ok(None)
    }
}

fn no_classifier(class: &str) -> EngineError {
    CatalogError::NoClassifier { model: NCSNPP_MODEL.into(), class: class.into() }.into()
}

/// Forwards an edit with a bundled model (1×32×32 UNet) holds by default for its VJPs (one
/// forward's activations each): none. Recording runs most of the simulation's forwards under
/// autodiff (a VJP anchored at a segment's middle is known only once the segment closes) and
/// frees the unused ones, which costs more than the forwards the VJPs save: real edits took 8–14 %
/// longer with 16 held (BENCHMARKS.md, Table 1).
pub const BUNDLED_RECORDED_FORWARDS: usize = 0;

/// Loads models by name, once, and shares them.
pub struct ModelRegistry {
    assets: Assets,
    catalog: ModelCatalog,
    loaded: Mutex<HashMap<String, Arc<dyn Model>>>,
    clip: Mutex<Option<Clip>>,
    recorded_forwards: Option<usize>,
}

impl ModelRegistry {
    /// A registry serving the bundled models from `assets` and nothing else.
    pub fn new(assets: Assets) -> Self {
        Self::with_catalog(assets, ModelCatalog::default())
    }

    /// A registry serving the bundled models from `assets` and the models of `catalog`.
    pub fn with_catalog(assets: Assets, catalog: ModelCatalog) -> Self {
        Self { assets, catalog, loaded: Mutex::new(HashMap::new()), clip: Mutex::new(None), recorded_forwards: None }
    }

    /// The optional models this registry serves besides the bundled ones.
    pub fn catalog(&self) -> &ModelCatalog {
        &self.catalog
    }

    /// Lets each edit of the models loaded from now on hold at most `capacity` forward passes of
    /// its simulation for its VJPs to reuse (see [`flowgrad::Editor::with_recorded_forwards`]);
    /// `None`: each model's default, [`BUNDLED_RECORDED_FORWARDS`] for the bundled models and 0
    /// for NCSN++ (a 256² forward's activations take gigabytes).
    pub fn with_recorded_forwards(mut self, capacity: Option<usize>) -> Self {
        self.recorded_forwards = capacity;
        self
    }

    /// Names this registry can load: the catalog's, less the reflowed and the diffusion model
    /// when an assets folder lacks their weights.
    pub fn available(&self) -> Vec<&'static str> {
        let has = |stem: &str| self.assets.has(&format!("{stem}.safetensors"));
        self.catalog
            .served()
            .into_iter()
            .filter(|name| match *name {
                REFLOW_MODEL => has(flowgrad_models::REFLOW_STEM),
                DDIM_MODEL => has(flowgrad_models::DDIM_STEM),
                _ => true,
            })
            .collect()
    }

    /// Checks that `name` is a served model and `guidance` fits it, without loading weights.
    pub fn validate(&self, name: &str, guidance: &GuidanceSpec) -> Result<(), EngineError> {
        let available = self.available();
        if !available.contains(&name) {
            return Err(CatalogError::UnknownModel { name: name.into(), available: available.join(", ") }.into());
        }
        Ok(self.catalog.validate(name, guidance)?)
    }

    /// The model `name`, loading it on first use.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Model>, EngineError> {
        let mut loaded = self.loaded.lock().expect("registry lock");
        if let Some(model) = loaded.get(name) {
            return Ok(model.clone());
        }
        let model: Arc<dyn Model> = match (name, &self.catalog.ncsnpp) {
            (BUNDLED_MODEL, _) => Arc::new(self.load_fashion(BUNDLED_MODEL)?),
            (REFLOW_MODEL, _) if self.available().contains(&REFLOW_MODEL) => Arc::new(self.load_fashion(REFLOW_MODEL)?),
            (DDIM_MODEL, _) if self.available().contains(&DDIM_MODEL) => Arc::new(self.load_ddim()?),
            (NCSNPP_MODEL, Some(source)) => Arc::new(self.load_ncsnpp(source)?),
            _ => {
                return Err(
                    CatalogError::UnknownModel { name: name.into(), available: self.available().join(", ") }.into()
                );
            }
        };
        tracing::info!(model = name, "model loaded");
        loaded.insert(name.into(), model.clone());
        Ok(model)
    }

    /// The configured CLIP model, loaded (frozen) on first use.
    fn clip(&self) -> Result<Option<Clip>, EngineError> {
        let Some(source) = &self.catalog.clip else { return Ok(None) };
        let mut slot = self.clip.lock().expect("clip lock");
        if slot.is_none() {
            *slot = Some(load_clip(source)?);
        }
        Ok(slot.clone())
    }

    /// The bundled classifier and judge with the 1-rectified (`BUNDLED_MODEL`) or reflowed
    /// (`REFLOW_MODEL`) flow.
    fn load_fashion(&self, name: &'static str) -> Result<FashionModels<UNet<Backend>>, EngineError> {
        let device = device();
        let flow = if name == REFLOW_MODEL {
            flowgrad_models::load_reflow(&self.assets, &device)
        } else {
            flowgrad_models::load_flow(&self.assets, &device)
        };
        let flow = flow.map_err(|e| load_error(name, &self.assets, e))?.no_grad();
        self.with_fashion_models(name, flow)
    }

    /// The bundled classifier and judge with the diffusion model (`DDIM_MODEL`) as DDIM's ODE.
    fn load_ddim(&self) -> Result<FashionModels<DiffusionOde<VPredictionUNet<Backend>>>, EngineError> {
        let unet = flowgrad_models::load_ddim(&self.assets, &device())
            .map_err(|e| load_error(DDIM_MODEL, &self.assets, e))?
            .no_grad();
        self.with_fashion_models(DDIM_MODEL, flowgrad_models::ddim_ode(unet))
    }

    /// `flow` (frozen) with the bundled classifier and judge, served as `name`.
    fn with_fashion_models<F>(&self, name: &'static str, flow: F) -> Result<FashionModels<F>, EngineError> {
        let err = |e: flowgrad_models::WeightsError| load_error(name, &self.assets, e);
        let device = device();
        // Frozen: parameters are constants, so a VJP computes input gradients only, and
        // concurrent edits never share autodiff graph nodes (burn-autodiff 0.21 merges graphs
        // that share tracked parents across threads, and can deadlock doing so).
        Ok(FashionModels {
            name,
            flow,
            classifier: flowgrad_models::load_classifier(&self.assets, &device).map_err(err)?.no_grad(),
            judge: flowgrad_models::load_judge(&self.assets, &device).map_err(err)?.no_grad(),
            clip: self.clip()?,
            recorded_forwards: self.recorded_forwards.unwrap_or(BUNDLED_RECORDED_FORWARDS),
        })
    }

    fn load_ncsnpp(&self, source: &NcsnppSource) -> Result<NcsnppModel, EngineError> {
        let err = |e: &dyn std::fmt::Display| load_error(NCSNPP_MODEL, &source.checkpoint.display(), e);
        let config = match &source.config {
            Some(path) => NcsnppConfig::from_json_file(path).map_err(|e| err(&e))?,
            None => NcsnppConfig::celeba_hq_256(),
        };
        let choice: WeightsChoice = source.weights.parse().map_err(|e: String| err(&e))?;
        let flow = load_ncsnpp::<Backend>(&source.checkpoint, &config, choice, &device()).map_err(|e| err(&e))?; // NCSN++ weights are built as constants
        let side = config.image_size;
        Ok(NcsnppModel {
            flow,
            shape: ImageShape { channels: config.channels, height: side, width: side },
            clip: self.clip()?,
            recorded_forwards: self.recorded_forwards.unwrap_or(0),
        })
    }
}

fn load_error(name: &str, source: &dyn std::fmt::Display, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Load { name: name.into(), dir: source.to_string(), reason: reason.to_string() }
}

fn load_clip(source: &ClipSource) -> Result<Clip, EngineError> {
    let err = |e: &dyn std::fmt::Display| load_error("clip", &source.checkpoint.display(), e);
    let device = device();
    let model = match &source.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(&e))?;
            // the constructor arguments, alone or as the `model` block of a fixture config
            let arguments = value.get("model").filter(|m| m.is_object()).unwrap_or(&value);
            let config = ClipConfig::from_json(arguments).map_err(|e| err(&e))?;
            ClipModel::<Backend>::load(&source.checkpoint, &config, &device).map_err(|e| err(&e))?
        }
        None => ClipModel::<Backend>::load_inferred(&source.checkpoint, &device).map_err(|e| err(&e))?,
    };
    tracing::info!(checkpoint = %source.checkpoint.display(), "CLIP loaded");
    Ok(Clip { model, tokenizer: Arc::new(Tokenizer::default()), prompts: Arc::default() })
}
