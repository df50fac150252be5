//! The result table of a parity run.

use std::fmt;

/// How one quantity fared.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Error within tolerance.
    Pass,
    /// Error above tolerance.
    Fail,
    /// Not checked, with the reason (e.g. a model this build does not have yet).
    Skipped(String),
}

/// One row: a quantity, its error measure and the tolerance it is held to.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Fixture tensor or derived quantity.
    pub quantity: String,
    /// How the error is measured (e.g. "scaled", "relative", "exact").
    pub measure: &'static str,
    /// The error found (0 for exact matches, NaN when skipped).
    pub error: f64,
    /// The largest acceptable error.
    pub tolerance: f64,
    /// Pass, fail or skipped.
    pub outcome: Outcome,
}

/// All checks of one fixture set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParityReport {
    /// Rows in the order they were checked.
    pub checks: Vec<Check>,
}

impl ParityReport {
    /// Records an error measured against a tolerance.
    pub fn measure(&mut self, quantity: impl Into<String>, measure: &'static str, error: f64, tolerance: f64) {
        let outcome = if error <= tolerance { Outcome::Pass } else { Outcome::Fail };
        self.checks.push(Check { quantity: quantity.into(), measure, error, tolerance, outcome });
    }

    /// Records an exact comparison (e.g. segment boundaries); `detail` explains a mismatch.
    pub fn exact(&mut self, quantity: impl Into<String>, equal: bool, detail: impl fmt::Display) {
        let quantity = quantity.into();
        let quantity = if equal { quantity } else { format!("{quantity} ({detail})") };
        self.measure(quantity, "exact", if equal { 0.0 } else { 1.0 }, 0.0);
    }

    /// Records a quantity that could not be checked.
    pub fn skip(&mut self, quantity: impl Into<String>, reason: impl Into<String>) {
        self.checks.push(Check {
            quantity: quantity.into(),
            measure: "-",
            error: f64::NAN,
            tolerance: f64::NAN,
            outcome: Outcome::Skipped(reason.into()),
        });
    }

    /// True when no check failed (skipped checks do not fail a run).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    /// The row of `quantity`, if checked.
    pub fn get(&self, quantity: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.quantity == quantity)
    }
}

impl fmt::Display for ParityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<34} {:<9} {:>11} {:>11}  result", "quantity", "measure", "max error", "tolerance")?;
        for c in &self.checks {
            match &c.outcome {
                Outcome::Skipped(why) => {
                    writeln!(f, "{:<34} {:<9} {:>11} {:>11}  skipped: {why}", c.quantity, c.measure, "-", "-")?
                }
                outcome => writeln!(
                    f,
                    "{:<34} {:<9} {:>11.3e} {:>11.1e}  {}",
                    c.quantity,
                    c.measure,
                    c.error,
                    c.tolerance,
                    if *outcome == Outcome::Pass { "ok" } else { "FAIL" }
                )?,
            }
        }
        let failed = self.checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
        let skipped = self.checks.iter().filter(|c| matches!(c.outcome, Outcome::Skipped(_))).count();
        write!(f, "{} passed, {failed} failed, {skipped} skipped", self.checks.len() - failed - skipped)
    }
}

/// max|a − b| / max|b| over all elements (the fixtures' `scaled_err`).
pub fn scaled_error(a: &[f32], b: &[f32]) -> f64 {
    let max_diff = a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max);
    let max_b = b.iter().map(|y| y.abs() as f64).fold(0.0, f64::max);
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    if max_b == 0.0 { max_diff } else { max_diff / max_b }
}

/// Largest elementwise |a − b| / |b| (absolute where b = 0).
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs() as f64;
            if *y == 0.0 { d } else { d / y.abs() as f64 }
        })
        .fold(0.0, f64::max)
}

/// Worst per-chunk scaled error, chunks of `chunk` elements (per step or per sample).
pub fn chunked_scaled_error(a: &[f32], b: &[f32], chunk: usize) -> f64 {
    if a.len() != b.len() || chunk == 0 {
        return f64::INFINITY;
    }
    a.chunks(chunk).zip(b.chunks(chunk)).map(|(x, y)| scaled_error(x, y)).fold(0.0, f64::max)
}
