//! The formats a rows sink writes and the keys it partitions by: the configuration-facing
//! names, extensions and compression-level ranges, kept apart from the writers so that the
//! configuration phase does not import them.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::config::Choice;
use crate::schema::col;

/// Compression level used when the spec gives none: extracts are written once and read rarely,
/// so speed matters more than the last few percent of size.
pub(crate) const DEFAULT_LEVEL: i32 = 1;

/// A format or partition key name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "{path}: unknown rows format: the name must end in {}",
        RowFormat::extensions()
    )]
    UnknownFormat { path: PathBuf },
    #[error("unknown partition key `{0}`: use one of {names}", names = PartitionKey::expected())]
    UnknownPartitionKey(String),
}

/// The file format of a rows sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowFormat {
    Csv,
    CsvGz,
    CsvZst,
    Parquet,
}

impl RowFormat {
    /// The format named by a file's extension: `.csv`, `.csv.gz`, `.csv.zst` or `.parquet`, in
    /// any letter case.
    pub(crate) fn from_path(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Self::all()
            .into_iter()
            .find(|f| {
                name.strip_suffix(f.extension())
                    .is_some_and(|stem| stem.len() > 1 && stem.ends_with('.'))
            })
            .ok_or_else(|| FormatError::UnknownFormat {
                path: path.to_path_buf(),
            })
    }

    /// The compression levels this format takes, or `None` for an uncompressed format. One
    /// range per format: `sweep validate` and the writer both check against it.
    pub(crate) fn level_range(self) -> Option<RangeInclusive<i32>> {
        match self {
            RowFormat::Csv => None,
            // Levels above 9 are refused because the deflate backends assert on them.
            RowFormat::CsvGz => Some(0..=9),
            RowFormat::CsvZst | RowFormat::Parquet => Some(zstd::compression_level_range()),
        }
    }

    /// The file extension, without the leading dot: the format's configuration name.
    pub(crate) fn extension(self) -> &'static str {
        self.name()
    }

    /// The extensions for a message: `.csv, .csv.gz, .csv.zst or .parquet`.
    pub(crate) fn extensions() -> String {
        let names: Vec<String> = Self::ALL.iter().map(|(n, _)| format!(".{n}")).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        }
    }
}

impl Choice for RowFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("csv", RowFormat::Csv),
        ("csv.gz", RowFormat::CsvGz),
        ("csv.zst", RowFormat::CsvZst),
        ("parquet", RowFormat::Parquet),
    ];
}

impl fmt::Display for RowFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A column a partitioned rows sink splits its rows by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    /// The `security_code` column.
    Security,
    /// The local date of the `timestamp` column in the spec's zone.
    Date,
}

/// The names are those used in configuration and in partition folder names.
impl Choice for PartitionKey {
    const ALL: &'static [(&'static str, Self)] = &[
        (col::SECURITY, PartitionKey::Security),
        ("date", PartitionKey::Date),
    ];
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PartitionKey {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PartitionKey::from_name(s).ok_or_else(|| FormatError::UnknownPartitionKey(s.to_string()))
    }
}
