//! The one narrow function the fleet calls: pick a model by name, open an edit session for a
//! guidance target, and step it on host data. Tensors never leave this crate and below.

pub mod backend;
pub mod registry;
pub mod session;

pub use registry::{EngineError, ImageShape, Model, ModelRegistry, BUNDLED_MODEL};
pub use session::{EditSession, FinishedEdit};
