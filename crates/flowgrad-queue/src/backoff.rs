//! Retry pacing from a [`ReconnectPolicy`].

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::{QueueError, ReconnectPolicy};

/// Delays between attempts of one operation, bounded by the policy's `max_elapsed`.
pub(crate) struct Backoff {
    delays: ExponentialBackoff,
    max_delay: Duration,
    started: Instant,
    max_elapsed: Option<Duration>,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(policy: &ReconnectPolicy) -> Self {
        let max_delay = policy.max_delay.max(policy.initial);
        Self {
            delays: ExponentialBuilder::default()
                .with_min_delay(policy.initial)
                .with_max_delay(max_delay)
                .with_jitter()
                .without_max_times()
                .build(),
            max_delay,
            started: Instant::now(),
            max_elapsed: policy.max_elapsed,
            attempts: 0,
        }
    }

    /// After attempt `what` failed with the retryable `err`: sleep until the next attempt, or
    /// give up with a [`QueueError::Connection`] once `max_elapsed` has passed.
    pub(crate) async fn wait(&mut self, what: &str, err: &QueueError) -> Result<(), QueueError> {
        self.attempts += 1;
        let mut delay = self.delays.next().unwrap_or(self.max_delay);
        let elapsed = self.started.elapsed();
        if let Some(max) = self.max_elapsed {
            if elapsed >= max {
                tracing::error!(what, attempts = self.attempts, ?elapsed, error = %err, "giving up");
                return Err(QueueError::Connection(format!(
                    "{what}: gave up after {} attempts in {elapsed:.1?}: {err}",
                    self.attempts
                )));
            }
            delay = delay.min(max - elapsed);
        }
        tracing::warn!(what, attempt = self.attempts, ?delay, error = %err, "broker unavailable, retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}
