//! Images ⇄ model tensors: PNG/JPEG decoding with size limits, PNG encoding, grids.
//!
//! Tensors are CHW, row-major, `f32` in [-1, 1] (pixel value `p` ↦ `p / 127.5 - 1`), with 1
//! (gray) or 3 (RGB) channels.

use std::io::Cursor;

use ::image::codecs::png::PngEncoder;
use ::image::imageops::FilterType;
use ::image::{ColorType, DynamicImage, ExtendedColorType, ImageEncoder, ImageFormat, ImageReader, Limits};

/// What [`decode_for_model`] accepts, and how it fits smaller inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest encoded size in bytes (default 32 MiB).
    pub max_bytes: usize,
    /// Largest width in pixels (default 8192).
    pub max_width: u32,
    /// Largest height in pixels (default 8192).
    pub max_height: u32,
    /// Centre an input smaller than the model's frame on black (its [`ModelImage::region`]
    /// says where) instead of stretching it: for models trained on images padded that way
    /// (default false: stretch).
    pub pad_smaller: bool,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self { max_bytes: 32 << 20, max_width: 8192, max_height: 8192, pad_smaller: false }
    }
}

/// A decoded image, converted and resized to what a model takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelImage {
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// CHW row-major values in [-1, 1].
    pub values: Vec<f32>,
    /// What was changed, e.g. "resized 640×480 RGB → 32×32 gray"; `None` when the image
    /// already had the requested size and colour type.
    pub note: Option<String>,
    /// Where a smaller input sits inside the model's frame (it was centred on black, not
    /// stretched); its edit is cropped back to this region ([`crop`]), so the output has the
    /// input's size. `None` when the image fills the frame.
    pub region: Option<Region>,
}

/// A rectangle of an image: `width`×`height` pixels from column `left`, row `top`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First column.
    pub left: usize,
    /// First row.
    pub top: usize,
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

/// The `region` of a CHW tensor of `channels`×`height`×`width`, as a CHW tensor of the region's size.
pub fn crop(values: &[f32], channels: usize, height: usize, width: usize, region: Region) -> Vec<f32> {
    debug_assert_eq!(values.len(), channels * height * width);
    let mut out = Vec::with_capacity(channels * region.height * region.width);
    for c in 0..channels {
        for row in region.top..region.top + region.height {
            let start = (c * height + row) * width + region.left;
            out.extend_from_slice(&values[start..start + region.width]);
        }
    }
    out
}

/// Why an image could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No bytes at all.
    #[error("the image is empty (0 bytes)")]
    Empty,
    /// More bytes than [`ImageLimits::max_bytes`].
    #[error("the image is {bytes} bytes, over the limit of {max} bytes")]
    TooManyBytes {
        /// Size of the input.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Wider or taller than [`ImageLimits`] allow.
    #[error("the image is {width}×{height} pixels, over the limit of {max_width}×{max_height}")]
    TooLarge {
        /// Width of the input.
        width: u32,
        /// Height of the input.
        height: u32,
        /// Width limit.
        max_width: u32,
        /// Height limit.
        max_height: u32,
    },
    /// Not a PNG or JPEG file.
    #[error("unsupported image format: {0} (PNG and JPEG are supported)")]
    Unsupported(String),
    /// Looks like PNG/JPEG but cannot be decoded.
    #[error("corrupt or truncated {format} image: {message}")]
    Corrupt {
        /// "PNG" or "JPEG".
        format: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// Channels not 1 or 3, a zero size, or a value count that does not match the shape.
    #[error("invalid image tensor: {0}")]
    Shape(String),
    /// A NaN value, which has no pixel value (infinities are clamped).
    #[error("image tensor value {index} is NaN")]
    NotANumber {
        /// Index of the first NaN in the values.
        index: usize,
    },
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

/// Decodes a PNG or JPEG into a `channels`×`height`×`width` tensor in [-1, 1].
///
/// Colour conversion: gray uses luma (Rec. 709 weights); alpha is dropped. Resizing: Lanczos3
/// when shrinking, triangle (bilinear) when enlarging (or centring on black with
/// [`ImageLimits::pad_smaller`]); the aspect ratio is not kept. Inputs over
/// `limits` are rejected before their pixels are decoded.
pub fn decode_for_model(
    bytes: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    limits: &ImageLimits,
) -> Result<ModelImage, ImageError> {
    let (target_w, target_h) = check_shape(channels, height, width)?;
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooManyBytes { bytes: bytes.len(), max: limits.max_bytes });
    }
    let (format, format_name) = match ::image::guess_format(bytes) {
        Ok(ImageFormat::Png) => (ImageFormat::Png, "PNG"),
        Ok(ImageFormat::Jpeg) => (ImageFormat::Jpeg, "JPEG"),
        Ok(other) => return Err(ImageError::Unsupported(format!("{other:?}"))),
        Err(_) => {
            return Err(ImageError::Unsupported("unrecognised file signature".into()));
        }
    };
    let corrupt = |e: ::image::ImageError| ImageError::Corrupt {
        format: format_name,
        message: readable_decoder_message(&e.to_string()),
    };
    let (src_w, src_h) = ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(corrupt)?;
    let too_large = ImageError::TooLarge {
        width: src_w,
        height: src_h,
        max_width: limits.max_width,
        max_height: limits.max_height,
    };
    if src_w > limits.max_width || src_h > limits.max_height {
        return Err(too_large);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decode_limits = Limits::default();
    decode_limits.max_image_width = Some(limits.max_width);
    decode_limits.max_image_height = Some(limits.max_height);
    reader.limits(decode_limits);
    let decoded = reader.decode().map_err(|e| match e {
        ::image::ImageError::Limits(_) => too_large,
        e => corrupt(e),
    })?;

    let src_color = color_name(decoded.color());
    let converted = if channels == 1 {
        DynamicImage::ImageLuma8(decoded.to_luma8())
    } else {
        DynamicImage::ImageRgb8(decoded.to_rgb8())
    };
    let dst_color = if channels == 1 { "gray" } else { "RGB" };
    if limits.pad_smaller && src_w <= target_w && src_h <= target_h && (src_w, src_h) != (target_w, target_h) {
        // smaller, for a model trained on padded images: centred on black, cropped back on output
        let region = Region {
            left: (width - src_w as usize) / 2,
            top: (height - src_h as usize) / 2,
            width: src_w as usize,
            height: src_h as usize,
        };
        let small = chw_values(converted.into_bytes(), channels, region.height, region.width);
        let mut values = vec![-1.0f32; channels * height * width];
        for c in 0..channels {
            for row in 0..region.height {
                let src = (c * region.height + row) * region.width;
                let dst = (c * height + region.top + row) * width + region.left;
                values[dst..dst + region.width].copy_from_slice(&small[src..src + region.width]);
            }
        }
        let note = format!(
            "padded {src_w}×{src_h} {src_color} → {target_w}×{target_h} {dst_color} (centred on black; the output is cropped back to {src_w}×{src_h})"
        );
        return Ok(ModelImage { channels, height, width, values, note: Some(note), region: Some(region) });
    }
    let resized = (src_w, src_h) != (target_w, target_h);
    let converted = if resized {
        let filter = if target_w < src_w || target_h < src_h { FilterType::Lanczos3 } else { FilterType::Triangle };
        converted.resize_exact(target_w, target_h, filter)
    } else {
        converted
    };
    let note = (resized || src_color != dst_color).then(|| {
        let verb = if resized { "resized" } else { "converted" };
        format!("{verb} {src_w}×{src_h} {src_color} → {target_w}×{target_h} {dst_color}")
    });
    let values = chw_values(converted.into_bytes(), channels, height, width);
    Ok(ModelImage { channels, height, width, values, note, region: None })
}

/// A decoder's complaint without the Rust debug dumps some of them embed: the PNG decoder
/// writes a chunk as `ChunkType { type: IDAT, critical: true, … }`, shown here as `IDAT chunk`.
fn readable_decoder_message(message: &str) -> String {
    const DUMP: &str = "ChunkType { type: ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(DUMP) {
        out.push_str(&rest[..start]);
        let after = &rest[start + DUMP.len()..];
        let name_end = after.find([',', ' ', '}']).unwrap_or(after.len());
        out.push_str(&after[..name_end]);
        out.push_str(" chunk");
        rest = after.find('}').map_or("", |close| &after[close + 1..]);
    }
    out.push_str(rest);
    out.trim_end().to_string()
}

/// HWC 8-bit pixels as CHW values in [-1, 1].
fn chw_values(pixels: Vec<u8>, channels: usize, height: usize, width: usize) -> Vec<f32> {
    let plane = height * width;
    let mut values = vec![0.0f32; channels * plane];
    for (i, &p) in pixels.iter().enumerate() {
        values[(i % channels) * plane + i / channels] = f32::from(p) / 127.5 - 1.0;
    }
    values
}

/// Encodes a CHW tensor in [-1, 1] (values outside are clamped) as an 8-bit PNG.
pub fn encode_png(values: &[f32], channels: usize, height: usize, width: usize) -> Result<Vec<u8>, ImageError> {
    let (w, h) = check_shape(channels, height, width)?;
    check_len(values, channels, height, width, "values")?;
    if let Some(index) = values.iter().position(|v| v.is_nan()) {
        return Err(ImageError::NotANumber { index });
    }
    let plane = height * width;
    let mut pixels = vec![0u8; values.len()];
    for (i, p) in pixels.iter_mut().enumerate() {
        let v = values[(i % channels) * plane + i / channels];
        // In range by the clamp; the cast cannot truncate.
        *p = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
    }
    let color = if channels == 1 { ExtendedColorType::L8 } else { ExtendedColorType::Rgb8 };
    let mut png = Vec::new();
    PngEncoder::new(&mut png).write_image(&pixels, w, h, color).map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(png)
}

/// Lays out equally-sized CHW tensors as a PNG grid, `columns` per row (left to right, top to
/// bottom), separated and framed by `pad` white pixels. Typical use: before/after pairs with
/// `columns = 2`.
pub fn grid_png(
    images: &[&[f32]],
    channels: usize,
    height: usize,
    width: usize,
    columns: usize,
    pad: usize,
) -> Result<Vec<u8>, ImageError> {
    check_shape(channels, height, width)?;
    if images.is_empty() || columns == 0 {
        return Err(ImageError::Shape("a grid needs at least one image and one column".into()));
    }
    for (i, image) in images.iter().enumerate() {
        check_len(image, channels, height, width, &format!("grid image {i}"))?;
    }
    let cols = columns.min(images.len());
    let rows = images.len().div_ceil(cols);
    let span = |n: usize, size: usize| n.checked_mul(size)?.checked_add(n.checked_add(1)?.checked_mul(pad)?);
    let (Some(grid_w), Some(grid_h)) = (span(cols, width), span(rows, height)) else {
        return Err(ImageError::Shape("grid is too large".into()));
    };
    check_shape(channels, grid_h, grid_w)?;
    let mut canvas = vec![1.0f32; channels * grid_h * grid_w];
    for (i, image) in images.iter().enumerate() {
        let top = pad + (i / cols) * (height + pad);
        let left = pad + (i % cols) * (width + pad);
        for c in 0..channels {
            for y in 0..height {
                let src = &image[(c * height + y) * width..][..width];
                canvas[(c * grid_h + top + y) * grid_w + left..][..width].copy_from_slice(src);
            }
        }
    }
    encode_png(&canvas, channels, grid_h, grid_w)
}

/// Checks a tensor shape and returns (width, height) as image dimensions.
fn check_shape(channels: usize, height: usize, width: usize) -> Result<(u32, u32), ImageError> {
    if channels != 1 && channels != 3 {
        return Err(ImageError::Shape(format!("channels must be 1 or 3, got {channels}")));
    }
    let dims = u32::try_from(width).ok().zip(u32::try_from(height).ok());
    match dims {
        Some((w, h)) if w > 0 && h > 0 && (channels * height).checked_mul(width).is_some() => Ok((w, h)),
        _ => Err(ImageError::Shape(format!("invalid size {width}×{height}"))),
    }
}

/// Checks that a tensor has `channels * height * width` values.
fn check_len(values: &[f32], channels: usize, height: usize, width: usize, what: &str) -> Result<(), ImageError> {
    let expected = channels * height * width;
    if values.len() != expected {
        return Err(ImageError::Shape(format!(
            "{what} has {} values, expected {channels}×{height}×{width} = {expected}",
            values.len()
        )));
    }
    Ok(())
}

/// A short name of a decoded colour type, for notes.
fn color_name(color: ColorType) -> &'static str {
    match (color.has_color(), color.has_alpha()) {
        (false, false) => "gray",
        (false, true) => "gray+alpha",
        (true, false) => "RGB",
        (true, true) => "RGBA",
    }
}

#[cfg(test)]
mod tests {
    use super::readable_decoder_message;

    #[test]
    fn chunk_debug_dumps_become_chunk_names() {
        let raw = "Format error decoding Png: ChunkType { type: IDAT, critical: true, private: false, reserved: false, safecopy: false } is out of order\n";
        assert_eq!(readable_decoder_message(raw), "Format error decoding Png: IDAT chunk is out of order");
        assert_eq!(readable_decoder_message("unexpected end of file"), "unexpected end of file");
    }
}
