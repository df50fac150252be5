//! Times one training step (forward + backward) of candidate model sizes at a given batch.
//!
//! `cargo run --release -p flowgrad-train --example bench_step -- [batch]`

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use flowgrad_models::{ClassifierConfig, ImageClassifier, JudgeConfig, UNetConfig};
use flowgrad_train::TrainBackend;

fn time<F: FnMut()>(label: &str, params: usize, mut f: F) {
    f();
    let reps = 3;
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    println!("{label}: {params} params, {:.0} ms/step", start.elapsed().as_secs_f64() * 1000.0 / reps as f64);
}

fn main() {
    let batch: usize = std::env::args().nth(1).map_or(32, |b| b.parse().expect("batch"));
    let device = Default::default();
    let x = || Tensor::<TrainBackend, 4>::random([batch, 1, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    for (base, mults) in [(32, vec![1, 2, 2]), (24, vec![1, 2, 2])] {
        let unet = UNetConfig::new().with_base(base).with_mults(mults.clone()).init::<TrainBackend>(&device);
        time(&format!("unet base {base} mults {mults:?}, batch {batch}"), unet.num_params(), || {
            let t = Tensor::<TrainBackend, 1>::random([batch], Distribution::Default, &device);
            let _ = unet.forward(x(), t).powi_scalar(2).mean().backward();
        });
    }
    let classifier = ClassifierConfig::new().init::<TrainBackend>(&device);
    time(&format!("classifier, batch {batch}"), classifier.num_params(), || {
        let _ = classifier.logits(x()).mean().backward();
    });
    let judge = JudgeConfig::new().init::<TrainBackend>(&device);
    time(&format!("judge, batch {batch}"), judge.num_params(), || {
        let _ = judge.logits(x()).mean().backward();
    });
}
