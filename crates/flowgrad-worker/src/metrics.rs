//! Prometheus metrics of a worker.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Counters and timings exported on `/metrics`.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// Tasks finished with outputs written.
    pub tasks_done: IntCounter,
    /// Tasks given up (failed result written).
    pub tasks_failed: IntCounter,
    /// Transient failures requeued for another attempt.
    pub tasks_retried: IntCounter,
    /// Tasks that continued from a checkpoint.
    pub tasks_resumed: IntCounter,
    /// Tasks checkpointed and handed back to the queue on shutdown.
    pub tasks_requeued: IntCounter,
    /// Tasks stopped because their job was cancelled.
    pub tasks_cancelled: IntCounter,
    /// Duplicate copies of a task stopped because another worker recorded its result first.
    pub tasks_superseded: IntCounter,
    /// Seconds per FlowGrad iteration.
    pub iteration_seconds: Histogram,
    /// Seconds per checkpoint write.
    pub checkpoint_seconds: Histogram,
    /// Bytes of the last checkpoint written.
    pub checkpoint_bytes: IntGauge,
    /// Seconds between a task's publication and its start (queue lag).
    pub queue_lag_seconds: Histogram,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    registry.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl WorkerMetrics {
    /// Registers every worker metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let seconds = prometheus::exponential_buckets(0.001, 2.5, 16).expect("buckets");
        let checkpoint_bytes =
            IntGauge::new("flowgrad_checkpoint_bytes", "Size of the last checkpoint written").expect("valid metric");
        registry.register(Box::new(checkpoint_bytes.clone())).expect("unique metric");
        Self {
            tasks_done: counter(&registry, "flowgrad_tasks_done_total", "Tasks finished with outputs written"),
            tasks_failed: counter(&registry, "flowgrad_tasks_failed_total", "Tasks given up with a failed result"),
            tasks_retried: counter(&registry, "flowgrad_tasks_retried_total", "Transient task failures requeued"),
            tasks_resumed: counter(&registry, "flowgrad_tasks_resumed_total", "Tasks resumed from a checkpoint"),
            tasks_requeued: counter(
                &registry,
                "flowgrad_tasks_requeued_total",
                "Tasks checkpointed and handed back to the queue on shutdown",
            ),
            tasks_cancelled: counter(
                &registry,
                "flowgrad_tasks_cancelled_total",
                "Tasks stopped by a job cancellation",
            ),
            tasks_superseded: counter(
                &registry,
                "flowgrad_tasks_superseded_total",
                "Duplicate task copies stopped because another worker finished first",
            ),
            iteration_seconds: histogram(
                &registry,
                "flowgrad_iteration_seconds",
                "Seconds per FlowGrad iteration",
                seconds.clone(),
            ),
            checkpoint_seconds: histogram(
                &registry,
                "flowgrad_checkpoint_seconds",
                "Seconds per checkpoint write",
                seconds.clone(),
            ),
            queue_lag_seconds: histogram(
                &registry,
                "flowgrad_queue_lag_seconds",
                "Seconds from publication to start",
                seconds,
            ),
            checkpoint_bytes,
            registry,
        }
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
