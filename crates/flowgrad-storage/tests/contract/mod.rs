//! The `ObjectStore` contract every store keeps, written once and run by `tests/local.rs` and
//! `tests/s3.rs` against their own store.

use std::future::Future;
use std::sync::Arc;

use flowgrad_storage::{Bytes, ObjectStore, StorageError};

async fn body(store: &dyn ObjectStore, key: &str) -> Option<Vec<u8>> {
    store.get(key).await.unwrap().map(|b| b.to_vec())
}

/// Get, put, overwrite, empty bodies, listing (sorted; a prefix is a plain string prefix, not a
/// directory), idempotent deletes, and bad keys refused for good. Leaves `jobs/1/results/b.json`,
/// `jobs/1/spec.json`, `jobs/10/spec.json` and `out/img.png` in the store.
pub async fn basic_semantics(store: &dyn ObjectStore) {
    assert_eq!(body(store, "jobs/1/spec.json").await, None);
    store.put("jobs/1/spec.json", Bytes::from_static(b"{}")).await.unwrap();
    store.put("jobs/1/results/b.json", Bytes::from_static(b"b")).await.unwrap();
    store.put("jobs/1/results/a.json", Bytes::from_static(b"a")).await.unwrap();
    store.put("jobs/10/spec.json", Bytes::from_static(b"x")).await.unwrap();
    store.put("out/img.png", Bytes::new()).await.unwrap();
    assert_eq!(body(store, "jobs/1/spec.json").await.as_deref(), Some(&b"{}"[..]));
    assert_eq!(body(store, "out/img.png").await.as_deref(), Some(&b""[..]));

    // an overwrite replaces the body
    store.put("jobs/1/spec.json", Bytes::from_static(b"{\"v\":2}")).await.unwrap();
    assert_eq!(body(store, "jobs/1/spec.json").await.as_deref(), Some(&b"{\"v\":2}"[..]));

    let all =
        ["jobs/1/results/a.json", "jobs/1/results/b.json", "jobs/1/spec.json", "jobs/10/spec.json", "out/img.png"];
    assert_eq!(store.list("").await.unwrap(), all);
    assert_eq!(store.list("jobs/1").await.unwrap(), all[..4]);
    assert_eq!(store.list("jobs/1/").await.unwrap(), all[..3]);
    assert_eq!(store.list("jobs/1/res").await.unwrap(), all[..2]);
    assert_eq!(store.list("jobs/1/results/a.json").await.unwrap(), all[..1]);
    assert!(store.list("nope/").await.unwrap().is_empty());
    assert!(store.list("jobs/1/spec.json/").await.unwrap().is_empty());

    // a "directory" is not an object
    assert_eq!(body(store, "jobs/1").await, None);
    assert_eq!(body(store, "out/img.png/x").await, None);

    // deletes are idempotent
    store.delete("jobs/1/results/a.json").await.unwrap();
    store.delete("jobs/1/results/a.json").await.unwrap();
    store.delete("never/existed").await.unwrap();
    assert_eq!(body(store, "jobs/1/results/a.json").await, None);
    assert_eq!(store.list("jobs/1/results/").await.unwrap(), ["jobs/1/results/b.json"]);

    let err = store.put("../x", Bytes::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Permanent { .. }) && !err.is_retryable(), "{err:?}");
}

/// `rounds` rounds of 16 racers, each on a store of its own from `open` (as separate processes
/// would have), writing one key with put-if-absent at once: exactly one wins, its body (`repeat`
/// copies of its name) is what is stored, and a late writer loses.
pub async fn put_if_absent_race<S, F, Fut>(rounds: usize, repeat: usize, open: F)
where
    S: ObjectStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    for round in 0..rounds {
        let key = format!("jobs/{round}/results/task.json");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut racers = Vec::new();
        for i in 0..16 {
            let store = open().await;
            let (key, barrier) = (key.clone(), barrier.clone());
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                let body = Bytes::from(format!("racer {i} ").repeat(repeat));
                store.put_if_absent(&key, body).await.map(|won| won.then_some(i))
            }));
        }
        let mut winners = Vec::new();
        for racer in racers {
            winners.extend(racer.await.unwrap().unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let store = open().await;
        let stored = store.get(&key).await.unwrap().unwrap();
        assert_eq!(stored, format!("racer {} ", winners[0]).repeat(repeat).as_bytes(), "round {round}");
        assert!(
            !store.put_if_absent(&key, Bytes::from_static(b"late")).await.unwrap(),
            "round {round}: a late writer lost"
        );
    }
}
