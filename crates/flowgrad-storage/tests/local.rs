//! LocalStore against a real temporary directory.

use std::sync::Arc;

use flowgrad_storage::{Bytes, LocalStore, ObjectStore, StorageError};

fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("root")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn put_get_list_delete_and_overwrite() {
    let (_dir, store) = store();
    assert_eq!(store.get("jobs/1/spec.json").await.unwrap(), None);
    store.put("jobs/1/spec.json", Bytes::from_static(b"{}")).await.unwrap();
    store.put("jobs/1/results/b.json", Bytes::from_static(b"b")).await.unwrap();
    store.put("jobs/1/results/a.json", Bytes::from_static(b"a")).await.unwrap();
    store.put("jobs/10/spec.json", Bytes::from_static(b"x")).await.unwrap();
    store.put("out/img.png", Bytes::new()).await.unwrap();
    assert_eq!(store.get("jobs/1/spec.json").await.unwrap().as_deref(), Some(&b"{}"[..]));
    assert_eq!(store.get("out/img.png").await.unwrap().as_deref(), Some(&b""[..]));

    // Overwrite replaces the body.
    store.put("jobs/1/spec.json", Bytes::from_static(b"{\"v\":2}")).await.unwrap();
    assert_eq!(store.get("jobs/1/spec.json").await.unwrap().as_deref(), Some(&b"{\"v\":2}"[..]));

    // Listing: sorted, prefix is a plain string prefix (not a directory), temp files hidden.
    let all =
        ["jobs/1/results/a.json", "jobs/1/results/b.json", "jobs/1/spec.json", "jobs/10/spec.json", "out/img.png"];
    assert_eq!(store.list("").await.unwrap(), all);
    assert_eq!(store.list("jobs/1").await.unwrap(), all[..4]);
    assert_eq!(store.list("jobs/1/").await.unwrap(), all[..3]);
    assert_eq!(store.list("jobs/1/res").await.unwrap(), all[..2]);
    assert_eq!(store.list("jobs/1/results/a.json").await.unwrap(), all[..1]);
    assert!(store.list("nope/").await.unwrap().is_empty());
    assert!(store.list("jobs/1/spec.json/").await.unwrap().is_empty());

    // A "directory" is not an object.
    assert_eq!(store.get("jobs/1").await.unwrap(), None);
    assert_eq!(store.get("out/img.png/x").await.unwrap(), None);

    // Delete, twice; emptied directories are pruned so their names can become keys.
    store.delete("jobs/1/results/a.json").await.unwrap();
    store.delete("jobs/1/results/a.json").await.unwrap();
    store.delete("never/existed").await.unwrap();
    assert_eq!(store.get("jobs/1/results/a.json").await.unwrap(), None);
    store.delete("jobs/1/results/b.json").await.unwrap();
    assert!(!store.root().join("jobs/1/results").exists());
    store.put("jobs/1/results", Bytes::from_static(b"now a file")).await.unwrap();
    assert_eq!(store.list("jobs/1/").await.unwrap(), ["jobs/1/results", "jobs/1/spec.json"]);
    assert!(store.describe().contains(store.root().to_str().unwrap()));
}

#[tokio::test]
async fn a_key_cannot_be_both_object_and_directory() {
    let (_dir, store) = store();
    store.put("a/b", Bytes::from_static(b"1")).await.unwrap();
    for result in [store.put("a", Bytes::new()).await, store.put("a/b/c", Bytes::new()).await] {
        let err = result.unwrap_err();
        assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot hold both"), "{err}");
    }
    let err = store.put_if_absent("a", Bytes::new()).await.unwrap_err();
    assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
    assert_eq!(store.list("").await.unwrap(), ["a/b"]);
}

#[tokio::test]
async fn invalid_keys_are_rejected_permanently() {
    let (dir, store) = store();
    let outside = dir.path().join("escaped");
    for key in ["", "/etc/passwd", "../escaped", "a/../../escaped", "a//b", "a/", "./a", "a\\b", ".flowgrad-tmp/x"] {
        for err in [
            store.put(key, Bytes::from_static(b"x")).await.unwrap_err(),
            store.put_if_absent(key, Bytes::from_static(b"x")).await.unwrap_err(),
            store.get(key).await.unwrap_err(),
            store.delete(key).await.unwrap_err(),
        ] {
            assert!(matches!(err, StorageError::Permanent { .. }), "{key:?}: {err:?}");
            assert!(!err.is_retryable());
        }
    }
    for prefix in ["/", "../", "a/../.."] {
        assert!(matches!(store.list(prefix).await, Err(StorageError::Permanent { .. })), "{prefix:?}");
    }
    assert!(!outside.exists());
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn put_if_absent_has_exactly_one_winner_among_16_racers() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let key = format!("jobs/{round}/results/task.json");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let racers: Vec<_> = (0..16)
            .map(|i| {
                // Separate store instances, as separate processes sharing the directory would have.
                let store = LocalStore::new(dir.path()).unwrap();
                let (key, barrier) = (key.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let body = Bytes::from(format!("racer {i} ").repeat(1000));
                    store.put_if_absent(&key, body).await.map(|won| won.then_some(i))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            winners.extend(racer.await.unwrap().unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let stored = LocalStore::new(dir.path()).unwrap().get(&key).await.unwrap().unwrap();
        assert_eq!(stored, format!("racer {} ", winners[0]).repeat(1000).as_bytes(), "round {round}");
    }
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path().join(".flowgrad-tmp")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_a_partial_overwrite() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let old = Bytes::from(vec![b'o'; 1 << 20]);
    let new = Bytes::from(vec![b'n'; 1 << 20]);
    store.put("big", old.clone()).await.unwrap();
    let writer = {
        let (store, old, new) = (store.clone(), old.clone(), new.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                store.put("big", if i % 2 == 0 { new.clone() } else { old.clone() }).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 30 {
        let body = store.get("big").await.unwrap().expect("the key always exists");
        assert!(body == old || body == new, "partial body of {} bytes", body.len());
        reads += 1;
    }
    writer.await.unwrap();
}

#[test]
fn new_fails_clearly_when_root_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = LocalStore::new(&file).unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err:?}");
    assert!(err.to_string().contains(file.to_str().unwrap()), "{err}");
}
