//! The one error type of every [`ObjectStore`](crate::ObjectStore).

/// Why a storage operation failed, split by what a caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Worth retrying: network failure, timeout, server error (5xx), throttling.
    #[error("{op} {key:?} failed (transient, may be retried): {message}")]
    Transient {
        /// The operation, e.g. `"get"` or `"put_if_absent"`.
        op: &'static str,
        /// The object key or prefix the operation was about (empty when none).
        key: String,
        /// What went wrong, with the cause chain.
        message: String,
    },
    /// Retrying will not help: bad credentials, missing bucket, other 4xx, invalid key or config.
    #[error("{op} {key:?} failed: {message}")]
    Permanent {
        /// The operation, e.g. `"get"` or `"connect"`.
        op: &'static str,
        /// The object key or prefix the operation was about (empty when none).
        key: String,
        /// What went wrong, with the cause chain.
        message: String,
    },
    /// A local file-system error; the message names the path.
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// A [`StorageError::Transient`] error.
    pub fn transient(op: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Transient { op, key: key.into(), message: message.into() }
    }

    /// A [`StorageError::Permanent`] error.
    pub fn permanent(op: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Permanent { op, key: key.into(), message: message.into() }
    }

    /// Whether the same call may succeed if tried again later (transient errors and
    /// interrupted/timed-out local I/O).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transient { .. } => true,
            Self::Permanent { .. } => false,
            Self::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ResourceBusy
            ),
        }
    }
}

/// Wraps an I/O error so that its message names the path it happened at (the kind is kept).
pub(crate) fn io_at(path: &std::path::Path, e: std::io::Error) -> StorageError {
    StorageError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_split() {
        assert!(StorageError::transient("get", "a", "503").is_retryable());
        assert!(!StorageError::permanent("get", "a", "403").is_retryable());
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow disk");
        assert!(StorageError::Io(timed_out).is_retryable());
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no");
        assert!(!StorageError::Io(denied).is_retryable());
    }

    #[test]
    fn io_errors_name_the_path() {
        let e = io_at(std::path::Path::new("/x/y"), std::io::Error::other("boom"));
        assert_eq!(e.to_string(), "storage I/O error: /x/y: boom");
    }
}
