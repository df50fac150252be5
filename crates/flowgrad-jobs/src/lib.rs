//! The schema FlowGrad Fleet speaks on the queues and stores in object storage. Every document
//! carries `schema` (= [`SCHEMA_VERSION`]); unknown fields are rejected so typos fail loudly.

pub mod job;
pub mod keys;
pub mod status;
pub mod task;

pub use job::{DEFAULT_BATCH_SIZE, DirectionSpec, GuidanceSpec, InputSpec, JobSpec, ValidationError};
pub use status::{Cancellation, JobReport, JobState, JobStatus, Lease};
pub use task::{
    Failure, ImageResult, TaskEvent, TaskEventKind, TaskInput, TaskOutcome, TaskResult, TaskSpec, crash_limit_reason,
};

/// Version of every document in this crate.
pub const SCHEMA_VERSION: u32 = 1;

/// Parses a JSON document, naming the document kind in the error.
pub fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ValidationError> {
    serde_json::from_slice(bytes).map_err(|e| ValidationError::Malformed { what, reason: e.to_string() })
}

/// Seconds since the Unix epoch, for timestamps in documents.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Serialises a document as pretty JSON bytes.
pub fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("schema types serialise")
}
