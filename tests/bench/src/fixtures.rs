//! The real backups of `tests/fixtures/bak` (see MANIFEST.md there), read from the checkout.

use std::path::PathBuf;

use anyhow::Context;

/// The fixtures directory of this checkout.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bak"))
}

/// One fixture's bytes.
///
/// # Errors
/// When the file cannot be read.
pub fn read(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir().join(name);
    std::fs::read(&path).with_context(|| format!("reading fixture {}", path.display()))
}

/// Every `.bak` / `.trn` fixture, by name, sorted.
///
/// # Errors
/// When the directory cannot be listed.
pub fn names() -> anyhow::Result<Vec<String>> {
    let dir = dir();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".bak") || name.ends_with(".trn") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
