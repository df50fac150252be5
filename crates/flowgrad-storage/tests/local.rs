//! LocalStore against a real temporary directory.

use std::sync::Arc;

use flowgrad_storage::{Bytes, LocalStore, ObjectStore, StorageError};

mod contract;

fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("root")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn keeps_the_store_contract_and_prunes_emptied_directories() {
    let (_dir, store) = store();
    contract::basic_semantics(&store).await;
    // emptied directories are pruned so their names can become keys
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
    let root = dir.path().to_path_buf();
    contract::put_if_absent_race(20, 1000, || {
        let root = root.clone();
        async move { LocalStore::new(root).unwrap() }
    })
    .await;
    // no temporary files left behind
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
