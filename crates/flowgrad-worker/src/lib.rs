//! The FlowGrad Fleet worker. Takes one task at a time (prefetch 1) from the tasks queue, resumes
//! it from its checkpoint when one exists, runs one FlowGrad iteration at a time and checkpoints
//! the control state after each (the write overlaps the next iteration), writes the outputs and a
//! put-if-absent result record, and only then acknowledges. On shutdown it stops between
//! iterations and hands the task back (republishes a copy, then acknowledges); any other worker
//! continues it bit for bit.

pub mod metrics;
pub mod settings;
pub mod task;

pub use metrics::WorkerMetrics;
pub use settings::WorkerSettings;
pub use task::Worker;
