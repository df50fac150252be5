//! The TrueType font the CLI's pictures (plots, labelled grids) write their text with.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use plotters::style::{FontStyle, register_font};

/// Common TrueType fonts, tried in order when no font is given.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

static REGISTERED: OnceLock<PathBuf> = OnceLock::new();

/// Registers `path` (or the first of the common system fonts that exists) as "sans-serif";
/// once per process, later calls keep the first font.
pub fn load_font(path: Option<&Path>) -> anyhow::Result<()> {
    if REGISTERED.get().is_some() {
        return Ok(());
    }
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => FONTS.iter().map(PathBuf::from).find(|p| p.is_file()).with_context(|| {
            format!("no TrueType font among {FONTS:?}; pass --font <file.ttf> or install fonts-dejavu-core")
        })?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read font {}", path.display()))?;
    if register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_err() {
        bail!("{} is not a usable TrueType font", path.display());
    }
    let _ = REGISTERED.set(path);
    Ok(())
}
