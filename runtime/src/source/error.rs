//! The one error of reading a source: the file (or table) and what is
//! wrong there.

use std::path::{Path, PathBuf};

/// A source could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SourceError {
    /// The file, or the Delta table's folder.
    pub path: PathBuf,
    /// What is wrong, with the column or line where known.
    pub message: String,
}

pub(super) fn fail(path: &Path, message: impl Into<String>) -> SourceError {
    SourceError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
