//! The extract sink: writes kept rows to CSV (plain, gzip or zstd) or Parquet, as one file or as a
//! folder split into `security_code=<code>/date=<YYYY-MM-DD>/` partitions.
//!
//! Every file goes through an [`AtomicWriter`] and a partitioned extract is filled inside an
//! [`AtomicDir`], so the destination only ever shows a complete extract: a run that fails or is
//! dropped before [`ExtractWriter::commit`] leaves nothing under the real names.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use arrow_array::{Array, RecordBatch, UInt64Array};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use rustc_hash::FxHashMap;

use super::atomic::{AtomicDir, AtomicWriter, OutputError};
use crate::schema::col;
use crate::time::{LocalClock, Zone, format_day};

/// Compression level used when the spec gives none: extracts are written once and read rarely,
/// so speed matters more than the last few percent of size.
const DEFAULT_LEVEL: i32 = 1;

/// Memory that open Parquet writers may hold in encoded but unflushed row groups, shared among
/// the open files. ArrowWriter buffers a whole row group (a million rows by default) per file,
/// which with dozens of open partitions would grow without bound.
const PARQUET_BUFFER_BUDGET: usize = 256 << 20;
const MIN_ROW_GROUP_BYTES: usize = 1 << 20;
const MAX_ROW_GROUP_BYTES: usize = 64 << 20;

/// The file format of an extract.
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
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ExtractError> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        [
            RowFormat::CsvGz,
            RowFormat::CsvZst,
            RowFormat::Csv,
            RowFormat::Parquet,
        ]
        .into_iter()
        .find(|f| {
            name.strip_suffix(f.extension())
                .is_some_and(|stem| stem.len() > 1 && stem.ends_with('.'))
        })
        .ok_or_else(|| ExtractError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }

    /// The file extension, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            RowFormat::Csv => "csv",
            RowFormat::CsvGz => "csv.gz",
            RowFormat::CsvZst => "csv.zst",
            RowFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for RowFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A column a partitioned extract splits its rows by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    /// The `security_code` column.
    Security,
    /// The local date of the `timestamp` column in the spec's zone.
    Date,
}

impl PartitionKey {
    /// The name used in configuration and in partition folder names.
    pub fn name(self) -> &'static str {
        match self {
            PartitionKey::Security => col::SECURITY,
            PartitionKey::Date => "date",
        }
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PartitionKey {
    type Err = ExtractError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            col::SECURITY => Ok(PartitionKey::Security),
            "date" => Ok(PartitionKey::Date),
            _ => Err(ExtractError::UnknownPartitionKey(s.to_string())),
        }
    }
}

/// Where and how to write an extract.
#[derive(Clone, Debug)]
pub struct ExtractSpec {
    /// A file, or with partitioning a folder.
    pub path: PathBuf,
    pub format: RowFormat,
    /// Empty writes one file; otherwise one folder level per key, in this order.
    pub partition_by: Vec<PartitionKey>,
    /// The zone whose local date the `Date` partition uses.
    pub zone: Zone,
    /// gzip (0-9) or zstd level; `None` is level 1.
    pub compression_level: Option<i32>,
    /// Partitioned extracts: most files open at once.
    pub max_open_files: usize,
}

/// Why an extract could not be written. Every message names the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "{path}: unknown extract format: the name must end in .csv, .csv.gz, .csv.zst or .parquet"
    )]
    UnknownFormat { path: PathBuf },
    #[error("unknown partition key `{0}`: use \"security_code\" or \"date\"")]
    UnknownPartitionKey(String),
    #[error("{path}: partition key `{key}` is listed more than once")]
    DuplicatePartitionKey { path: PathBuf, key: PartitionKey },
    #[error("{path}: partitioning by {key} needs a `{column}` column, and the rows have none")]
    MissingPartitionColumn {
        path: PathBuf,
        key: PartitionKey,
        column: &'static str,
    },
    #[error("{path}: partition column `{column}` must be {expected}, not {found}")]
    PartitionColumnType {
        path: PathBuf,
        column: &'static str,
        expected: DataType,
        found: DataType,
    },
    #[error("{path}: partition column `{column}` has empty values, which cannot name a folder")]
    PartitionColumnNull { path: PathBuf, column: &'static str },
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
    #[error(
        "{path}: an earlier write failed, so the extract is incomplete and cannot be committed"
    )]
    Poisoned { path: PathBuf },
}

/// What a committed extract holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    pub rows: u64,
    pub files: u64,
    /// Bytes on disk, after compression.
    pub bytes: u64,
}

/// Writes kept rows to an extract. Nothing is visible under the destination until
/// [`ExtractWriter::commit`]; dropping the writer discards everything written.
pub struct ExtractWriter {
    path: PathBuf,
    schema: SchemaRef,
    mode: Mode,
    rows: u64,
    /// Set by a failed write, after which a file may hold part of a batch.
    poisoned: bool,
}

// Boxed: each state is hundreds of bytes, and an ExtractWriter is passed around by value.
enum Mode {
    Single(Box<FileWriter>),
    Partitioned(Box<Partitioned>),
}

impl ExtractWriter {
    pub fn create(spec: &ExtractSpec, schema: SchemaRef) -> Result<Self, ExtractError> {
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
        Ok(ExtractWriter {
            path,
            schema,
            mode,
            rows: 0,
            poisoned: false,
        })
    }

    /// Appends rows, which must have the columns (names and types) the writer was created with.
    pub fn write(&mut self, rows: &RecordBatch) -> Result<(), ExtractError> {
        if self.poisoned {
            return Err(ExtractError::Poisoned {
                path: self.path.clone(),
            });
        }
        let result = self.write_checked(rows);
        self.poisoned = result.is_err();
        result
    }

    fn write_checked(&mut self, rows: &RecordBatch) -> Result<(), ExtractError> {
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
    fn conform(&self, rows: &RecordBatch) -> Result<RecordBatch, ExtractError> {
        let mismatch = |detail: String| ExtractError::SchemaMismatch {
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
    pub fn commit(self) -> Result<ExtractSummary, ExtractError> {
        if self.poisoned {
            return Err(ExtractError::Poisoned { path: self.path });
        }
        let (files, bytes) = match self.mode {
            Mode::Single(file) => (1, file.finish()?),
            Mode::Partitioned(parts) => parts.commit()?,
        };
        Ok(ExtractSummary {
            rows: self.rows,
            files,
            bytes,
        })
    }
}

/// Format and compression settings shared by every file of an extract.
enum Codec {
    Csv,
    Gzip(flate2::Compression),
    Zstd(i32),
    Parquet {
        props: Box<WriterProperties>,
        row_group_bytes: usize,
    },
}

impl Codec {
    fn new(spec: &ExtractSpec) -> Result<Self, ExtractError> {
        let level = spec.compression_level.unwrap_or(DEFAULT_LEVEL);
        let check = |min: i32, max: i32| {
            if (min..=max).contains(&level) {
                Ok(level)
            } else {
                Err(ExtractError::CompressionLevel {
                    path: spec.path.clone(),
                    format: spec.format,
                    level,
                    min,
                    max,
                })
            }
        };
        let zstd_range = zstd::compression_level_range();
        Ok(match spec.format {
            RowFormat::Csv => Codec::Csv,
            // Levels above 9 are refused here because the deflate backends assert on them.
            RowFormat::CsvGz => Codec::Gzip(flate2::Compression::new(check(0, 9)?.unsigned_abs())),
            RowFormat::CsvZst => Codec::Zstd(check(*zstd_range.start(), *zstd_range.end())?),
            RowFormat::Parquet => {
                let level = check(*zstd_range.start(), *zstd_range.end())?;
                let level = ZstdLevel::try_new(level).map_err(|source| ExtractError::Parquet {
                    path: spec.path.clone(),
                    source,
                })?;
                let open = if spec.partition_by.is_empty() {
                    1
                } else {
                    spec.max_open_files.max(1)
                };
                Codec::Parquet {
                    props: Box::new(
                        WriterProperties::builder()
                            .set_compression(Compression::ZSTD(level))
                            .build(),
                    ),
                    row_group_bytes: (PARQUET_BUFFER_BUDGET / open)
                        .clamp(MIN_ROW_GROUP_BYTES, MAX_ROW_GROUP_BYTES),
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
struct FileWriter {
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
    fn create(
        target: &Path,
        shown: PathBuf,
        codec: &Codec,
        schema: &SchemaRef,
    ) -> Result<Self, ExtractError> {
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
                .map_err(|source| ExtractError::Parquet {
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

    fn write(&mut self, rows: &RecordBatch) -> Result<(), ExtractError> {
        let arrow = |source| ExtractError::Arrow {
            path: self.shown.clone(),
            source,
        };
        let parquet = |source| ExtractError::Parquet {
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
    fn finish(self) -> Result<u64, ExtractError> {
        let shown = self.shown;
        let io = |e| OutputError::new(&shown, e);
        // arrow-csv's `into_inner` cannot fail here: every successful `write` leaves the CSV
        // buffer empty, and a failed one poisons the extract before this is reached.
        let sink = match self.encoder {
            Encoder::Csv(w) => w.into_inner().0,
            Encoder::CsvGz(w) => w.into_inner().0.finish().map_err(io)?,
            Encoder::CsvZst(w) => w.into_inner().0.finish().map_err(io)?,
            Encoder::Parquet { writer, .. } => {
                writer
                    .into_inner()
                    .map_err(|source| ExtractError::Parquet {
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

/// The partition a row belongs to. Components the extract does not partition by stay 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PartKey {
    security: u32,
    day: i32,
}

struct OpenPart {
    file: FileWriter,
    last_used: u64,
}

struct Partitioned {
    // Declared before `dir` so open files delete their temporary names before the folder goes.
    open: FxHashMap<PartKey, OpenPart>,
    /// Part files started per partition, open or finished: the next part's number.
    parts: FxHashMap<PartKey, u64>,
    levels: Vec<PartitionKey>,
    security_col: Option<usize>,
    timestamp_col: Option<usize>,
    clock: LocalClock,
    codec: Codec,
    schema: SchemaRef,
    root: PathBuf,
    max_open: usize,
    tick: u64,
    files: u64,
    bytes: u64,
    dir: AtomicDir,
}

impl Partitioned {
    fn create(spec: &ExtractSpec, codec: Codec, schema: &SchemaRef) -> Result<Self, ExtractError> {
        let root = spec.path.clone();
        if spec.max_open_files == 0 {
            return Err(ExtractError::NoOpenFiles { path: root });
        }
        let mut security_col = None;
        let mut timestamp_col = None;
        for (i, &key) in spec.partition_by.iter().enumerate() {
            if spec.partition_by[..i].contains(&key) {
                return Err(ExtractError::DuplicatePartitionKey { path: root, key });
            }
            let (column, expected, slot) = match key {
                PartitionKey::Security => (col::SECURITY, DataType::UInt32, &mut security_col),
                PartitionKey::Date => (col::TIMESTAMP, DataType::Int64, &mut timestamp_col),
            };
            let Some((index, field)) = schema.column_with_name(column) else {
                return Err(ExtractError::MissingPartitionColumn {
                    path: root,
                    key,
                    column,
                });
            };
            if *field.data_type() != expected {
                return Err(ExtractError::PartitionColumnType {
                    path: root,
                    column,
                    expected,
                    found: field.data_type().clone(),
                });
            }
            *slot = Some(index);
        }
        // As with files, a failure to create the parent folder is reported against the extract.
        let dir = AtomicDir::create(&root).map_err(|e| OutputError::new(&root, e.source))?;
        Ok(Partitioned {
            open: FxHashMap::default(),
            parts: FxHashMap::default(),
            levels: spec.partition_by.clone(),
            security_col,
            timestamp_col,
            clock: LocalClock::new(spec.zone),
            codec,
            schema: schema.clone(),
            root,
            max_open: spec.max_open_files,
            tick: 0,
            files: 0,
            bytes: 0,
            dir,
        })
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<(), ExtractError> {
        for (key, indices) in self.split(rows)? {
            let part = match indices.as_slice() {
                [] => continue,
                [first, .., last] if last - first + 1 == indices.len() as u64 => {
                    // A contiguous run (the usual case: files are sorted by security and time) is
                    // a zero-copy slice.
                    rows.slice(*first as usize, indices.len())
                }
                [only] => rows.slice(*only as usize, 1),
                _ => arrow_select::take::take_record_batch(rows, &UInt64Array::from(indices))
                    .map_err(|source| ExtractError::Arrow {
                        path: self.root.clone(),
                        source,
                    })?,
            };
            self.write_part(key, &part)?;
        }
        Ok(())
    }

    /// Row indexes of each partition, partitions in order of first appearance and rows in input
    /// order.
    fn split(&mut self, rows: &RecordBatch) -> Result<Vec<(PartKey, Vec<u64>)>, ExtractError> {
        let security = match self.security_col {
            Some(i) => Some(self.key_column::<UInt32Type>(rows, i, col::SECURITY)?),
            None => None,
        };
        let timestamp = match self.timestamp_col {
            Some(i) => Some(self.key_column::<Int64Type>(rows, i, col::TIMESTAMP)?),
            None => None,
        };
        let mut groups: Vec<(PartKey, Vec<u64>)> = Vec::new();
        let mut index: FxHashMap<PartKey, usize> = FxHashMap::default();
        let mut last: Option<(PartKey, usize)> = None;
        for row in 0..rows.num_rows() {
            let key = PartKey {
                security: security.map_or(0, |a| a.value(row)),
                day: timestamp.map_or(0, |a| self.clock.local_day(a.value(row))),
            };
            let group = match last {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *index.entry(key).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    last = Some((key, g));
                    g
                }
            };
            if let Some((_, rows)) = groups.get_mut(group) {
                rows.push(row as u64);
            }
        }
        Ok(groups)
    }

    fn key_column<'a, T: arrow_array::ArrowPrimitiveType>(
        &self,
        rows: &'a RecordBatch,
        index: usize,
        column: &'static str,
    ) -> Result<&'a arrow_array::PrimitiveArray<T>, ExtractError> {
        let array = rows
            .columns()
            .get(index)
            .and_then(|a| a.as_primitive_opt::<T>())
            .ok_or_else(|| ExtractError::SchemaMismatch {
                path: self.root.clone(),
                detail: format!("partition column `{column}` is missing or of the wrong type"),
            })?;
        if array.null_count() > 0 {
            return Err(ExtractError::PartitionColumnNull {
                path: self.root.clone(),
                column,
            });
        }
        Ok(array)
    }

    fn write_part(&mut self, key: PartKey, rows: &RecordBatch) -> Result<(), ExtractError> {
        self.tick += 1;
        if let Some(open) = self.open.get_mut(&key) {
            open.last_used = self.tick;
            return open.file.write(rows);
        }
        if self.open.len() >= self.max_open {
            self.finish_least_recent()?;
        }
        let number = self.parts.entry(key).or_insert(0);
        let this_part = *number;
        *number += 1;
        let relative = self.relative_path(key, this_part);
        let file = FileWriter::create(
            &self.dir.path().join(&relative),
            self.root.join(&relative),
            &self.codec,
            &self.schema,
        )?;
        let open = self.open.entry(key).or_insert(OpenPart {
            file,
            last_used: self.tick,
        });
        open.file.write(rows)
    }

    /// Finishes the least recently written file to make room for another. A partition that
    /// gets rows again starts a new part file rather than reopening this one.
    fn finish_least_recent(&mut self) -> Result<(), ExtractError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.last_used)
            .map(|(key, _)| *key);
        if let Some(open) = oldest.and_then(|key| self.open.remove(&key)) {
            self.bytes += open.file.finish()?;
            self.files += 1;
        }
        Ok(())
    }

    fn relative_path(&self, key: PartKey, number: u64) -> PathBuf {
        let mut path = PathBuf::new();
        for level in &self.levels {
            path.push(match level {
                PartitionKey::Security => format!("{}={}", col::SECURITY, key.security),
                PartitionKey::Date => format!("date={}", format_day(key.day)),
            });
        }
        path.push(format!("part-{number:05}.{}", self.codec_extension()));
        path
    }

    fn codec_extension(&self) -> &'static str {
        match self.codec {
            Codec::Csv => RowFormat::Csv.extension(),
            Codec::Gzip(_) => RowFormat::CsvGz.extension(),
            Codec::Zstd(_) => RowFormat::CsvZst.extension(),
            Codec::Parquet { .. } => RowFormat::Parquet.extension(),
        }
    }

    fn commit(mut self) -> Result<(u64, u64), ExtractError> {
        let mut open: Vec<OpenPart> = self.open.drain().map(|(_, open)| open).collect();
        open.sort_by_key(|open| open.last_used);
        for part in open {
            self.bytes += part.file.finish()?;
            self.files += 1;
        }
        self.dir.commit()?;
        Ok((self.files, self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::io::Read;
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray, UInt32Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    const SECOND: i64 = 1_000_000_000;
    /// 2024-10-06T12:00Z: 23:00 AEDT on the 6th in Sydney.
    const UTC_12_00: i64 = 1_728_216_000 * SECOND;
    /// 2024-10-06T13:00Z: midnight AEDT, the 7th in Sydney.
    const UTC_13_00: i64 = 1_728_219_600 * SECOND;
    /// 2024-10-06T14:30Z: 01:30 AEDT on the 7th in Sydney.
    const UTC_14_30: i64 = 1_728_225_000 * SECOND;

    type Row = (u64, i64, u32, &'static str);

    fn schema() -> SchemaRef {
        crate::schema::arrow_schema(
            &[
                "order_id",
                "timestamp",
                "security_code",
                "timevaliditydecoded",
            ]
            .map(String::from),
        )
    }

    fn batch(rows: &[Row]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    fn spec(path: PathBuf, format: RowFormat, partition_by: &[PartitionKey]) -> ExtractSpec {
        ExtractSpec {
            path,
            format,
            partition_by: partition_by.to_vec(),
            zone: Zone::default(),
            compression_level: None,
            max_open_files: 64,
        }
    }

    fn write_all(spec: &ExtractSpec, batches: &[RecordBatch]) -> ExtractSummary {
        let mut w = ExtractWriter::create(spec, schema()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.commit().unwrap()
    }

    /// Every file under `dir`, as sorted `/`-separated relative paths.
    fn files_under(dir: &Path) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &format!("{name}/"), out);
                } else {
                    out.push(name);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, "", &mut out);
        out.sort();
        out
    }

    fn read_parquet(path: &Path) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        arrow_select::concat::concat_batches(&schema(), &batches).unwrap()
    }

    const HEADER: &str = "order_id,timestamp,security_code,timevaliditydecoded\n";

    fn sample() -> Vec<RecordBatch> {
        vec![
            batch(&[
                (
                    u64::MAX,
                    1_725_494_536_001_032_398,
                    110_621,
                    "Good Till Cancel",
                ),
                (1 << 63, -1, 5, "a,\"b\""),
            ]),
            batch(&[(1, 0, 0, "")]),
        ]
    }

    const SAMPLE_CSV: &str = "order_id,timestamp,security_code,timevaliditydecoded\n\
        18446744073709551615,1725494536001032398,110621,Good Till Cancel\n\
        9223372036854775808,-1,5,\"a,\"\"b\"\"\"\n\
        1,0,0,\n";

    #[test]
    fn csv_bytes_are_exact_and_large_ids_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let summary = write_all(&spec(path.clone(), RowFormat::Csv, &[]), &sample());
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, SAMPLE_CSV);
        assert_eq!(
            summary,
            ExtractSummary {
                rows: 3,
                files: 1,
                bytes: SAMPLE_CSV.len() as u64
            }
        );
        let ids: Vec<u64> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids, [u64::MAX, 1 << 63, 1]);
        assert_eq!(files_under(dir.path()), ["out.csv"]);
    }

    #[test]
    fn compressed_csv_decompresses_to_the_csv_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("out.csv.gz");
        let zst = dir.path().join("out.csv.zst");
        let gz_summary = write_all(&spec(gz.clone(), RowFormat::CsvGz, &[]), &sample());
        let zst_summary = write_all(&spec(zst.clone(), RowFormat::CsvZst, &[]), &sample());

        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&gz).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, SAMPLE_CSV);
        let unzstd = zstd::stream::decode_all(File::open(&zst).unwrap()).unwrap();
        assert_eq!(String::from_utf8(unzstd).unwrap(), SAMPLE_CSV);

        assert_eq!(gz_summary.bytes, fs::metadata(&gz).unwrap().len());
        assert_eq!(zst_summary.bytes, fs::metadata(&zst).unwrap().len());
        assert_eq!((gz_summary.rows, gz_summary.files), (3, 1));
        // The gzip magic and the zstd frame magic: the files really are compressed.
        assert_eq!(fs::read(&gz).unwrap()[..2], [0x1f, 0x8b]);
        assert_eq!(fs::read(&zst).unwrap()[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    }

    #[test]
    fn parquet_reads_back_identical_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.parquet");
        let summary = write_all(&spec(path.clone(), RowFormat::Parquet, &[]), &sample());
        let expected = arrow_select::concat::concat_batches(&schema(), &sample()).unwrap();
        assert_eq!(read_parquet(&path), expected);
        assert_eq!(summary.rows, 3);
        assert_eq!(summary.bytes, fs::metadata(&path).unwrap().len());

        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(builder.schema(), &schema());
        let chunk = builder.metadata().row_group(0).column(0);
        assert!(matches!(chunk.compression(), Compression::ZSTD(_)));
    }

    #[test]
    fn empty_extract_is_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("empty.csv");
        let summary = write_all(&spec(csv.clone(), RowFormat::Csv, &[]), &[batch(&[])]);
        assert_eq!(fs::read_to_string(&csv).unwrap(), HEADER);
        assert_eq!(
            summary,
            ExtractSummary {
                rows: 0,
                files: 1,
                bytes: HEADER.len() as u64
            }
        );

        let pq = dir.path().join("empty.parquet");
        write_all(&spec(pq.clone(), RowFormat::Parquet, &[]), &[]);
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&pq).unwrap()).unwrap();
        assert_eq!(builder.schema(), &schema());
        assert_eq!(builder.metadata().file_metadata().num_rows(), 0);
        assert_eq!(read_parquet(&pq).num_rows(), 0);
    }

    #[test]
    fn partitions_by_security_and_sydney_date() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("parts");
        let keys = [PartitionKey::Security, PartitionKey::Date];
        let summary = write_all(
            &spec(root.clone(), RowFormat::Csv, &keys),
            &[
                batch(&[
                    (1, UTC_12_00, 110_621, "a"),
                    (2, UTC_14_30, 110_621, "b"),
                    (3, UTC_12_00, 5, "c"),
                ]),
                batch(&[
                    (4, UTC_13_00, 110_621, "d"),
                    (6, UTC_14_30 + 1, 110_621, "f"),
                    (5, UTC_12_00 + 1, 110_621, "e"),
                ]),
            ],
        );
        let expected = [
            (
                "security_code=110621/date=2024-10-06/part-00000.csv",
                format!(
                    "{HEADER}1,{UTC_12_00},110621,a\n5,{},110621,e\n",
                    UTC_12_00 + 1
                ),
            ),
            (
                "security_code=110621/date=2024-10-07/part-00000.csv",
                format!(
                    "{HEADER}2,{UTC_14_30},110621,b\n4,{UTC_13_00},110621,d\n6,{},110621,f\n",
                    UTC_14_30 + 1
                ),
            ),
            (
                "security_code=5/date=2024-10-06/part-00000.csv",
                format!("{HEADER}3,{UTC_12_00},5,c\n"),
            ),
        ];
        assert_eq!(
            files_under(&root),
            expected
                .iter()
                .map(|(p, _)| p.to_string())
                .collect::<Vec<_>>()
        );
        for (file, content) in &expected {
            assert_eq!(
                &fs::read_to_string(root.join(file)).unwrap(),
                content,
                "{file}"
            );
        }
        let bytes: usize = expected.iter().map(|(_, c)| c.len()).sum();
        assert_eq!(
            summary,
            ExtractSummary {
                rows: 6,
                files: 3,
                bytes: bytes as u64
            }
        );
        // Only the committed folder remains beside it: no temporary names.
        assert_eq!(files_under(dir.path()).len(), 3);
    }

    #[test]
    fn folder_levels_follow_partition_by_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("parts");
        let mut s = spec(
            root.clone(),
            RowFormat::CsvGz,
            &[PartitionKey::Date, PartitionKey::Security],
        );
        // In UTC, 14:30Z on the 6th is still the 6th.
        s.zone = Zone::Fixed(0);
        write_all(&s, &[batch(&[(2, UTC_14_30, 7, "b")])]);
        assert_eq!(
            files_under(&root),
            ["date=2024-10-06/security_code=7/part-00000.csv.gz"]
        );
    }

    #[test]
    fn evicted_partitions_continue_in_the_next_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("parts");
        let mut s = spec(root.clone(), RowFormat::Parquet, &[PartitionKey::Security]);
        s.max_open_files = 1;
        let a = |id| (id, UTC_12_00 + id as i64, 10, "a");
        let b = |id| (id, UTC_12_00 + id as i64, 20, "b");
        let summary = write_all(
            &s,
            &[
                batch(&[a(1), b(2), a(3)]),
                batch(&[a(4), b(5)]),
                batch(&[a(6)]),
            ],
        );
        assert_eq!(
            files_under(&root),
            [
                "security_code=10/part-00000.parquet",
                "security_code=10/part-00001.parquet",
                "security_code=10/part-00002.parquet",
                "security_code=20/part-00000.parquet",
                "security_code=20/part-00001.parquet",
            ]
        );
        let part = |name: &str| read_parquet(&root.join(name));
        // Rows 1 and 3 share a batch, so they reach partition 10 together before 20 evicts it.
        assert_eq!(
            part("security_code=10/part-00000.parquet"),
            batch(&[a(1), a(3)])
        );
        assert_eq!(part("security_code=10/part-00001.parquet"), batch(&[a(4)]));
        assert_eq!(part("security_code=10/part-00002.parquet"), batch(&[a(6)]));
        assert_eq!(part("security_code=20/part-00000.parquet"), batch(&[b(2)]));
        assert_eq!(part("security_code=20/part-00001.parquet"), batch(&[b(5)]));
        assert_eq!((summary.rows, summary.files), (6, 5));
        let bytes: u64 = files_under(&root)
            .iter()
            .map(|f| fs::metadata(root.join(f)).unwrap().len())
            .sum();
        assert_eq!(summary.bytes, bytes);
    }

    #[test]
    fn dropping_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = spec(
            dir.path().join("parts"),
            RowFormat::CsvZst,
            &[PartitionKey::Security],
        );
        parts.max_open_files = 1;
        let single = spec(dir.path().join("out.parquet"), RowFormat::Parquet, &[]);
        for s in [parts, single] {
            let mut w = ExtractWriter::create(&s, schema()).unwrap();
            // Two partitions with one open file: the first part is finished before the drop.
            w.write(&batch(&[(1, 0, 1, "x"), (2, 0, 2, "y")])).unwrap();
            assert!(!files_under(dir.path()).is_empty());
            drop(w);
        }
        assert_eq!(files_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn unwritable_destination_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, "a file, not a folder").unwrap();
        for (name, keys) in [("out.csv", &[][..]), ("parts", &[PartitionKey::Date][..])] {
            let path = blocker.join(name);
            let err = ExtractWriter::create(&spec(path.clone(), RowFormat::Csv, keys), schema())
                .err()
                .unwrap();
            assert!(matches!(err, ExtractError::Output(_)), "{err:?}");
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("{}: ", path.display())),
                "{message}"
            );
        }
    }

    #[test]
    fn bad_specs_and_rows_are_refused_with_the_path() {
        assert_eq!(RowFormat::from_path("a/b.CSV").unwrap(), RowFormat::Csv);
        assert_eq!(RowFormat::from_path("b.csv.GZ").unwrap(), RowFormat::CsvGz);
        assert_eq!(
            RowFormat::from_path("b.Csv.Zst").unwrap(),
            RowFormat::CsvZst
        );
        assert_eq!(
            RowFormat::from_path("b.parquet").unwrap(),
            RowFormat::Parquet
        );
        for bad in ["b.gz", "b.tsv", ".csv", "b", "bcsv"] {
            let err = RowFormat::from_path(bad).err().unwrap();
            assert!(err.to_string().starts_with(&format!("{bad}: ")), "{err}");
        }
        assert_eq!(
            "security_code".parse::<PartitionKey>().unwrap(),
            PartitionKey::Security
        );
        assert_eq!("date".parse::<PartitionKey>().unwrap(), PartitionKey::Date);
        assert!("security".parse::<PartitionKey>().is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv.gz");
        let mut s = spec(path.clone(), RowFormat::CsvGz, &[]);
        s.compression_level = Some(10);
        let err = ExtractWriter::create(&s, schema()).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: compression level 10 is out of range for csv.gz: use 0 to 9",
                path.display()
            )
        );

        let no_time = crate::schema::arrow_schema(&["order_id".to_string()]);
        let root = dir.path().join("parts");
        let s = spec(root.clone(), RowFormat::Csv, &[PartitionKey::Date]);
        let err = ExtractWriter::create(&s, no_time).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: partitioning by date needs a `timestamp` column, and the rows have none",
                root.display()
            )
        );
        let twice = spec(
            root.clone(),
            RowFormat::Csv,
            &[PartitionKey::Date, PartitionKey::Date],
        );
        assert!(matches!(
            ExtractWriter::create(&twice, schema()),
            Err(ExtractError::DuplicatePartitionKey { .. })
        ));
        let mut none_open = spec(root.clone(), RowFormat::Csv, &[PartitionKey::Date]);
        none_open.max_open_files = 0;
        assert!(matches!(
            ExtractWriter::create(&none_open, schema()),
            Err(ExtractError::NoOpenFiles { .. })
        ));

        // Rows with other columns are refused, and the extract can no longer be committed.
        let out = dir.path().join("out.csv");
        let mut w =
            ExtractWriter::create(&spec(out.clone(), RowFormat::Csv, &[]), schema()).unwrap();
        let other = RecordBatch::try_new(
            crate::schema::arrow_schema(&["order_id".to_string()]),
            vec![Arc::new(UInt64Array::from(vec![1u64]))],
        )
        .unwrap();
        let err = w.write(&other).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: rows do not match the extract's columns: expected 4 columns, got 1",
                out.display()
            )
        );
        assert!(matches!(w.commit(), Err(ExtractError::Poisoned { .. })));
        assert_eq!(files_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn writer_is_send() {
        fn send<T: Send>() {}
        send::<ExtractWriter>();
    }
}
