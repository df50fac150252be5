//! Saving and loading model weights as safetensors, and hashing them for fingerprints.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use sha2::{Digest, Sha256};

/// Errors of [`save`] and [`load`].
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A model's `*.config.json` is missing or malformed.
    #[error("cannot read model config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file is missing, unreadable or not safetensors.
    #[error("cannot {action} weights {path}: {message}")]
    Store {
        /// "save" or "load".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the store reported.
        message: String,
    },
    /// The file does not hold exactly the model's tensors.
    #[error("weights {path} do not match the model: missing {missing:?}, unexpected {unexpected:?}, errors {errors:?}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Model tensors absent from the file.
        missing: Vec<String>,
        /// File tensors the model does not have.
        unexpected: Vec<String>,
        /// Shape or type errors.
        errors: Vec<String>,
    },
}

/// Writes every tensor of `model` to `path` as safetensors (creating parent folders).
pub fn save<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<(), WeightsError> {
    let store_err = |message: String| WeightsError::Store { action: "save", path: path.to_path_buf(), message };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| store_err(e.to_string()))?;
    }
    let mut store = SafetensorsStore::from_file(path).overwrite(true);
    model.save_into(&mut store).map_err(|e| store_err(e.to_string()))
}

/// Loads `path` into `model`: every model tensor must be present with its shape, and no file
/// tensor may be left over, otherwise a [`WeightsError::Mismatch`] names the offending keys.
pub fn load<B: Backend, M: Module<B>>(model: M, path: &Path) -> Result<M, WeightsError> {
    load_from_store(model, SafetensorsStore::from_file(path), path)
}

/// [`load`] from safetensors bytes; `path` names them in errors.
pub(crate) fn load_from_store<B: Backend, M: Module<B>>(
    mut model: M,
    store: SafetensorsStore,
    path: &Path,
) -> Result<M, WeightsError> {
    let mut store = store.allow_partial(true).validate(false);
    let result = model.load_from(&mut store).map_err(|e| WeightsError::Store {
        action: "load",
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if result.missing.is_empty() && result.unused.is_empty() && result.errors.is_empty() {
        return Ok(model);
    }
    Err(WeightsError::Mismatch {
        path: path.to_path_buf(),
        missing: result.missing.into_iter().map(|(p, _)| p).collect(),
        unexpected: result.unused,
        errors: result.errors.iter().map(|e| e.to_string()).collect(),
    })
}

/// SHA-256 (hex, first 16 characters) of every tensor of `model`: paths, shapes and values.
pub fn weights_digest<B: Backend, M: Module<B>>(model: &M) -> String {
    let mut snapshots = model.collect(None, None, false);
    snapshots.sort_by_key(|s| s.full_path());
    let mut hasher = Sha256::new();
    for s in &snapshots {
        hasher.update(s.full_path().as_bytes());
        hasher.update(format!("{:?}", s.shape).as_bytes());
        let data = s.to_data().expect("in-memory tensors can be read");
        hasher.update(data.as_bytes());
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

/// Serialises seeded model construction: backends keep one global RNG.
static SEEDED_INIT: Mutex<()> = Mutex::new(());

/// Seeds the backend RNG with `seed`, builds the model with `build` and draws every lazily
/// initialised parameter at once, in declaration order, under a process-wide lock: the weights
/// depend on the seed alone, not on later or concurrent use of the RNG.
pub(crate) fn seeded_init<B: Backend, M: Module<B>>(device: &B::Device, seed: u64, build: impl FnOnce() -> M) -> M {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    let _guard = SEEDED_INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(device, seed);
    let model = build();
    model.visit(&mut Touch);
    model
}
