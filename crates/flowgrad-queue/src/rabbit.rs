//! RabbitMQ broker: quorum queues, publisher confirms, manual acks, transparent reconnects.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind, ExchangeKind};
use tokio::sync::Mutex;

use crate::backoff::Backoff;
use crate::{Acker, Broker, Consumer, Delivery, Queue, QueueError, RabbitConfig, Topology};

/// How long one TCP connect + AMQP handshake may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// [`Broker`] on RabbitMQ. Publishing and depth queries share one connection (with a confirm
/// channel); every consumer has a connection of its own. All of them reconnect and re-declare
/// the topology by themselves, following the configured [`ReconnectPolicy`](crate::ReconnectPolicy);
/// only when it gives up does an operation (or [`Consumer::next`]) return a retryable
/// [`QueueError::Connection`].
pub struct RabbitBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitBroker").field("config", &self.shared.cfg).finish_non_exhaustive()
    }
}

struct Shared {
    cfg: RabbitConfig,
    uri: AMQPUri,
    /// The publishing connection.
    link: Mutex<LinkSlot>,
}

#[derive(Default)]
struct LinkSlot {
    /// `None` until (re)connected.
    current: Option<Arc<Link>>,
    /// Whether a publishing connection was ever established (later ones are reconnects).
    connected_before: bool,
}

/// A connection with one channel on it.
struct Link {
    conn: Connection,
    channel: Channel,
}

impl Link {
    fn healthy(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }
}

impl RabbitBroker {
    /// Connects (retrying per `cfg.reconnect`: with `max_elapsed: None` this waits for
    /// RabbitMQ forever), declares the topology and enables publisher confirms.
    pub async fn connect(cfg: &RabbitConfig) -> Result<Self, QueueError> {
        let uri = cfg.url.parse::<AMQPUri>().map_err(|e| {
            QueueError::Config(format!(
                "invalid AMQP URL {}: {}",
                cfg.redacted_url(),
                e.replace(&cfg.url, &cfg.redacted_url())
            ))
        })?;
        let broker = Self { shared: Arc::new(Shared { cfg: cfg.clone(), uri, link: Mutex::new(LinkSlot::default()) }) };
        broker.retry("connect", |_| async { Ok(()) }).await?;
        Ok(broker)
    }

    /// Runs `op` on a healthy publishing link, reconnecting and retrying on connection errors
    /// until the reconnect policy gives up.
    async fn retry<T, Fut>(&self, what: &str, op: impl Fn(Arc<Link>) -> Fut) -> Result<T, QueueError>
    where
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let mut backoff = Backoff::new(&self.shared.cfg.reconnect);
        loop {
            let link = match self.shared.link().await {
                Ok(link) => link,
                Err(e @ QueueError::Connection(_)) => {
                    backoff.wait(what, &e).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match op(link.clone()).await {
                Err(e @ QueueError::Connection(_)) => {
                    self.shared.invalidate(&link).await;
                    backoff.wait(what, &e).await?;
                }
                result => return result,
            }
        }
    }

    /// Deletes this topology's queues (with any messages in them) and exchanges: tears down a
    /// prefix that is no longer used (a finished test, a decommissioned deployment). Consumers
    /// still attached would re-declare it on their next reconnect, so stop them first.
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let topology = self.shared.cfg.topology.clone();
        self.retry("delete topology", |link| {
            let topology = topology.clone();
            async move {
                for q in Queue::ALL {
                    for name in [topology.queue_name(q), topology.dead_letter_name(q)] {
                        link.channel
                            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                            .await
                            .map_err(classify)?;
                    }
                }
                for name in [topology.exchange_name(), topology.dead_letter_exchange_name()] {
                    link.channel
                        .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                        .await
                        .map_err(classify)?;
                }
                Ok(())
            }
        })
        .await
    }

    async fn ready_count(&self, queue: String) -> Result<u32, QueueError> {
        self.retry("queue depth", |link| {
            let queue = queue.clone();
            async move {
                // A throwaway channel: a failed passive declare closes its channel.
                let channel = link.conn.create_channel().await.map_err(classify)?;
                let declared = channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(classify)?;
                // Best effort: the channel is closed with the connection anyway.
                let _ = channel.close(200, "OK".into()).await;
                Ok(declared.message_count())
            }
        })
        .await
    }

    async fn subscribe(&self, queue: String, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let mut consumer = RabbitConsumer {
            shared: self.shared.clone(),
            queue,
            prefetch,
            active: None,
            started_before: false,
            finished: false,
            stopped: false,
        };
        // Start now so that the caller sees configuration errors and the consumer is registered
        // on return.
        consumer.ensure_started().await?;
        Ok(Box::new(consumer))
    }
}

impl Shared {
    /// The current publishing link, or a new one (one attempt) when it is gone.
    async fn link(&self) -> Result<Arc<Link>, QueueError> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.current.as_ref().filter(|l| l.healthy()) {
            return Ok(link.clone());
        }
        if slot.current.take().is_some() {
            tracing::warn!(url = %self.cfg.redacted_url(), "publisher connection lost, reconnecting");
        }
        let link = self.open("publisher", slot.connected_before).await?;
        link.channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(classify)?;
        let link = Arc::new(link);
        slot.current = Some(link.clone());
        slot.connected_before = true;
        Ok(link)
    }

    /// Drops `link` if it is still the current one, so that the next use reconnects.
    async fn invalidate(&self, link: &Arc<Link>) {
        let mut slot = self.link.lock().await;
        if slot.current.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            slot.current = None;
        }
    }

    /// One attempt: connect, open a channel, declare the topology.
    async fn open(&self, role: &str, reconnect: bool) -> Result<Link, QueueError> {
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from(format!("flowgrad-queue {role}")));
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(self.uri.clone(), props))
            .await
            .map_err(|_| QueueError::Connection(format!("connect timed out after {CONNECT_TIMEOUT:?}")))?
            .map_err(classify)?;
        let channel = conn.create_channel().await.map_err(classify)?;
        declare_topology(&channel, &self.cfg.topology).await?;
        if reconnect {
            tracing::warn!(url = %self.cfg.redacted_url(), role, "reconnected to RabbitMQ");
        } else {
            tracing::info!(url = %self.cfg.redacted_url(), role, "connected to RabbitMQ");
        }
        Ok(Link { conn, channel })
    }
}

/// Declares exchanges, quorum queues, dead-letter queues and bindings (idempotent).
async fn declare_topology(channel: &Channel, topology: &Topology) -> Result<(), QueueError> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    let exchange = topology.exchange_name();
    let dlx = topology.dead_letter_exchange_name();
    for name in [&exchange, &dlx] {
        channel
            .exchange_declare(name.as_str().into(), ExchangeKind::Direct, durable, FieldTable::default())
            .await
            .map_err(classify)?;
    }
    let queue_options = QueueDeclareOptions::durable();
    for q in Queue::ALL {
        let name = topology.queue_name(q);
        let dead = topology.dead_letter_name(q);

        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        channel.queue_declare(dead.as_str().into(), queue_options, dead_args).await.map_err(classify)?;
        bind(channel, &dead, &dlx).await?;

        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dlx.as_str().into()));
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dead.as_str().into()));
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(i64::from(topology.delivery_limit)));
        channel.queue_declare(name.as_str().into(), queue_options, args).await.map_err(classify)?;
        bind(channel, &name, &exchange).await?;
    }
    Ok(())
}

/// Binds `queue` on `exchange` with its own name as routing key.
async fn bind(channel: &Channel, queue: &str, exchange: &str) -> Result<(), QueueError> {
    channel
        .queue_bind(queue.into(), exchange.into(), queue.into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .map_err(classify)
}

#[async_trait::async_trait]
impl Broker for RabbitBroker {
    async fn publish(&self, queue: Queue, payload: Bytes, message_id: &str) -> Result<(), QueueError> {
        let topology = &self.shared.cfg.topology;
        let exchange = ShortString::from(topology.exchange_name());
        let routing_key = ShortString::from(topology.queue_name(queue));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message_id.into());
        let message_id = message_id.to_owned();
        self.retry("publish", |link| {
            let (exchange, routing_key) = (exchange.clone(), routing_key.clone());
            let (payload, properties) = (payload.clone(), properties.clone());
            let message_id = message_id.clone();
            async move {
                let confirm = link
                    .channel
                    .basic_publish(
                        exchange,
                        routing_key.clone(),
                        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                        &payload,
                        properties,
                    )
                    .await
                    .map_err(classify)?
                    .await
                    .map_err(classify)?;
                match confirm {
                    Confirmation::Ack(None) => Ok(()),
                    Confirmation::Ack(Some(_)) => {
                        Err(QueueError::Unroutable { queue: routing_key.to_string(), message_id })
                    }
                    Confirmation::Nack(_) => Err(QueueError::Nacked { message_id }),
                    Confirmation::NotRequested => Err(QueueError::Protocol(
                        "publisher confirms are not enabled on the publish channel".to_owned(),
                    )),
                }
            }
        })
        .await
    }

    async fn consume(&self, queue: Queue, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.subscribe(self.shared.cfg.topology.queue_name(queue), prefetch).await
    }

    async fn depth(&self, queue: Queue) -> Result<u32, QueueError> {
        self.ready_count(self.shared.cfg.topology.queue_name(queue)).await
    }

    async fn dead_depth(&self, queue: Queue) -> Result<u32, QueueError> {
        self.ready_count(self.shared.cfg.topology.dead_letter_name(queue)).await
    }

    async fn consume_dead(&self, queue: Queue, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.subscribe(self.shared.cfg.topology.dead_letter_name(queue), prefetch).await
    }

    fn delivery_limit(&self) -> u32 {
        self.shared.cfg.topology.delivery_limit
    }
}

/// A consumer on its own connection; resumes on a new connection after connection loss.
struct RabbitConsumer {
    shared: Arc<Shared>,
    queue: String,
    prefetch: u16,
    /// The connection and lapin consumer; `None` after a connection loss.
    active: Option<(Link, lapin::Consumer)>,
    /// Whether this consumer ever started (later starts are reconnects).
    started_before: bool,
    /// No delivery will come any more (the broker cancelled the consumer because its queue was
    /// deleted, or it was stopped and its buffer is drained).
    finished: bool,
    /// [`Consumer::stop`] cancelled it: deliveries already buffered are still handed out, then
    /// `next` ends instead of reconnecting.
    stopped: bool,
}

impl RabbitConsumer {
    /// (Re)connects and starts consuming, retrying per the reconnect policy.
    async fn ensure_started(&mut self) -> Result<(), QueueError> {
        if self.active.is_some() {
            return Ok(());
        }
        let mut backoff = Backoff::new(&self.shared.cfg.reconnect);
        loop {
            match self.start().await {
                Ok(active) => {
                    self.active = Some(active);
                    self.started_before = true;
                    return Ok(());
                }
                Err(e @ QueueError::Connection(_)) => backoff.wait("consume", &e).await?,
                Err(e) => return Err(e),
            }
        }
    }

    async fn start(&self) -> Result<(Link, lapin::Consumer), QueueError> {
        let link = self.shared.open("consumer", self.started_before).await?;
        link.channel.basic_qos(self.prefetch, BasicQosOptions::default()).await.map_err(classify)?;
        let consumer = link
            .channel
            .basic_consume(self.queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(classify)?;
        tracing::debug!(queue = %self.queue, prefetch = self.prefetch, "consuming");
        Ok((link, consumer))
    }
}

#[async_trait::async_trait]
impl Consumer for RabbitConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            if self.finished || (self.stopped && self.active.is_none()) {
                return None;
            }
            if let Err(e) = self.ensure_started().await {
                return Some(Err(e));
            }
            let (link, stream) = self.active.as_mut()?;
            match stream.next().await {
                Some(Ok(delivery)) => return Some(Ok(convert(delivery))),
                _ if self.stopped => {
                    // cancelled by us and drained: nothing to reconnect for
                    self.finished = true;
                }
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.queue, error = %e, "consumer connection lost, reconnecting");
                    self.active = None;
                }
                None if link.healthy() => {
                    tracing::warn!(queue = %self.queue, "consumer cancelled by the broker (queue deleted?)");
                    self.finished = true;
                    self.active = None;
                }
                None => {
                    tracing::warn!(queue = %self.queue, "consumer connection closed, reconnecting");
                    self.active = None;
                }
            }
        }
    }

    async fn stop(&mut self) -> Result<(), QueueError> {
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        // the connection stays open: deliveries already received are settled on its channel,
        // and those the broker had already sent are still handed out by `next`
        match &self.active {
            Some((link, consumer)) => {
                link.channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await.map_err(classify)
            }
            None => Ok(()),
        }
    }

    async fn close(&mut self) -> Result<(), QueueError> {
        self.stopped = true;
        self.finished = true;
        match self.active.take() {
            // AMQP handles a connection's frames in order: close-ok comes after every ack before it
            Some((link, _consumer)) => {
                link.conn.close(200, ShortString::from("consumer closed")).await.map_err(classify)
            }
            None => Ok(()),
        }
    }
}

fn convert(delivery: lapin::message::Delivery) -> Delivery {
    let redeliveries = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count"))
        .and_then(as_u32)
        .unwrap_or(0);
    Delivery {
        message_id: delivery.properties.message_id().as_ref().map(ToString::to_string),
        payload: Bytes::from(delivery.data),
        redeliveries,
        acker: Acker::Rabbit(delivery.acker),
    }
}

fn as_u32(value: &AMQPValue) -> Option<u32> {
    match *value {
        AMQPValue::ShortShortInt(v) => u32::try_from(v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(v.into()),
        AMQPValue::ShortInt(v) => u32::try_from(v).ok(),
        AMQPValue::ShortUInt(v) => Some(v.into()),
        AMQPValue::LongInt(v) => u32::try_from(v).ok(),
        AMQPValue::LongUInt(v) => Some(v),
        AMQPValue::LongLongInt(v) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// Maps lapin errors: connection/channel loss is retryable, everything else is a protocol error.
fn classify(e: lapin::Error) -> QueueError {
    let retryable = match e.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::InvalidChannel(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::MissingHeartbeatError => true,
        ErrorKind::ProtocolError(amqp) => {
            matches!(amqp.kind(), AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED))
        }
        _ => false,
    };
    if retryable { QueueError::Connection(e.to_string()) } else { QueueError::Protocol(e.to_string()) }
}

fn settled(result: lapin::Result<bool>) -> Result<(), QueueError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(QueueError::Closed(
            "the channel of this delivery is closed; RabbitMQ redelivers the message".to_owned(),
        )),
        Err(e) => Err(QueueError::Closed(format!("{e}; RabbitMQ redelivers the message"))),
    }
}

pub(crate) async fn ack(acker: lapin::Acker) -> Result<(), QueueError> {
    settled(acker.ack(BasicAckOptions::default()).await)
}

pub(crate) async fn requeue(acker: lapin::Acker) -> Result<(), QueueError> {
    settled(acker.nack(BasicNackOptions { multiple: false, requeue: true }).await)
}

pub(crate) async fn dead_letter(acker: lapin::Acker) -> Result<(), QueueError> {
    settled(acker.reject(BasicRejectOptions { requeue: false }).await)
}
