//! S3Store against a real S3-compatible server (SeaweedFS, started by scripts/test.sh via
//! scripts/s3-server.sh). Tests that need the server fail when it is not configured.

use std::time::{Duration, Instant};

use flowgrad_storage::{Bytes, ObjectStore, RetryPolicy, RetryingStore, S3Config, S3Store, StorageError};
use futures::{StreamExt, TryStreamExt};

mod contract;

/// The test server's config with a fresh bucket (created on connect).
fn server_config() -> S3Config {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: these tests need a real S3 server. Run `bash scripts/test.sh` \
                 (or `eval \"$(bash scripts/s3-server.sh start)\"` and then cargo test)"
            )
        })
    };
    S3Config {
        endpoint: Some(var("FLOWGRAD_TEST_S3_ENDPOINT")),
        region: "us-east-1".into(),
        bucket: format!("flowgrad-test-{}", uuid::Uuid::new_v4().simple()),
        access_key_id: var("FLOWGRAD_TEST_S3_ACCESS_KEY"),
        secret_access_key: var("FLOWGRAD_TEST_S3_SECRET_KEY"),
        force_path_style: true,
        create_bucket: true,
    }
}

async fn fresh_store() -> (S3Config, S3Store) {
    let cfg = server_config();
    let store = S3Store::connect(&cfg).await.unwrap_or_else(|e| panic!("connect to {:?}: {e}", cfg));
    (cfg, store)
}

#[tokio::test]
async fn keeps_the_store_contract_with_large_bodies() {
    let (cfg, store) = fresh_store().await;
    assert!(store.describe().contains(&cfg.bucket) && store.describe().contains("http://"), "{}", store.describe());
    contract::basic_semantics(&store).await;
    let big = Bytes::from((0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    store.put("out/big.bin", big.clone()).await.unwrap();
    assert_eq!(store.get("out/big.bin").await.unwrap(), Some(big));
}

#[tokio::test]
async fn list_paginates_past_1000_keys() {
    let (_cfg, store) = fresh_store().await;
    let keys: Vec<String> = (0..1100).map(|i| format!("jobs/p/results/{i:05}.json")).collect();
    futures::stream::iter(&keys)
        .map(|k| store.put(k, Bytes::from(k.clone())))
        .buffer_unordered(32)
        .try_collect::<()>()
        .await
        .unwrap();
    for other in ["jobs/p-other/x", "jobs/pa", "a"] {
        store.put(other, Bytes::new()).await.unwrap();
    }
    let listed = store.list("jobs/p/").await.unwrap();
    assert_eq!(listed.len(), 1100);
    assert_eq!(listed, keys, "listing must be complete and sorted");
    assert_eq!(store.list("jobs/p").await.unwrap().len(), 1102);
    assert_eq!(store.list("").await.unwrap().len(), 1103);
    assert!(store.list("jobs/q").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn put_if_absent_has_exactly_one_winner_among_16_racers() {
    let cfg = server_config();
    S3Store::connect(&cfg).await.unwrap();
    // one client each, like separate worker processes
    let cfg = S3Config { create_bucket: false, ..cfg };
    contract::put_if_absent_race(3, 1, || {
        let cfg = cfg.clone();
        async move { S3Store::connect(&cfg).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn wrong_credentials_are_a_permanent_error() {
    let (cfg, good) = fresh_store().await;
    good.put("k", Bytes::from_static(b"v")).await.unwrap();
    for bad in [
        S3Config { secret_access_key: "not-the-secret".into(), create_bucket: false, ..cfg.clone() },
        S3Config { access_key_id: "nobody".into(), create_bucket: false, ..cfg.clone() },
    ] {
        let store = S3Store::connect(&bad).await.unwrap();
        for err in [
            store.get("k").await.unwrap_err(),
            store.put("k", Bytes::from_static(b"x")).await.unwrap_err(),
            store.list("").await.unwrap_err(),
        ] {
            assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
            assert!(!err.is_retryable());
            let text = format!("{err} {err:?}");
            assert!(text.contains("403"), "{text}");
            assert!(!text.contains("not-the-secret"), "{text}");
        }
        // Retrying does not turn it into success, and gives up at once.
        let start = Instant::now();
        let retrying = RetryingStore::new(store, RetryPolicy::default());
        assert!(matches!(retrying.get("k").await, Err(StorageError::Permanent { .. })));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(good.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn missing_bucket_is_a_permanent_error_not_a_missing_key() {
    let cfg = S3Config { create_bucket: false, ..server_config() };
    let store = S3Store::connect(&cfg).await.unwrap();
    let err = store.get("k").await.unwrap_err();
    assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

#[tokio::test]
async fn create_bucket_is_idempotent() {
    let (cfg, first) = fresh_store().await;
    first.put("k", Bytes::from_static(b"v")).await.unwrap();
    let again = S3Store::connect(&cfg).await.unwrap();
    assert_eq!(again.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Needs no server: nothing listens on port 1.
#[tokio::test]
async fn unreachable_endpoint_is_retryable_and_retrying_gives_up_in_time() {
    let cfg = S3Config {
        endpoint: Some("http://127.0.0.1:1".into()),
        region: "us-east-1".into(),
        bucket: "unreachable".into(),
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
        force_path_style: true,
        create_bucket: false,
    };
    let store = S3Store::connect(&cfg).await.unwrap();
    for err in [
        store.get("k").await.unwrap_err(),
        store.put("k", Bytes::new()).await.unwrap_err(),
        store.put_if_absent("k", Bytes::new()).await.unwrap_err(),
        store.list("").await.unwrap_err(),
        store.delete("k").await.unwrap_err(),
    ] {
        assert!(err.is_retryable(), "{err:?}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }
    let err = S3Store::connect(&S3Config { create_bucket: true, ..cfg.clone() }).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    let policy = RetryPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_elapsed: Duration::from_secs(1),
    };
    let retrying = RetryingStore::new(store, policy);
    let start = Instant::now();
    let err = retrying.get("k").await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(err.is_retryable(), "{err:?}");
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(8), "{elapsed:?}");
}

/// Needs no server.
#[test]
fn config_deserialises_with_defaults_and_debug_hides_secrets() {
    let cfg: S3Config = serde_json::from_str(
        r#"{"bucket":"b","access_key_id":"AKIAEXAMPLEKEY","secret_access_key":"wJalrXUtnFEMI/K7MDENG",
            "endpoint":"http://user:pw@127.0.0.1:9000"}"#,
    )
    .unwrap();
    assert_eq!(cfg.region, "us-east-1");
    assert!(cfg.force_path_style);
    assert!(!cfg.create_bucket);
    let debug = format!("{cfg:?} {cfg:#?}");
    for secret in ["AKIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG", "pw@"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("***") && debug.contains("bucket: \"b\""), "{debug}");
    assert!(serde_json::from_str::<S3Config>(r#"{"bucket":"b"}"#).is_err(), "credentials are required");
}
