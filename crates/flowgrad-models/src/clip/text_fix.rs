//! The part of ftfy 6.3.1's `fix_text` that CLIP's tokenizer relies on, reimplemented (Rust has
//! no ftfy). Covered: per-line segments with the "auto" HTML rule (entities are decoded, until
//! nothing changes, unless a `<` was seen), UTF-8 mojibake read as Latin-1 / Windows-1252
//! (repeated, so doubly encoded text is repaired too), C1 controls read as Windows-1252, Latin
//! ligatures, fullwidth/halfwidth forms, curly quotes, line breaks, ANSI terminal escapes,
//! unwanted control characters and NFC. Not covered: ftfy's badness heuristic (any sequence that
//! decodes as multi-byte UTF-8 is treated as mojibake), the other single-byte encodings
//! (Windows-1250/1251/…, MacRoman, cp437), `restore_byte_a0`, lossy-sequence replacement,
//! surrogate pairs, and the upper-cased entity names ftfy accepts (`&EACUTE;`).

use std::sync::LazyLock;

use regex::{Captures, Regex};
use unicode_normalization::UnicodeNormalization;

/// Windows-1252 bytes 0x80..=0x9F; `None` where the code page leaves a byte undefined (ftfy's
/// "sloppy" codec then keeps the Latin-1 control character).
const CP1252_HIGH: [Option<char>; 32] = [
    Some('€'),
    None,
    Some('‚'),
    Some('ƒ'),
    Some('„'),
    Some('…'),
    Some('†'),
    Some('‡'),
    Some('ˆ'),
    Some('‰'),
    Some('Š'),
    Some('‹'),
    Some('Œ'),
    None,
    Some('Ž'),
    None,
    None,
    Some('‘'),
    Some('’'),
    Some('“'),
    Some('”'),
    Some('•'),
    Some('–'),
    Some('—'),
    Some('˜'),
    Some('™'),
    Some('š'),
    Some('›'),
    Some('œ'),
    None,
    Some('ž'),
    None,
];

/// Latin ligatures and legacy digraphs that ftfy splits into their letters.
const LIGATURES: [(char, &str); 22] = [
    ('Ĳ', "IJ"),
    ('ĳ', "ij"),
    ('ŉ', "ʼn"),
    ('Ǳ', "DZ"),
    ('ǲ', "Dz"),
    ('ǳ', "dz"),
    ('Ǆ', "DŽ"),
    ('ǅ', "Dž"),
    ('ǆ', "dž"),
    ('Ǉ', "LJ"),
    ('ǈ', "Lj"),
    ('ǉ', "lj"),
    ('Ǌ', "NJ"),
    ('ǋ', "Nj"),
    ('ǌ', "nj"),
    ('ﬀ', "ff"),
    ('ﬁ', "fi"),
    ('ﬂ', "fl"),
    ('ﬃ', "ffi"),
    ('ﬄ', "ffl"),
    ('ﬅ', "ſt"),
    ('ﬆ', "st"),
];

static HTML_ENTITY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("valid pattern"));
static ANSI_ESCAPE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\x1b\[[0-9;]*[a-zA-Z]").expect("valid pattern"));

/// ftfy's `fix_text` with its default configuration, for the behaviours listed in the module
/// documentation.
pub fn fix_text(text: &str) -> String {
    let mut unescape = true;
    let mut out = String::with_capacity(text.len());
    for segment in text.split_inclusive('\n') {
        // ftfy switches entity decoding off for the rest of the text at the first `<`.
        unescape &= !segment.contains('<');
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

fn fix_segment(text: &str, unescape: bool) -> String {
    let mut text = text.to_string();
    loop {
        let original = text.clone();
        if unescape {
            text = unescape_entities(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text);
        text = text.chars().map(ligature).collect();
        text = text.chars().map(standard_width).collect();
        text = text.chars().map(uncurl).collect();
        text = fix_line_breaks(&text);
        text = ANSI_ESCAPE.replace_all(&text, "").into_owned();
        text.retain(|c| !is_unwanted_control(c));
        text = text.nfc().collect();
        if text == original {
            return text;
        }
    }
}

/// Decodes `&name;` / `&#n;` references that end in a semicolon (one pass).
fn unescape_entities(text: &str) -> String {
    HTML_ENTITY.replace_all(text, |c: &Captures| html_escape::decode_html_entities(&c[0]).into_owned()).into_owned()
}

/// The byte a character stands for in Windows-1252 ("sloppy": undefined bytes map to the
/// Latin-1 control of the same value), if any.
fn sloppy_cp1252_byte(c: char) -> Option<u8> {
    let code = c as u32;
    if code < 0x80 || (0xA0..=0xFF).contains(&code) {
        return Some(code as u8);
    }
    if let Some(i) = CP1252_HIGH.iter().position(|&m| m == Some(c)) {
        return Some(0x80 + i as u8);
    }
    (0x80..=0x9F).contains(&code).then_some(code as u8).filter(|b| CP1252_HIGH[(b - 0x80) as usize].is_none())
}

/// Length of the UTF-8 sequence a lead byte starts (0 for bytes that cannot lead one).
fn utf8_sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// One round of mojibake repair: every run of characters whose Windows-1252 bytes form valid
/// multi-byte UTF-8 is replaced by what those bytes decode to.
fn fix_encoding(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let bytes: Vec<Option<u8>> = chars.iter().map(|&c| sloppy_cp1252_byte(c)).collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let decoded = bytes[i].and_then(|lead| {
            let n = utf8_sequence_len(lead);
            let seq: Option<Vec<u8>> =
                (n > 0 && i + n <= chars.len()).then(|| bytes[i..i + n].iter().copied().collect()).flatten();
            seq.and_then(|s| String::from_utf8(s).ok()).map(|s| (s, n))
        });
        match decoded {
            Some((s, n)) => {
                out.push_str(&s);
                i += n;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// C1 control characters (U+0080..U+009F) read as the Windows-1252 characters they encode.
fn fix_c1_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c as u32 {
            code @ 0x80..=0x9F => CP1252_HIGH[(code - 0x80) as usize].unwrap_or(c),
            _ => c,
        })
        .collect()
}

fn ligature(c: char) -> String {
    LIGATURES.iter().find(|(l, _)| *l == c).map_or_else(|| c.to_string(), |(_, s)| s.to_string())
}

/// Fullwidth and halfwidth forms (U+FF01..U+FFEF) replaced by their NFKC form; U+3000 by a space.
fn standard_width(c: char) -> String {
    match c as u32 {
        0x3000 => " ".into(),
        0xFF01..=0xFFEF => std::iter::once(c).nfkc().collect(),
        _ => c.to_string(),
    }
}

fn uncurl(c: char) -> char {
    match c {
        '\u{02BC}' | '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        _ => c,
    }
}

fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{0085}'], "\n")
}

fn is_unwanted_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_double_mojibake_then_uncurls() {
        assert_eq!(fix_text("doesnÃ¢â‚¬â„¢t"), "doesn't");
        assert_eq!(fix_text("sÃ³"), "só");
    }

    #[test]
    fn keeps_genuine_latin1() {
        assert_eq!(fix_text("café naïve ½ ß"), "café naïve ½ ß");
    }

    #[test]
    fn widths_ligatures_quotes_nfc() {
        assert_eq!(fix_text("ＬＯＵＤ\u{3000}ﬂuﬃ “x” e\u{301}"), "LOUD fluffi \"x\" é");
    }

    #[test]
    fn entities_only_without_a_less_than_sign() {
        assert_eq!(fix_text("&amp;amp;"), "&");
        assert_eq!(fix_text("<b>&amp;amp;"), "<b>&amp;amp;");
    }
}
