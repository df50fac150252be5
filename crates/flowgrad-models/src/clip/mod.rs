//! OpenAI CLIP for text-guided editing: the byte-level BPE tokenizer (vocabulary embedded),
//! the ViT/text-transformer model loaded from OpenAI or Hugging Face safetensors, DiffAugment,
//! and [`ClipGuidance`], FlowGrad's augmented CLIP loss.
//!
//! ```text
//! let model = ClipModel::<B>::load_inferred(path, &device)?;          // or load(path, &config, ..)
//! let guidance = ClipGuidance::new(&model, &Tokenizer::default(), "a smiling face", AugmentConfig::default())?;
//! ```

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod guidance;
mod hf_keys;
mod host;
pub mod layers;
pub mod model;
pub mod text_fix;
pub mod tokenizer;

pub use augment::{AugmentConfig, AugmentDraw};
pub use checkpoint::{Checkpoint, CheckpointError, HostTensor, Layout};
pub use config::ClipConfig;
pub use guidance::{CLIP_MEAN, CLIP_STD, ClipGuidance, clip_preprocess};
pub use model::{ClipModel, normalize};
pub use tokenizer::{CONTEXT_LENGTH, TokenizeError, Tokenizer, vocabulary_sha256};
