//! Where generated rows go: a CSV (plain, gzip or zstd) or parquet file chosen by extension,
//! always through an [`AtomicWriter`], plus the dirty-row injector and its side log.
//!
//! Every file is finished (compressor trailer, parquet footer) before any is renamed into place,
//! so an error in one output leaves none of them under its real name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{Field, Schema, SchemaRef};
use flate2::Compression;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GenerateError;
use super::rows::{
    COL_ORDER_ID, COL_PRICE, COL_QUANTITY, COL_TIME_VALIDITY_DECODED, COL_TIMESTAMP, ORDER_COLUMNS,
    OrderRow, TRADE_COLUMNS, TradeRow, Value, order_columns, push_i64, push_u64, write_csv_line,
    write_header,
};
use crate::schema::ColumnType;
use crate::sinks::atomic::{AtomicWriter, OutputError};

/// Output format, chosen by the file name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Csv,
    CsvGz,
    CsvZst,
    Parquet,
}

impl Format {
    pub(crate) fn of(path: &Path) -> Result<Format, GenerateError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        [
            (".csv", Format::Csv),
            (".csv.gz", Format::CsvGz),
            (".csv.zst", Format::CsvZst),
            (".parquet", Format::Parquet),
        ]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext) && name.len() > ext.len())
        .map(|(_, f)| f)
        .ok_or_else(|| GenerateError::UnknownFormat(path.to_path_buf()))
    }

    pub(crate) fn is_csv(self) -> bool {
        self != Format::Parquet
    }
}

/// Bytes handed to a compressor at once: deflate and zstd pay a per-call overhead, so lines are
/// gathered rather than written one by one.
const CHUNK: usize = 256 * 1024;
/// Rows per parquet record batch (and so the most rows held in column buffers).
const PARQUET_BATCH: usize = 64 * 1024;
/// Rows per parquet row group; the writer holds one encoded row group in memory.
const PARQUET_ROW_GROUP: usize = 256 * 1024;

enum CsvOut {
    Plain(AtomicWriter),
    Gz(GzEncoder<AtomicWriter>),
    Zst(zstd::Encoder<'static, AtomicWriter>),
}

impl CsvOut {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            CsvOut::Plain(w) => w.write_all(bytes),
            CsvOut::Gz(w) => w.write_all(bytes),
            CsvOut::Zst(w) => w.write_all(bytes),
        }
    }

    fn finish(self) -> std::io::Result<AtomicWriter> {
        match self {
            CsvOut::Plain(w) => Ok(w),
            CsvOut::Gz(w) => w.finish(),
            CsvOut::Zst(w) => w.finish(),
        }
    }
}

enum ColumnBuf {
    U64(Vec<u64>),
    I64(Vec<i64>),
    U32(Vec<u32>),
    Str(StringBuilder),
}

impl ColumnBuf {
    fn new(t: ColumnType) -> Self {
        match t {
            ColumnType::U64 => ColumnBuf::U64(Vec::with_capacity(PARQUET_BATCH)),
            ColumnType::I64 => ColumnBuf::I64(Vec::with_capacity(PARQUET_BATCH)),
            ColumnType::U32 => ColumnBuf::U32(Vec::with_capacity(PARQUET_BATCH)),
            ColumnType::Utf8 => ColumnBuf::Str(StringBuilder::new()),
        }
    }

    fn push(&mut self, v: Value<'_>) {
        match (self, v) {
            (ColumnBuf::U64(c), Value::U64(x)) => c.push(x),
            (ColumnBuf::I64(c), Value::I64(x)) => c.push(x),
            (ColumnBuf::U32(c), Value::U32(x)) => c.push(x),
            (ColumnBuf::Str(c), Value::Str(x)) => c.append_value(x),
            // Row types are checked against the column catalogue by a unit test; this arm is
            // unreachable for the rows the generator builds.
            (buf, v) => debug_assert!(false, "column type mismatch: {v:?} into {}", buf.name()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ColumnBuf::U64(_) => "u64",
            ColumnBuf::I64(_) => "i64",
            ColumnBuf::U32(_) => "u32",
            ColumnBuf::Str(_) => "utf8",
        }
    }

    fn take(&mut self) -> ArrayRef {
        match self {
            ColumnBuf::U64(c) => Arc::new(UInt64Array::from(std::mem::take(c))),
            ColumnBuf::I64(c) => Arc::new(Int64Array::from(std::mem::take(c))),
            ColumnBuf::U32(c) => Arc::new(UInt32Array::from(std::mem::take(c))),
            ColumnBuf::Str(c) => Arc::new(c.finish()),
        }
    }
}

struct ParquetOut {
    writer: ArrowWriter<AtomicWriter>,
    schema: SchemaRef,
    columns: Vec<ColumnBuf>,
    rows: usize,
}

impl ParquetOut {
    fn flush(&mut self, path: &Path) -> Result<(), GenerateError> {
        if self.rows == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuf::take).collect();
        self.rows = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|source| {
            GenerateError::Arrow {
                path: path.to_path_buf(),
                source,
            }
        })?;
        self.writer
            .write(&batch)
            .map_err(|source| GenerateError::Parquet {
                path: path.to_path_buf(),
                source,
            })
    }
}

enum Body {
    Csv { out: CsvOut, chunk: Vec<u8> },
    Parquet(ParquetOut),
}

/// One output table.
pub(crate) struct TableSink {
    path: PathBuf,
    body: Body,
}

impl TableSink {
    /// Opens `path` under a temporary name and, for CSV, writes the header. Returns the sink and
    /// the header's length in bytes.
    pub(crate) fn create(
        path: &Path,
        columns: &[(&'static str, ColumnType)],
    ) -> Result<(TableSink, u64), GenerateError> {
        let format = Format::of(path)?;
        let io_err = |e| OutputError::new(path, e);
        let file = AtomicWriter::create(path)?;
        let mut header = Vec::new();
        write_header(&mut header, columns.iter().map(|(n, _)| *n));
        let header_len = header.len() as u64;
        let body = match format {
            Format::Parquet => {
                let schema: SchemaRef = Arc::new(Schema::new(
                    columns
                        .iter()
                        .map(|(n, t)| Field::new(*n, t.arrow(), false))
                        .collect::<Vec<_>>(),
                ));
                let props = WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP))
                    .build();
                let writer =
                    ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
                        GenerateError::Parquet {
                            path: path.to_path_buf(),
                            source,
                        }
                    })?;
                Body::Parquet(ParquetOut {
                    writer,
                    schema,
                    columns: columns.iter().map(|(_, t)| ColumnBuf::new(*t)).collect(),
                    rows: 0,
                })
            }
            Format::Csv => Body::Csv {
                out: CsvOut::Plain(file),
                chunk: header,
            },
            // Level 1: generated data is rewritten often and read by benchmarks, where the
            // compression ratio matters far less than generation time.
            Format::CsvGz => Body::Csv {
                out: CsvOut::Gz(GzEncoder::new(file, Compression::fast())),
                chunk: header,
            },
            Format::CsvZst => Body::Csv {
                out: CsvOut::Zst(zstd::Encoder::new(file, 1).map_err(io_err)?),
                chunk: header,
            },
        };
        Ok((
            TableSink {
                path: path.to_path_buf(),
                body,
            },
            header_len,
        ))
    }

    pub(crate) fn is_csv(&self) -> bool {
        matches!(self.body, Body::Csv { .. })
    }

    /// Writes one row: the CSV `line` for CSV files, the typed `values` for parquet.
    pub(crate) fn write_row(
        &mut self,
        values: &[Value<'_>],
        line: &[u8],
    ) -> Result<(), GenerateError> {
        match &mut self.body {
            Body::Csv { out, chunk } => {
                chunk.extend_from_slice(line);
                if chunk.len() >= CHUNK {
                    out.write_all(chunk)
                        .map_err(|e| OutputError::new(&self.path, e))?;
                    chunk.clear();
                }
                Ok(())
            }
            Body::Parquet(pq) => {
                for (col, v) in pq.columns.iter_mut().zip(values) {
                    col.push(*v);
                }
                pq.rows += 1;
                if pq.rows >= PARQUET_BATCH {
                    pq.flush(&self.path)?;
                }
                Ok(())
            }
        }
    }

    /// Completes the file's bytes (trailer, footer) without renaming it into place.
    pub(crate) fn finish(self) -> Result<AtomicWriter, GenerateError> {
        let path = self.path;
        match self.body {
            Body::Csv { mut out, chunk } => {
                out.write_all(&chunk)
                    .map_err(|e| OutputError::new(&path, e))?;
                Ok(out.finish().map_err(|e| OutputError::new(&path, e))?)
            }
            Body::Parquet(mut pq) => {
                pq.flush(&path)?;
                pq.writer
                    .into_inner()
                    .map_err(|source| GenerateError::Parquet { path, source })
            }
        }
    }
}

/// The kinds of malformed row `--dirty` injects. The log's `column` names the spoiled column; for
/// `too_few_fields` it is the first missing column, for `too_many_fields` it is empty. Apart from
/// the spoiled column (or the missing/extra fields) the row is the clean row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirtyKind {
    NonNumericQuantity,
    NegativeQuantity,
    OverflowOrderId,
    TooFewFields,
    TooManyFields,
    EmptyTimestamp,
    NonUtf8Text,
    DecimalPrice,
}

impl DirtyKind {
    pub(crate) const ALL: [DirtyKind; 8] = [
        DirtyKind::NonNumericQuantity,
        DirtyKind::NegativeQuantity,
        DirtyKind::OverflowOrderId,
        DirtyKind::TooFewFields,
        DirtyKind::TooManyFields,
        DirtyKind::EmptyTimestamp,
        DirtyKind::NonUtf8Text,
        DirtyKind::DecimalPrice,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            DirtyKind::NonNumericQuantity => "non_numeric_quantity",
            DirtyKind::NegativeQuantity => "negative_quantity",
            DirtyKind::OverflowOrderId => "overflow_order_id",
            DirtyKind::TooFewFields => "too_few_fields",
            DirtyKind::TooManyFields => "too_many_fields",
            DirtyKind::EmptyTimestamp => "empty_timestamp",
            DirtyKind::NonUtf8Text => "non_utf8_text",
            DirtyKind::DecimalPrice => "decimal_price",
        }
    }
}

/// Replaces a seeded fraction of order rows with malformed variants and logs where.
struct Dirty {
    /// A row is spoiled when a uniform u64 draw falls below this.
    threshold: u64,
    always: bool,
    /// Its own stream, so the clean content of a dirty run is the clean run's content.
    rng: ChaCha8Rng,
    log_path: PathBuf,
    log: AtomicWriter,
    fields: Vec<Vec<u8>>,
}

impl Dirty {
    fn hit(&mut self) -> bool {
        let draw: u64 = self.rng.random();
        self.always || draw < self.threshold
    }

    /// Rewrites `line` as a malformed variant of the row and logs it at physical `line_no`.
    fn spoil(
        &mut self,
        values: &[Value<'_>],
        line_no: u64,
        line: &mut Vec<u8>,
    ) -> Result<(), GenerateError> {
        let kind = DirtyKind::ALL[self.rng.random_range(0..DirtyKind::ALL.len() as u32) as usize];
        self.fields.resize_with(values.len(), Vec::new);
        for (f, v) in self.fields.iter_mut().zip(values) {
            f.clear();
            v.write_csv(f);
        }
        let mut column = "";
        let mut keep = values.len();
        let mut extra = 0;
        match kind {
            DirtyKind::NonNumericQuantity => {
                column = ORDER_COLUMNS[COL_QUANTITY];
                let f = &mut self.fields[COL_QUANTITY];
                // A letter where a digit was, as a mis-keyed or OCR'd value would look.
                let at = self.rng.random_range(0..f.len() as u32) as usize;
                f[at] = b"OlSBx"[self.rng.random_range(0..5u32) as usize];
            }
            DirtyKind::NegativeQuantity => {
                column = ORDER_COLUMNS[COL_QUANTITY];
                self.fields[COL_QUANTITY].insert(0, b'-');
            }
            DirtyKind::OverflowOrderId => {
                column = ORDER_COLUMNS[COL_ORDER_ID];
                let over = u128::from(u64::MAX) + 1 + u128::from(self.rng.random::<u32>());
                let f = &mut self.fields[COL_ORDER_ID];
                f.clear();
                f.extend_from_slice(over.to_string().as_bytes());
            }
            DirtyKind::TooFewFields => {
                keep = values.len() - self.rng.random_range(1..=3u32) as usize;
                column = ORDER_COLUMNS[keep];
            }
            DirtyKind::TooManyFields => {
                extra = self.rng.random_range(1..=2u32) as usize;
            }
            DirtyKind::EmptyTimestamp => {
                column = ORDER_COLUMNS[COL_TIMESTAMP];
                self.fields[COL_TIMESTAMP].clear();
            }
            DirtyKind::NonUtf8Text => {
                column = ORDER_COLUMNS[COL_TIME_VALIDITY_DECODED];
                // Latin-1 bytes, as a file re-encoded by a spreadsheet would carry: a lone
                // 0xE9 ("é") or 0xFF is never valid UTF-8.
                let f = &mut self.fields[COL_TIME_VALIDITY_DECODED];
                let at = self.rng.random_range(0..=f.len() as u32) as usize;
                f.insert(
                    at,
                    if self.rng.random::<bool>() {
                        0xE9
                    } else {
                        0xFF
                    },
                );
            }
            DirtyKind::DecimalPrice => {
                column = ORDER_COLUMNS[COL_PRICE];
                // The price in dollars, as a file exported with the decimals applied would hold.
                if let Value::I64(p) = values[COL_PRICE] {
                    let f = &mut self.fields[COL_PRICE];
                    f.clear();
                    push_i64(f, p / 1000);
                    f.push(b'.');
                    let frac = (p % 1000).unsigned_abs();
                    f.extend_from_slice(&[
                        b'0' + (frac / 100) as u8,
                        b'0' + (frac / 10 % 10) as u8,
                        b'0' + (frac % 10) as u8,
                    ]);
                }
            }
        }
        line.clear();
        for (i, f) in self.fields[..keep].iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(f);
        }
        for _ in 0..extra {
            line.extend_from_slice(b",0");
        }
        line.push(b'\n');

        let mut rec = Vec::with_capacity(48);
        push_u64(&mut rec, line_no);
        rec.push(b',');
        rec.extend_from_slice(kind.name().as_bytes());
        rec.push(b',');
        rec.extend_from_slice(column.as_bytes());
        rec.push(b'\n');
        self.log
            .write_all(&rec)
            .map_err(|e| OutputError::new(&self.log_path, e))?;
        Ok(())
    }
}

/// Dirty-mode settings for [`Outputs::create`].
pub(crate) struct DirtySpec<'a> {
    pub rate: f64,
    pub seed: u64,
    pub log_path: &'a Path,
}

/// All outputs of one run, with the counters the budget and the report read.
pub(crate) struct Outputs {
    orders: TableSink,
    trades: Option<TableSink>,
    dirty: Option<Dirty>,
    line: Vec<u8>,
    /// Order rows written.
    pub orders_rows: u64,
    /// Uncompressed CSV bytes of the orders file, header included, whatever its format.
    pub orders_bytes: u64,
    /// Events of the full order log, written or not (`--final-state` and `--centre-point-only`
    /// write a part of it): what `--rows` counts.
    pub log_rows: u64,
    /// Uncompressed CSV bytes of the full order log, header included: what `--size` measures.
    pub log_bytes: u64,
    pub header_bytes: u64,
    pub trades_rows: u64,
    pub dirty_rows: u64,
    /// Trade rows produced, written or not: the next trade row's `row_num`.
    pub trade_row_num: u64,
}

impl Outputs {
    pub(crate) fn create(
        orders: &Path,
        trades: Option<&Path>,
        dirty: Option<DirtySpec<'_>>,
    ) -> Result<Outputs, GenerateError> {
        let (orders, header_bytes) = TableSink::create(orders, &order_columns())?;
        let trades = match trades {
            Some(p) => Some(TableSink::create(p, TRADE_COLUMNS)?.0),
            None => None,
        };
        let dirty = match dirty {
            Some(spec) => {
                let mut log = AtomicWriter::create(spec.log_path)?;
                log.write_all(b"line,kind,column\n")
                    .map_err(|e| OutputError::new(spec.log_path, e))?;
                let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
                rng.set_stream(DIRTY_STREAM);
                // `as` saturates, and rate is validated to [0, 1]; exactly 1 is handled apart
                // because 2^64 does not fit the threshold.
                let threshold = (spec.rate * 18_446_744_073_709_551_616.0) as u64;
                Some(Dirty {
                    threshold,
                    always: spec.rate >= 1.0,
                    rng,
                    log_path: spec.log_path.to_path_buf(),
                    log,
                    fields: Vec::new(),
                })
            }
            None => None,
        };
        Ok(Outputs {
            orders,
            trades,
            dirty,
            line: Vec::with_capacity(512),
            orders_rows: 0,
            orders_bytes: header_bytes,
            log_rows: 0,
            log_bytes: header_bytes,
            header_bytes,
            trades_rows: 0,
            dirty_rows: 0,
            trade_row_num: 0,
        })
    }

    /// Counts one event of the full order log and, if `write`, writes it to the orders file.
    pub fn order(&mut self, row: &OrderRow<'_>, write: bool) -> Result<(), GenerateError> {
        let values = row.values();
        self.line.clear();
        write_csv_line(&mut self.line, &values);
        self.log_rows += 1;
        self.log_bytes += self.line.len() as u64;
        if write {
            self.write_line(&values)?;
        }
        Ok(())
    }

    /// Writes a row to the orders file that is not a new event of the log (a `--final-state`
    /// order's last event, counted when it happened).
    pub fn write_order(&mut self, row: &OrderRow<'_>) -> Result<(), GenerateError> {
        let values = row.values();
        self.line.clear();
        write_csv_line(&mut self.line, &values);
        self.write_line(&values)
    }

    /// Writes the order row in `self.line` (its cells `values`), spoiling it if `--dirty` says so.
    fn write_line(&mut self, values: &[Value<'_>]) -> Result<(), GenerateError> {
        if let Some(d) = &mut self.dirty
            && d.hit()
        {
            d.spoil(values, self.orders_rows + 2, &mut self.line)?;
            self.dirty_rows += 1;
        }
        self.orders.write_row(values, &self.line)?;
        self.orders_rows += 1;
        self.orders_bytes += self.line.len() as u64;
        Ok(())
    }

    pub(crate) fn trade(&mut self, row: &TradeRow<'_>) -> Result<(), GenerateError> {
        self.trade_row_num += 1;
        let Some(sink) = &mut self.trades else {
            return Ok(());
        };
        let values = row.values();
        self.line.clear();
        if sink.is_csv() {
            write_csv_line(&mut self.line, &values);
        }
        sink.write_row(&values, &self.line)?;
        self.trades_rows += 1;
        Ok(())
    }

    /// Finishes every file, then renames them all into place.
    pub(crate) fn commit(self) -> Result<(), GenerateError> {
        let mut done = vec![self.orders.finish()?];
        if let Some(t) = self.trades {
            done.push(t.finish()?);
        }
        if let Some(d) = self.dirty {
            done.push(d.log);
        }
        for w in done {
            w.commit()?;
        }
        Ok(())
    }
}

/// ChaCha stream number of the dirty-row draws; the simulation uses stream 0.
const DIRTY_STREAM: u64 = 0xD1_27;
