//! [`RetryingStore`]: retries transient errors of any store with exponential backoff.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{ObjectStore, StorageError};

/// How [`RetryingStore`] retries: exponential backoff (factor 2) from `initial`, capped at
/// `max_delay`, with random jitter of up to 100 % added to each delay, until `max_elapsed`
/// wall-clock time has passed since the first attempt.
///
/// Deserialisable; every field is optional (defaults: 100 ms, 5 s, 120 s). Durations are
/// humantime strings (`"250ms"`, `"5s"`, `"2m"`, `"1h 30m"`) or integers of milliseconds
/// (`250`, or `"250"` as environment variables give them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    #[serde(deserialize_with = "duration::deserialize")]
    pub initial: Duration,
    /// Largest delay between two attempts (before jitter).
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_delay: Duration,
    /// Give up (returning the last error) once this much time has passed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// Serde support for durations given as humantime strings or milliseconds.
mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"250ms\", \"5s\" or \"2m\", or a number of milliseconds")
        }

        fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(ms))
        }

        fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Duration, E> {
            u64::try_from(ms)
                .map(Duration::from_millis)
                .map_err(|_| E::custom(format!("a duration cannot be negative ({ms} ms)")))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            let s = s.trim();
            if let Ok(ms) = s.parse::<u64>() {
                return Ok(Duration::from_millis(ms));
            }
            humantime::parse_duration(s).map_err(|e| E::custom(format!("invalid duration {s:?}: {e}")))
        }
    }
}

/// Wraps a store and retries its [retryable](StorageError::is_retryable) errors according to a
/// [`RetryPolicy`], logging each retry with `tracing::warn!` (operation, key, attempt, delay,
/// error). Permanent errors are returned at once.
///
/// Retrying is safe for every operation: `put` and `delete` are idempotent, and a
/// `put_if_absent` whose first attempt did create the object but lost the reply answers
/// `Ok(false)` on the retry — callers that need to know who won must compare the stored body.
pub struct RetryingStore<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: ObjectStore> fmt::Debug for RetryingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingStore").field("inner", &self.inner.describe()).field("policy", &self.policy).finish()
    }
}

impl<S: ObjectStore> RetryingStore<S> {
    /// Wraps `inner`. A zero `policy.initial` is raised to 1 ms so that retries never spin.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        let policy = RetryPolicy { initial: policy.initial.max(Duration::from_millis(1)), ..policy };
        Self { inner, policy }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Runs `call` until it succeeds, fails permanently, or the policy's time is up.
    async fn run<T, Fut>(&self, op: &'static str, key: &str, call: impl FnMut() -> Fut) -> Result<T, StorageError>
    where
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let deadline = Instant::now() + self.policy.max_elapsed;
        let backoff = ExponentialBuilder::new()
            .with_min_delay(self.policy.initial)
            .with_max_delay(self.policy.max_delay.max(self.policy.initial))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        let mut attempt = 0u32;
        call.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(StorageError::is_retryable)
            .adjust(|_, delay| {
                let left = deadline.saturating_duration_since(Instant::now());
                delay.filter(|_| !left.is_zero()).map(|d| d.min(left))
            })
            .notify(|error, delay| {
                attempt += 1;
                tracing::warn!(
                    store = %self.inner.describe(),
                    op,
                    key,
                    attempt,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "storage operation failed; retrying"
                );
            })
            .await
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for RetryingStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        self.run("get", key, || self.inner.get(key)).await
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        self.run("put", key, || self.inner.put(key, body.clone())).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StorageError> {
        self.run("put_if_absent", key, || self.inner.put_if_absent(key, body.clone())).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.run("list", prefix, || self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.run("delete", key, || self.inner.delete(key)).await
    }

    fn describe(&self) -> String {
        format!(
            "{} (retrying transient errors for up to {})",
            self.inner.describe(),
            humantime::format_duration(self.policy.max_elapsed)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An in-memory store whose first `failures` calls fail with `error()`.
    struct FlakyStore {
        failures: AtomicU32,
        calls: AtomicU32,
        permanent: bool,
        objects: Mutex<BTreeMap<String, Bytes>>,
    }

    impl FlakyStore {
        fn new(failures: u32, permanent: bool) -> Arc<Self> {
            Arc::new(Self {
                failures: AtomicU32::new(failures),
                calls: AtomicU32::new(0),
                permanent,
                objects: Mutex::default(),
            })
        }

        fn call(&self, op: &'static str, key: &str) -> Result<(), StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            match (fail, self.permanent) {
                (false, _) => Ok(()),
                (true, false) => Err(StorageError::transient(op, key, "HTTP 503 SlowDown")),
                (true, true) => Err(StorageError::permanent(op, key, "HTTP 403 AccessDenied")),
            }
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FlakyStore {
        async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
            self.call("get", key)?;
            Ok(self.objects.lock().unwrap().get(key).cloned())
        }
        async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
            self.call("put", key)?;
            self.objects.lock().unwrap().insert(key.to_owned(), body);
            Ok(())
        }
        async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StorageError> {
            self.call("put_if_absent", key)?;
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(key) {
                return Ok(false);
            }
            objects.insert(key.to_owned(), body);
            Ok(true)
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.call("list", prefix)?;
            Ok(self.objects.lock().unwrap().keys().filter(|k| k.starts_with(prefix)).cloned().collect())
        }
        async fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.call("delete", key)?;
            self.objects.lock().unwrap().remove(key);
            Ok(())
        }
        fn describe(&self) -> String {
            "flaky memory".into()
        }
    }

    /// Collects formatted log lines.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap().lines().map(str::to_owned).collect()
        }
    }

    /// Captures this thread's log output. Every test that reaches the retry log line installs
    /// one, because tracing caches per call site whether anyone listens.
    fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn recovers_after_transient_failures() {
        let (logs, _guard) = capture_logs();
        let flaky = FlakyStore::new(3, false);
        let store = RetryingStore::new(flaky.clone(), fast());
        store.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        flaky.failures.store(2, Ordering::SeqCst);
        assert_eq!(store.get("a/b").await.unwrap().as_deref(), Some(&b"x"[..]));
        flaky.failures.store(2, Ordering::SeqCst);
        assert!(!store.put_if_absent("a/b", Bytes::from_static(b"y")).await.unwrap());
        flaky.failures.store(2, Ordering::SeqCst);
        assert_eq!(store.list("a/").await.unwrap(), ["a/b"]);
        flaky.failures.store(2, Ordering::SeqCst);
        store.delete("a/b").await.unwrap();
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4 + 4 * 3);
        assert!(store.get("a/b").await.unwrap().is_none());
        assert_eq!(logs.lines().len(), 3 + 4 * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let flaky = FlakyStore::new(5, true);
        let store = RetryingStore::new(flaky.clone(), fast());
        let err = store.get("k").await.unwrap_err();
        assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_elapsed_with_growing_delays() {
        let (logs, _guard) = capture_logs();
        let flaky = FlakyStore::new(u32::MAX, false);
        let store = RetryingStore::new(flaky.clone(), fast());
        let start = Instant::now();
        let err = store.get("k").await.unwrap_err();
        let elapsed = start.elapsed();
        assert!(err.is_retryable(), "{err:?}");
        assert!(elapsed >= Duration::from_secs(10) && elapsed < Duration::from_millis(10_050), "{elapsed:?}");
        // Delays 100 ms, 200 ms, … capped at 1 s (+ up to 100 % jitter): between 7 and 18 attempts in 10 s.
        let calls = flaky.calls.load(Ordering::SeqCst);
        assert!((7..=18).contains(&calls), "{calls} attempts");
        assert_eq!(logs.lines().len(), calls as usize - 1, "one warning per retry");
    }

    #[tokio::test(start_paused = true)]
    async fn each_retry_is_logged_with_key_attempt_and_error() {
        let (logs, _guard) = capture_logs();
        let store = RetryingStore::new(FlakyStore::new(2, false), fast());
        store.put("jobs/7/spec.json", Bytes::new()).await.unwrap();
        let lines = logs.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for (i, line) in lines.iter().enumerate() {
            assert!(line.contains("WARN"), "{line}");
            assert!(line.contains("op=\"put\"") && line.contains("key=\"jobs/7/spec.json\""), "{line}");
            assert!(line.contains(&format!("attempt={}", i + 1)), "{line}");
            assert!(line.contains("HTTP 503 SlowDown") && line.contains("store=flaky memory"), "{line}");
        }
    }

    #[test]
    fn policy_deserialises_humantime_and_millis() {
        let p: RetryPolicy =
            serde_json::from_str(r#"{"initial":"250ms","max_delay":2000,"max_elapsed":"2m"}"#).unwrap();
        assert_eq!(p.initial, Duration::from_millis(250));
        assert_eq!(p.max_delay, Duration::from_secs(2));
        assert_eq!(p.max_elapsed, Duration::from_secs(120));
        let p: RetryPolicy = serde_json::from_str(r#"{"initial":"50"}"#).unwrap();
        assert_eq!(p, RetryPolicy { initial: Duration::from_millis(50), ..RetryPolicy::default() });
        let p: RetryPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(
            p,
            RetryPolicy {
                initial: Duration::from_millis(100),
                max_delay: Duration::from_secs(5),
                max_elapsed: Duration::from_secs(120)
            }
        );
        let err = serde_json::from_str::<RetryPolicy>(r#"{"max_delay":"5 parsecs"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"initial":-5}"#).is_err());
    }
}
