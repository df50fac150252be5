//! Fashion-MNIST: the gzipped IDX loader (class names come from `flowgrad-catalog`), and conversion of 28×28 bytes to padded
//! 32×32 images in [−1, 1].

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use flate2::read::GzDecoder;

/// Side of the stored Fashion-MNIST images.
pub const RAW_SIDE: usize = 28;
/// Side of the images the models see (zero-padded by 2 pixels on each side).
pub const SIDE: usize = 32;
/// Where the Debian package installs the data set.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

pub use flowgrad_catalog::{CLASS_NAMES, NUM_CLASSES, class_index};

const IMAGE_MAGIC: u32 = 0x0000_0803;
const LABEL_MAGIC: u32 = 0x0000_0801;

/// Errors of the data set loader.
#[derive(Debug, thiserror::Error)]
pub enum FashionError {
    /// A file could not be opened or decompressed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a well-formed IDX file of the expected kind.
    #[error("{path} is not a valid IDX {kind} file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// "image" or "label".
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The image and label files disagree.
    #[error("{images} images but {labels} labels")]
    CountMismatch {
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },
}

/// Which half of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// 60 000 training images.
    Train,
    /// 10 000 test images.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Raw Fashion-MNIST images (row-major 28×28 bytes each) and labels.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    /// `len() × 784` pixel bytes.
    pub pixels: Vec<u8>,
    /// One label (0..10) per image.
    pub labels: Vec<u8>,
}

impl FashionMnist {
    /// Loads a split from `dir` (`{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`).
    pub fn load(dir: &Path, split: Split) -> Result<Self, FashionError> {
        let p = split.prefix();
        Self::load_files(&dir.join(format!("{p}-images-idx3-ubyte.gz")), &dir.join(format!("{p}-labels-idx1-ubyte.gz")))
    }

    /// Loads a gzipped IDX image file and its label file, validating headers and sizes.
    pub fn load_files(images: &Path, labels: &Path) -> Result<Self, FashionError> {
        let pixels = read_idx(images, IMAGE_MAGIC, "image", &[RAW_SIDE, RAW_SIDE])?;
        let labels_data = read_idx(labels, LABEL_MAGIC, "label", &[])?;
        if let Some(bad) = labels_data.iter().find(|&&l| l as usize >= NUM_CLASSES) {
            return Err(FashionError::Format {
                path: labels.to_path_buf(),
                kind: "label",
                reason: format!("label {bad} out of range 0..{NUM_CLASSES}"),
            });
        }
        let count = pixels.len() / (RAW_SIDE * RAW_SIDE);
        if count != labels_data.len() {
            return Err(FashionError::CountMismatch { images: count, labels: labels_data.len() });
        }
        Ok(Self { pixels, labels: labels_data })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 28×28 bytes of image `i`.
    pub fn raw(&self, i: usize) -> &[u8] {
        &self.pixels[i * RAW_SIDE * RAW_SIDE..(i + 1) * RAW_SIDE * RAW_SIDE]
    }

    /// Images `indices` as a `[B, 1, 32, 32]` batch in [−1, 1] (see [`to_padded`]).
    pub fn images<B: Backend>(&self, indices: &[usize], device: &B::Device) -> Tensor<B, 4> {
        let values = indices.iter().flat_map(|&i| to_padded(self.raw(i))).collect();
        padded_batch(values, device)
    }

    /// Labels `indices` as a `[B]` integer tensor.
    pub fn labels<B: Backend>(&self, indices: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
        let values: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        Tensor::from_data(TensorData::new(values, [indices.len()]), device)
    }
}

/// Scales a byte to [−1, 1] (0 → −1, 255 → 1).
pub fn scale_pixel(byte: u8) -> f32 {
    byte as f32 / 127.5 - 1.0
}

/// A 28×28 byte image → 32×32 values in [−1, 1], padded with black (−1) by 2 pixels per side.
pub fn to_padded(raw: &[u8]) -> Vec<f32> {
    assert_eq!(raw.len(), RAW_SIDE * RAW_SIDE, "expected a 28×28 image");
    let pad = (SIDE - RAW_SIDE) / 2;
    let mut out = vec![-1.0; SIDE * SIDE];
    for (r, row) in raw.chunks_exact(RAW_SIDE).enumerate() {
        let start = (r + pad) * SIDE + pad;
        for (o, &b) in out[start..start + RAW_SIDE].iter_mut().zip(row) {
            *o = scale_pixel(b);
        }
    }
    out
}

/// Concatenated [`to_padded`] images → a `[B, 1, 32, 32]` tensor.
pub fn padded_batch<B: Backend>(values: Vec<f32>, device: &B::Device) -> Tensor<B, 4> {
    let batch = values.len() / (SIDE * SIDE);
    assert_eq!(batch * SIDE * SIDE, values.len(), "values must hold whole 32×32 images");
    Tensor::from_data(TensorData::new(values, [batch, 1, SIDE, SIDE]), device)
}

/// Reads a gzipped IDX file with unsigned-byte data and the given magic and trailing dimensions.
fn read_idx(path: &Path, magic: u32, kind: &'static str, item_dims: &[usize]) -> Result<Vec<u8>, FashionError> {
    let format = |reason: String| FashionError::Format { path: path.to_path_buf(), kind, reason };
    let file = std::fs::File::open(path).map_err(|source| FashionError::Io { path: path.to_path_buf(), source })?;
    let mut bytes = Vec::new();
    GzDecoder::new(file).read_to_end(&mut bytes).map_err(|e| format(format!("gzip decoding failed: {e}")))?;
    let rank = 1 + item_dims.len();
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err(format(format!("{} bytes is shorter than the {header_len}-byte header", bytes.len())));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if word(0) != magic {
        return Err(format(format!("magic number {:#010x}, expected {magic:#010x}", word(0))));
    }
    let dims: Vec<usize> = (1..=rank).map(|i| word(i) as usize).collect();
    if dims[1..] != *item_dims {
        return Err(format(format!("item dimensions {:?}, expected {item_dims:?}", &dims[1..])));
    }
    let expected = dims.iter().product::<usize>();
    let data = bytes.split_off(header_len);
    if data.len() != expected {
        return Err(format(format!("{} data bytes, header announces {expected}", data.len())));
    }
    Ok(data)
}
