//! Models by name. Today: the bundled Fashion-MNIST rectified flow with its guidance classifier
//! and independent judge, loaded once from `assets/` and shared by every session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::tensor::Tensor;
use flowgrad::EditParams;
use flowgrad_jobs::GuidanceSpec;
use flowgrad_models::classifier::ImageClassifier;
use flowgrad_models::{CLASS_NAMES, ClassGuidance, Classifier, Judge, UNet, class_index};

use crate::backend::{Backend, device};
use crate::session::{EditSession, Session};

/// Name of the bundled model.
pub const BUNDLED_MODEL: &str = "fashion-mnist";

/// Errors of model loading and editing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No model of that name.
    #[error("unknown model `{name}` (available: {available})")]
    UnknownModel {
        /// Requested name.
        name: String,
        /// Names the registry knows.
        available: String,
    },
    /// Weights could not be loaded.
    #[error("cannot load model `{name}` from {dir}: {reason}")]
    Load {
        /// Model name.
        name: String,
        /// Folder searched.
        dir: String,
        /// Underlying error.
        reason: String,
    },
    /// The guidance does not fit the model (e.g. unknown class).
    #[error("guidance: {0}")]
    Guidance(String),
    /// Input buffers of the wrong size.
    #[error("expected {expected} values for {batch} image(s) of {shape:?}, got {actual}")]
    Shape {
        /// Per-image shape.
        shape: ImageShape,
        /// Batch size.
        batch: usize,
        /// Values needed.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// The algorithm refused (bad parameters, fingerprint mismatch, non-finite loss...).
    #[error(transparent)]
    FlowGrad(#[from] flowgrad::FlowGradError),
}

/// Channels and size of a model's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Channels (1 gray, 3 RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// True for a zero-sized shape.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn batch_tensor(&self, values: &[f32], batch: usize, device: &burn::tensor::Device<Backend>) -> Result<Tensor<Backend, 4>, EngineError> {
        let expected = batch * self.len();
        if values.len() != expected || batch == 0 {
            return Err(EngineError::Shape { shape: *self, batch, expected, actual: values.len() });
        }
        Ok(flowgrad::tensor_util::from_vec(values.to_vec(), [batch, self.channels, self.height, self.width], device))
    }
}

/// A generative model with the classifiers that guide and judge its edits.
pub trait Model: Send + Sync {
    /// Registry name.
    fn name(&self) -> &str;
    /// Image shape the model works at.
    fn image_shape(&self) -> ImageShape;
    /// Class names the guidance understands.
    fn classes(&self) -> &[&'static str];
    /// Opens an edit session towards `guidance` with `params` (checks both).
    fn session(&self, guidance: &GuidanceSpec, params: &EditParams) -> Result<Box<dyn EditSession>, EngineError>;
    /// Per-image class probabilities `[batch][classes]` of the guidance classifier.
    fn guidance_probabilities(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, EngineError>;
    /// Per-image class probabilities of the independent judge (evaluation only).
    fn judge_probabilities(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, EngineError>;
    /// Index of a guidance target, or a clear error listing the valid ones.
    fn target_index(&self, guidance: &GuidanceSpec) -> Result<usize, EngineError>;
}

/// The bundled Fashion-MNIST models.
struct FashionModels {
    flow: UNet<Backend>,
    classifier: Classifier<Backend>,
    judge: Judge<Backend>,
}

fn probabilities<C: ImageClassifier<Backend>>(classifier: &C, shape: ImageShape, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, EngineError> {
    let x = shape.batch_tensor(images, batch, &device())?;
    let probs = flowgrad::tensor_util::to_vec(classifier.probabilities(x).inner());
    Ok(probs.chunks(CLASS_NAMES.len()).map(<[f32]>::to_vec).collect())
}

impl Model for FashionModels {
    fn name(&self) -> &str {
        BUNDLED_MODEL
    }

    fn image_shape(&self) -> ImageShape {
        ImageShape { channels: 1, height: flowgrad_models::fashion::SIDE, width: flowgrad_models::fashion::SIDE }
    }

    fn classes(&self) -> &[&'static str] {
        &CLASS_NAMES
    }

    fn target_index(&self, guidance: &GuidanceSpec) -> Result<usize, EngineError> {
        let GuidanceSpec::Class(name) = guidance;
        class_index(name).map_err(|e| EngineError::Guidance(e.to_string()))
    }


    fn session(&self, guidance: &GuidanceSpec, params: &EditParams) -> Result<Box<dyn EditSession>, EngineError> {
        let target = self.target_index(guidance)?;
        let guidance = ClassGuidance::new::<Backend>(self.classifier.clone(), target);
        let editor = flowgrad::Editor::new(self.flow.clone(), guidance, params.clone(), device())?;
        Ok(Box::new(Session { editor, shape: self.image_shape() }))
    }

    fn guidance_probabilities(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        probabilities(&self.classifier, self.image_shape(), images, batch)
    }

    fn judge_probabilities(&self, images: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        probabilities(&self.judge, self.image_shape(), images, batch)
    }
}

/// Loads models by name from an assets folder, once, and shares them.
pub struct ModelRegistry {
    assets: PathBuf,
    loaded: Mutex<HashMap<String, Arc<dyn Model>>>,
}

impl ModelRegistry {
    /// A registry reading weights from `assets` (the repository's `assets/` folder by default).
    pub fn new(assets: impl Into<PathBuf>) -> Self {
        Self { assets: assets.into(), loaded: Mutex::new(HashMap::new()) }
    }

    /// The assets folder shipped with this source tree.
    pub fn bundled_assets() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets")
    }

    /// Names this registry can load.
    pub fn available(&self) -> Vec<&'static str> {
        vec![BUNDLED_MODEL]
    }

    /// Checks that `name` is a known model and `guidance` one of its targets, without loading
    /// weights (the coordinator validates jobs with this).
    pub fn validate(&self, name: &str, guidance: &GuidanceSpec) -> Result<(), EngineError> {
        match name {
            BUNDLED_MODEL => {
                let GuidanceSpec::Class(class) = guidance;
                class_index(class).map(|_| ()).map_err(|e| EngineError::Guidance(e.to_string()))
            }
            _ => Err(EngineError::UnknownModel { name: name.into(), available: self.available().join(", ") }),
        }
    }

    /// The model `name`, loading it on first use.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Model>, EngineError> {
        let mut loaded = self.loaded.lock().expect("registry lock");
        if let Some(model) = loaded.get(name) {
            return Ok(model.clone());
        }
        let model: Arc<dyn Model> = match name {
            BUNDLED_MODEL => Arc::new(self.load_fashion()?),
            _ => return Err(EngineError::UnknownModel { name: name.into(), available: self.available().join(", ") }),
        };
        tracing::info!(model = name, assets = %self.assets.display(), "model loaded");
        loaded.insert(name.into(), model.clone());
        Ok(model)
    }

    fn load_fashion(&self) -> Result<FashionModels, EngineError> {
        let err = |e: flowgrad_models::WeightsError| EngineError::Load {
            name: BUNDLED_MODEL.into(),
            dir: self.assets.display().to_string(),
            reason: e.to_string(),
        };
        let device = device();
        // Frozen: parameters are constants, so a VJP computes input gradients only, and
        // concurrent edits never share autodiff graph nodes (burn-autodiff 0.21 merges graphs
        // that share tracked parents across threads, and can deadlock doing so).
        Ok(FashionModels {
            flow: flowgrad_models::load_flow(&self.assets, &device).map_err(err)?.no_grad(),
            classifier: flowgrad_models::load_classifier(&self.assets, &device).map_err(err)?.no_grad(),
            judge: flowgrad_models::load_judge(&self.assets, &device).map_err(err)?.no_grad(),
        })
    }
}
