//! The finished parts of an evaluation on disk, and the threads that compute the missing ones.
//! Each part is a JSON file stamped with the digest of the settings it was computed under, so a
//! rerun into the same folder reuses the parts whose stamp matches and computes only the rest; a
//! killed run loses only the parts in flight.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use flowgrad_backend::{KernelThreads, kernel_threads_per_worker};
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

/// How far this machine's behaviour probe may stray from the folder's reference probe for the
/// parts stored there to be reused: far above the rounding differences between CPUs (their
/// kernels differ in the last bits, which an optimisation carries into the edits), far below what
/// a change of algorithm, model or guidance moves a probability or an image moment by.
pub(super) const PROBE_TOLERANCE: f64 = 1e-3;

/// The folder's behaviour probe that parts are computed against: the one stored at `path` if
/// `mine` (this build's, on this machine) agrees with it within [`PROBE_TOLERANCE`]; otherwise
/// `mine`, stored at `path` in its place (the parts made against the old one are then stale).
/// Returns the reference's digest, which every part's digest includes.
pub(super) fn reference_probe(path: &Path, mine: &[f64]) -> anyhow::Result<String> {
    let stored = load::<Vec<f64>>(path, PROBE_DIGEST)?;
    let gap = stored
        .as_ref()
        .filter(|stored| stored.len() == mine.len())
        .map(|stored| stored.iter().zip(mine).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max));
    let reference = match (stored, gap) {
        (Some(stored), Some(gap)) if gap <= PROBE_TOLERANCE => stored,
        (_, gap) => {
            if let Some(gap) = gap {
                eprintln!(
                    "{}: this build's edits differ from the stored parts' (by {gap:.2e}), computing every part again",
                    path.display()
                );
            }
            store(path, PROBE_DIGEST, &mine)?;
            mine.to_vec()
        }
    };
    Ok(flowgrad::state::digest_parts(&[&format!("{reference:?}")]))
}

/// The stamp of the probe file itself (its format's version).
const PROBE_DIGEST: &str = "behaviour probe v1";

/// Runs `work` on every unit, `workers` threads at a time, each thread with its own clone of
/// `state` (models are cheap to clone and not shareable between threads) and its own share of the
/// cores for its kernels; prints the progress after each unit and stops at the first error, which
/// it returns.
pub(super) fn run_parallel<S: Clone + Send, U: Sync>(
    units: &[U],
    workers: usize,
    state: &S,
    work: impl Fn(&S, &U) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (next, done, failed) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicBool::new(false));
    let count = workers.clamp(1, units.len().max(1));
    let kernels = (0..count)
        .map(|t| KernelThreads::own(kernel_threads_per_worker(count), &format!("eval-{t}")))
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::scope(|scope| {
        let threads: Vec<_> = kernels
            .into_iter()
            .map(|kernels| {
                let own = state.clone();
                let (next, done, failed, work) = (&next, &done, &failed, &work);
                scope.spawn(move || -> anyhow::Result<()> {
                    kernels.run(move || {
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
    fn a_probe_within_the_tolerance_keeps_the_reference_and_one_beyond_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe.json");
        let first = reference_probe(&path, &[0.25, 0.5]).unwrap();
        assert_eq!(reference_probe(&path, &[0.25, 0.5]).unwrap(), first);
        let near = [0.25 + PROBE_TOLERANCE / 2.0, 0.5];
        assert_eq!(reference_probe(&path, &near).unwrap(), first, "another CPU's rounding");
        assert_eq!(load::<Vec<f64>>(&path, PROBE_DIGEST).unwrap().unwrap(), vec![0.25, 0.5], "reference kept");
        let changed = reference_probe(&path, &[0.25 + 2.0 * PROBE_TOLERANCE, 0.5]).unwrap();
        assert_ne!(changed, first, "another behaviour");
        assert_eq!(reference_probe(&path, &[0.25, 0.5]).unwrap(), first, "back to the first");
        assert_ne!(reference_probe(&path, &[0.25]).unwrap(), first, "another probe's shape");
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
