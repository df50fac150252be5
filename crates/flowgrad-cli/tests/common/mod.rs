//! Helpers shared by the CLI's end-to-end tests (each test binary uses a subset).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `flowgrad` binary with `args` and waits for it.
pub fn flowgrad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgrad")).args(args).output().expect("flowgrad runs")
}

pub use flowgrad_testkit::fixtures_dir as fixtures;

/// `path` inside the repository, as a string argument.
pub fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path).to_string_lossy().into_owned()
}

/// What the command printed on stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout and stderr together, for assertion messages and searching errors.
#[allow(unused_imports)] // not every test binary that includes this module uses it
pub use flowgrad_testkit::output_text as text;
