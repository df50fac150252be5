//! Trains the classifier, the judge and the flow model into `assets/` and writes the model card.
//!
//! `cargo run --release -p flowgrad-train --example train_all -- [--out DIR] [--flow-steps N]
//!  [--classifier-steps N] [--judge-steps N] [--eval-images N] [--only flow|classifier|judge] [--resume]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use flowgrad_train::{
    ClassifierTrainConfig, FlowTrainConfig, JudgeTrainConfig, train_classifier, train_flow, train_judge,
    write_model_card,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = PathBuf::from("assets");
    let mut flow = FlowTrainConfig::default();
    let mut classifier = ClassifierTrainConfig::default();
    let mut judge = JudgeTrainConfig::default();
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => out = PathBuf::from(value()?),
            "--flow-steps" => flow.run.steps = value()?.parse()?,
            "--classifier-steps" => classifier.run.steps = value()?.parse()?,
            "--judge-steps" => judge.run.steps = value()?.parse()?,
            "--eval-images" => flow.eval_images = value()?.parse()?,
            "--only" => only = Some(value()?.clone()),
            "--resume" => {
                flow.run.resume = true;
                classifier.run.resume = true;
                judge.run.resume = true;
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let started = Instant::now();
    if wants("classifier") {
        let r = train_classifier(&classifier, &out)?;
        eprintln!("classifier: test accuracy {:.4}, {:.0} s", r.test_accuracy, r.wall_s);
    }
    if wants("judge") {
        let r = train_judge(&judge, &out)?;
        eprintln!("judge: test accuracy {:.4}, {:.0} s", r.test_accuracy, r.wall_s);
    }
    if wants("flow") {
        let r = train_flow(&flow, &out)?;
        eprintln!("flow: reconstruction MSE {:.5}, {:.0} s", r.reconstruction_mse, r.wall_s);
    }
    let mut command = "cargo run --release -p flowgrad-train --example train_all".to_string();
    if !args.is_empty() {
        command = format!("{command} -- {}", args.join(" "));
    }
    let card = write_model_card(&out, &command, Some(started.elapsed().as_secs_f64()))?;
    eprintln!("wrote {}", card.display());
    Ok(())
}
