//! Behavioural tests written once against the `Broker` trait and run for every implementation
//! (see `broker_suite!`).

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use flowgrad_queue::{Bytes, Consumer, Delivery, Queue, QueueError, SharedBroker, Topology};
use futures::FutureExt;

/// One broker implementation under test.
pub trait Backend {
    /// How long to wait to be confident that a message is NOT delivered.
    const QUIET: Duration;
    /// A fresh broker for `topology`.
    fn broker(topology: &Topology) -> impl Future<Output = SharedBroker>;
    /// Removes everything the broker created for `topology`; the error says what was left.
    fn cleanup(topology: &Topology) -> impl Future<Output = Result<(), String>>;
}

/// What a scenario gets.
pub struct Ctx {
    pub broker: SharedBroker,
    pub quiet: Duration,
}

/// A topology with a unique prefix, so that tests never see each other's messages.
pub fn unique_topology(delivery_limit: u32) -> Topology {
    Topology { prefix: format!("test-{}", uuid::Uuid::new_v4()), delivery_limit }
}

/// Runs `scenario` on a fresh broker and cleans up even when the scenario panics.
pub async fn run<B: Backend, Fut: Future<Output = ()>>(delivery_limit: u32, scenario: impl FnOnce(Ctx) -> Fut) {
    let topology = unique_topology(delivery_limit);
    guarded::<B>(&topology, async {
        let ctx = Ctx { broker: B::broker(&topology).await, quiet: B::QUIET };
        scenario(ctx).await;
    })
    .await;
}

/// Test logs (`RUST_LOG`, default `flowgrad_queue=debug`), shown for failing tests.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("flowgrad_queue=debug"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// Runs `test`, then cleans up `topology` even when `test` panics.
pub async fn guarded<B: Backend>(topology: &Topology, test: impl Future<Output = ()>) {
    init_tracing();
    let outcome = AssertUnwindSafe(test).catch_unwind().await;
    let cleaned = B::cleanup(topology).await;
    match (outcome, cleaned) {
        (Err(panic), cleaned) => {
            if let Err(e) = cleaned {
                eprintln!("cleanup after the failure also failed: {e}");
            }
            std::panic::resume_unwind(panic);
        }
        (Ok(()), Err(e)) => panic!("cleanup: {e}"),
        (Ok(()), Ok(())) => {}
    }
}

/// The next delivery, which must come within 10 s.
pub async fn expect_next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("no delivery within 10 s")
        .expect("consumer closed")
        .expect("delivery error")
}

/// Asserts that no delivery arrives within `quiet`.
pub async fn expect_quiet(consumer: &mut Box<dyn Consumer>, quiet: Duration) {
    if let Ok(got) = tokio::time::timeout(quiet, consumer.next()).await {
        panic!("unexpected delivery: {:?}", got.map(|d| d.map(|d| d.message_id)));
    }
}

/// Polls `probe` until it returns `want` (10 s at most).
pub async fn eventually<F: Future<Output = Result<u32, QueueError>>>(
    what: &str,
    want: u32,
    mut probe: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = probe().await.expect(what);
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: still {got}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn body(s: &str) -> Bytes {
    Bytes::from(format!("{{\"m\":\"{s}\"}}"))
}

/// Generates one `#[tokio::test]` per scenario for the backend type given.
macro_rules! broker_suite {
    ($backend:ty) => {
        broker_suite!(@tests $backend;
            round_trip: 5,
            depth_counts_ready_messages_per_queue: 5,
            requeue_increments_redeliveries: 5,
            delivery_limit_dead_letters: 2,
            dead_letter_goes_to_dead_queue: 5,
            prefetch_one_holds_back_second_message: 5,
            dropped_consumer_redelivers_unacked: 5,
            closed_consumer_settles_acks_and_returns_the_rest: 5,
            many_concurrent_publishes_all_consumed: 5
        );
    };
    (@tests $backend:ty; $($name:ident: $limit:expr),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                crate::common::run::<$backend, _>($limit, crate::common::scenarios::$name).await;
            }
        )*
    };
}

pub mod scenarios {
    use super::*;

    pub async fn round_trip(ctx: Ctx) {
        let b = &ctx.broker;
        b.publish(Queue::Jobs, body("one"), "m-1").await.unwrap();
        let mut c = b.consume(Queue::Jobs, 10).await.unwrap();
        let d = expect_next(&mut c).await;
        assert_eq!(d.payload, body("one"));
        assert_eq!(d.message_id.as_deref(), Some("m-1"));
        assert_eq!(d.redeliveries, 0);
        d.ack().await.unwrap();
        expect_quiet(&mut c, ctx.quiet).await;
        assert_eq!(b.depth(Queue::Jobs).await.unwrap(), 0);
        assert_eq!(b.dead_depth(Queue::Jobs).await.unwrap(), 0);
    }

    pub async fn depth_counts_ready_messages_per_queue(ctx: Ctx) {
        let b = &ctx.broker;
        for i in 0..3 {
            b.publish(Queue::Tasks, body("t"), &format!("t-{i}")).await.unwrap();
        }
        b.publish(Queue::Events, body("e"), "e-0").await.unwrap();
        eventually("tasks depth", 3, || b.depth(Queue::Tasks)).await;
        eventually("events depth", 1, || b.depth(Queue::Events)).await;
        assert_eq!(b.depth(Queue::Jobs).await.unwrap(), 0);
        assert_eq!(b.dead_depth(Queue::Tasks).await.unwrap(), 0);

        // Queues are independent: a jobs consumer sees nothing.
        let mut jobs = b.consume(Queue::Jobs, 10).await.unwrap();
        expect_quiet(&mut jobs, ctx.quiet).await;

        let mut events = b.consume(Queue::Events, 1).await.unwrap();
        let d = expect_next(&mut events).await;
        assert_eq!(d.message_id.as_deref(), Some("e-0"));
        d.ack().await.unwrap();
        eventually("events depth after ack", 0, || b.depth(Queue::Events)).await;
        assert_eq!(b.depth(Queue::Tasks).await.unwrap(), 3);
    }

    /// Closing ends a consumer: what it acknowledged stays settled, what it held unacknowledged
    /// goes back to the queue at once, counted as a delivery (a worker closes before it exits).
    pub async fn closed_consumer_settles_acks_and_returns_the_rest(ctx: Ctx) {
        let b = &ctx.broker;
        b.publish(Queue::Tasks, body("done"), "c-1").await.unwrap();
        b.publish(Queue::Tasks, body("held"), "c-2").await.unwrap();
        let mut c = b.consume(Queue::Tasks, 2).await.unwrap();
        let first = expect_next(&mut c).await;
        let _held = expect_next(&mut c).await;
        assert_eq!(first.message_id.as_deref(), Some("c-1"));
        first.ack().await.unwrap();
        c.close().await.unwrap();
        assert!(c.next().await.is_none(), "a closed consumer yields nothing more");
        let mut again = b.consume(Queue::Tasks, 2).await.unwrap();
        let d = expect_next(&mut again).await;
        assert_eq!((d.message_id.as_deref(), d.redeliveries), (Some("c-2"), 1));
        d.ack().await.unwrap();
        expect_quiet(&mut again, ctx.quiet).await;
    }

    pub async fn requeue_increments_redeliveries(ctx: Ctx) {
        let b = &ctx.broker;
        b.publish(Queue::Tasks, body("again"), "r-1").await.unwrap();
        let mut c = b.consume(Queue::Tasks, 1).await.unwrap();
        for expected in 0..3 {
            let d = expect_next(&mut c).await;
            assert_eq!(d.message_id.as_deref(), Some("r-1"));
            assert_eq!(d.payload, body("again"));
            assert_eq!(d.redeliveries, expected);
            if expected < 2 {
                d.requeue().await.unwrap();
            } else {
                d.ack().await.unwrap();
            }
        }
        expect_quiet(&mut c, ctx.quiet).await;
        assert_eq!(b.dead_depth(Queue::Tasks).await.unwrap(), 0);
    }

    /// Run with `delivery_limit` 2: delivered 3 times, then dead-lettered.
    pub async fn delivery_limit_dead_letters(ctx: Ctx) {
        let b = &ctx.broker;
        b.publish(Queue::Tasks, body("poison"), "p-1").await.unwrap();
        let mut c = b.consume(Queue::Tasks, 1).await.unwrap();
        for expected in 0..3 {
            let d = expect_next(&mut c).await;
            assert_eq!(d.message_id.as_deref(), Some("p-1"));
            assert_eq!(d.redeliveries, expected);
            d.requeue().await.unwrap();
        }
        expect_quiet(&mut c, ctx.quiet).await;
        eventually("dead depth", 1, || b.dead_depth(Queue::Tasks)).await;
        assert_eq!(b.depth(Queue::Tasks).await.unwrap(), 0);

        let mut dead = b.consume_dead(Queue::Tasks, 10).await.unwrap();
        let d = expect_next(&mut dead).await;
        assert_eq!(d.message_id.as_deref(), Some("p-1"));
        assert_eq!(d.payload, body("poison"));
        d.ack().await.unwrap();
        eventually("dead depth after ack", 0, || b.dead_depth(Queue::Tasks)).await;
    }

    pub async fn dead_letter_goes_to_dead_queue(ctx: Ctx) {
        let b = &ctx.broker;
        b.publish(Queue::Jobs, body("bad"), "d-1").await.unwrap();
        b.publish(Queue::Jobs, body("good"), "d-2").await.unwrap();
        let mut c = b.consume(Queue::Jobs, 1).await.unwrap();
        let d = expect_next(&mut c).await;
        assert_eq!(d.message_id.as_deref(), Some("d-1"));
        d.dead_letter().await.unwrap();
        let d = expect_next(&mut c).await;
        assert_eq!(d.message_id.as_deref(), Some("d-2"));
        d.ack().await.unwrap();
        expect_quiet(&mut c, ctx.quiet).await;
        eventually("dead depth", 1, || b.dead_depth(Queue::Jobs)).await;
        assert_eq!(b.dead_depth(Queue::Tasks).await.unwrap(), 0);

        let mut dead = b.consume_dead(Queue::Jobs, 1).await.unwrap();
        let d = expect_next(&mut dead).await;
        assert_eq!(d.message_id.as_deref(), Some("d-1"));
        assert_eq!(d.payload, body("bad"));
        // Rejecting from a dead-letter queue drops the message (no further dead-lettering).
        d.dead_letter().await.unwrap();
        expect_quiet(&mut dead, ctx.quiet).await;
        eventually("dead depth after reject", 0, || b.dead_depth(Queue::Jobs)).await;
    }

    pub async fn prefetch_one_holds_back_second_message(ctx: Ctx) {
        let b = &ctx.broker;
        b.publish(Queue::Tasks, body("a"), "a").await.unwrap();
        b.publish(Queue::Tasks, body("b"), "b").await.unwrap();
        let mut c = b.consume(Queue::Tasks, 1).await.unwrap();
        let first = expect_next(&mut c).await;
        expect_quiet(&mut c, ctx.quiet).await;
        let first_id = first.message_id.clone().unwrap();
        first.ack().await.unwrap();
        let second = expect_next(&mut c).await;
        let second_id = second.message_id.clone().unwrap();
        second.ack().await.unwrap();
        let ids: BTreeSet<_> = [first_id, second_id].into_iter().collect();
        assert_eq!(ids, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    }

    pub async fn dropped_consumer_redelivers_unacked(ctx: Ctx) {
        let b = &ctx.broker;
        b.publish(Queue::Events, body("held"), "h-1").await.unwrap();
        let mut first = b.consume(Queue::Events, 1).await.unwrap();
        let held = expect_next(&mut first).await;
        assert_eq!(held.redeliveries, 0);
        drop(first);

        let mut second = b.consume(Queue::Events, 1).await.unwrap();
        let again = expect_next(&mut second).await;
        assert_eq!(again.message_id.as_deref(), Some("h-1"));
        assert_eq!(again.payload, body("held"));
        // RabbitMQ 3.x (and InProcessBroker) count a return from a closed channel; 4.x does not.
        assert!(again.redeliveries <= 1, "{}", again.redeliveries);

        // Settling a delivery whose consumer is gone is an error, not a panic.
        let err = held.ack().await.unwrap_err();
        assert!(matches!(err, QueueError::Closed(_)), "{err:?}");
        assert!(!err.is_retryable());

        again.ack().await.unwrap();
        expect_quiet(&mut second, ctx.quiet).await;
    }

    pub async fn many_concurrent_publishes_all_consumed(ctx: Ctx) {
        let b = &ctx.broker;
        let ids: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
        futures::future::try_join_all(ids.iter().map(|id| b.publish(Queue::Tasks, body(id), id))).await.unwrap();
        eventually("depth", 50, || b.depth(Queue::Tasks)).await;
        let mut c = b.consume(Queue::Tasks, 10).await.unwrap();
        let mut seen = BTreeSet::new();
        while seen.len() < ids.len() {
            let d = expect_next(&mut c).await;
            seen.insert(d.message_id.clone().unwrap());
            d.ack().await.unwrap();
        }
        assert_eq!(seen, ids.into_iter().collect::<BTreeSet<_>>());
        expect_quiet(&mut c, ctx.quiet).await;
    }
}
