//! Errors of queue operations.

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached or the connection was lost (after the configured
    /// reconnect attempts). Retryable.
    #[error("broker connection: {0}")]
    Connection(String),
    /// The broker refused an operation (access refused, topology mismatch, ...). Not retryable
    /// without a configuration change.
    #[error("broker protocol error: {0}")]
    Protocol(String),
    /// The channel or consumer that carried a delivery is gone, so the ack/requeue/reject could
    /// not be sent; the broker redelivers the message. Not retryable.
    #[error("closed: {0}")]
    Closed(String),
    /// The broker negatively confirmed a publish (it did not take responsibility for the
    /// message). Retryable.
    #[error("publish of message {message_id} was nacked by the broker")]
    Nacked {
        /// The message-id of the refused message.
        message_id: String,
    },
    /// A publish was returned by the broker because no queue was bound for it (the queue was
    /// deleted behind our back). Not retryable.
    #[error("publish of message {message_id} to {queue} was unroutable")]
    Unroutable {
        /// The queue name the message was routed to.
        queue: String,
        /// The message-id of the returned message.
        message_id: String,
    },
    /// Invalid configuration (for example an unparsable URL). Not retryable.
    #[error("invalid queue configuration: {0}")]
    Config(String),
}

impl QueueError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Connection(_) | QueueError::Nacked { .. })
    }
}
