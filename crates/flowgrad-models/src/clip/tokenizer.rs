//! CLIP's byte-level BPE tokenizer: clean-up (ftfy subset, HTML entities, whitespace, lower
//! case), the `\p{L}+ | \p{N} | …` pre-tokenizer, byte-to-unicode mapping, BPE merges, and the
//! fixed-length token rows with start/end tokens.

use std::collections::HashMap;
use std::io::Read;
use std::sync::LazyLock;

use regex::Regex;

use super::text_fix::fix_text;

/// The vocabulary/merges file of OpenAI CLIP (MIT, see `assets/clip/NOTICE.md`).
const BPE_GZ: &[u8] = include_bytes!("../../assets/clip/bpe_simple_vocab_16e6.txt.gz");

/// SHA-256 (hex) of the embedded vocabulary file, to compare with a fixture's `bpe_sha256`.
pub fn vocabulary_sha256() -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(BPE_GZ))
}

/// Merges CLIP uses: lines 1..=48894 of the file (49152 − 256 − 2 of them).
const MERGES: usize = 49152 - 256 - 2;

/// CLIP's text context: start token, up to 75 BPE tokens, end token.
pub const CONTEXT_LENGTH: usize = 77;

/// The pre-tokenizer: special tokens, ASCII contractions, letter runs, single digits, and runs
/// of everything else that is not whitespace (case-insensitive, as the original).
const PATTERN: &str =
    r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

static WHITESPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid pattern"));

/// Errors of [`Tokenizer::tokenize`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenizeError {
    /// The prompt needs more tokens than the context holds and truncation was not requested.
    #[error("prompt {prompt:?} needs {tokens} tokens with start/end, more than the context length {context_length}")]
    TooLong {
        /// The prompt.
        prompt: String,
        /// Tokens it needs, start and end included.
        tokens: usize,
        /// The context length.
        context_length: usize,
    },
}

/// CLIP's `SimpleTokenizer` with the vocabulary embedded in the binary.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    byte_encoder: [char; 256],
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    pattern: Regex,
}

impl Default for Tokenizer {
    /// The tokenizer of every OpenAI CLIP model (49408 tokens).
    fn default() -> Self {
        let mut text = String::new();
        flate2::read::GzDecoder::new(BPE_GZ)
            .read_to_string(&mut text)
            .expect("the embedded vocabulary is valid gzip UTF-8");
        Self::from_merges(&text)
    }
}

fn printable(b: u8) -> bool {
    (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

/// GPT-2's reversible map from bytes to printable characters: printable bytes stand for
/// themselves, the others for U+0100, U+0101, … in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 0;
    for b in 0..=255u8 {
        table[b as usize] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(255 + next).expect("valid code point")
        };
    }
    table
}

/// The first 256 vocabulary entries: printable bytes first, then the others (the order of
/// the original's byte map).
fn byte_vocab(byte_encoder: &[char; 256]) -> Vec<char> {
    let (first, rest): (Vec<u8>, Vec<u8>) = (0..=255u8).partition(|&b| printable(b));
    first.into_iter().chain(rest).map(|b| byte_encoder[b as usize]).collect()
}

impl Tokenizer {
    /// Builds the tokenizer from the text of a merges file (first line a header).
    fn from_merges(text: &str) -> Self {
        let byte_encoder = bytes_to_unicode();
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(MERGES)
            .map(|line| {
                let mut parts = line.split(' ');
                (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
            })
            .collect();
        let bytes = byte_vocab(&byte_encoder);
        let mut vocab: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
        vocab.extend(bytes.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend(["<|startoftext|>".to_string(), "<|endoftext|>".to_string()]);
        // later duplicates win, as in the original's dict(zip(vocab, range))
        let encoder = vocab.into_iter().enumerate().map(|(i, s)| (s, i as u32)).collect();
        let ranks = merges.into_iter().enumerate().map(|(i, m)| (m, i)).collect();
        Self { byte_encoder, encoder, ranks, pattern: Regex::new(PATTERN).expect("valid pattern") }
    }

    /// Vocabulary size (49408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// Id of the start token `<|startoftext|>`.
    pub fn sot(&self) -> u32 {
        self.encoder["<|startoftext|>"]
    }

    /// Id of the end token `<|endoftext|>`.
    pub fn eot(&self) -> u32 {
        self.encoder["<|endoftext|>"]
    }

    /// The original's `whitespace_clean(basic_clean(text)).lower()`: ftfy, HTML-unescape twice,
    /// strip, collapse whitespace runs to one space, lower case. Python's `html.unescape` is
    /// matched for references that end in `;` (named and numeric); its legacy forms without `;`
    /// (`&amp`) and its C1/invalid code point replacements (`&#128;` → `€`) are not reproduced.
    pub fn clean(&self, text: &str) -> String {
        let fixed = fix_text(text);
        let unescaped =
            html_escape::decode_html_entities(&html_escape::decode_html_entities(&fixed).into_owned()).into_owned();
        WHITESPACE.replace_all(unescaped.trim(), " ").trim().to_lowercase()
    }

    /// The pre-tokens of cleaned text.
    pub fn pieces(&self, cleaned: &str) -> Vec<String> {
        self.pattern.find_iter(cleaned).map(|m| m.as_str().to_string()).collect()
    }

    /// The vocabulary strings of one pre-token (`</w>` marks the end of the word).
    pub fn bpe(&self, piece: &str) -> Vec<String> {
        if piece == "<|startoftext|>" || piece == "<|endoftext|>" {
            return vec![piece.to_string()];
        }
        let mut word: Vec<String> = piece.bytes().map(|b| self.byte_encoder[b as usize].to_string()).collect();
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|w| self.ranks.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, w[0].clone(), w[1].clone())))
                .min_by_key(|(r, ..)| *r);
            let Some((_, first, second)) = best else { break };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }

    /// BPE ids of `text` without start/end tokens and without any length limit.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.pieces(&self.clean(text)).iter().flat_map(|piece| self.bpe(piece)).map(|s| self.encoder[&s]).collect()
    }

    /// One row of `clip.tokenize`: `[SOT, ids…, EOT, 0…]` of length `context_length`. A prompt
    /// that does not fit is an error, or with `truncate` is cut to the context with its last
    /// slot overwritten by EOT.
    pub fn tokenize(&self, text: &str, context_length: usize, truncate: bool) -> Result<Vec<u32>, TokenizeError> {
        let mut tokens = vec![self.sot()];
        tokens.extend(self.encode(text));
        tokens.push(self.eot());
        if tokens.len() > context_length {
            if !truncate {
                return Err(TokenizeError::TooLong { prompt: text.to_string(), tokens: tokens.len(), context_length });
            }
            tokens.truncate(context_length);
            if let Some(last) = tokens.last_mut() {
                *last = self.eot();
            }
        }
        tokens.resize(context_length, 0);
        Ok(tokens)
    }
}
