//! The file formats sources, spines and datasets come in, told by the file
//! name's extension in one place. A leaf: the repo, the source reader and
//! the dataset writer all name it, and it names none of them.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// File format of a source, spine or dataset file, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Apache Parquet (`.parquet`, `.pq`).
    Parquet,
    /// Comma-separated values with a header row (`.csv`).
    Csv,
}

impl FileFormat {
    /// The format `path`'s extension says (any case), if it is one of ours.
    pub fn of(path: &Path) -> Option<FileFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            _ => None,
        }
    }

    /// `parquet` or `csv`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FileFormat;
    use std::path::Path;

    #[test]
    fn told_by_extension_in_any_case() {
        assert_eq!(FileFormat::of(Path::new("a/b.parquet")), Some(FileFormat::Parquet));
        assert_eq!(FileFormat::of(Path::new("b.PQ")), Some(FileFormat::Parquet));
        assert_eq!(FileFormat::of(Path::new("b.Csv")), Some(FileFormat::Csv));
        assert_eq!(FileFormat::of(Path::new("b.json")), None);
        assert_eq!(FileFormat::of(Path::new("parquet")), None);
    }
}
