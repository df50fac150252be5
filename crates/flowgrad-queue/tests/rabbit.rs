//! `RabbitBroker` against a real RabbitMQ: the behavioural suite, plus connection-loss tests
//! through a TCP proxy that can be cut and restored.
//!
//! Broker URL: env `FLOWGRAD_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).

#[macro_use]
mod common;

use common::Backend;

use std::collections::BTreeSet;
use std::sync::Arc;

use flowgrad_testkit::{TcpProxy, split_host, via};
use std::time::Duration;

use flowgrad_queue::{
    Broker, Bytes, Queue, QueueError, RabbitBroker, RabbitConfig, ReconnectPolicy, SharedBroker, Topology,
};

use flowgrad_testkit::amqp_url as test_url;

fn config(url: String, topology: &Topology) -> RabbitConfig {
    RabbitConfig {
        url,
        topology: topology.clone(),
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_elapsed: Some(Duration::from_secs(20)),
        },
    }
}

struct Rabbit;

impl common::Backend for Rabbit {
    const QUIET: Duration = Duration::from_millis(400);

    async fn broker(topology: &Topology) -> SharedBroker {
        Arc::new(
            RabbitBroker::connect(&config(test_url(), topology))
                .await
                .expect("RabbitMQ reachable at FLOWGRAD_TEST_AMQP_URL"),
        )
    }

    /// Deletes the test's queues and exchanges (bounded: a broker that stopped answering must
    /// fail the test, not hang it).
    async fn cleanup(topology: &Topology) -> Result<(), String> {
        let mut cfg = config(test_url(), topology);
        cfg.reconnect.max_elapsed = Some(Duration::from_secs(10));
        let teardown = async { RabbitBroker::connect(&cfg).await?.delete_topology().await };
        match tokio::time::timeout(Duration::from_secs(30), teardown).await {
            Ok(result) => result.map_err(|e| format!("deleting the test topology: {e}")),
            Err(_) => Err("deleting the test topology took over 30 s".into()),
        }
    }
}

broker_suite!(Rabbit);

/// The `host:port` RabbitMQ listens on, from `url`.
fn upstream(url: &str) -> String {
    flowgrad_testkit::upstream(url, 5672)
}

#[tokio::test]
async fn reconnects_after_connection_cut_without_losing_messages() {
    let url = test_url();
    let proxy = TcpProxy::start(upstream(&url)).await.unwrap();
    let topology = common::unique_topology(5);
    let cfg = config(via(&url, proxy.addr()), &topology);
    common::guarded::<Rabbit>(&topology, async {
        let broker: SharedBroker = Arc::new(RabbitBroker::connect(&cfg).await.unwrap());
        let mut consumer = broker.consume(Queue::Tasks, 10).await.unwrap();

        broker.publish(Queue::Tasks, Bytes::from_static(b"{}"), "before").await.unwrap();
        broker.publish(Queue::Tasks, Bytes::from_static(b"{}"), "held").await.unwrap();
        let mut seen = BTreeSet::new();
        let mut held = None;
        while seen.len() < 2 {
            let d = common::expect_next(&mut consumer).await;
            seen.insert(d.message_id.clone().unwrap());
            if d.message_id.as_deref() == Some("held") {
                held = Some(d);
            } else {
                d.ack().await.unwrap();
            }
        }

        proxy.cut();
        let during = tokio::spawn({
            let broker = broker.clone();
            async move { broker.publish(Queue::Tasks, Bytes::from_static(b"{}"), "during").await }
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!during.is_finished(), "publish must block while the broker is unreachable");
        // The held delivery's connection is gone: settling it fails cleanly.
        let err = held.unwrap().ack().await.unwrap_err();
        assert!(matches!(err, QueueError::Closed(_)), "{err:?}");

        proxy.restore();
        during.await.unwrap().expect("publish during the cut succeeds after restore");
        broker.publish(Queue::Tasks, Bytes::from_static(b"{}"), "after").await.unwrap();

        let mut after_cut = BTreeSet::new();
        let want: BTreeSet<String> = ["held", "during", "after"].map(String::from).into();
        while !want.is_subset(&after_cut) {
            let d = common::expect_next(&mut consumer).await;
            let id = d.message_id.clone().unwrap();
            assert!(want.contains(&id) || id == "before", "unexpected message {id}");
            after_cut.insert(id);
            d.ack().await.unwrap();
        }
        common::expect_quiet(&mut consumer, Rabbit::QUIET).await;
        assert_eq!(broker.depth(Queue::Tasks).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn publish_gives_up_after_max_elapsed() {
    let url = test_url();
    let proxy = TcpProxy::start(upstream(&url)).await.unwrap();
    let topology = common::unique_topology(5);
    let mut cfg = config(via(&url, proxy.addr()), &topology);
    cfg.reconnect.max_elapsed = Some(Duration::from_secs(1));
    common::guarded::<Rabbit>(&topology, async {
        let broker = RabbitBroker::connect(&cfg).await.unwrap();
        proxy.cut();
        let started = tokio::time::Instant::now();
        let err = broker.publish(Queue::Jobs, Bytes::from_static(b"{}"), "lost").await.unwrap_err();
        assert!(matches!(err, QueueError::Connection(_)), "{err:?}");
        assert!(err.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

        // Once the broker is back the same broker value works again.
        proxy.restore();
        broker.publish(Queue::Jobs, Bytes::from_static(b"{}"), "kept").await.unwrap();
        common::eventually("depth", 1, || broker.depth(Queue::Jobs)).await;
    })
    .await;
}

#[tokio::test]
async fn wrong_password_is_a_protocol_error_without_the_password() {
    let url = test_url();
    let (before, host, after) = split_host(&url);
    let scheme_end = before.find("://").unwrap() + 3;
    let user =
        before[scheme_end..].trim_end_matches('@').split(':').next().filter(|u| !u.is_empty()).unwrap_or("guest");
    let bad = format!("{}{user}:wrong-Pa55word@{host}{after}", &before[..scheme_end]);
    let mut cfg = config(bad, &common::unique_topology(5));
    cfg.reconnect.max_elapsed = Some(Duration::from_secs(2));
    common::init_tracing();
    let err = RabbitBroker::connect(&cfg).await.unwrap_err();
    tracing::info!(%err, "connect with a wrong password");
    assert!(!err.to_string().contains("wrong-Pa55word"), "{err}");
    assert!(!err.is_retryable(), "{err:?}");
}

#[test]
fn config_debug_and_display_hide_the_password() {
    let cfg = RabbitConfig {
        url: "amqp://fleet:hunter2-secret@rabbit.internal:5672/%2f".to_owned(),
        ..RabbitConfig::default()
    };
    for shown in [format!("{cfg:?}"), format!("{cfg}"), format!("{cfg:#?}")] {
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("amqp://fleet:***@rabbit.internal:5672/%2f"), "{shown}");
    }
}

#[tokio::test]
async fn invalid_url_error_hides_the_password() {
    let cfg = RabbitConfig { url: "amqp://fleet:hunter2-secret@bad host/%2f".to_owned(), ..RabbitConfig::default() };
    let err = RabbitBroker::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, QueueError::Config(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2-secret"), "{err}");
}

#[test]
fn config_deserializes_with_defaults() {
    let cfg: RabbitConfig = serde_json::from_str(
        r#"{"url": "amqp://u:p@h:5672/%2f", "topology": {"prefix": "fg"}, "reconnect": {"max_elapsed": "30s"}}"#,
    )
    .unwrap();
    assert_eq!(cfg.topology.prefix, "fg");
    assert_eq!(cfg.topology.delivery_limit, 5);
    assert_eq!(cfg.topology.queue_name(Queue::Tasks), "fg.tasks");
    assert_eq!(cfg.topology.dead_letter_name(Queue::Tasks), "fg.tasks.dead");
    assert_eq!(cfg.reconnect.max_elapsed, Some(Duration::from_secs(30)));
    assert_eq!(cfg.reconnect.initial, ReconnectPolicy::default().initial);
    let defaults: RabbitConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults.topology.prefix, "flowgrad");
    assert_eq!(defaults.topology.queue_name(Queue::Jobs), "flowgrad.jobs");
    assert_eq!(defaults.reconnect.max_elapsed, None);
}
