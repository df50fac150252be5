//! The FlowGrad editor: one gradient-descent iteration on the controls per call.

use std::marker::PhantomData;

use burn::tensor::{Tensor, backend::AutodiffBackend};

use crate::error::{FlowGradError, Result};
use crate::field::{DifferentiableField, Guidance, GuidanceContext, mean_abs_diff, ssim};
use crate::gradient::{GradientRule, endpoint_gradient, flowgrad_gradient};
use crate::guided::guided_sample;
use crate::params::{ControlSharing, EditParams, Faithfulness, Mode, Selection, UpdateRule};
use crate::recording::AnchorPlan;
use crate::state::{BestControls, ControlState, HostTensor, IterationRecord, digest_f32, digest_parts};
use crate::tensor_util::{from_vec, to_vec};
use crate::trajectory::{TimeGrid, encode, simulate_recording, simulate_untracked};
use crate::trust::{TrustRegion, acceptance, entry_energies, zero_entries};

/// The result of a finished edit.
#[derive(Debug, Clone)]
pub struct EditOutcome<B: AutodiffBackend> {
    /// The edited images x_1, `[B, C, H, W]`.
    pub images: Tensor<B, 4>,
    /// The controls that produced them.
    pub controls: HostTensor,
    /// Which iteration's controls were selected (M = the final ones); the latest over the
    /// control entries when they differ.
    pub selected_iteration: usize,
    /// The selected iteration of every control entry (each image, or one for shared controls).
    pub selected_iterations: Vec<usize>,
    /// Objective of the selected controls.
    pub objective: f64,
}

/// Per-image loss parts of a batch, as tensors (differentiable in x_1).
pub(crate) struct LossParts<B: AutodiffBackend> {
    guidance: Tensor<B, 1>,
    faithfulness: Tensor<B, 1>,
    /// η·guidance + (1 − η)·faithfulness.
    pub(crate) weighted: Tensor<B, 1>,
}

/// Runs FlowGrad on a velocity field with a guidance loss; stateless between calls, so any
/// worker can continue a [`ControlState`] that another one checkpointed.
pub struct Editor<B: AutodiffBackend, F: DifferentiableField<B>, G> {
    field: F,
    values: F::Values,
    guidance: G,
    params: EditParams,
    device: B::Device,
    recorded_forwards: usize,
    _backend: PhantomData<B>,
}

impl<B: AutodiffBackend, F: DifferentiableField<B>, G: Guidance<B>> Editor<B, F, G> {
    /// Validates `params` and builds an editor on `device`.
    pub fn new(field: F, guidance: G, params: EditParams, device: B::Device) -> Result<Self> {
        params.validate()?;
        let values = field.values();
        Ok(Self { field, values, guidance, params, device, recorded_forwards: 0, _backend: PhantomData })
    }

    /// Holds at most `capacity` forward passes of each iteration's simulation for its VJPs to
    /// reuse (one forward's activations each; 0, the default, re-runs every VJP's forward: the
    /// paper's memory). The edit is the same either way; only its speed and memory change.
    pub fn with_recorded_forwards(mut self, capacity: usize) -> Self {
        self.recorded_forwards = capacity;
        self
    }

    /// The parameters in force.
    pub fn params(&self) -> &EditParams {
        &self.params
    }

    /// The velocity field.
    pub fn field(&self) -> &F {
        &self.field
    }

    /// The field's inner-backend twin, which runs the forwards nothing differentiates.
    pub fn values(&self) -> &F::Values {
        &self.values
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The simulation time grid.
    pub fn time_grid(&self) -> TimeGrid {
        TimeGrid::new(self.params.steps, self.params.time_eps)
    }

    /// Fingerprint of this editor applied to `original` with `seed` and `stream`.
    pub fn fingerprint(&self, original: &HostTensor, seed: u64, stream: u64) -> String {
        let params = self.params.fingerprint_form();
        digest_parts(&[
            &self.field.fingerprint(),
            &self.guidance.fingerprint(),
            &params,
            &format!("{:?}", original.shape),
            &digest_f32(&original.values),
            &seed.to_string(),
            &stream.to_string(),
        ])
    }

    /// Encodes `original` (`[B, C, H, W]`) to noise and returns the state before iteration 0
    /// (controls as [`Editor::start_encoded`] sets them). `stream` names the task in the
    /// checkpoint's fingerprint.
    pub fn start(&self, original: Tensor<B, 4>, seed: u64, stream: u64) -> Result<ControlState> {
        let [b, c, h, w] = original.dims();
        if b == 0 || c == 0 || h == 0 || w == 0 {
            return Err(FlowGradError::ShapeMismatch {
                what: "input images",
                expected: vec![1, 1, 1, 1],
                actual: vec![b, c, h, w],
            });
        }
        let x0 = self.encode(original.clone());
        self.start_encoded(HostTensor::from_tensor(original), HostTensor::from_tensor(x0), seed, stream)
    }

    /// The state before iteration 0 for `original` already encoded to `x0` (both `[B, C, H, W]`,
    /// `x0` from [`Editor::encode`] with these parameters): lets editors that differ only in
    /// guidance or ξ share one encoding. The controls are zero, or with a `warm_start` scale the
    /// controls of that guided sample (see [`Editor::warm_controls`]) for every image whose
    /// objective they lower below the unedited reconstruction's (2N more forwards), so an edit
    /// never starts, and with the trust region never ends, worse than either.
    pub fn start_encoded(&self, original: HostTensor, x0: HostTensor, seed: u64, stream: u64) -> Result<ControlState> {
        let mismatch =
            || FlowGradError::ShapeMismatch { what: "x0", expected: original.shape.clone(), actual: x0.shape.clone() };
        let [b, c, h, w]: [usize; 4] = original.shape.clone().try_into().map_err(|_| mismatch())?;
        if x0.shape != original.shape {
            return Err(mismatch());
        }
        let control_batch = self.control_batch(b);
        let controls = HostTensor {
            shape: vec![self.params.steps, control_batch, c, h, w],
            values: vec![0.0; self.params.steps * control_batch * c * h * w],
        };
        let mut state = ControlState {
            iteration: 0,
            controls,
            x0,
            fingerprint: self.fingerprint(&original, seed, stream),
            original,
            history: vec![],
            best: None,
            trust: None,
            seed,
            stream,
        };
        if self.params.warm_start > 0.0 {
            let warm = self.warm_controls(&state)?;
            let (cold, hot) = (self.evaluate(&state, &state.controls, 0)?.1, self.evaluate(&state, &warm, 0)?.1);
            let mut controls = warm;
            // not strictly better (or not finite): start that entry from zero
            zero_entries(
                &mut controls,
                &cold
                    .iter()
                    .zip(&hot)
                    .map(|(c, h)| h.partial_cmp(c) != Some(std::cmp::Ordering::Less))
                    .collect::<Vec<_>>(),
            );
            state.controls = controls;
        }
        Ok(state)
    }

    /// The images `controls` decode to and each control entry's objective on them (iteration
    /// `iteration`'s guidance views).
    fn evaluate(
        &self,
        state: &ControlState,
        controls: &HostTensor,
        iteration: usize,
    ) -> Result<(Tensor<B, 4>, Vec<f64>)> {
        let ctx = GuidanceContext { iteration, seed: state.iteration_seed(iteration) };
        let images = self.decode(state, controls)?;
        let parts = self.loss_parts(images.clone(), state.original.to_tensor::<B, 4>(&self.device)?, &ctx);
        let per_image: Vec<f64> = to_vec(parts.weighted).into_iter().map(f64::from).collect();
        Ok((images, self.entry_objectives(&per_image, controls)))
    }

    /// The warm start's controls for `state`: guided sampling's ([`guided_sample`]) from its x_0
    /// with scale `warm_start` and iteration 0's guidance views, in this mode's units (times h in
    /// `Reference` mode, where u_k acts on the state directly), averaged over the batch for
    /// shared controls. Costs N VJPs of the field.
    pub fn warm_controls(&self, state: &ControlState) -> Result<HostTensor> {
        let ctx = GuidanceContext { iteration: 0, seed: state.iteration_seed(0) };
        let x0 = state.x0.to_tensor::<B, 4>(&self.device)?;
        let sample = guided_sample(&self.field, &self.guidance, x0, &self.time_grid(), self.params.warm_start, &ctx);
        let scale = self.control_scale();
        let steps = sample
            .controls
            .into_iter()
            .map(|u| match self.params.sharing {
                ControlSharing::PerImage => u * scale,
                ControlSharing::Shared => u.mean_dim(0) * scale,
            })
            .collect();
        Ok(HostTensor::from_tensor(Tensor::stack::<5>(steps, 0)))
    }

    /// True once every iteration of the parameters has run.
    pub fn is_finished(&self, state: &ControlState) -> bool {
        state.iteration >= self.params.iterations
    }

    /// Runs exactly one FlowGrad iteration: simulate, loss, straightness, grid, decomposed
    /// back-propagation, gradient step on the controls. Updates `state` in place.
    pub fn step(&self, state: &mut ControlState) -> Result<IterationRecord> {
        self.check_state(state)?;
        if self.is_finished(state) {
            return Err(FlowGradError::AlreadyFinished(self.params.iterations));
        }
        let iteration = state.iteration;
        let ctx = GuidanceContext { iteration, seed: state.iteration_seed(iteration) };
        let (x0, original) =
            (state.x0.to_tensor::<B, 4>(&self.device)?, state.original.to_tensor::<B, 4>(&self.device)?);
        let batch = x0.dims()[0];
        let controls = self.control_tensors(&state.controls, batch);
        let time = self.time_grid();
        let plan = AnchorPlan {
            xi: self.params.xi,
            mode: self.params.mode,
            anchor: self.params.segment_anchor,
            capacity: self.recorded_forwards,
        };
        let (trajectory, mut recorded) =
            simulate_recording(&self.field, &self.values, x0, Some(&controls), &time, self.params.mode, plan);

        let x1 = trajectory.last().detach().require_grad();
        let parts = self.loss_parts(x1.clone(), original, &ctx);
        let grad_x1 = endpoint_gradient(&x1, parts.weighted.clone())
            .ok_or(FlowGradError::NonFinite { what: "loss gradient", iteration })?;

        let per_image: Vec<f64> = to_vec(parts.weighted.clone()).into_iter().map(f64::from).collect();
        let objectives = self.entry_objectives(&per_image, &state.controls);
        let mut record = self.record(iteration, &parts, per_image, &state.controls)?;
        let accepted = match self.params.update {
            UpdateRule::Gradient => vec![true; objectives.len()],
            UpdateRule::TrustRegion => acceptance(state.trust.as_ref(), &objectives),
        };
        // Where every entry rejects its trial, the next trial needs no gradient: skip the VJPs.
        let mut gradient = None;
        if accepted.iter().any(|&a| a) {
            let gradient_of_step = flowgrad_gradient(
                &self.field,
                &trajectory,
                &mut recorded,
                Some(&controls),
                &time,
                grad_x1,
                GradientRule::of(&self.params),
            );
            let grid = &gradient_of_step.grid;
            let per_step =
                gradient_of_step.decomposed.assigned(self.params.segment_gradient, grid, &time, self.params.mode);
            record.segments = grid.len();
            gradient = Some(self.objective_gradient(&state.controls, &per_step));
        }

        let updated = match self.params.update {
            UpdateRule::Gradient => {
                let alpha = self.params.step_size;
                let gradient = gradient.expect("the gradient rule accepts every iteration");
                let values = state.controls.values.iter().zip(&gradient).map(|(&u, &g)| u - alpha * g).collect();
                let previous = state.controls.clone();
                self.track_best(state, iteration, record.objective, previous);
                HostTensor { shape: state.controls.shape.clone(), values }
            }
            UpdateRule::TrustRegion => {
                let trust = TrustRegion::advance(
                    state.trust.take(),
                    iteration,
                    &state.controls,
                    &objectives,
                    &accepted,
                    gradient.as_deref(),
                    self.params.trust_radius,
                );
                let next = trust.trial(self.control_scale());
                record.accepted = accepted;
                record.radius = trust.radius.clone();
                state.trust = Some(trust);
                next
            }
        };
        if updated.values.iter().any(|v| !v.is_finite()) {
            return Err(FlowGradError::NonFinite { what: "controls", iteration });
        }
        state.controls = updated;
        state.history.push(record.clone());
        state.iteration += 1;
        Ok(record)
    }

    /// How much a control changes the output per unit: u_k acts on the state directly in
    /// `Reference` mode (N of them add up), through a 1/N step in `Paper` mode.
    fn control_scale(&self) -> f32 {
        match self.params.mode {
            Mode::Reference => self.time_grid().dt(),
            Mode::Paper => 1.0,
        }
    }

    /// The objective of each control entry: its image's weighted loss plus λ·Σu², or for shared
    /// controls the batch's sum.
    fn entry_objectives(&self, per_image: &[f64], controls: &HostTensor) -> Vec<f64> {
        let lambda = self.params.lambda as f64;
        let energies = entry_energies(controls);
        match self.params.sharing {
            ControlSharing::PerImage => per_image.iter().zip(&energies).map(|(l, e)| l + lambda * e).collect(),
            ControlSharing::Shared => vec![per_image.iter().sum::<f64>() + lambda * energies[0]],
        }
    }

    /// Simulates the final controls, selects best or last, and returns the edited images.
    pub fn finish(&self, state: &ControlState) -> Result<EditOutcome<B>> {
        self.check_state(state)?;
        let (images, objectives) = self.evaluate(state, &state.controls, state.iteration)?;
        let last =
            |controls: HostTensor, images: Tensor<B, 4>, objectives: Vec<f64>, iterations: Vec<usize>| EditOutcome {
                images: images.detach(),
                controls,
                selected_iteration: iterations.iter().copied().max().unwrap_or(state.iteration),
                selected_iterations: iterations,
                objective: objectives.iter().sum(),
            };
        let entries = objectives.len();
        match (self.params.selection, self.params.update, &state.trust, &state.best) {
            (Selection::Best, UpdateRule::TrustRegion, Some(trust), _) => {
                let (controls, objectives, iterations) = trust.select(&state.controls, state.iteration, &objectives);
                let images = if controls == state.controls { images } else { self.decode(state, &controls)? };
                Ok(last(controls, images, objectives, iterations))
            }
            (Selection::Best, UpdateRule::Gradient, _, Some(best)) if best.objective < objectives.iter().sum() => {
                let images = self.decode(state, &best.controls)?;
                Ok(EditOutcome {
                    objective: best.objective,
                    ..last(best.controls.clone(), images, vec![], vec![best.iteration; entries])
                })
            }
            _ => Ok(last(state.controls.clone(), images, objectives, vec![state.iteration; entries])),
        }
    }

    /// Runs the remaining iterations, calling `on_iteration` after each, then [`Editor::finish`].
    pub fn run(
        &self,
        state: &mut ControlState,
        mut on_iteration: impl FnMut(&ControlState, &IterationRecord),
    ) -> Result<EditOutcome<B>> {
        while !self.is_finished(state) {
            let record = self.step(state)?;
            on_iteration(state, &record);
        }
        self.finish(state)
    }

    /// Encodes images into noise x_0 with the parameters' solver and steps.
    pub fn encode(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let grid = TimeGrid::new(self.params.encoder_steps(), self.params.time_eps);
        Tensor::from_inner(encode(&self.values, images.inner(), &grid, self.params.encode_solver))
    }

    /// Encodes `images` and decodes them with `controls` (`[N, 1 or B, C, H, W]`), no optimisation.
    pub fn apply_controls(&self, images: Tensor<B, 4>, controls: &HostTensor) -> Result<Tensor<B, 4>> {
        let [b, c, h, w] = images.dims();
        let n = self.params.steps;
        if controls.shape.len() != 5
            || controls.shape[0] != n
            || !(controls.shape[1] == 1 || controls.shape[1] == b)
            || controls.shape[2..] != [c, h, w]
        {
            return Err(FlowGradError::ShapeMismatch {
                what: "controls",
                expected: vec![n, 1, c, h, w],
                actual: controls.shape.clone(),
            });
        }
        let x0 = self.encode(images);
        let controls = self.control_tensors(controls, b);
        Ok(simulate_untracked(&self.values, x0, Some(&controls), &self.time_grid(), self.params.mode).last().detach())
    }

    /// Decodes the state's x_0 with the given controls (uncontrolled when all are zero).
    pub fn decode(&self, state: &ControlState, controls: &HostTensor) -> Result<Tensor<B, 4>> {
        let x0 = state.x0.to_tensor::<B, 4>(&self.device)?;
        let batch = x0.dims()[0];
        let controls = self.control_tensors(controls, batch);
        Ok(simulate_untracked(&self.values, x0, Some(&controls), &self.time_grid(), self.params.mode).last())
    }

    fn control_batch(&self, batch: usize) -> usize {
        match self.params.sharing {
            ControlSharing::PerImage => batch,
            ControlSharing::Shared => 1,
        }
    }

    /// Whether this editor can continue `state`: made by the same field, guidance and parameters
    /// for the same input (its fingerprint), with controls of the shapes they imply.
    pub fn check_state(&self, state: &ControlState) -> Result<()> {
        let expected = self.fingerprint(&state.original, state.seed, state.stream);
        if expected != state.fingerprint {
            return Err(FlowGradError::FingerprintMismatch { expected, found: state.fingerprint.clone() });
        }
        let [b, c, h, w]: [usize; 4] = state.x0.shape.clone().try_into().map_err(|_| FlowGradError::ShapeMismatch {
            what: "x0",
            expected: vec![0; 4],
            actual: state.x0.shape.clone(),
        })?;
        let want = vec![self.params.steps, self.control_batch(b), c, h, w];
        for (what, shape) in [("controls", &state.controls.shape), ("original", &state.original.shape)] {
            let expected = if what == "controls" { want.clone() } else { vec![b, c, h, w] };
            if *shape != expected {
                return Err(FlowGradError::ShapeMismatch { what, expected, actual: shape.clone() });
            }
        }
        Ok(())
    }

    /// One `[B, C, H, W]` tensor per step, broadcast to the batch when shared.
    fn control_tensors(&self, controls: &HostTensor, batch: usize) -> Vec<Tensor<B, 4>> {
        let [n, cb, c, h, w]: [usize; 5] = controls.shape.clone().try_into().expect("checked shape");
        let per_step = cb * c * h * w;
        (0..n)
            .map(|k| {
                let u: Tensor<B, 4> =
                    from_vec(controls.values[k * per_step..(k + 1) * per_step].to_vec(), [cb, c, h, w], &self.device);
                if cb == batch { u } else { u.expand([batch, c, h, w]) }
            })
            .collect()
    }

    pub(crate) fn loss_parts(&self, x1: Tensor<B, 4>, original: Tensor<B, 4>, ctx: &GuidanceContext) -> LossParts<B> {
        let guidance = self.guidance.loss(x1.clone(), ctx);
        let faithfulness = match self.params.faithfulness {
            Faithfulness::L1 => mean_abs_diff(x1, original),
            Faithfulness::L1Ssim => mean_abs_diff(x1.clone(), original.clone()) - ssim(x1, original) + 1.0,
        };
        let eta = self.params.eta;
        let weighted = guidance.clone() * eta + faithfulness.clone() * (1.0 - eta);
        LossParts { guidance, faithfulness, weighted }
    }

    /// The iteration's record; its `segments` are filled in once the backward pass has run.
    fn record(
        &self,
        iteration: usize,
        parts: &LossParts<B>,
        per_image: Vec<f64>,
        controls: &HostTensor,
    ) -> Result<IterationRecord> {
        let energy = energy(controls);
        let objective = per_image.iter().sum::<f64>() + self.params.lambda as f64 * energy;
        if !objective.is_finite() {
            return Err(FlowGradError::NonFinite { what: "objective", iteration });
        }
        Ok(IterationRecord {
            iteration,
            objective,
            guidance: to_vec(parts.guidance.clone()).iter().map(|&v| f64::from(v)).sum(),
            faithfulness: to_vec(parts.faithfulness.clone()).iter().map(|&v| f64::from(v)).sum(),
            energy,
            per_image,
            segments: 0,
            accepted: vec![],
            radius: vec![],
        })
    }

    /// ∂objective/∂u = ∂L/∂u + 2λu on the host (summed over the batch for shared controls).
    fn objective_gradient(&self, controls: &HostTensor, per_step: &[Tensor<B, 4>]) -> Vec<f32> {
        let shared = self.params.sharing == ControlSharing::Shared;
        let grads: Vec<Tensor<B, 4>> =
            per_step.iter().map(|g| if shared { g.clone().sum_dim(0) } else { g.clone() }).collect();
        let lambda = self.params.lambda;
        to_vec(Tensor::cat(grads, 0).inner())
            .into_iter()
            .zip(&controls.values)
            .map(|(g, &u)| g + 2.0 * lambda * u)
            .collect()
    }

    fn track_best(&self, state: &mut ControlState, iteration: usize, objective: f64, controls: HostTensor) {
        if self.params.selection != Selection::Best {
            return;
        }
        if state.best.as_ref().is_none_or(|b| objective < b.objective) {
            state.best = Some(BestControls { iteration, objective, controls });
        }
    }
}

/// Σ‖u‖² over all controls.
pub fn energy(controls: &HostTensor) -> f64 {
    controls.values.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}
