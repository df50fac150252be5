//! The PNG plots of `flowgrad eval` (plotters' bitmap backend, encoded with `image`).

use std::ops::Range;
use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

const SIZE: (u32, u32) = (800, 500);

/// Named lines of (x, y) points.
type Series<'a> = &'a [(String, Vec<(f64, f64)>)];

/// Draws `series` on axes `x` × `y` with a caption, axis names and a legend, into a PNG at `path`.
fn line_chart<Y>(
    path: &Path,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    x: Range<f64>,
    y: Y,
    series: Series<'_>,
) -> anyhow::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root: DrawingArea<BitMapBackend<'_>, Shift> =
            BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).label_style(("sans-serif", 14)).draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
    }
    image::RgbImage::from_raw(SIZE.0, SIZE.1, pixels)
        .context("plot buffer size")?
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The (min, max) of `values` widened by `pad` of the span (or ±1 around a single value).
fn span(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let margin = if hi > lo { (hi - lo) * pad } else { 1.0 };
    lo - margin..hi + margin
}

/// Fig. 5a analog: mean straightness S(t) of the encoded trajectories.
pub fn straightness(path: &Path, t: &[f64], s: &[f64]) -> anyhow::Result<()> {
    let points = t.iter().copied().zip(s.iter().copied()).collect();
    straightness_chart(
        path,
        "Straightness of the encoded trajectories (mean over images)",
        &[("mean S(t)".into(), points)],
    )
}

/// Fig. 5a across model families: mean S(t) of generation trajectories, one line per model.
pub fn straightness_families(path: &Path, series: Series<'_>) -> anyhow::Result<()> {
    straightness_chart(path, "Straightness of generation trajectories per model (mean over draws)", series)
}

/// S(t) lines on a log axis spanning their positive values (zeros cannot be drawn there).
fn straightness_chart(path: &Path, caption: &str, series: Series<'_>) -> anyhow::Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> =
        series.iter().map(|(name, p)| (name.clone(), p.iter().copied().filter(|q| q.1 > 0.0).collect())).collect();
    let values = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let y = if lo.is_finite() { lo / 2.0..hi * 2.0 } else { 1e-6..1.0 };
    line_chart(path, caption, ("t", "S(t)"), 0.0..1.0, y.log_scale(), &series)
}

/// Fig. 5b analog: objective per image against the seconds of updates, one line per ξ.
pub fn xi_sweep(path: &Path, series: Series<'_>) -> anyhow::Result<()> {
    let x = span(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)), 0.03);
    let y = span(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)), 0.05);
    line_chart(path, "FlowGrad objective vs time for each ξ", ("seconds of updates", "objective / image"), x, y, series)
}

/// Fig. 7 analog: judge success against the number of Euler steps N.
pub fn steps_sweep(path: &Path, points: &[(f64, f64)]) -> anyhow::Result<()> {
    let x = span(points.iter().map(|p| p.0), 0.05);
    line_chart(
        path,
        "FlowGrad edit success vs Euler steps N",
        ("N", "judge success rate"),
        x,
        0.0..1.0,
        &[("FlowGrad".to_string(), points.to_vec())],
    )
}

/// The quality frontier: judge success against a faithfulness measure, one line per method.
pub fn frontier(path: &Path, axis: &str, series: Series<'_>) -> anyhow::Result<()> {
    let x = span(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)), 0.05);
    line_chart(path, &format!("Judge success vs {axis}"), (axis, "judge success rate"), x, 0.0..1.0, series)
}
