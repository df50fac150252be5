//! Where the bundled models' files come from: built into the binary (the default, so a copied or
//! installed `flowgrad` needs no checkout), or a folder laid out like the repository's `assets/`
//! (retrained weights, `flowgrad train` output).

use std::borrow::Cow;
use std::path::PathBuf;

/// The files of `assets/` the bundled models need, built into every binary that links this crate.
const EMBEDDED: [(&str, &[u8]); 10] = [
    ("flow.config.json", include_bytes!("../../../assets/flow.config.json")),
    ("flow.safetensors", include_bytes!("../../../assets/flow.safetensors")),
    ("flow-reflow.config.json", include_bytes!("../../../assets/flow-reflow.config.json")),
    ("flow-reflow.safetensors", include_bytes!("../../../assets/flow-reflow.safetensors")),
    ("ddim.config.json", include_bytes!("../../../assets/ddim.config.json")),
    ("ddim.safetensors", include_bytes!("../../../assets/ddim.safetensors")),
    ("classifier.config.json", include_bytes!("../../../assets/classifier.config.json")),
    ("classifier.safetensors", include_bytes!("../../../assets/classifier.safetensors")),
    ("judge.config.json", include_bytes!("../../../assets/judge.config.json")),
    ("judge.safetensors", include_bytes!("../../../assets/judge.safetensors")),
];

/// A source of the bundled models' files (`flow.safetensors`, `classifier.config.json`, …).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Assets {
    /// The copies built into this binary from the repository's `assets/`.
    #[default]
    Embedded,
    /// A folder holding files of the same names.
    Dir(PathBuf),
}

impl Assets {
    /// `Dir(folder)` when a folder is given, else the embedded copies.
    pub fn from_option(folder: Option<PathBuf>) -> Self {
        folder.map_or(Assets::Embedded, Assets::Dir)
    }

    /// The contents of `file`, or why it cannot be had.
    pub fn read(&self, file: &str) -> Result<Cow<'static, [u8]>, String> {
        match self {
            Assets::Embedded => EMBEDDED
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, bytes)| Cow::Borrowed(*bytes))
                .ok_or_else(|| format!("`{file}` is not built into this binary")),
            Assets::Dir(dir) => std::fs::read(dir.join(file)).map(Cow::Owned).map_err(|e| e.to_string()),
        }
    }

    /// Whether `file` is there.
    pub fn has(&self, file: &str) -> bool {
        match self {
            Assets::Embedded => EMBEDDED.iter().any(|(name, _)| *name == file),
            Assets::Dir(dir) => dir.join(file).is_file(),
        }
    }

    /// Where `file` comes from, for messages: a path, or `<built in>/file`.
    pub fn locate(&self, file: &str) -> PathBuf {
        match self {
            Assets::Embedded => PathBuf::from("<built in>").join(file),
            Assets::Dir(dir) => dir.join(file),
        }
    }
}

impl std::fmt::Display for Assets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Assets::Embedded => f.write_str("the models built into this binary"),
            Assets::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_are_the_repositorys_assets() {
        let dir = Assets::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets"));
        for (name, bytes) in EMBEDDED {
            assert!(Assets::Embedded.has(name));
            assert_eq!(Assets::Embedded.read(name).unwrap().as_ref(), bytes, "{name}");
            assert_eq!(bytes, dir.read(name).unwrap().as_ref(), "{name} is the checkout's file");
        }
        assert!(Assets::Embedded.read("missing.safetensors").is_err());
        assert!(!Assets::Dir(std::env::temp_dir()).has("flow.safetensors"));
    }
}
