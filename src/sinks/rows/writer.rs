//! Writing rows: CSV (plain, gzip or zstd) or Parquet, as one file or as a folder split into
//! `security_code=<code>/date=<YYYY-MM-DD>/` partitions (`partition`).
//!
//! Every file goes through an [`AtomicWriter`] and a partitioned output is filled inside an
//! [`AtomicDir`], so the destination only ever shows complete output: a run that fails or is
//! dropped before [`RowWriter::commit`] leaves nothing under the real names.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::partition::Partitioned;
use crate::batch::ColumnError;
use crate::config::RowSinkSpec;
use crate::readers::prune::DATE_ZONE_KEY;
use crate::sinks::atomic::{AtomicWriter, OutputError};
use crate::sinks::format::{DEFAULT_LEVEL, FormatError, PartitionKey, RowFormat};
/// Memory that open Parquet writers may hold in encoded but unflushed row groups, shared among
/// the open files. ArrowWriter buffers a whole row group (a million rows by default) per file,
/// which with dozens of open partitions would grow without bound.
const PARQUET_BUFFER_BUDGET: usize = 256 << 20;
const MIN_ROW_GROUP_BYTES: usize = 1 << 20;
const MAX_ROW_GROUP_BYTES: usize = 64 << 20;
/// Rows per data page with `row_group_rows` set.
const QUERY_PAGE_ROWS: usize = 4096;
/// Why an extract could not be written. Every message names the path it concerns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RowsError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{path}: partition key `{key}` is listed more than once")]
    DuplicatePartitionKey { path: PathBuf, key: PartitionKey },
    #[error("{path}: partitioning by {key} {source}")]
    PartitionColumn {
        path: PathBuf,
        key: PartitionKey,
        #[source]
        source: ColumnError,
    },
    #[error("{path}: compression level {level} is out of range for {format}: use {min} to {max}")]
    CompressionLevel {
        path: PathBuf,
        format: RowFormat,
        level: i32,
        min: i32,
        max: i32,
    },
    #[error("{path}: max_open_files must be at least 1")]
    NoOpenFiles { path: PathBuf },
    #[error("{path}: rows do not match the extract's columns: {detail}")]
    SchemaMismatch { path: PathBuf, detail: String },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: ArrowError,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("{path}: sorting: {source}")]
    Sort {
        path: PathBuf,
        #[source]
        source: crate::table::RunError,
    },
    #[error("{path}: sorting {detail}")]
    SortColumns { path: PathBuf, detail: &'static str },
    #[error(
        "{path}: an earlier write failed, so the extract is incomplete and cannot be committed"
    )]
    Poisoned { path: PathBuf },
}

/// What a committed extract holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RowsWritten {
    pub rows: u64,
    pub files: u64,
    /// Bytes on disk, after compression.
    pub bytes: u64,
}

/// Writes kept rows to an extract. Nothing is visible under the destination until
/// [`RowWriter::commit`]; dropping the writer discards everything written.
pub(crate) struct RowWriter {
    path: PathBuf,
    schema: SchemaRef,
    mode: Mode,
    rows: u64,
    /// Set by a failed write, after which a file may hold part of a batch.
    poisoned: bool,
}

// Boxed: each state is hundreds of bytes, and an RowWriter is passed around by value.
enum Mode {
    Single(Box<FileWriter>),
    Partitioned(Box<Partitioned>),
}

impl RowWriter {
    pub(crate) fn create(spec: &RowSinkSpec, schema: SchemaRef) -> Result<Self, RowsError> {
        let path = spec.path.clone();
        let codec = Codec::new(spec)?;
        let mode = if spec.partition_by.is_empty() {
            Mode::Single(Box::new(FileWriter::create(
                &path,
                path.clone(),
                &codec,
                &schema,
            )?))
        } else {
            Mode::Partitioned(Box::new(Partitioned::create(spec, codec, &schema)?))
        };
        Ok(RowWriter {
            path,
            schema,
            mode,
            rows: 0,
            poisoned: false,
        })
    }

    /// Appends rows, which must have the columns (names and types) the writer was created with.
    pub(crate) fn write(&mut self, rows: &RecordBatch) -> Result<(), RowsError> {
        if self.poisoned {
            return Err(RowsError::Poisoned {
                path: self.path.clone(),
            });
        }
        let result = self.write_checked(rows);
        self.poisoned = result.is_err();
        result
    }

    fn write_checked(&mut self, rows: &RecordBatch) -> Result<(), RowsError> {
        let rows = self.conform(rows)?;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        match &mut self.mode {
            Mode::Single(file) => file.write(&rows)?,
            Mode::Partitioned(parts) => parts.write(&rows)?,
        }
        self.rows += rows.num_rows() as u64;
        Ok(())
    }

    /// Checks the rows' columns against the extract's and gives them the extract's schema, so
    /// every file sees one schema whatever metadata the batch carried.
    fn conform(&self, rows: &RecordBatch) -> Result<RecordBatch, RowsError> {
        let mismatch = |detail: String| RowsError::SchemaMismatch {
            path: self.path.clone(),
            detail,
        };
        let want = self.schema.fields();
        let have = rows.schema_ref().fields();
        if want.len() != have.len() {
            return Err(mismatch(format!(
                "expected {} columns, got {}",
                want.len(),
                have.len()
            )));
        }
        for (w, h) in want.iter().zip(have.iter()) {
            if w.name() != h.name() || w.data_type() != h.data_type() {
                return Err(mismatch(format!(
                    "expected `{}` ({}), got `{}` ({})",
                    w.name(),
                    w.data_type(),
                    h.name(),
                    h.data_type()
                )));
            }
        }
        RecordBatch::try_new(self.schema.clone(), rows.columns().to_vec())
            .map_err(|e| mismatch(e.to_string()))
    }

    /// Finishes every file, then makes the extract visible under its destination at once.
    pub(crate) fn commit(self) -> Result<RowsWritten, RowsError> {
        if self.poisoned {
            return Err(RowsError::Poisoned { path: self.path });
        }
        let (files, bytes) = match self.mode {
            Mode::Single(file) => (1, file.finish()?),
            Mode::Partitioned(parts) => parts.commit()?,
        };
        Ok(RowsWritten {
            rows: self.rows,
            files,
            bytes,
        })
    }
}

/// Format and compression settings shared by every file of an extract.
pub(super) enum Codec {
    Csv,
    Gzip(flate2::Compression),
    Zstd(i32),
    Parquet {
        props: Box<WriterProperties>,
        row_group_bytes: usize,
    },
}

impl Codec {
    fn new(spec: &RowSinkSpec) -> Result<Self, RowsError> {
        let level = spec.compression_level.unwrap_or(DEFAULT_LEVEL);
        let check = || match spec.format.level_range() {
            Some(range) if !range.contains(&level) => Err(RowsError::CompressionLevel {
                path: spec.path.clone(),
                format: spec.format,
                level,
                min: *range.start(),
                max: *range.end(),
            }),
            _ => Ok(level),
        };
        Ok(match spec.format {
            RowFormat::Csv => Codec::Csv,
            RowFormat::CsvGz => Codec::Gzip(flate2::Compression::new(check()?.unsigned_abs())),
            RowFormat::CsvZst => Codec::Zstd(check()?),
            RowFormat::Parquet => {
                let level = check()?;
                let level = ZstdLevel::try_new(level).map_err(|source| RowsError::Parquet {
                    path: spec.path.clone(),
                    source,
                })?;
                let open = if spec.partition_by.is_empty() {
                    1
                } else {
                    spec.max_open_files.max(1)
                };
                // Statistics per page (the column index) and the offset index are the
                // crate's defaults; readers prune row groups and pages with them.
                let mut props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(level))
                    .set_statistics_enabled(EnabledStatistics::Page);
                if spec.partition_by.contains(&PartitionKey::Date) {
                    // A reader trusts a `date=` folder's date only in the zone named here.
                    props = props.set_key_value_metadata(Some(vec![KeyValue::new(
                        DATE_ZONE_KEY.to_string(),
                        spec.zone.to_string(),
                    )]));
                }
                // Row groups of a fixed row count, or cut by their size in memory.
                let row_group_bytes = match spec.row_group_rows {
                    Some(n) => {
                        // The layout for querying: small pages, so that a row group a filter
                        // cannot rule out still skips the pages it can (a security's hours
                        // outside trading hours, in a file sorted by security and time).
                        props = props
                            .set_max_row_group_row_count(Some(n))
                            .set_data_page_row_count_limit(QUERY_PAGE_ROWS);
                        usize::MAX
                    }
                    None => (PARQUET_BUFFER_BUDGET / open)
                        .clamp(MIN_ROW_GROUP_BYTES, MAX_ROW_GROUP_BYTES),
                };
                Codec::Parquet {
                    props: Box::new(props.build()),
                    row_group_bytes,
                }
            }
        })
    }
}

/// Counts the bytes that reach the file, after compression.
struct Counted {
    inner: AtomicWriter,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Swallows flushes: the CSV writer flushes after every batch, which would end a deflate block or
/// zstd frame block early (larger output) and cost a write system call per batch. The streams are
/// finished properly when the file is.
struct NoFlush<W>(W);

impl<W: Write> Write for NoFlush<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type CsvWriter<W> = arrow_csv::Writer<NoFlush<W>>;
type ZstdEncoder = zstd::stream::write::Encoder<'static, Counted>;

enum Encoder {
    Csv(CsvWriter<Counted>),
    CsvGz(CsvWriter<GzEncoder<Counted>>),
    CsvZst(CsvWriter<ZstdEncoder>),
    Parquet {
        writer: ArrowWriter<Counted>,
        row_group_bytes: usize,
    },
}

/// One output file, from its header to its footer.
pub(super) struct FileWriter {
    /// The name the file has once the extract is committed, for messages.
    shown: PathBuf,
    encoder: Encoder,
}

fn csv_writer<W: Write>(inner: W) -> CsvWriter<W> {
    arrow_csv::WriterBuilder::new()
        .with_header(true)
        .build(NoFlush(inner))
}

impl FileWriter {
    /// Starts a file at `target`, reported in errors as `shown`.
    pub(super) fn create(
        target: &Path,
        shown: PathBuf,
        codec: &Codec,
        schema: &SchemaRef,
    ) -> Result<Self, RowsError> {
        // The atomic layer reports a failed folder creation against the folder; naming the file
        // the user asked for says more.
        let sink = AtomicWriter::create(target)
            .map_err(|e| OutputError::new(&shown, e.source))
            .map(|inner| Counted { inner, bytes: 0 })?;
        let encoder = match codec {
            Codec::Csv => Encoder::Csv(csv_writer(sink)),
            Codec::Gzip(level) => Encoder::CsvGz(csv_writer(GzEncoder::new(sink, *level))),
            Codec::Zstd(level) => Encoder::CsvZst(csv_writer(
                ZstdEncoder::new(sink, *level).map_err(|e| OutputError::new(&shown, e))?,
            )),
            Codec::Parquet {
                props,
                row_group_bytes,
            } => Encoder::Parquet {
                writer: ArrowWriter::try_new(
                    sink,
                    schema.clone(),
                    Some(WriterProperties::clone(props)),
                )
                .map_err(|source| RowsError::Parquet {
                    path: shown.clone(),
                    source,
                })?,
                row_group_bytes: *row_group_bytes,
            },
        };
        let mut file = FileWriter { shown, encoder };
        if !matches!(file.encoder, Encoder::Parquet { .. }) {
            // arrow-csv writes the header with the first batch; an empty one makes sure a file
            // that never receives rows still has it.
            file.write(&RecordBatch::new_empty(schema.clone()))?;
        }
        Ok(file)
    }

    pub(super) fn write(&mut self, rows: &RecordBatch) -> Result<(), RowsError> {
        let arrow = |source| RowsError::Arrow {
            path: self.shown.clone(),
            source,
        };
        let parquet = |source| RowsError::Parquet {
            path: self.shown.clone(),
            source,
        };
        match &mut self.encoder {
            Encoder::Csv(w) => w.write(rows).map_err(arrow),
            Encoder::CsvGz(w) => w.write(rows).map_err(arrow),
            Encoder::CsvZst(w) => w.write(rows).map_err(arrow),
            Encoder::Parquet {
                writer,
                row_group_bytes,
            } => {
                writer.write(rows).map_err(parquet)?;
                if writer.in_progress_size() >= *row_group_bytes {
                    writer.flush().map_err(parquet)?;
                }
                Ok(())
            }
        }
    }

    /// Writes the trailer, syncs and renames the file into place; returns its size.
    pub(super) fn finish(self) -> Result<u64, RowsError> {
        let shown = self.shown;
        let io = |e| OutputError::new(&shown, e);
        // arrow-csv's `into_inner` cannot fail here: every successful `write` leaves the CSV
        // buffer empty, and a failed one poisons the extract before this is reached.
        let sink = match self.encoder {
            Encoder::Csv(w) => w.into_inner().0,
            Encoder::CsvGz(w) => w.into_inner().0.finish().map_err(io)?,
            Encoder::CsvZst(w) => w.into_inner().0.finish().map_err(io)?,
            Encoder::Parquet { writer, .. } => {
                writer.into_inner().map_err(|source| RowsError::Parquet {
                    path: shown.clone(),
                    source,
                })?
            }
        };
        let bytes = sink.bytes;
        sink.inner
            .commit()
            .map_err(|e| OutputError::new(&shown, e.source))?;
        Ok(bytes)
    }
}
