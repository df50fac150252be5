//! The behavioural suite on `InProcessBroker`.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use flowgrad_queue::{InProcessBroker, SharedBroker, Topology};

struct InProcess;

impl common::Backend for InProcess {
    const QUIET: Duration = Duration::from_millis(100);

    async fn broker(topology: &Topology) -> SharedBroker {
        Arc::new(InProcessBroker::new(topology.clone()))
    }

    async fn cleanup(_topology: &Topology) -> Result<(), String> {
        Ok(())
    }
}

broker_suite!(InProcess);
