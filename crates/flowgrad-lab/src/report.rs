//! Per-image reports of an embedded run: judge probabilities or guidance scores, faithfulness,
//! the loss curve.

use std::path::Path;

use anyhow::Context;
use flowgrad::EditParams;
use flowgrad::tensor_util::{from_vec, to_vec};
use flowgrad_backend::{self as backend, Backend};
use flowgrad_engine::Model;
use flowgrad_jobs::{GuidanceSpec, JobReport, TaskOutcome};
use flowgrad_storage::ObjectStore;
use flowgrad_storage::image::{ImageLimits, decode_for_model};

use crate::grid::{GridRow, labelled_grid};
use serde::Serialize;

/// The JSON report written next to each edited image.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    /// Input file name (as stored).
    pub input: String,
    /// Edited image file.
    pub output: String,
    /// Target class or text prompt.
    pub target: String,
    /// Conversion of the input to the model's format, if any.
    pub note: Option<String>,
    /// Objective of every iteration.
    pub loss_per_iteration: Vec<f64>,
    /// Objective of the selected controls.
    pub final_objective: f64,
    /// Iteration whose controls were selected.
    pub selected_iteration: usize,
    /// Why the output is not an edit, when iteration 0 (no controls) was selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_edit_reason: Option<String>,
    /// Judge (never used for guidance) probability of the target class before the edit (none
    /// for text guidance or models without a judge).
    pub judge_target_prob_before: Option<f64>,
    /// Judge probability of the target class after the edit.
    pub judge_target_prob_after: Option<f64>,
    /// Guidance score before: the guidance classifier's probability of the class, or CLIP's
    /// cosine to the prompt.
    pub guidance_score_before: f64,
    /// After the edit.
    pub guidance_score_after: f64,
    /// Mean absolute difference to the input in [0, 1] pixel units.
    pub l1: f64,
    /// Structural similarity to the input (8×8 windows).
    pub ssim: f64,
    /// Seconds in the editor.
    pub edit_seconds: f64,
    /// Seconds writing checkpoints (mostly while the editor ran the next iteration).
    pub checkpoint_seconds: f64,
    /// Seconds for the whole task.
    pub total_seconds: f64,
    /// Vector-Jacobian products evaluated.
    pub vjps: usize,
}

/// SSIM of two single-channel images in [-1, 1] (`flowgrad::ssim`: 8×8 windows, stride 4; the
/// measure the `l1_ssim` faithfulness term optimises).
pub fn ssim(a: &[f32], b: &[f32], height: usize, width: usize) -> f64 {
    let device = backend::device();
    let image = |v: &[f32]| from_vec::<Backend, 4>(v.to_vec(), [1, 1, height, width], &device);
    f64::from(to_vec(flowgrad::ssim(image(a), image(b)))[0])
}

/// What a run's edits add up to (the line `flowgrad run` ends with).
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Edited images.
    pub images: usize,
    /// Images whose judge top-1 class is the target (None without a judge).
    pub judged_success: Option<usize>,
    /// Mean L1 to the input in [0, 1] pixel units.
    pub mean_l1: f64,
    /// Mean SSIM to the input.
    pub mean_ssim: f64,
    /// Images returned unedited (iteration 0 selected).
    pub unedited: usize,
    /// Files of the input folders that were not images flowgrad reads (listed in skipped.json).
    pub skipped: usize,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.judged_success {
            Some(n) => write!(f, "summary: {n}/{} judged the target", self.images)?,
            None => write!(f, "summary: {} edited", self.images)?,
        }
        write!(f, ", mean L1 {:.3}, mean SSIM {:.3}", self.mean_l1, self.mean_ssim)?;
        if self.unedited > 0 {
            write!(f, ", {} returned unedited (see no_edit_reason in their reports)", self.unedited)?;
        }
        if self.skipped > 0 {
            write!(f, ", {} input file(s) skipped (see skipped.json)", self.skipped)?;
        }
        Ok(())
    }
}

/// Why an image's output is its unedited reconstruction (its selected controls are zero): no
/// trial, nor the warm start's guided sample, lowered its objective below the reconstruction's.
fn no_edit_reason(history: &[f64], unedited: bool, warm_start: bool) -> Option<String> {
    unedited.then(|| {
        let tried: Vec<String> = history.iter().map(|o| format!("{o:.4}")).collect();
        let warm = if warm_start { "neither the guided-sampling warm start nor " } else { "" };
        format!(
            "{warm}any iteration lowered the objective below the unedited reconstruction's (objective per iteration: {}): the guidance gain never paid for the change to the image; raise eta or trust_radius",
            tried.join(", ")
        )
    })
}

/// Copies the edited images out of the store and writes `<name>.json` per image and `grid.png`
/// (each input next to its edit, enlarged and labelled); returns the run's summary.
pub async fn write_image_reports(
    store: &dyn ObjectStore,
    model: &dyn Model,
    report: &JobReport,
    output: &Path,
    guidance: &GuidanceSpec,
    params: &EditParams,
) -> anyhow::Result<RunSummary> {
    let shape = model.image_shape();
    let target = match guidance {
        GuidanceSpec::Class(class) => class.clone(),
        GuidanceSpec::Text(prompt) => prompt.clone(),
    };
    let limits = ImageLimits { pad_smaller: model.pads_small_inputs(), ..ImageLimits::default() };
    let mut grid: Vec<(Vec<f32>, Vec<f32>, String, String)> = vec![];
    let mut summary = RunSummary::default();
    for result in report.results.iter().filter(|r| r.outcome == TaskOutcome::Succeeded) {
        for image in &result.images {
            let input = store.get(&image.input_key).await?.context("input vanished from the store")?;
            let edited_png = store.get(&image.output_key).await?.context("output missing from the store")?;
            let input_pixels = decode_for_model(&input, shape.channels, shape.height, shape.width, &limits)?.values;
            let edit_pixels = decode_for_model(&edited_png, shape.channels, shape.height, shape.width, &limits)?.values;
            let stem = image
                .input_key
                .rsplit('/')
                .next()
                .unwrap_or(&image.input_key)
                .rsplit_once('.')
                .map_or(image.input_key.as_str(), |(s, _)| s)
                .to_string();
            let file = format!("{stem}.png");
            std::fs::write(output.join(&file), &edited_png)?;
            let entry = ImageReport {
                input: image.input_key.trim_start_matches("inputs/").to_string(),
                output: file,
                target: target.clone(),
                note: image.note.clone(),
                loss_per_iteration: result.objective_history.clone(),
                final_objective: result.objective_after,
                selected_iteration: result.selected_iteration,
                no_edit_reason: no_edit_reason(&result.objective_history, image.unedited, params.warm_start > 0.0),
                judge_target_prob_before: image.judge_target_prob_before,
                judge_target_prob_after: image.judge_target_prob_after,
                guidance_score_before: image.guidance_score_before,
                guidance_score_after: image.guidance_score_after,
                l1: image.l1_to_input / 2.0,
                ssim: (0..shape.channels)
                    .map(|c| {
                        let plane = c * shape.height * shape.width..(c + 1) * shape.height * shape.width;
                        ssim(&input_pixels[plane.clone()], &edit_pixels[plane], shape.height, shape.width)
                    })
                    .sum::<f64>()
                    / shape.channels as f64,
                edit_seconds: result.edit_seconds,
                checkpoint_seconds: result.checkpoint_seconds,
                total_seconds: result.total_seconds,
                vjps: result.vjps,
            };
            std::fs::write(output.join(format!("{stem}.json")), serde_json::to_vec_pretty(&entry)?)?;
            // the judge's p(target) where the model has a judge, else the guidance score
            let (source, name, before, after, digits) =
                match (entry.judge_target_prob_before, entry.judge_target_prob_after) {
                    (Some(before), Some(after)) => ("judge", format!("p({target})"), before, after, 2),
                    _ => ("guidance", "score".to_string(), entry.guidance_score_before, entry.guidance_score_after, 3),
                };
            let label = format!("{source} {name} {before:.3} -> {after:.3}");
            println!(
                "{stem:<24} {label}   L1 {:.3}  SSIM {:.3}{}",
                entry.l1,
                entry.ssim,
                if entry.no_edit_reason.is_some() { "  (unedited)" } else { "" }
            );
            summary.images += 1;
            summary.mean_l1 += entry.l1;
            summary.mean_ssim += entry.ssim;
            summary.unedited += usize::from(entry.no_edit_reason.is_some());
            if let Some(classes) = model.judge_classes(&edit_pixels, 1)? {
                *summary.judged_success.get_or_insert(0) += usize::from(classes[0] == target);
            }
            let short = format!("{name} {before:.digits$} → {after:.digits$}");
            grid.push((input_pixels, edit_pixels, entry.input.clone(), short));
        }
    }
    if summary.images > 0 {
        summary.mean_l1 /= summary.images as f64;
        summary.mean_ssim /= summary.images as f64;
    }
    if !grid.is_empty() {
        let rows: Vec<GridRow<'_>> = grid
            .iter()
            .map(|(input, edit, name, label)| GridRow {
                input,
                edit,
                input_label: name.chars().take(22).collect(),
                edit_label: label.clone(),
            })
            .collect();
        let text = match crate::font::load_font(None) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("grid.png without labels: {e:#}");
                false
            }
        };
        std::fs::write(
            output.join("grid.png"),
            labelled_grid(&rows, shape.channels, shape.height, shape.width, text)?,
        )?;
    }
    Ok(summary)
}
