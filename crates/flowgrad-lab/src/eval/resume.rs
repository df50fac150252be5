//! The finished parts of an evaluation on disk, and the threads that compute the missing ones.
//! Each part is a JSON file stamped with the digest of the settings it was computed under, so a
//! rerun into the same folder reuses the parts whose stamp matches and computes only the rest; a
//! killed run loses only the parts in flight.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A finished part and the digest of the settings that produced it.
#[derive(Serialize, Deserialize)]
struct Stamped<T> {
    digest: String,
    part: T,
}

/// The part stored at `path` if it was computed under `digest`; `None` when it is missing,
/// unreadable or stale (the last two are said on stderr and the part is computed again).
pub(super) fn load<T: DeserializeOwned>(path: &Path, digest: &str) -> anyhow::Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match serde_json::from_slice::<Stamped<T>>(&bytes) {
        Ok(stamped) if stamped.digest == digest => Ok(Some(stamped.part)),
        Ok(_) => {
            eprintln!("{}: computed under other settings, computing it again", path.display());
            Ok(None)
        }
        Err(e) => {
            eprintln!("{}: unreadable ({e}), computing it again", path.display());
            Ok(None)
        }
    }
}

/// Stores `part` at `path` under `digest`: written to a temporary file and renamed, so a killed
/// run leaves the whole part or none of it.
pub(super) fn store<T: Serialize>(path: &Path, digest: &str, part: &T) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temporary = path.with_extension("json.partial");
    let bytes = serde_json::to_vec(&Stamped { digest: digest.to_string(), part })?;
    std::fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `work` on every unit, `workers` threads at a time, each thread with its own clone of
/// `state` (models are cheap to clone and not shareable between threads); prints the progress
/// after each unit and stops at the first error, which it returns.
pub(super) fn run_parallel<S: Clone + Send, U: Sync>(
    units: &[U],
    workers: usize,
    state: &S,
    work: impl Fn(&S, &U) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (next, done, failed) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicBool::new(false));
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers.clamp(1, units.len().max(1)))
            .map(|_| {
                let own = state.clone();
                let (next, done, failed, work) = (&next, &done, &failed, &work);
                scope.spawn(move || -> anyhow::Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        if index >= units.len() || failed.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        if let Err(e) = work(&own, &units[index]) {
                            failed.store(true, Ordering::SeqCst);
                            return Err(e);
                        }
                        let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                        let elapsed = started.elapsed().as_secs_f64();
                        let left = elapsed / finished as f64 * (units.len() - finished) as f64;
                        eprintln!(
                            "{finished}/{} parts done in {:.1} min, about {:.1} min to go",
                            units.len(),
                            elapsed / 60.0,
                            left / 60.0
                        );
                    }
                })
            })
            .collect();
        threads.into_iter().try_for_each(|t| t.join().expect("an evaluation thread panicked"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_reused_only_under_its_own_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parts").join("00001.json");
        assert_eq!(load::<Vec<f64>>(&path, "a").unwrap(), None);
        let part = vec![0.1f64, 1.0 / 3.0, 2e-300];
        store(&path, "a", &part).unwrap();
        assert_eq!(load::<Vec<f64>>(&path, "a").unwrap(), Some(part), "floats round-trip exactly");
        assert_eq!(load::<Vec<f64>>(&path, "b").unwrap(), None, "other settings");
        std::fs::write(&path, b"{ truncated").unwrap();
        assert_eq!(load::<Vec<f64>>(&path, "a").unwrap(), None, "unreadable");
    }

    #[test]
    fn every_unit_runs_once_and_the_first_error_stops_the_rest() {
        let units: Vec<usize> = (0..20).collect();
        let seen = std::sync::Mutex::new(vec![]);
        run_parallel(&units, 3, &(), |_, &u| {
            seen.lock().unwrap().push(u);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, units);

        let runs = AtomicUsize::new(0);
        let error = run_parallel(&units, 1, &(), |_, &u| {
            runs.fetch_add(1, Ordering::SeqCst);
            anyhow::ensure!(u != 4, "unit {u} failed");
            Ok(())
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "unit 4 failed");
        assert_eq!(runs.load(Ordering::SeqCst), 5, "one thread stops at the failing unit");
    }
}
