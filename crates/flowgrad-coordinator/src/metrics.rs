//! Prometheus metrics of a coordinator.

use prometheus::{IntCounter, IntGauge, Registry};

/// Counters exported on `/metrics`.
#[derive(Clone)]
pub struct CoordinatorMetrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// Jobs accepted.
    pub jobs_accepted: IntCounter,
    /// Jobs rejected as invalid.
    pub jobs_rejected: IntCounter,
    /// Jobs that reached a final state.
    pub jobs_finished: IntCounter,
    /// Task messages published.
    pub tasks_published: IntCounter,
    /// Tasks the broker dead-lettered (delivery limit) and this coordinator recorded as failed.
    pub tasks_dead_lettered: IntCounter,
    /// Jobs being tracked.
    pub active_jobs: IntGauge,
    /// Messages waiting in the tasks queue (the autoscaling signal).
    pub tasks_queue_depth: IntGauge,
}

impl CoordinatorMetrics {
    /// Registers every coordinator metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        Self {
            jobs_accepted: counter("flowgrad_jobs_accepted_total", "Jobs accepted"),
            jobs_rejected: counter("flowgrad_jobs_rejected_total", "Jobs rejected as invalid"),
            jobs_finished: counter("flowgrad_jobs_finished_total", "Jobs that reached a final state"),
            tasks_published: counter("flowgrad_tasks_published_total", "Task messages published"),
            tasks_dead_lettered: counter(
                "flowgrad_tasks_dead_lettered_total",
                "Tasks dead-lettered by the broker and recorded as failed",
            ),
            active_jobs: gauge("flowgrad_active_jobs", "Jobs being tracked"),
            tasks_queue_depth: gauge("flowgrad_tasks_queue_depth", "Messages ready in the tasks queue"),
            registry,
        }
    }
}

impl Default for CoordinatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}
