//! Object storage for the FlowGrad fleet, and image decoding/encoding for the models.
//!
//! * [`ObjectStore`]: the small key/value interface the coordinator and workers use
//!   (S3 is the source of truth). Implementations: [`S3Store`] (any S3-compatible
//!   server: AWS, MinIO, Ceph RGW, SeaweedFS, …), [`LocalStore`] (a directory), and
//!   [`RetryingStore`], which wraps either with exponential backoff.
//! * [`image`]: PNG/JPEG → model tensor with size limits, tensor → PNG, image grids.
//!
//! Keys are `/`-separated relative paths, checked by [`validate_key`] in every store so
//! that a job that works on one backend works on the others.

mod error;
pub mod image;
mod local;
mod retry;
mod s3;

use std::sync::Arc;

pub use bytes::Bytes;
pub use error::StorageError;
pub use local::LocalStore;
pub use retry::{RetryPolicy, RetryingStore};
pub use s3::{S3Config, S3Store};

/// A flat key → bytes store with atomic writes and race-free create-if-absent.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Object body, or None when the key does not exist.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError>;
    /// Create or overwrite (atomic: readers see the old or the new body, never a partial one).
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError>;
    /// Create only if absent; Ok(true) when this call created it, Ok(false) when it existed.
    /// Race-free across processes (S3: `If-None-Match: *`; local: hard link of a complete file).
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StorageError>;
    /// All keys starting with `prefix`, sorted ascending (byte order), across all pages.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Delete (no error if absent).
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Human description for logs, e.g. "s3://bucket at http://127.0.0.1:9000" — never secrets.
    fn describe(&self) -> String;
}

/// A store shared between tasks and components.
pub type SharedStore = Arc<dyn ObjectStore>;

/// A shared store is a store too (so `RetryingStore<SharedStore>` works).
#[async_trait::async_trait]
impl<S: ObjectStore + ?Sized> ObjectStore for Arc<S> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        (**self).get(key).await
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        (**self).put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StorageError> {
        (**self).put_if_absent(key, body).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        (**self).list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        (**self).delete(key).await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Longest key accepted, in bytes (the S3 limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// First path segment reserved for [`LocalStore`]'s temporary files; no key may start with it.
pub const RESERVED_SEGMENT: &str = ".flowgrad-tmp";

/// Checks that `key` is a '/'-separated relative path: non-empty, at most [`MAX_KEY_BYTES`]
/// bytes, no leading '/', no empty, "." or ".." segments, no backslash or control characters,
/// and not under [`RESERVED_SEGMENT`]. Errors are [`StorageError::Permanent`].
pub fn validate_key(op: &'static str, key: &str) -> Result<(), StorageError> {
    let reason = if key.is_empty() {
        Some("key is empty")
    } else if key.len() > MAX_KEY_BYTES {
        Some("key is longer than 1024 bytes")
    } else if key.starts_with('/') {
        Some("key must be relative (starts with '/')")
    } else if key.chars().any(|c| c == '\\' || c.is_control()) {
        Some("key contains a backslash or a control character")
    } else if key.split('/').any(str::is_empty) {
        Some("key has an empty segment ('//' or a trailing '/')")
    } else if key.split('/').any(|s| s == "." || s == "..") {
        Some("key has a '.' or '..' segment")
    } else if key.split('/').next() == Some(RESERVED_SEGMENT) {
        Some("keys under .flowgrad-tmp/ are reserved")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StorageError::permanent(op, key, format!("invalid key: {reason}"))),
        None => Ok(()),
    }
}

/// A list prefix may be empty or end in '/', but must be relative, without '..' segments,
/// backslashes or control characters (the same for every store).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    let bad = prefix.starts_with('/')
        || prefix.chars().any(|c| c == '\\' || c.is_control())
        || prefix.split('/').any(|s| s == "..");
    if bad {
        return Err(StorageError::permanent(
            "list",
            prefix,
            "invalid prefix: must be relative, without '..' segments, backslashes or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_validation() {
        for good in ["a", "jobs/1/spec.json", "a b/ü.png", "x/.hidden", "..a/b..", "a.b/c"] {
            validate_key("put", good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../x",
            "a/../b",
            "a/..",
            "./a",
            "a\\b",
            "a\nb",
            ".flowgrad-tmp/x",
            long.as_str(),
        ] {
            let err = validate_key("put", bad).expect_err(bad);
            assert!(matches!(err, StorageError::Permanent { .. }), "{bad:?}: {err:?}");
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("invalid key"), "{err}");
        }
    }
}
