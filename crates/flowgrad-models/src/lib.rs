//! Networks for FlowGrad: velocity fields (the generative ODEs) and guidance models, with their
//! weight loading. Everything here is generic over burn backends.

pub mod assets;
pub mod bundled;
pub mod class_views;
pub mod classifier;
pub mod clip;
pub mod conv;
pub mod fashion;
pub mod ncsnpp;
pub mod time_embedding;
pub mod unet;
pub mod weights;

pub use assets::Assets;
pub use bundled::{
    DDIM_SCHEDULE, DDIM_STEM, REFLOW_STEM, ddim_ode, load_classifier, load_ddim, load_flow, load_judge, load_reflow,
};
pub use class_views::ClassViews;
pub use classifier::{
    ClassGuidance, Classifier, ClassifierConfig, ImageClassifier, Judge, JudgeConfig, cross_entropy, top_classes,
};
pub use conv::{ConvField, ConvFieldConfig};
pub use fashion::{CLASS_NAMES, FashionError, FashionMnist, NUM_CLASSES, Split, class_index};
pub use ncsnpp::{Ncsnpp, NcsnppConfig, NcsnppError, WeightsChoice, load_ncsnpp};
pub use unet::{UNet, UNetConfig, VPredictionUNet};
pub use weights::{WeightsError, load, save, weights_digest};
