//! What a fleet serves, as plain data: the names of its models, the guidance each accepts, the
//! checkpoints configured under `[models]`, and the labels that tie a stored direction to the
//! model it was learned on. The coordinator validates jobs with this crate alone (no tensors);
//! the engine loads what it names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flowgrad_jobs::GuidanceSpec;
use flowgrad_params::DirectionHeader;
use serde::Deserialize;

/// Name of the bundled model (built into every binary).
pub const BUNDLED_MODEL: &str = "fashion-mnist";
/// Name of the bundled reflowed (2-rectified) Fashion-MNIST flow: straighter trajectories, so
/// FlowGrad merges more steps (fewer VJPs per iteration); same classifier and judge.
pub const REFLOW_MODEL: &str = "fashion-mnist-reflow";
/// Name of the bundled Fashion-MNIST diffusion model, edited as DDIM's ODE (the paper's second
/// model family); same classifier and judge.
pub const DDIM_MODEL: &str = "fashion-mnist-ddim";
/// Name under which a configured NCSN++ rectified flow is served.
pub const NCSNPP_MODEL: &str = "ncsnpp";

/// Number of classes of the bundled models' classifier.
pub const NUM_CLASSES: usize = 10;
/// The bundled classifier's ten class names (Fashion-MNIST), in label order.
pub const CLASS_NAMES: [&str; NUM_CLASSES] =
    ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];

/// Label of a stored direction naming the model it was learned on.
pub const MODEL_LABEL: &str = "model";

/// Why a job cannot be served as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// No model of that name.
    #[error("unknown model `{name}` (available: {available})")]
    UnknownModel {
        /// Requested name.
        name: String,
        /// Names served.
        available: String,
    },
    /// A class name that is not one of [`CLASS_NAMES`].
    #[error("unknown class {name:?}; valid classes: {}", CLASS_NAMES.join(", "))]
    UnknownClass {
        /// The name asked for.
        name: String,
    },
    /// Class guidance for a model without a classifier.
    #[error("model `{model}` has no classifier for class `{class}`: use text guidance ({{ text = \"…\" }})")]
    NoClassifier {
        /// The model.
        model: String,
        /// The class asked for.
        class: String,
    },
    /// Text guidance on a fleet without a CLIP checkpoint.
    #[error(
        "text guidance needs a CLIP checkpoint, and this fleet has none configured ([models.clip] checkpoint = \"…/clip.safetensors\"; flowgrad run: --clip <file>)"
    )]
    NoClip,
    /// A stored object is not a direction learned on the job's model.
    #[error("unusable direction: {0}")]
    Direction(String),
}

/// Label of a class name, case-insensitively ("Coat" → 4; "tshirt", "t-shirt" and "top" name
/// class 0; "boot" names class 9).
pub fn class_index(name: &str) -> Result<usize, CatalogError> {
    let wanted = name.trim().to_lowercase();
    let alias = match wanted.as_str() {
        "t-shirt" | "tshirt" | "top" | "t-shirt top" => "t-shirt/top",
        "ankle-boot" | "boot" => "ankle boot",
        other => other,
    };
    CLASS_NAMES.iter().position(|c| *c == alias).ok_or_else(|| CatalogError::UnknownClass { name: name.to_string() })
}

/// Optional models (`[models]`): an NCSN++ checkpoint and a CLIP checkpoint for text guidance.
/// The bundled models are always served.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCatalog {
    /// A RectifiedFlow NCSN++ model (`[models.ncsnpp]`), served as model `ncsnpp`.
    #[serde(default)]
    pub ncsnpp: Option<NcsnppSource>,
    /// A CLIP model (`[models.clip]`) enabling `{ text = "..." }` guidance for every model.
    #[serde(default)]
    pub clip: Option<ClipSource>,
}

/// Where an NCSN++ model's weights and configuration are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NcsnppSource {
    /// A RectifiedFlow training checkpoint (`.pth`) or a safetensors state dict.
    pub checkpoint: PathBuf,
    /// The original config dumped as JSON (default: the CelebA-HQ 256² config).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// `ema` (default) or `model` weights of a training checkpoint.
    #[serde(default = "ema")]
    pub weights: String,
}

fn ema() -> String {
    "ema".into()
}

/// Where a CLIP model's weights are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipSource {
    /// OpenAI or Hugging Face `CLIPModel` safetensors.
    pub checkpoint: PathBuf,
    /// A config JSON with the constructor arguments (default: inferred from the tensor shapes,
    /// right for every OpenAI ViT model).
    #[serde(default)]
    pub config: Option<PathBuf>,
}

impl ModelCatalog {
    /// The names of the models served: the bundled three, and `ncsnpp` when configured.
    pub fn served(&self) -> Vec<&'static str> {
        let mut names = vec![BUNDLED_MODEL, REFLOW_MODEL, DDIM_MODEL];
        if self.ncsnpp.is_some() {
            names.push(NCSNPP_MODEL);
        }
        names
    }

    /// Checks that `model` is served and `guidance` fits it, without loading anything.
    pub fn validate(&self, model: &str, guidance: &GuidanceSpec) -> Result<(), CatalogError> {
        let served = self.served();
        if !served.contains(&model) {
            return Err(CatalogError::UnknownModel { name: model.into(), available: served.join(", ") });
        }
        match guidance {
            GuidanceSpec::Class(class) if model != NCSNPP_MODEL => class_index(class).map(|_| ()),
            GuidanceSpec::Class(class) => Err(CatalogError::NoClassifier { model: model.into(), class: class.clone() }),
            GuidanceSpec::Text(_) if self.clip.is_none() => Err(CatalogError::NoClip),
            GuidanceSpec::Text(_) => Ok(()),
        }
    }
}

/// The labels a direction learned on `model` towards `guidance` is stored with: the model (which
/// [`check_direction`] reads back), the guidance, who learned it and on how many images.
pub fn direction_labels(
    model: &str,
    guidance: &GuidanceSpec,
    learned_by: &str,
    images: usize,
) -> BTreeMap<String, String> {
    let guidance = serde_json::to_string(guidance).expect("a guidance spec serialises");
    BTreeMap::from([
        (MODEL_LABEL.to_string(), model.to_string()),
        ("guidance".to_string(), guidance),
        ("learned_by".to_string(), learned_by.to_string()),
        ("images".to_string(), images.to_string()),
    ])
}

/// Reads a stored direction's header and checks it was learned on `model`: a clear error when the
/// object is not a direction, or names another model or none.
pub fn check_direction(bytes: &[u8], model: &str) -> Result<DirectionHeader, CatalogError> {
    let header = DirectionHeader::read(bytes).map_err(CatalogError::Direction)?;
    match header.labels.get(MODEL_LABEL) {
        Some(learned_on) if learned_on == model => Ok(header),
        Some(learned_on) => {
            Err(CatalogError::Direction(format!("it was learned on model `{learned_on}`, not `{model}`")))
        }
        None => Err(CatalogError::Direction(format!(
            "it does not name the model it was learned on (label `{MODEL_LABEL}`)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgrad_params::EditParams;

    fn text(prompt: &str) -> GuidanceSpec {
        GuidanceSpec::Text(prompt.into())
    }

    fn class(name: &str) -> GuidanceSpec {
        GuidanceSpec::Class(name.into())
    }

    #[test]
    fn class_names_and_aliases_resolve() {
        assert_eq!(class_index("Coat").unwrap(), 4);
        assert_eq!(class_index(" Ankle Boot ").unwrap(), 9);
        assert_eq!(class_index("T-shirt/Top").unwrap(), 0);
        assert_eq!(class_index(" tshirt ").unwrap(), 0);
        assert_eq!(class_index("boot").unwrap(), 9);
        assert_eq!(class_index("sneaker").unwrap(), 7);
        let err = class_index("hat").unwrap_err();
        assert!(matches!(err, CatalogError::UnknownClass { .. }));
        let msg = err.to_string();
        assert!(msg.contains("\"hat\"") && msg.contains("ankle boot") && msg.contains("t-shirt/top"), "{msg}");
    }

    #[test]
    fn validation_names_what_is_missing() {
        let bare = ModelCatalog::default();
        bare.validate(BUNDLED_MODEL, &class("coat")).unwrap();
        bare.validate(REFLOW_MODEL, &class("sneaker")).unwrap();
        assert!(
            matches!(bare.validate(NCSNPP_MODEL, &text("old")), Err(CatalogError::UnknownModel { .. })),
            "ncsnpp is served only when configured"
        );
        assert!(matches!(bare.validate(BUNDLED_MODEL, &class("spaceship")), Err(CatalogError::UnknownClass { .. })));
        let no_clip = bare.validate(BUNDLED_MODEL, &text("a coat")).unwrap_err().to_string();
        assert!(no_clip.contains("[models.clip]"), "{no_clip}");
        let full = ModelCatalog {
            ncsnpp: Some(NcsnppSource { checkpoint: "n.pth".into(), config: None, weights: ema() }),
            clip: Some(ClipSource { checkpoint: "c.safetensors".into(), config: None }),
        };
        full.validate(NCSNPP_MODEL, &text("a smiling face")).unwrap();
        full.validate(BUNDLED_MODEL, &text("a long coat")).unwrap();
        let class_on_ncsnpp = full.validate(NCSNPP_MODEL, &class("coat")).unwrap_err().to_string();
        assert!(class_on_ncsnpp.contains("no classifier"), "{class_on_ncsnpp}");
    }

    #[test]
    fn the_models_section_parses_with_defaults() {
        let catalog: ModelCatalog = serde_json::from_str(r#"{"ncsnpp": {"checkpoint": "/m/celeba.pth"}}"#).unwrap();
        assert_eq!(catalog.ncsnpp.as_ref().unwrap().weights, "ema");
        assert!(catalog.clip.is_none());
        assert!(serde_json::from_str::<ModelCatalog>(r#"{"ddpm": {}}"#).is_err(), "unknown models are refused");
    }

    fn stored(labels: BTreeMap<String, String>) -> Vec<u8> {
        let header = DirectionHeader::new(EditParams::default(), labels);
        let values = [0u8; 16];
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &values).unwrap();
        safetensors::serialize([("controls", view)], Some(header.metadata())).unwrap()
    }

    #[test]
    fn a_direction_is_checked_against_the_model_it_names() {
        let labels = direction_labels("m", &class("coat"), "job-1", 4);
        assert_eq!(check_direction(&stored(labels.clone()), "m").unwrap().labels, labels);
        let err = check_direction(&stored(labels), "other").unwrap_err().to_string();
        assert!(err.contains("learned on model `m`"), "{err}");
        let err = check_direction(&stored(BTreeMap::new()), "m").unwrap_err().to_string();
        assert!(err.contains("does not name the model"), "{err}");
        let err = check_direction(b"\x89PNG not a direction", "m").unwrap_err().to_string();
        assert!(err.contains("unusable direction"), "{err}");
    }
}
