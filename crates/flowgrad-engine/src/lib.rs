//! The one narrow function the fleet calls: pick a model by name, open an edit session for a
//! guidance target, and step it on host data. Tensors never leave this crate and below.

pub mod direction;
pub mod error;
mod guidance;
pub mod registry;
pub mod session;

pub use direction::{direction_bytes, read_direction};
pub use error::{EngineError, ImageShape};
pub use flowgrad_catalog::{
    BUNDLED_MODEL, ClipSource, DDIM_MODEL, ModelCatalog, NCSNPP_MODEL, NcsnppSource, REFLOW_MODEL,
};
pub use flowgrad_models::Assets;
pub use registry::{BUNDLED_RECORDED_FORWARDS, Model, ModelRegistry};
pub use session::{EditSession, FinishedEdit};
