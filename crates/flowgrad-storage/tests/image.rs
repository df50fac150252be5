//! Image decoding/encoding on PNG and JPEG files made in the test.

use std::io::Cursor;

use flowgrad_storage::image::{ImageError, ImageLimits, Region, crop, decode_for_model, encode_png, grid_png};
use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// A smooth colour gradient (smooth so that JPEG stays close to it).
fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| Rgb([(x * 255 / (width - 1)) as u8, (y * 255 / (height - 1)) as u8, 128]))
}

fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn to_model(p: u8) -> f32 {
    f32::from(p) / 127.5 - 1.0
}

#[test]
fn png_decodes_exactly_in_chw_order() {
    let img = gradient(5, 4);
    let png = encode(&img, ImageFormat::Png);
    let m = decode_for_model(&png, 3, 4, 5, &ImageLimits::default()).unwrap();
    assert_eq!((m.channels, m.height, m.width, m.values.len()), (3, 4, 5, 60));
    assert_eq!(m.note, None, "same size and colour type needs no note");
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..5 {
                let expected = to_model(img.get_pixel(x, y)[c]);
                assert_eq!(m.values[(c * 4 + y as usize) * 5 + x as usize], expected, "c{c} y{y} x{x}");
            }
        }
    }
    assert!(m.values.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn jpeg_decodes_close_to_the_original() {
    let img = gradient(16, 16);
    let jpeg = encode(&img, ImageFormat::Jpeg);
    let m = decode_for_model(&jpeg, 3, 16, 16, &ImageLimits::default()).unwrap();
    assert_eq!(m.note, None);
    let mut worst = 0.0f32;
    for c in 0..3 {
        for y in 0..16u32 {
            for x in 0..16u32 {
                let got = m.values[(c * 16 + y as usize) * 16 + x as usize];
                worst = worst.max((got - to_model(img.get_pixel(x, y)[c])).abs());
            }
        }
    }
    assert!(worst < 0.15, "JPEG differs from the source by {worst}");
}

#[test]
fn resize_and_gray_conversion_are_noted() {
    let img = gradient(64, 48);
    let png = encode(&img, ImageFormat::Png);
    let m = decode_for_model(&png, 1, 32, 32, &ImageLimits::default()).unwrap();
    assert_eq!(m.note.as_deref(), Some("resized 64×48 RGB → 32×32 gray"));
    assert_eq!(m.values.len(), 32 * 32);
    // Enlarging works too, and conversion alone is noted.
    let m = decode_for_model(&png, 3, 96, 128, &ImageLimits::default()).unwrap();
    assert_eq!(m.note.as_deref(), Some("resized 64×48 RGB → 128×96 RGB"));
    let m = decode_for_model(&png, 1, 48, 64, &ImageLimits::default()).unwrap();
    assert_eq!(m.note.as_deref(), Some("converted 64×48 RGB → 64×48 gray"));
    // Gray is luma: a pure green pixel is brighter than a pure blue one.
    let mut rgba = RgbaImage::new(2, 1);
    rgba.put_pixel(0, 0, Rgba([0, 255, 0, 255]));
    rgba.put_pixel(1, 0, Rgba([0, 0, 255, 255]));
    let mut out = Cursor::new(Vec::new());
    rgba.write_to(&mut out, ImageFormat::Png).unwrap();
    let m = decode_for_model(out.get_ref(), 1, 1, 2, &ImageLimits::default()).unwrap();
    assert_eq!(m.note.as_deref(), Some("converted 2×1 RGBA → 2×1 gray"));
    assert!(m.values[0] > m.values[1], "{:?}", m.values);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let limits = ImageLimits::default();
    let err = decode_for_model(&[], 3, 8, 8, &limits).unwrap_err();
    assert!(matches!(err, ImageError::Empty), "{err:?}");
    assert!(err.to_string().contains("empty"));

    let err = decode_for_model(b"hello, this is not an image", 3, 8, 8, &limits).unwrap_err();
    assert!(matches!(err, ImageError::Unsupported(_)), "{err:?}");

    let err = decode_for_model(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", 3, 8, 8, &limits).unwrap_err();
    assert!(matches!(err, ImageError::Unsupported(ref f) if f.contains("Gif")), "{err:?}");
    assert!(err.to_string().contains("PNG and JPEG are supported"), "{err}");

    // A PNG cut in half, and one with its pixel data overwritten.
    let png = encode(&gradient(32, 32), ImageFormat::Png);
    let err = decode_for_model(&png[..png.len() / 2], 3, 8, 8, &limits).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { format: "PNG", .. }), "{err:?}");
    assert!(err.to_string().starts_with("corrupt or truncated PNG image"), "{err}");
    let mut garbled = png.clone();
    let len = garbled.len();
    garbled[60..len - 20].iter_mut().for_each(|b| *b ^= 0x5a);
    assert!(matches!(decode_for_model(&garbled, 3, 8, 8, &limits), Err(ImageError::Corrupt { .. })));
    let jpeg = encode(&gradient(32, 32), ImageFormat::Jpeg);
    let err = decode_for_model(&jpeg[..40], 3, 8, 8, &limits).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { format: "JPEG", .. }), "{err:?}");

    let err = decode_for_model(&png, 4, 8, 8, &limits).unwrap_err();
    assert!(matches!(err, ImageError::Shape(_)), "{err:?}");
    assert!(matches!(decode_for_model(&png, 3, 0, 8, &limits), Err(ImageError::Shape(_))));
}

#[test]
fn oversize_inputs_are_rejected() {
    let png = encode(&gradient(40, 30), ImageFormat::Png);
    let small_bytes = ImageLimits { max_bytes: png.len() - 1, ..ImageLimits::default() };
    let err = decode_for_model(&png, 3, 8, 8, &small_bytes).unwrap_err();
    assert!(matches!(err, ImageError::TooManyBytes { .. }), "{err:?}");

    let narrow = ImageLimits { max_width: 39, ..ImageLimits::default() };
    let err = decode_for_model(&png, 3, 8, 8, &narrow).unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { width: 40, height: 30, .. }), "{err:?}");
    assert_eq!(err.to_string(), "the image is 40×30 pixels, over the limit of 39×8192");
    let short = ImageLimits { max_height: 29, ..ImageLimits::default() };
    let jpeg = encode(&gradient(40, 30), ImageFormat::Jpeg);
    assert!(matches!(decode_for_model(&jpeg, 3, 8, 8, &short), Err(ImageError::TooLarge { .. })));
    // Exactly at the limits is fine.
    let exact = ImageLimits { max_bytes: png.len(), max_width: 40, max_height: 30, pad_smaller: false };
    decode_for_model(&png, 3, 8, 8, &exact).unwrap();
}

#[test]
fn encode_decode_round_trip_within_one_step() {
    for channels in [1, 3] {
        let (h, w) = (7, 9);
        let values: Vec<f32> = (0..channels * h * w).map(|i| ((i * 37) % 201) as f32 / 100.0 - 1.0).collect();
        let png = encode_png(&values, channels, h, w).unwrap();
        let back = decode_for_model(&png, channels, h, w, &ImageLimits::default()).unwrap();
        assert_eq!(back.note, None);
        for (i, (a, b)) in values.iter().zip(&back.values).enumerate() {
            assert!((a - b).abs() <= 1.0 / 255.0 + 1e-6, "channels {channels}, value {i}: {a} vs {b}");
        }
    }
    // Out-of-range values are clamped, NaN is refused, shapes are checked.
    let png = encode_png(&[-7.0, 7.0, f32::INFINITY, f32::NEG_INFINITY], 1, 2, 2).unwrap();
    let back = decode_for_model(&png, 1, 2, 2, &ImageLimits::default()).unwrap();
    assert_eq!(back.values, [-1.0, 1.0, 1.0, -1.0]);
    assert!(matches!(encode_png(&[0.0, f32::NAN], 1, 1, 2), Err(ImageError::NotANumber { index: 1 })));
    assert!(matches!(encode_png(&[0.0; 5], 1, 2, 2), Err(ImageError::Shape(_))));
    assert!(matches!(encode_png(&[0.0; 8], 2, 2, 2), Err(ImageError::Shape(_))));
}

#[test]
fn grid_places_images_with_white_padding() {
    let black = vec![-1.0f32; 3 * 2 * 3];
    let gray = vec![0.0f32; 3 * 2 * 3];
    let images: [&[f32]; 3] = [&black, &gray, &black];
    let png = grid_png(&images, 3, 2, 3, 2, 1).unwrap();
    // 2 columns × 2 rows of 3×2 images with 1-pixel padding: 9×7.
    let grid = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(grid.dimensions(), (9, 7));
    assert_eq!(grid.get_pixel(0, 0), &Rgb([255, 255, 255]), "frame");
    assert_eq!(grid.get_pixel(1, 1), &Rgb([0, 0, 0]), "first image");
    assert_eq!(grid.get_pixel(4, 1), &Rgb([255, 255, 255]), "gap between columns");
    assert_eq!(grid.get_pixel(5, 2), &Rgb([128, 128, 128]), "second image");
    assert_eq!(grid.get_pixel(3, 5), &Rgb([0, 0, 0]), "third image, second row");
    assert_eq!(grid.get_pixel(6, 5), &Rgb([255, 255, 255]), "empty last cell");
    // Fewer images than columns: the grid shrinks to fit.
    let one = grid_png(&images[..1], 3, 2, 3, 4, 0).unwrap();
    assert_eq!(image::load_from_memory(&one).unwrap().to_rgb8().dimensions(), (3, 2));
    assert!(matches!(grid_png(&[], 3, 2, 3, 2, 1), Err(ImageError::Shape(_))));
    assert!(matches!(grid_png(&images, 3, 2, 3, 0, 1), Err(ImageError::Shape(_))));
    let short: [&[f32]; 1] = [&black[..5]];
    assert!(matches!(grid_png(&short, 3, 2, 3, 1, 1), Err(ImageError::Shape(_))));
}

#[test]
fn smaller_inputs_are_centred_on_black_when_asked_and_crop_back_exactly() {
    let img = gradient(5, 3);
    let png = encode(&img, ImageFormat::Png);
    let pad = ImageLimits { pad_smaller: true, ..ImageLimits::default() };
    let m = decode_for_model(&png, 3, 8, 9, &pad).unwrap();
    let region = Region { left: 2, top: 2, width: 5, height: 3 };
    assert_eq!(m.region, Some(region));
    assert_eq!(
        m.note.as_deref(),
        Some("padded 5×3 RGB → 9×8 RGB (centred on black; the output is cropped back to 5×3)")
    );
    // the border is black in every channel, the inside is the image
    assert_eq!(m.values[0], -1.0);
    assert_eq!(m.values[2 * 8 * 9 + 7 * 9 + 8], -1.0);
    let inside = crop(&m.values, 3, 8, 9, region);
    let exact = decode_for_model(&png, 3, 3, 5, &ImageLimits::default()).unwrap();
    assert_eq!(inside, exact.values);
    // cropped back and encoded, it is the input again
    let back = encode_png(&inside, 3, 3, 5).unwrap();
    assert_eq!(decode_for_model(&back, 3, 3, 5, &ImageLimits::default()).unwrap().values, exact.values);
    // larger or equal inputs are not padded; without the flag smaller ones are stretched
    assert_eq!(decode_for_model(&png, 3, 3, 5, &pad).unwrap().region, None);
    assert_eq!(decode_for_model(&png, 3, 8, 9, &ImageLimits::default()).unwrap().region, None);
}
