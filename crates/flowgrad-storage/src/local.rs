//! [`LocalStore`]: objects as files under a root directory.

use std::fs;
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::io_at;
use crate::{ObjectStore, RESERVED_SEGMENT, StorageError, check_prefix, validate_key};

/// Objects as files under a root directory: key `a/b.png` is the file `root/a/b.png`.
///
/// Writes go to a fully written and fsynced temporary file under `root/.flowgrad-tmp/`
/// first, then `rename` (for [`put`](ObjectStore::put)) or `link` (for
/// [`put_if_absent`](ObjectStore::put_if_absent), which fails when the target exists), so
/// readers and other processes sharing the directory never see a partial body. The root must
/// be on a file system with hard links (any local POSIX file system). Unlike S3, a key cannot
/// be both an object and a "directory" of other keys (`a` and `a/b`): that is a permanent error.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let tmp = root.join(RESERVED_SEGMENT);
        fs::create_dir_all(&tmp).map_err(|e| io_at(&tmp, e))?;
        let root = fs::canonicalize(&root).map_err(|e| io_at(&root, e))?;
        Ok(Self { root })
    }

    /// The (absolute) root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs file-system work off the async executor.
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(&Path) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| StorageError::permanent(op, key, format!("file-system task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        validate_key("get", key)?;
        let path = self.root.join(key);
        self.blocking("get", key, move |_| match fs::read(&path) {
            Ok(body) => Ok(Some(Bytes::from(body))),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(io_at(&path, e)),
        })
        .await
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        validate_key("put", key)?;
        let owned = key.to_owned();
        self.blocking("put", key, move |root| {
            let target = root.join(&owned);
            let tmp = write_temp(root, &body)?;
            let renamed = with_parent(&target, || fs::rename(&tmp, &target));
            if renamed.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            renamed.map_err(|e| placement_error("put", &owned, &target, e))?;
            sync_parent(&target)
        })
        .await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StorageError> {
        validate_key("put_if_absent", key)?;
        let owned = key.to_owned();
        self.blocking("put_if_absent", key, move |root| {
            let target = root.join(&owned);
            let tmp = write_temp(root, &body)?;
            let linked = with_parent(&target, || fs::hard_link(&tmp, &target));
            // A leftover temporary file is harmless; failing here would misreport the outcome.
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => sync_parent(&target).map(|()| true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && !target.is_dir() => Ok(false),
                Err(e) => Err(placement_error("put_if_absent", &owned, &target, e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        let owned = prefix.to_owned();
        self.blocking("list", prefix, move |root| {
            // Walk only the deepest directory the prefix names, e.g. `jobs/1/` for `jobs/1/res`.
            let dir_key = owned.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
            let mut keys = Vec::new();
            walk(root, dir_key, &owned, &mut keys)?;
            keys.sort_unstable();
            Ok(keys)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key("delete", key)?;
        let path = self.root.join(key);
        self.blocking("delete", key, move |root| {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if is_absent(&e) => return Ok(()),
                Err(e) => return Err(io_at(&path, e)),
            }
            // Prune directories left empty, so that a later key may reuse their names.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root) {
                if fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
}

/// Errors that mean "no object at this key" when reading or deleting.
fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory)
}

/// Writes `body` to a new, fsynced temporary file and returns its path.
fn write_temp(root: &Path, body: &[u8]) -> Result<PathBuf, StorageError> {
    let dir = root.join(RESERVED_SEGMENT);
    let tmp = dir.join(uuid::Uuid::new_v4().simple().to_string());
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(body)?;
        file.sync_all()
    };
    let written = match write() {
        Err(e) if e.kind() == ErrorKind::NotFound => fs::create_dir_all(&dir).and_then(|()| write()),
        other => other,
    };
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_at(&tmp, e)
    })?;
    Ok(tmp)
}

/// Creates `target`'s parent directory and runs `place`; retries a few times when a
/// concurrent delete prunes the directory in between.
fn with_parent(target: &Path, mut place: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    let parent = target.parent().expect("a key path has a parent");
    let mut tries = 0;
    loop {
        fs::create_dir_all(parent)?;
        match place() {
            Err(e) if e.kind() == ErrorKind::NotFound && tries < 5 => tries += 1,
            other => return other,
        }
    }
}

/// Makes a rename or link durable.
fn sync_parent(target: &Path) -> Result<(), StorageError> {
    let parent = target.parent().expect("a key path has a parent");
    fs::File::open(parent).and_then(|d| d.sync_all()).map_err(|e| io_at(parent, e))
}

/// Turns a failed rename/link into a clear error (keys that clash as file and directory).
fn placement_error(op: &'static str, key: &str, target: &Path, e: io::Error) -> StorageError {
    match e.kind() {
        ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::AlreadyExists
        | ErrorKind::DirectoryNotEmpty => StorageError::permanent(
            op,
            key,
            format!("a local store cannot hold both a key and keys below it (like `a` and `a/b`): {e}"),
        ),
        _ => io_at(target, e),
    }
}

/// Collects the keys under directory `dir_key` (relative to `root`) that start with `prefix`.
fn walk(root: &Path, dir_key: &str, prefix: &str, keys: &mut Vec<String>) -> Result<(), StorageError> {
    let dir = root.join(dir_key);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if is_absent(&e) => return Ok(()),
        Err(e) => return Err(io_at(&dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_at(&dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let key = if dir_key.is_empty() { name } else { format!("{dir_key}/{name}") };
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(io_at(&entry.path(), e)),
        };
        if file_type.is_dir() {
            // Descend only where keys below could still match the prefix.
            let below = format!("{key}/");
            if (below.starts_with(prefix) || prefix.starts_with(&below)) && key != RESERVED_SEGMENT {
                walk(root, &key, prefix, keys)?;
            }
        } else if key.starts_with(prefix) && validate_key("list", &key).is_ok() {
            keys.push(key);
        }
    }
    Ok(())
}
