//! Message queues for the FlowGrad fleet.
//!
//! Three logical queues ([`Queue::Jobs`], [`Queue::Tasks`], [`Queue::Events`]) each with a
//! dead-letter queue, behind one [`Broker`] trait with two implementations:
//!
//! - [`RabbitBroker`]: RabbitMQ quorum queues, persistent messages, publisher confirms, manual
//!   acks, `x-delivery-limit` for poison messages, transparent reconnects.
//! - [`InProcessBroker`]: the same semantics inside one process (embedded mode, unit tests).
//!
//! Delivery is at-least-once: a message may be delivered more than once (after a requeue, a
//! dropped consumer or a lost connection), so consumers must be idempotent.

mod backoff;
mod config;
mod error;
mod memory;
mod rabbit;

use std::sync::Arc;

pub use bytes::Bytes;
pub use config::{RabbitConfig, ReconnectPolicy, redact_url};
pub use error::QueueError;
pub use memory::InProcessBroker;
pub use rabbit::RabbitBroker;

/// Logical queues. Names: `"{prefix}.jobs"`, `"{prefix}.tasks"`, `"{prefix}.events"`; dead-letter
/// queues `"{name}.dead"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Job submissions (coordinator input).
    Jobs,
    /// Work items for workers.
    Tasks,
    /// Progress and result events (coordinator input).
    Events,
}

impl Queue {
    /// All logical queues.
    pub const ALL: [Queue; 3] = [Queue::Jobs, Queue::Tasks, Queue::Events];

    fn suffix(self) -> &'static str {
        match self {
            Queue::Jobs => "jobs",
            Queue::Tasks => "tasks",
            Queue::Events => "events",
        }
    }
}

/// Queue naming and poison-message policy shared by every broker.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Prefix of every exchange and queue name (default `"flowgrad"`).
    pub prefix: String,
    /// How many times a message may be returned to its queue before it is dead-lettered
    /// (RabbitMQ quorum `x-delivery-limit`, default 5): a message is delivered at most
    /// `delivery_limit + 1` times.
    pub delivery_limit: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Self { prefix: "flowgrad".to_owned(), delivery_limit: 5 }
    }
}

impl Topology {
    /// Name of the queue (also its routing key on the `{prefix}` exchange).
    pub fn queue_name(&self, q: Queue) -> String {
        format!("{}.{}", self.prefix, q.suffix())
    }

    /// Name of the queue's dead-letter queue (also its routing key on the `{prefix}.dlx` exchange).
    pub fn dead_letter_name(&self, q: Queue) -> String {
        format!("{}.dead", self.queue_name(q))
    }

    /// Name of the direct exchange messages are published to.
    pub fn exchange_name(&self) -> String {
        self.prefix.clone()
    }

    /// Name of the direct dead-letter exchange.
    pub fn dead_letter_exchange_name(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
}

/// A message broker with the fleet's queues.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Persistent publish; returns only after the broker confirmed it (publisher confirms).
    /// `message_id` is set as the AMQP message-id.
    async fn publish(&self, queue: Queue, payload: Bytes, message_id: &str) -> Result<(), QueueError>;
    /// Start consuming with manual acks and the given prefetch (0 = unlimited).
    async fn consume(&self, queue: Queue, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;
    /// Messages ready in the queue (for metrics / autoscaling / tests).
    async fn depth(&self, queue: Queue) -> Result<u32, QueueError>;
    /// Messages ready in the queue's dead-letter queue.
    async fn dead_depth(&self, queue: Queue) -> Result<u32, QueueError>;
    /// Consume the dead-letter queue of `queue` (for the coordinator to record failures).
    async fn consume_dead(&self, queue: Queue, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;
    /// Unfinished deliveries after which the broker dead-letters a message: it is delivered at
    /// most `delivery_limit() + 1` times.
    fn delivery_limit(&self) -> u32;
}

/// A stream of deliveries from one queue. Dropping it returns its unacknowledged deliveries to
/// the queue.
#[async_trait::async_trait]
pub trait Consumer: Send {
    /// Next delivery; `None` when the consumer was closed for good. Transient connection loss is
    /// handled inside (reconnect with backoff, re-declare topology, resume consuming) and is NOT
    /// surfaced as `None`. Cancel-safe: dropping the future (e.g. in a `timeout`) loses nothing.
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>>;
    /// Stops receiving: the broker sends this consumer nothing more; `next` still yields what it
    /// had already sent (so a stopping service can hand those back itself), then `None`.
    /// Deliveries already received can still be settled. A stopping service calls it before
    /// settling its last delivery, so no message comes back, counted as a failed delivery, when
    /// the process exits.
    async fn stop(&mut self) -> Result<(), QueueError>;
    /// Ends the consumer for good and closes its connection gracefully: returns once the broker
    /// has processed every settlement sent before (an acknowledgement still in flight when a
    /// process exits can be lost, and its message come back counted as a failed delivery).
    async fn close(&mut self) -> Result<(), QueueError>;
}

/// A broker shared between tasks.
pub type SharedBroker = Arc<dyn Broker>;

/// One received message; settle it with [`ack`](Delivery::ack), [`requeue`](Delivery::requeue)
/// or [`dead_letter`](Delivery::dead_letter). Dropping it unsettled leaves it unacknowledged
/// until its consumer is dropped.
#[derive(Debug)]
pub struct Delivery {
    /// Message body.
    pub payload: Bytes,
    /// AMQP message-id given at publish time.
    pub message_id: Option<String>,
    /// How many times this message was delivered before (RabbitMQ quorum `x-delivery-count`
    /// header, 0 on first delivery).
    pub redeliveries: u32,
    acker: Acker,
}

#[derive(Debug)]
enum Acker {
    Rabbit(lapin::Acker),
    Memory(memory::MemoryAcker),
}

impl Delivery {
    /// Acknowledge: the message is done and removed from the queue.
    pub async fn ack(self) -> Result<(), QueueError> {
        match self.acker {
            Acker::Rabbit(a) => rabbit::ack(a).await,
            Acker::Memory(a) => a.ack(),
        }
    }

    /// Return to the queue for redelivery (counts toward the delivery limit).
    pub async fn requeue(self) -> Result<(), QueueError> {
        match self.acker {
            Acker::Rabbit(a) => rabbit::requeue(a).await,
            Acker::Memory(a) => a.requeue(),
        }
    }

    /// Reject without requeue: goes to the dead-letter queue.
    pub async fn dead_letter(self) -> Result<(), QueueError> {
        match self.acker {
            Acker::Rabbit(a) => rabbit::dead_letter(a).await,
            Acker::Memory(a) => a.dead_letter(),
        }
    }
}
