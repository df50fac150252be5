//! The trust-region update rule ([`UpdateRule::TrustRegion`](crate::UpdateRule)): per control
//! entry (an image, or the batch for shared controls) a radius ρ, the best controls accepted so
//! far with their objective and unit-RMS descent direction. A trial whose objective is not below
//! the accepted one is rejected (back to the accepted controls, ρ halves); an accepted one moves
//! on from where it landed (ρ grows by half). The accepted objective therefore never rises.

use crate::host::HostTensor;
use crate::params::{TRUST_GROWTH, TRUST_SHRINK};

/// The rule's resumable state (checkpointed with the controls).
#[derive(Debug, Clone, PartialEq)]
pub struct TrustRegion {
    /// Radius ρ per entry: the RMS output change the next step aims at.
    pub radius: Vec<f32>,
    /// Objective of each entry's accepted controls.
    pub accepted_objective: Vec<f64>,
    /// Iteration whose starting controls each entry accepted last.
    pub accepted_iteration: Vec<usize>,
    /// The accepted controls, `[N, entries, C, H, W]`.
    pub accepted: HostTensor,
    /// Unit-RMS descent direction per entry at its accepted controls, same shape.
    pub direction: HostTensor,
}

/// Values of entry `entry` of `[N, entries, …]` controls, step by step: `(offset, len)` ranges.
fn entry_ranges(shape: &[usize], entry: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (steps, entries) = (shape[0], shape[1]);
    let per: usize = shape[2..].iter().product();
    (0..steps).map(move |k| {
        let start = (k * entries + entry) * per;
        start..start + per
    })
}

/// Σ u² of each entry of `[N, entries, …]` controls.
pub fn entry_energies(controls: &HostTensor) -> Vec<f64> {
    (0..controls.shape[1])
        .map(|i| {
            entry_ranges(&controls.shape, i)
                .flat_map(|r| controls.values[r].iter())
                .map(|&v| f64::from(v) * f64::from(v))
                .sum()
        })
        .collect()
}

/// Sets the controls of every entry `i` with `zero[i]` to zero.
pub fn zero_entries(controls: &mut HostTensor, zero: &[bool]) {
    let shape = controls.shape.clone();
    for (entry, _) in zero.iter().enumerate().filter(|(_, z)| **z) {
        for range in entry_ranges(&shape, entry) {
            controls.values[range].iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

/// Whether each entry's trial objective is accepted: always on the first iteration, afterwards
/// only when strictly below the accepted objective.
pub fn acceptance(trust: Option<&TrustRegion>, objectives: &[f64]) -> Vec<bool> {
    match trust {
        None => vec![true; objectives.len()],
        Some(t) => objectives.iter().zip(&t.accepted_objective).map(|(o, a)| o < a).collect(),
    }
}

/// Scales each entry of `gradient` (same layout as the controls) to unit RMS (zero stays zero).
fn unit_directions(shape: &[usize], gradient: &[f32]) -> Vec<f32> {
    let mut unit = gradient.to_vec();
    for i in 0..shape[1] {
        let (sum, count) = entry_ranges(shape, i)
            .flat_map(|r| gradient[r].iter())
            .fold((0.0f64, 0usize), |(s, n), &g| (s + f64::from(g) * f64::from(g), n + 1));
        let rms = (sum / count.max(1) as f64).sqrt();
        let inverse = if rms > 0.0 { (1.0 / rms) as f32 } else { 0.0 };
        for r in entry_ranges(shape, i) {
            unit[r].iter_mut().for_each(|v| *v *= inverse);
        }
    }
    unit
}

impl TrustRegion {
    /// The state after an iteration at `iteration` tried `controls` with per-entry `objectives`:
    /// accepted entries take the trial as their new best with the direction of `gradient`
    /// (∂objective/∂u, same layout; only read where some entry is accepted), rejected ones keep
    /// theirs and shrink. `first_radius` starts every entry's radius on the first iteration.
    pub fn advance(
        previous: Option<TrustRegion>,
        iteration: usize,
        controls: &HostTensor,
        objectives: &[f64],
        accepted: &[bool],
        gradient: Option<&[f32]>,
        first_radius: f32,
    ) -> TrustRegion {
        let entries = controls.shape[1];
        let mut next = previous.unwrap_or_else(|| TrustRegion {
            radius: vec![first_radius; entries],
            accepted_objective: vec![f64::INFINITY; entries],
            accepted_iteration: vec![iteration; entries],
            accepted: controls.clone(),
            direction: HostTensor { shape: controls.shape.clone(), values: vec![0.0; controls.values.len()] },
        });
        let unit = gradient.map(|g| unit_directions(&controls.shape, g));
        for i in 0..entries {
            if accepted[i] {
                let unit = unit.as_ref().expect("a gradient is given when an entry is accepted");
                if next.accepted_objective[i].is_finite() {
                    next.radius[i] *= TRUST_GROWTH;
                }
                next.accepted_objective[i] = objectives[i];
                next.accepted_iteration[i] = iteration;
                for r in entry_ranges(&controls.shape, i) {
                    next.accepted.values[r.clone()].copy_from_slice(&controls.values[r.clone()]);
                    next.direction.values[r.clone()].copy_from_slice(&unit[r]);
                }
            } else {
                next.radius[i] *= TRUST_SHRINK;
            }
        }
        next
    }

    /// The next trial: every entry's accepted controls moved by −ρ_i·`scale` along its unit
    /// direction (`scale` turns an output change into a per-step control change).
    pub fn trial(&self, scale: f32) -> HostTensor {
        let mut values = self.accepted.values.clone();
        for (i, &radius) in self.radius.iter().enumerate() {
            let step = radius * scale;
            for r in entry_ranges(&self.accepted.shape, i) {
                for (u, d) in values[r.clone()].iter_mut().zip(&self.direction.values[r]) {
                    *u -= step * d;
                }
            }
        }
        HostTensor { shape: self.accepted.shape.clone(), values }
    }

    /// Per entry: `candidate` where its objective is below the accepted one, else the accepted
    /// controls; returns the merged controls, per-entry objectives and selected iterations.
    pub fn select(
        &self,
        candidate: &HostTensor,
        candidate_iteration: usize,
        objectives: &[f64],
    ) -> (HostTensor, Vec<f64>, Vec<usize>) {
        let mut controls = candidate.clone();
        let mut chosen = objectives.to_vec();
        let mut iterations = vec![candidate_iteration; objectives.len()];
        for i in 0..objectives.len() {
            if objectives[i] >= self.accepted_objective[i] {
                chosen[i] = self.accepted_objective[i];
                iterations[i] = self.accepted_iteration[i];
                for r in entry_ranges(&controls.shape, i) {
                    controls.values[r.clone()].copy_from_slice(&self.accepted.values[r]);
                }
            }
        }
        (controls, chosen, iterations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls(values: Vec<f32>) -> HostTensor {
        HostTensor { shape: vec![2, 2, 1, 1, 1], values }
    }

    #[test]
    fn accepted_entries_step_by_their_radius_and_rejected_ones_return_and_shrink() {
        let u = controls(vec![0.0; 4]);
        // entry 0: gradient (3, 3) → unit (1, 1); entry 1: (0, 2) → unit (0, √2)
        let gradient = [3.0, 0.0, 3.0, 2.0];
        let t = TrustRegion::advance(None, 0, &u, &[1.0, 1.0], &[true, true], Some(&gradient), 0.5);
        assert_eq!(t.radius, vec![0.5, 0.5]);
        let trial = t.trial(0.1);
        let expected = [-0.05, 0.0, -0.05, -0.05 * 2f32.sqrt()];
        for (a, b) in trial.values.iter().zip(expected) {
            assert!((a - b).abs() < 1e-7, "{:?}", trial.values);
        }
        // entry 0 improves, entry 1 does not
        let flags = acceptance(Some(&t), &[0.5, 1.0]);
        assert_eq!(flags, vec![true, false]);
        let t2 = TrustRegion::advance(Some(t), 1, &trial, &[0.5, 1.0], &flags, Some(&[1.0, 9.0, 1.0, 9.0]), 0.5);
        assert_eq!(t2.radius, vec![0.75, 0.25]);
        assert_eq!((t2.accepted_iteration.clone(), t2.accepted_objective.clone()), (vec![1, 0], vec![0.5, 1.0]));
        // entry 1 restarts from zero along its old direction with the smaller radius
        let next = t2.trial(0.1);
        assert!((next.values[3] + 0.025 * 2f32.sqrt()).abs() < 1e-7 && next.values[1] == 0.0, "{:?}", next.values);
        // selection keeps the accepted entry where the candidate is worse
        let (merged, objectives, iterations) = t2.select(&next, 2, &[0.4, 2.0]);
        assert_eq!((objectives, iterations), (vec![0.4, 1.0], vec![2, 0]));
        assert_eq!(merged.values[1], 0.0);
        assert_eq!(merged.values[0], next.values[0]);
    }

    #[test]
    fn energies_are_per_entry() {
        assert_eq!(entry_energies(&controls(vec![1.0, 2.0, 3.0, 4.0])), vec![10.0, 20.0]);
    }
}
