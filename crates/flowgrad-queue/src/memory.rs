//! In-process broker with the same semantics as the RabbitMQ topology (embedded mode, tests).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::{Acker, Broker, Consumer, Delivery, Queue, QueueError, Topology};

/// Tokio-based broker inside one process: manual acks, prefetch, requeue counting towards the
/// delivery limit, dead-letter queues and depths, like the RabbitMQ quorum-queue topology.
/// Messages live in memory only.
#[derive(Clone)]
pub struct InProcessBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for InProcessBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBroker").field("delivery_limit", &self.inner.delivery_limit).finish_non_exhaustive()
    }
}

struct Inner {
    delivery_limit: u32,
    state: Mutex<State>,
    /// One per slot; woken whenever a message becomes ready or a consumer's window opens.
    notify: [Arc<Notify>; SLOTS],
}

const SLOTS: usize = 6;

/// A queue or its dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    queue: Queue,
    dead: bool,
}

impl Slot {
    fn index(self) -> usize {
        let q = match self.queue {
            Queue::Jobs => 0,
            Queue::Tasks => 1,
            Queue::Events => 2,
        };
        q * 2 + usize::from(self.dead)
    }

    fn dead_letter(self) -> Slot {
        Slot { dead: true, ..self }
    }
}

#[derive(Default)]
struct State {
    queues: [QueueState; SLOTS],
    next_id: u64,
}

#[derive(Default)]
struct QueueState {
    /// Requeued messages, served before `ready` (as RabbitMQ quorum queues do).
    returned: VecDeque<Message>,
    ready: VecDeque<Message>,
    consumers: HashMap<u64, ConsumerState>,
}

struct ConsumerState {
    prefetch: u16,
    unacked: BTreeMap<u64, Message>,
}

struct Message {
    payload: Bytes,
    message_id: String,
    /// Times returned to the queue (`x-delivery-count`).
    delivery_count: u32,
}

impl InProcessBroker {
    /// An empty broker; only `topology.delivery_limit` matters (names are not used).
    pub fn new(topology: Topology) -> Self {
        Self {
            inner: Arc::new(Inner {
                delivery_limit: topology.delivery_limit,
                state: Mutex::new(State::default()),
                notify: std::array::from_fn(|_| Arc::new(Notify::new())),
            }),
        }
    }

    fn subscribe(&self, slot: Slot, prefetch: u16) -> Box<dyn Consumer> {
        let mut state = self.inner.lock();
        let id = state.fresh_id();
        state.queues[slot.index()].consumers.insert(id, ConsumerState { prefetch, unacked: BTreeMap::new() });
        Box::new(MemoryConsumer { inner: self.inner.clone(), slot, id, stopped: false })
    }

    fn ready(&self, slot: Slot) -> u32 {
        let state = self.inner.lock();
        let q = &state.queues[slot.index()];
        u32::try_from(q.returned.len() + q.ready.len()).unwrap_or(u32::MAX)
    }
}

impl State {
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, slot: Slot) {
        self.notify[slot.index()].notify_waiters();
    }

    /// Puts a message back after a failed delivery: counts it, and dead-letters it once it was
    /// returned more than `delivery_limit` times (dead-letter queues have no limit).
    fn give_back(&self, state: &mut State, slot: Slot, mut msg: Message) {
        msg.delivery_count += 1;
        if !slot.dead && msg.delivery_count > self.delivery_limit {
            tracing::warn!(queue = ?slot.queue, message_id = %msg.message_id, deliveries = msg.delivery_count, "delivery limit exceeded, dead-lettering");
            self.dead_letter(state, slot, msg);
        } else {
            state.queues[slot.index()].returned.push_back(msg);
            self.wake(slot);
        }
    }

    /// Moves a message to the slot's dead-letter queue; messages rejected from a dead-letter
    /// queue are dropped (it has no dead-letter exchange).
    fn dead_letter(&self, state: &mut State, slot: Slot, mut msg: Message) {
        if slot.dead {
            tracing::debug!(queue = ?slot.queue, message_id = %msg.message_id, "dropping message rejected from a dead-letter queue");
            return;
        }
        msg.delivery_count = 0;
        let dead = slot.dead_letter();
        state.queues[dead.index()].ready.push_back(msg);
        self.wake(dead);
    }
}

#[async_trait::async_trait]
impl Broker for InProcessBroker {
    async fn publish(&self, queue: Queue, payload: Bytes, message_id: &str) -> Result<(), QueueError> {
        let slot = Slot { queue, dead: false };
        self.inner.lock().queues[slot.index()].ready.push_back(Message {
            payload,
            message_id: message_id.to_owned(),
            delivery_count: 0,
        });
        self.inner.wake(slot);
        Ok(())
    }

    async fn consume(&self, queue: Queue, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        Ok(self.subscribe(Slot { queue, dead: false }, prefetch))
    }

    async fn depth(&self, queue: Queue) -> Result<u32, QueueError> {
        Ok(self.ready(Slot { queue, dead: false }))
    }

    async fn dead_depth(&self, queue: Queue) -> Result<u32, QueueError> {
        Ok(self.ready(Slot { queue, dead: true }))
    }

    async fn consume_dead(&self, queue: Queue, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        Ok(self.subscribe(Slot { queue, dead: true }, prefetch))
    }

    fn delivery_limit(&self) -> u32 {
        self.inner.delivery_limit
    }
}

struct MemoryConsumer {
    inner: Arc<Inner>,
    slot: Slot,
    id: u64,
    stopped: bool,
}

impl MemoryConsumer {
    fn try_take(&self) -> Option<Delivery> {
        let mut state = self.inner.lock();
        let tag = state.fresh_id();
        let q = &mut state.queues[self.slot.index()];
        let consumer = q.consumers.get(&self.id)?;
        if consumer.prefetch != 0 && consumer.unacked.len() >= usize::from(consumer.prefetch) {
            return None;
        }
        let msg = q.returned.pop_front().or_else(|| q.ready.pop_front())?;
        let delivery = Delivery {
            payload: msg.payload.clone(),
            message_id: Some(msg.message_id.clone()),
            redeliveries: msg.delivery_count,
            acker: Acker::Memory(MemoryAcker { inner: self.inner.clone(), slot: self.slot, consumer: self.id, tag }),
        };
        q.consumers.get_mut(&self.id)?.unacked.insert(tag, msg);
        Some(delivery)
    }
}

#[async_trait::async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        if self.stopped {
            return None;
        }
        let notify = self.inner.notify[self.slot.index()].clone();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(delivery) = self.try_take() {
                return Some(Ok(delivery));
            }
            notified.await;
        }
    }

    async fn stop(&mut self) -> Result<(), QueueError> {
        self.stopped = true;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), QueueError> {
        // settlements take effect at once in process: nothing is in flight
        self.stopped = true;
        self.release();
        Ok(())
    }
}

impl MemoryConsumer {
    /// Like a closed AMQP channel: unacknowledged deliveries go back to the queue, counted
    /// towards the delivery limit as RabbitMQ 3.x quorum queues do. Idempotent.
    fn release(&mut self) {
        let mut state = self.inner.lock();
        let Some(consumer) = state.queues[self.slot.index()].consumers.remove(&self.id) else {
            return;
        };
        for msg in consumer.unacked.into_values() {
            self.inner.give_back(&mut state, self.slot, msg);
        }
        self.inner.wake(self.slot);
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.release();
    }
}

/// Settles one in-process delivery.
pub(crate) struct MemoryAcker {
    inner: Arc<Inner>,
    slot: Slot,
    consumer: u64,
    tag: u64,
}

impl fmt::Debug for MemoryAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAcker")
            .field("slot", &self.slot)
            .field("consumer", &self.consumer)
            .field("tag", &self.tag)
            .finish()
    }
}

impl MemoryAcker {
    /// Removes the delivery from its consumer's unacked set and opens its prefetch window.
    fn settle(&self, f: impl FnOnce(&Inner, &mut State, Message)) -> Result<(), QueueError> {
        let mut state = self.inner.lock();
        let msg = state.queues[self.slot.index()]
            .consumers
            .get_mut(&self.consumer)
            .and_then(|c| c.unacked.remove(&self.tag))
            .ok_or_else(|| {
                QueueError::Closed("the consumer of this delivery was dropped; it was redelivered".to_owned())
            })?;
        f(&self.inner, &mut state, msg);
        self.inner.wake(self.slot);
        Ok(())
    }

    pub(crate) fn ack(self) -> Result<(), QueueError> {
        self.settle(|_, _, _| {})
    }

    pub(crate) fn requeue(self) -> Result<(), QueueError> {
        let slot = self.slot;
        self.settle(|inner, state, msg| inner.give_back(state, slot, msg))
    }

    pub(crate) fn dead_letter(self) -> Result<(), QueueError> {
        let slot = self.slot;
        self.settle(|inner, state, msg| inner.dead_letter(state, slot, msg))
    }
}
