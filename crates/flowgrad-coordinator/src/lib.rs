//! The FlowGrad Fleet coordinator. Consumes jobs, validates them (rejected jobs get a status with
//! the reason and are dead-lettered), records each accepted job in storage put-if-absent (so a
//! duplicate submission is a no-op), lists its inputs, publishes one task per image or batch with
//! publisher confirms, and turns the workers' result records into `status.json` and, at the end,
//! `report.json`. All state is rebuilt from storage on start, so it can be killed at any time.

pub mod coordinator;
pub mod metrics;
pub mod settings;
pub mod tracker;

pub use coordinator::Coordinator;
pub use metrics::CoordinatorMetrics;
pub use settings::CoordinatorSettings;
