//! grid.png of an embedded run: each input next to its edit, enlarged with nearest-neighbour
//! sampling so people can see them, under a header naming the columns and a label per edit.

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Smallest side an image is drawn at, in pixels.
pub const MIN_CELL: usize = 160;
/// Height of the text band above each row.
const LABEL_BAND: u32 = 22;
/// Height of the header naming the columns.
const HEADER: u32 = 26;
/// Gap around cells.
const GAP: u32 = 8;

/// One row of the grid: the input and its edit (CHW in [−1, 1]) with a caption over each.
pub struct GridRow<'a> {
    /// The input image.
    pub input: &'a [f32],
    /// The edited image.
    pub edit: &'a [f32],
    /// Text over the input (e.g. its file name).
    pub input_label: String,
    /// Text over the edit (e.g. "p(coat) 0.02 → 0.91").
    pub edit_label: String,
}

/// Draws the rows as a PNG: columns "input" and "edit", images enlarged by an integer factor
/// to at least [`MIN_CELL`] pixels a side. With `text` (which needs [`crate::font::load_font`]
/// first) the header and labels are written, without it their bands stay blank.
pub fn labelled_grid(
    rows: &[GridRow<'_>],
    channels: usize,
    height: usize,
    width: usize,
    text: bool,
) -> anyhow::Result<Vec<u8>> {
    let scale = MIN_CELL.div_ceil(height.min(width)).max(1);
    let (cell_w, cell_h) = (width * scale, height * scale);
    let size = (2 * cell_w as u32 + 3 * GAP, HEADER + rows.len() as u32 * (LABEL_BAND + cell_h as u32 + GAP));
    let stride = size.0 as usize * 3;
    let mut pixels = vec![255u8; size.1 as usize * stride];
    let cell_top = |r: usize| (HEADER + r as u32 * (LABEL_BAND + cell_h as u32 + GAP)) as usize;
    let cell_left = |column: usize| (GAP as usize) + column * (cell_w + GAP as usize);
    for (r, row) in rows.iter().enumerate() {
        for (column, image) in [row.input, row.edit].into_iter().enumerate() {
            let (top, left) = (cell_top(r) + LABEL_BAND as usize, cell_left(column));
            for y in 0..cell_h {
                for x in 0..cell_w {
                    let (sy, sx) = (y / scale, x / scale);
                    for c in 0..3 {
                        let v = image[(c.min(channels - 1) * height + sy) * width + sx];
                        pixels[(top + y) * stride + (left + x) * 3 + c] =
                            ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                    }
                }
            }
        }
    }
    if text {
        let root: DrawingArea<BitMapBackend<'_>, Shift> =
            BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        let header = ("sans-serif", 16).into_font().color(&BLACK);
        let caption = ("sans-serif", 13).into_font().color(&BLACK);
        root.draw_text("input", &header, (cell_left(0) as i32, 5))?;
        root.draw_text("edit", &header, (cell_left(1) as i32, 5))?;
        for (r, row) in rows.iter().enumerate() {
            let y = cell_top(r) as i32 + 4;
            root.draw_text(&row.input_label, &caption, (cell_left(0) as i32, y))?;
            root.draw_text(&row.edit_label, &caption, (cell_left(1) as i32, y))?;
        }
        root.present()?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, pixels).context("grid buffer size")?;
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png)?;
    Ok(png.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_enlarged_to_at_least_the_minimum_cell_with_nearest_neighbours() {
        crate::font::load_font(None).unwrap();
        let input: Vec<f32> = (0..32 * 32).map(|i| if i % 2 == 0 { -1.0 } else { 1.0 }).collect();
        let edit = vec![1.0f32; 32 * 32];
        let rows = [GridRow { input: &input, edit: &edit, input_label: "a".into(), edit_label: "p 0 → 1".into() }];
        let png = labelled_grid(&rows, 1, 32, 32, true).unwrap();
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (2 * 160 + 3 * GAP, HEADER + LABEL_BAND + 160 + GAP));
        let top = HEADER + LABEL_BAND;
        // input pixel (0, 0) is black and spans 5×5 screen pixels; (0, 1) is white
        for (dx, dy) in [(0, 0), (4, 4), (0, 4)] {
            assert_eq!(decoded.get_pixel(GAP + dx, top + dy).0, [0, 0, 0]);
        }
        assert_eq!(decoded.get_pixel(GAP + 5, top).0, [255, 255, 255]);
        // the edit column is white throughout
        assert_eq!(decoded.get_pixel(2 * GAP + 160 + 80, top + 80).0, [255, 255, 255]);
        // where no font can be had the same grid comes without text, never as an error
        let plain = image::load_from_memory(&labelled_grid(&rows, 1, 32, 32, false).unwrap()).unwrap().to_rgb8();
        assert_eq!(plain.dimensions(), decoded.dimensions());
        assert!(plain.pixels().take((HEADER * plain.width()) as usize).all(|p| p.0 == [255, 255, 255]), "blank header");
        assert_eq!(plain.get_pixel(GAP, top).0, [0, 0, 0]);
    }
}
