//! `flowgrad bench edit`: throughput of real edits with the bundled model — `flowgrad run` itself,
//! timed end to end on Fashion-MNIST test images for each number of workers and batch size, with
//! images/s and the ratio to one worker at batch 1, in one run.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, ensure};
use flowgrad_models::fashion::{DEFAULT_DIR, FashionMnist, SIDE, Split, to_padded};

/// Arguments of `flowgrad bench edit`.
#[derive(clap::Args, Debug)]
pub struct EditBenchArgs {
    /// Test images edited per configuration (the first ones of the test split).
    #[arg(long, default_value_t = 16)]
    images: usize,
    /// Worker counts to time.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Batch sizes (images per task) to time.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    batches: Vec<usize>,
    /// Euler steps N of the edits.
    #[arg(long, default_value_t = 25)]
    steps: usize,
    /// Iterations M of the edits.
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// Fashion-MNIST folder (IDX files).
    #[arg(long, default_value = DEFAULT_DIR)]
    data: PathBuf,
}

/// Times `flowgrad run` for every workers × batch pair and prints the table.
pub fn run(args: &EditBenchArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        args.images > 0 && !args.workers.is_empty() && !args.batches.is_empty(),
        "give at least one image, worker count and batch size"
    );
    let work = tempfile::tempdir()?;
    let inputs = work.path().join("in");
    std::fs::create_dir(&inputs)?;
    let test = FashionMnist::load(&args.data, Split::Test)?;
    for i in 0..args.images {
        let png = flowgrad_storage::image::encode_png(&to_padded(test.raw(i)), 1, SIDE, SIDE)?;
        std::fs::write(inputs.join(format!("{i:04}.png")), png)?;
    }
    let exe = std::env::current_exe().context("locating the flowgrad binary")?;
    println!(
        "bench edit: {} test images towards coat, N = {}, M = {}, `flowgrad run` end to end",
        args.images, args.steps, args.iterations
    );
    println!("| workers | batch | seconds | images/s | vs 1 worker, batch 1 |");
    println!("|---|---|---|---|---|");
    let mut baseline = None;
    for &workers in &args.workers {
        for &batch in &args.batches {
            let output = work.path().join(format!("out-{workers}-{batch}"));
            let started = Instant::now();
            let result = Command::new(&exe)
                .arg("run")
                .arg("--input")
                .arg(&inputs)
                .arg("--output")
                .arg(&output)
                .args([
                    "--target",
                    "coat",
                    "--steps",
                    &args.steps.to_string(),
                    "--iterations",
                    &args.iterations.to_string(),
                ])
                .args(["--workers", &workers.to_string(), "--batch-size", &batch.to_string()])
                .output()?;
            let seconds = started.elapsed().as_secs_f64();
            ensure!(
                result.status.success(),
                "flowgrad run with {workers} worker(s), batch {batch} failed: {}",
                String::from_utf8_lossy(&result.stderr)
            );
            let rate = args.images as f64 / seconds;
            let base = *baseline.get_or_insert(rate);
            println!("| {workers} | {batch} | {seconds:.1} | {rate:.3} | {:.2}× |", rate / base);
        }
    }
    Ok(ExitCode::SUCCESS)
}
