//! Readers: input files into typed record batches.
//!
//! `discover` expands paths into jobs (one per file); `source` opens a file through its
//! decompressor and cuts it into blocks of whole records; `csv` parses blocks into batches;
//! `parquet` decodes Parquet files into the same batches, skipping with `prune` the row groups
//! and pages the reader's filters cannot keep; `actor` runs it all as the reader
//! stage, with parsing spread over a pool of workers.

pub(crate) mod actor;
pub mod csv;
pub(crate) mod discover;
pub(crate) mod parquet;
pub(crate) mod prune;
pub mod source;

pub use actor::HandedRejects;
pub(crate) use actor::{REJECTS_HEADER, Rejects};

use std::path::PathBuf;

/// Everything that can go wrong between a path and a batch.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad glob `{pattern}`: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("glob `{0}` matched no files")]
    GlobEmpty(String),
    #[error("{0}: folder holds no data files (.csv, .csv.gz, .csv.zst, .gz, .zst, .parquet)")]
    FolderEmpty(PathBuf),
    #[error("{file}:1: cannot read the header: {reason}")]
    Header { file: String, reason: String },
    #[error(
        "{file}:1: missing required column `{column}` (looked for a header named `{header_name}`; the header has: {found}){}",
        hint(column, found)
    )]
    MissingColumn {
        file: String,
        column: String,
        header_name: String,
        found: String,
    },
    #[error("{file}:1: column `{column}` appears more than once in the header (columns {})", positions.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))]
    DuplicateColumn {
        file: String,
        column: String,
        positions: Vec<usize>,
    },
    #[error("{file}:{line}: {reason}")]
    Csv {
        file: String,
        line: u64,
        reason: String,
    },
    #[error(
        "{file}: read failed at or after line {line}{}: {source}",
        compressed_at.map_or(String::new(), |b| format!(" (by compressed byte {b})"))
    )]
    Io {
        file: String,
        line: u64,
        /// For a compressed input, how far into the file the decompressor had read.
        compressed_at: Option<u64>,
        #[source]
        source: std::io::Error,
    },
    /// A malformed row under `on_error = "fail"`; the message is already `file:line:col: …`.
    #[error("{0}")]
    Row(String),
    #[error("{file}: {reason}")]
    Parquet { file: String, reason: String },
    #[error(
        "{file}: column `{column}` is stored as {found}, but the catalogue reads it as {expected}; \
         only that type or another integer type whose values then convert exactly is accepted \
         (nothing passes through a float or text)"
    )]
    ParquetType {
        file: String,
        column: String,
        found: String,
        expected: String,
    },
    #[error("{path}: cannot write rejects: {source}")]
    Rejects {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a header missing `column` looks like instead, when that tells the likely mistake: an
/// orders file given to the trades reader of a sweep analysis, or the other way round.
fn hint(column: &str, found: &str) -> String {
    use crate::config::Choice;
    use crate::schema::FileKind;
    let Some(kind) = FileKind::of_header(found.split(',')) else {
        return String::new();
    };
    let belongs = |k: FileKind| k.columns().iter().any(|(n, _)| *n == column);
    let wanted = if belongs(FileKind::Trades) && !belongs(FileKind::Orders) {
        FileKind::Trades
    } else if belongs(FileKind::Orders) && !belongs(FileKind::Trades) {
        FileKind::Orders
    } else {
        return String::new();
    };
    if wanted == kind {
        return String::new();
    }
    format!(
        "; this header is {} file's, and this reader reads {}: are the readers' paths swapped?",
        match kind {
            FileKind::Orders => "an orders",
            FileKind::Trades => "a trades",
        },
        wanted.name()
    )
}
