//! Cases on disk: a folder per case holding `object` (the stored bytes) and `case.json` (the
//! object's name, the expected outcome, and why the case is kept). Findings of a fuzz run are
//! written this way, and `tests/fixtures/fuzz/` holds the ones kept as regression tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Expected memory of a kept case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryExpectation {
    /// Peak heap within the bound.
    WithinBound,
    /// Known to pass the bound until the load path bounds it (issue 14, "Memory stays bounded"):
    /// the regression test fails once it is within the bound, so the marker gets removed.
    OverBoundKnown,
}

impl MemoryExpectation {
    fn as_str(self) -> &'static str {
        match self {
            Self::WithinBound => "within-bound",
            Self::OverBoundKnown => "over-bound-known",
        }
    }
}

/// One case folder.
#[derive(Debug, Clone)]
pub struct CaseFile {
    /// The folder.
    pub dir: PathBuf,
    /// The object's key.
    pub name: String,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// The start of the expected outcome (see `one_object_load::describe`).
    pub expect: String,
    /// The expected memory verdict.
    pub memory: MemoryExpectation,
    /// Why the case is kept.
    pub why: String,
}

/// Reads one case folder.
pub fn read_case(dir: &Path) -> io::Result<CaseFile> {
    let bytes = fs::read(dir.join("object"))?;
    let meta: Value = serde_json::from_slice(&fs::read(dir.join("case.json"))?)?;
    let text = |key: &str| {
        meta.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: case.json lacks {key:?}", dir.display()),
                )
            })
    };
    let memory = match text("memory")?.as_str() {
        "within-bound" => MemoryExpectation::WithinBound,
        "over-bound-known" => MemoryExpectation::OverBoundKnown,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: memory {other:?} is not within-bound or over-bound-known",
                    dir.display()
                ),
            ));
        }
    };
    Ok(CaseFile {
        dir: dir.to_path_buf(),
        name: text("name")?,
        bytes,
        expect: text("expect")?,
        memory,
        why: text("why")?,
    })
}

/// Every case folder directly under `root`, sorted by name.
pub fn read_cases(root: &Path) -> io::Result<Vec<CaseFile>> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| read_case(d)).collect()
}

/// Writes a case folder (creating it).
pub fn write_case(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    expect: &str,
    memory: MemoryExpectation,
    why: &str,
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("object"), bytes)?;
    let meta = json!({
        "name": name,
        "expect": expect,
        "memory": memory.as_str(),
        "why": why,
    });
    let mut text = serde_json::to_string_pretty(&meta)?;
    text.push('\n');
    fs::write(dir.join("case.json"), text)
}
