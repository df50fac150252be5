//! Object-storage layout. S3 is the source of truth; everything a coordinator needs to rebuild a
//! job's state lives under `jobs/{job}/`.

use uuid::Uuid;

/// `jobs/{job}/spec.json`: the accepted job (written put-if-absent).
pub fn spec(job: Uuid) -> String {
    format!("jobs/{job}/spec.json")
}

/// `jobs/{job}/tasks.json`: the task list the coordinator published.
pub fn tasks(job: Uuid) -> String {
    format!("jobs/{job}/tasks.json")
}

/// `jobs/{job}/checkpoints/`: the checkpoints of the job's unfinished tasks.
pub fn checkpoints_prefix(job: Uuid) -> String {
    format!("jobs/{job}/checkpoints/")
}

/// `jobs/{job}/checkpoints/{task}.safetensors`: the control state after the last iteration.
pub fn checkpoint(job: Uuid, task: &str) -> String {
    format!("{}{task}.safetensors", checkpoints_prefix(job))
}

/// `jobs/{job}/results/`: one record per finished task.
pub fn results_prefix(job: Uuid) -> String {
    format!("jobs/{job}/results/")
}

/// `jobs/{job}/results/{task}.json` (written put-if-absent: the first result wins).
pub fn result(job: Uuid, task: &str) -> String {
    format!("{}{task}.json", results_prefix(job))
}

/// `jobs/{job}/status.json`: progress, rewritten by the coordinator.
pub fn status(job: Uuid) -> String {
    format!("jobs/{job}/status.json")
}

/// `active/{job}`: the lease of a job the coordinators still track (a [`crate::Lease`], deleted
/// when the job ends), so a restarted or surviving coordinator finds unowned work without
/// listing every job.
pub fn active(job: Uuid) -> String {
    format!("{}{job}", ACTIVE_PREFIX)
}

/// Prefix of the active-job markers.
pub const ACTIVE_PREFIX: &str = "active/";

/// `jobs/{job}/cancel.json`: a [`crate::Cancellation`] request; workers stop the job's tasks and
/// the coordinator ends it as cancelled.
pub fn cancel(job: Uuid) -> String {
    format!("jobs/{job}/cancel.json")
}

/// `jobs/{job}/report.json`: written once the job ends.
pub fn report(job: Uuid) -> String {
    format!("jobs/{job}/report.json")
}

/// Output key for `input_key`: the path relative to `input_root` under `output_prefix`, with the
/// extension replaced by `.png` (manifest inputs keep their full key).
pub fn output(output_prefix: &str, input_root: Option<&str>, input_key: &str) -> String {
    let relative = input_root.and_then(|root| input_key.strip_prefix(root)).unwrap_or(input_key);
    let stem = match relative.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') => stem,
        _ => relative,
    };
    format!("{output_prefix}{stem}.png")
}

/// The first two of `inputs` whose outputs (see [`output`]) would be the same object, e.g.
/// `shoe.jpg` and `shoe.png`, as a rejection reason; `None` when every output is distinct.
pub fn output_collision<'a>(
    output_prefix: &str,
    input_root: Option<&str>,
    inputs: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut seen = std::collections::HashMap::new();
    for input in inputs {
        let key = output(output_prefix, input_root, input);
        if let Some(first) = seen.insert(key.clone(), input) {
            return Some(format!(
                "inputs `{first}` and `{input}` would both be written to `{key}` (an output is the input's name with `.png` for its extension): rename or remove one of them"
            ));
        }
    }
    None
}

/// A task id for the `index`-th batch of a job: stable across coordinator restarts.
pub fn task_id(index: usize) -> String {
    format!("task-{index:06}")
}

/// 64-bit stream id of a task from its input keys: the same images with the same seed and
/// parameters edit identically in any job (so a rerun is comparable byte for byte).
pub fn stream<'a>(input_keys: impl IntoIterator<Item = &'a str>) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for key in input_keys {
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_differing_only_in_extension_collide_and_are_named() {
        let reason = output_collision(
            "out/",
            Some("in/"),
            ["in/a.png", "in/collide/shoe.jpg", "in/b.jpg", "in/collide/shoe.png"],
        )
        .expect("a collision");
        assert!(
            reason.contains("`in/collide/shoe.jpg`")
                && reason.contains("`in/collide/shoe.png`")
                && reason.contains("`out/collide/shoe.png`"),
            "{reason}"
        );
        assert_eq!(output_collision("out/", Some("in/"), ["in/a.png", "in/a/b.png", "in/a.b.png"]), None);
        // manifests keep the whole key, so the same names in two folders do not collide
        assert_eq!(output_collision("out/", None, ["x/shoe.png", "y/shoe.png"]), None);
        assert!(output_collision("out/", None, ["x/shoe.png", "x/shoe.jpeg"]).is_some());
    }
}
