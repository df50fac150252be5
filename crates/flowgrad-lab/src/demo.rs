//! `flowgrad demo`: FlowGrad on a built-in analytic ODE, no model or data needed.

use std::process::ExitCode;

use burn::tensor::{Distribution, Tensor, backend::Backend as _};
use clap::Args;
use flowgrad::analytic::AffineField;
use flowgrad::{ControlState, EditParams, Editor, MseToTarget};

use flowgrad_backend::{self as backend, Backend};

/// Options of the demo.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Euler steps N.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Gradient-descent iterations M.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Straightness threshold ξ.
    #[arg(long, default_value_t = 5e-3)]
    xi: f32,
    /// Gradient step α (paper-mode controls: ∂L/∂u carries a factor 1/N).
    #[arg(long, default_value_t = 50.0)]
    step_size: f32,
    /// Random seed of the field, input and target.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

const SIDE: usize = 6;

/// Edits a batch of two 1×6×6 "images" toward a target and checks resume bit-identity.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let device = backend::device();
    Backend::seed(&device, args.seed);
    let dims = SIDE * SIDE;
    let random = |n: usize, scale: f64| -> Vec<f32> {
        flowgrad::tensor_util::to_vec(Tensor::<Backend, 1>::random([n], Distribution::Normal(0.0, scale), &device))
    };
    let scale = 1.0 / (dims as f64).sqrt();
    let field = AffineField::<Backend>::new(
        &random(dims * dims, scale),
        &random(dims * dims, 2.0 * scale),
        &random(dims, 0.5),
        &device,
    );
    let shape = [2, 1, SIDE, SIDE];
    let input = flowgrad::tensor_util::from_vec(random(2 * dims, 1.0), shape, &device);
    let target = flowgrad::tensor_util::from_vec(random(2 * dims, 1.0), shape, &device);
    let params = EditParams {
        steps: args.steps,
        iterations: args.iterations,
        xi: args.xi,
        eta: 0.9,
        step_size: args.step_size,
        mode: flowgrad::Mode::Paper,
        ..Default::default()
    };
    let editor = Editor::new(field, MseToTarget::new(target), params, device)?;

    println!("FlowGrad demo on an analytic field v(x,t) = (A0 + t·A1)x + b, backend {}", backend::name());
    println!("{:>9} {:>12} {:>12} {:>12} {:>9}", "iteration", "objective", "guidance", "L1 to input", "VJPs");
    let mut state = editor.start(input.clone(), args.seed, 0)?;
    let mut checkpoint = None;
    let outcome = editor.run(&mut state, |state, record| {
        println!(
            "{:>9} {:>12.5} {:>12.5} {:>12.5} {:>5}/{}",
            record.iteration, record.objective, record.guidance, record.faithfulness, record.segments, args.steps
        );
        if state.iteration == args.iterations / 2 {
            checkpoint = Some(state.to_bytes());
        }
    })?;
    println!("selected iteration {} with objective {:.5}", outcome.selected_iteration, outcome.objective);

    if let Some(bytes) = checkpoint {
        let mut resumed = ControlState::from_bytes(&bytes?)?;
        let from = resumed.iteration;
        let again = editor.run(&mut resumed, |_, _| {})?;
        let identical = again.controls == outcome.controls;
        println!("resumed from the checkpoint of iteration {from}: final controls bit-identical = {identical}");
        if !identical {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
