//! Building storage and broker clients from configuration.

use std::sync::Arc;

use flowgrad_queue::{RabbitBroker, SharedBroker};
use flowgrad_storage::{LocalStore, RetryPolicy, RetryingStore, S3Store, SharedStore};

use crate::config::StorageConfig;

/// Connects the configured object store, wrapped in retries with backoff.
pub async fn connect_store(storage: &StorageConfig, retry: &RetryPolicy) -> anyhow::Result<SharedStore> {
    Ok(match storage {
        StorageConfig::S3 { s3 } => Arc::new(RetryingStore::new(S3Store::connect(s3).await?, *retry)),
        StorageConfig::Local { root } => Arc::new(RetryingStore::new(LocalStore::new(root.clone())?, *retry)),
    })
}

/// Connects RabbitMQ (declaring the topology).
pub async fn connect_broker(broker: &flowgrad_queue::RabbitConfig) -> anyhow::Result<SharedBroker> {
    Ok(Arc::new(RabbitBroker::connect(broker).await?))
}
