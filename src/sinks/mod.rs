//! Sinks: where kept rows and aggregate tables are written. `atomic` makes every file appear
//! whole or not at all; `extract` writes rows (CSV, gzip, zstd, Parquet, partitioned);
//! `rows` and `tables` are the sink actors.

pub mod atomic;
pub mod extract;
pub mod rows;
pub mod tables;

use std::path::PathBuf;

/// What a sink did, sent when it stops.
#[derive(Debug, Clone)]
pub struct SinkReport {
    pub sink: String,
    pub path: PathBuf,
    /// What was written, or why nothing was.
    pub result: Result<String, String>,
}
