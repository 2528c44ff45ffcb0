//! Parquet input: the same canonical, typed batches as CSV, through the parquet crate's Arrow
//! reader. Only the columns downstream stages use are decoded (a projection), and values are
//! cast to the catalogue's types. A value that is null or does not fit its type (a negative
//! quantity, say) is a row error like a bad CSV field; "line" is then the 1-based row number.
//! With a pushdown (`prune`), only the row groups and pages its filters may keep are read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::reader::{ChunkReader, Length};

use super::ReaderError;
use super::csv::RowError;
use super::prune::{self, Decoded, Pushdown};
use crate::config::ColumnNeed;
use crate::flow::stats::ParquetScan;
use crate::schema::{self, ColumnType};

/// One decoded batch with the row errors found in it.
pub(crate) struct ParquetBatch {
    pub batch: RecordBatch,
    pub rows_read: u64,
    pub errors: Vec<RowError>,
    pub bytes: u64,
}

/// A file that counts the bytes the Parquet reader takes from it.
struct Counted {
    file: File,
    bytes: Arc<AtomicU64>,
}

/// A reader of a [`Counted`] file, counting as it goes.
struct CountedRead {
    inner: BufReader<File>,
    bytes: Arc<AtomicU64>,
}

impl Read for CountedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Length for Counted {
    fn len(&self) -> u64 {
        Length::len(&self.file)
    }
}

impl ChunkReader for Counted {
    type T = CountedRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(CountedRead {
            inner: self.file.get_read(start)?,
            bytes: self.bytes.clone(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let b = self.file.get_bytes(start, length)?;
        self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }
}

/// A file opened for reading: its builder, the columns to decode and, with a pushdown, what
/// to read of it.
struct Opened {
    builder: ParquetRecordBatchReaderBuilder<Counted>,
    bytes: Arc<AtomicU64>,
    wanted: Vec<String>,
    /// Each wanted column's root in the file.
    roots: Vec<usize>,
    target: arrow_schema::SchemaRef,
    plan: Option<prune::Plan>,
}

/// A failure of the parquet crate on `path`.
fn perr(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> ReaderError + '_ {
    move |e| ReaderError::Parquet {
        file: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Opens `path`: reads its footer (and, with a pushdown, its page index), finds and checks the
/// columns `need` names, and plans what the pushdown lets it skip.
fn open(
    path: &Path,
    mapping: &BTreeMap<String, String>,
    need: &ColumnNeed,
    push: &Pushdown,
) -> Result<Opened, ReaderError> {
    let file_name = path.display().to_string();
    let perr = perr(path);
    let file = File::open(path).map_err(|e| ReaderError::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let bytes = Arc::new(AtomicU64::new(0));
    let file = Counted {
        file,
        bytes: bytes.clone(),
    };
    // The page index is read only when there is something to prune with it.
    let policy = if push.is_empty() {
        PageIndexPolicy::Skip
    } else {
        PageIndexPolicy::Optional
    };
    let options = ArrowReaderOptions::new().with_page_index_policy(policy);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| perr(&e))?;
    let arrow_schema = builder.schema().clone();
    let to_canonical: BTreeMap<&str, &str> = mapping
        .iter()
        .map(|(c, r)| (r.as_str(), c.as_str()))
        .collect();
    let names: Vec<String> = arrow_schema
        .fields()
        .iter()
        .map(|f| {
            let raw = f.name().trim();
            to_canonical
                .get(raw)
                .map_or_else(|| raw.to_string(), |c| c.to_string())
        })
        .collect();
    // With whole rows wanted, what filters and aggregators use is checked first, so a file that
    // lacks it fails here, named, rather than in a later stage.
    let (wanted, required): (Vec<String>, &[String]) = match need {
        ColumnNeed::All { required } => (names.clone(), required),
        ColumnNeed::Some(c) => (c.clone(), &[]),
    };
    let mut roots = Vec::with_capacity(wanted.len());
    for (n, w) in required.iter().chain(&wanted).enumerate() {
        let at: Vec<usize> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| *n == w)
            .map(|(i, _)| i)
            .collect();
        match at.as_slice() {
            [_] if n < required.len() => {}
            [i] => roots.push(*i),
            [] => {
                return Err(ReaderError::MissingColumn {
                    file: file_name,
                    column: w.clone(),
                    header_name: mapping.get(w).cloned().unwrap_or_else(|| w.clone()),
                    found: names.join(","),
                });
            }
            many => {
                return Err(ReaderError::DuplicateColumn {
                    file: file_name,
                    column: w.clone(),
                    positions: many.iter().map(|i| i + 1).collect(),
                });
            }
        }
    }
    // Types are checked once per file, before any row: a float or text column would otherwise
    // be cast row by row, silently truncating `462.5` to 462.
    for (w, &r) in wanted.iter().zip(&roots) {
        let found = arrow_schema.field(r).data_type();
        let expected = schema::column_type(w);
        if !accepts(found, expected, schema::is_catalogued(w)) {
            return Err(ReaderError::ParquetType {
                file: file_name,
                column: w.clone(),
                found: found.to_string(),
                expected: expected.name().to_string(),
            });
        }
    }
    let target = schema::arrow_schema(&wanted);
    let mut plan = None;
    if !push.is_empty() {
        let decoded: Vec<Decoded<'_>> = wanted
            .iter()
            .zip(&roots)
            .enumerate()
            .map(|(k, (w, &r))| Decoded {
                canonical: w,
                field: arrow_schema.field(r).name(),
                target: target.field(k).data_type(),
            })
            .collect();
        plan = Some(
            prune::plan(
                push,
                path,
                builder.metadata(),
                &arrow_schema,
                builder.parquet_schema(),
                &decoded,
            )
            .map_err(|e| perr(&e))?,
        );
    }
    Ok(Opened {
        builder,
        bytes,
        wanted,
        roots,
        target,
        plan,
    })
}

/// What reading `path` through `push` would read and skip, from its footer and page index
/// alone; `bytes_read` is then the compressed size of the pages (or, without a page index, the
/// column chunks) to decode.
pub(crate) fn estimate(
    path: &Path,
    mapping: &BTreeMap<String, String>,
    need: &ColumnNeed,
    push: &Pushdown,
) -> Result<ParquetScan, ReaderError> {
    let o = open(path, mapping, need, push)?;
    match o.plan {
        Some(p) => Ok(p.counts),
        None => {
            let meta = o.builder.metadata();
            Ok(ParquetScan {
                row_groups_read: meta.num_row_groups() as u64,
                bytes_read: meta
                    .row_groups()
                    .iter()
                    .flat_map(|g| o.roots.iter().filter_map(move |&r| g.columns().get(r)))
                    .map(|c| u64::try_from(c.compressed_size()).unwrap_or(0))
                    .sum(),
                ..Default::default()
            })
        }
    }
}

/// Reads `path`, calling `each` per batch until it returns false; with a non-empty `push`,
/// skips what its filters cannot keep.
pub(crate) fn read(
    path: &Path,
    mapping: &BTreeMap<String, String>,
    need: &ColumnNeed,
    batch_rows: usize,
    push: &Pushdown,
    mut each: impl FnMut(ParquetBatch) -> bool,
) -> Result<ParquetScan, ReaderError> {
    let perr = perr(path);
    let Opened {
        mut builder,
        bytes,
        wanted,
        roots,
        target,
        plan,
    } = open(path, mapping, need, push)?;
    let mut counts = ParquetScan::default();
    // The file's row numbers of the rows read, for naming a bad row.
    let mut rows: Vec<std::ops::Range<u64>> = Vec::new();
    if let Some(plan) = plan {
        counts = plan.counts;
        rows = plan.rows;
        builder = builder
            .with_row_groups(plan.row_groups)
            .with_row_selection(plan.selection);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| perr(&e))?;
    let rows = RowNumbers::new(rows);
    // The projected batch keeps file order of columns; map each wanted column to its position.
    let mut sorted = roots.clone();
    sorted.sort_unstable();
    let position: Vec<usize> = roots
        .iter()
        .map(|r| sorted.iter().position(|s| s == r).unwrap_or(0))
        .collect();
    let cast_opts = CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut row_base = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| perr(&e))?;
        let n = batch.num_rows();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(wanted.len());
        let mut bad: Vec<Option<RowError>> = vec![None; n];
        for (k, w) in wanted.iter().enumerate() {
            let src = batch.column(position[k]);
            let ty = target.field(k).data_type();
            let cast = cast_with_options(src, ty, &cast_opts)
                .map_err(|e| perr(&format!("column `{w}`: {e}")))?;
            if cast.null_count() > 0 {
                for (i, slot) in bad.iter_mut().enumerate() {
                    if slot.is_none() && cast.is_null(i) {
                        let why = if src.is_null(i) {
                            "null value".to_string()
                        } else {
                            format!("value does not fit {}", schema::column_type(w).name())
                        };
                        *slot = Some(RowError {
                            line: rows.at(row_base + i as u64) + 1,
                            column: Some((roots[k] + 1, w.clone())),
                            reason: why,
                            raw: String::new(),
                        });
                    }
                }
            }
            cols.push(cast);
        }
        let errors: Vec<RowError> = bad.iter().flatten().cloned().collect();
        // Bad rows (nulls in the non-nullable target) are dropped before the batch is built.
        if !errors.is_empty() {
            let keep = BooleanArray::from(bad.iter().map(Option::is_none).collect::<Vec<_>>());
            cols = cols
                .iter()
                .map(|c| arrow_select::filter::filter(c, &keep))
                .collect::<Result<_, _>>()
                .map_err(|e| perr(&e))?;
        }
        let out = RecordBatch::try_new(target.clone(), cols).map_err(|e| perr(&e))?;
        let bytes = batch.get_array_memory_size() as u64;
        row_base += n as u64;
        if !each(ParquetBatch {
            batch: out,
            rows_read: n as u64,
            errors,
            bytes,
        }) {
            break;
        }
    }
    counts.bytes_read = bytes.load(Ordering::Relaxed);
    Ok(counts)
}

/// Maps the n-th row read to its row number in the file, through the ranges read (none: every
/// row is read).
struct RowNumbers {
    ranges: Vec<std::ops::Range<u64>>,
    /// Rows read before each range.
    before: Vec<u64>,
}

impl RowNumbers {
    fn new(ranges: Vec<std::ops::Range<u64>>) -> Self {
        let before = ranges
            .iter()
            .scan(0u64, |acc, r| {
                let b = *acc;
                *acc += r.end - r.start;
                Some(b)
            })
            .collect();
        RowNumbers { ranges, before }
    }

    /// The file row of the `n`-th row read (0-based both).
    fn at(&self, n: u64) -> u64 {
        match self.before.partition_point(|&b| b <= n).checked_sub(1) {
            Some(i) => self.ranges[i].start + (n - self.before[i]),
            None => n,
        }
    }
}

/// Whether a Parquet column stored as `found` may be read into `expected`. An integer column
/// takes any integer type: a value that does not fit (a negative id, a u64 past i64::MAX, a
/// u64 past u32::MAX) is then a row error, like a bad CSV field, never a wrapped or clipped
/// value. A catalogued text column takes text. A column the catalogue does not know is carried as
/// text whatever it holds, as CSV carries it.
fn accepts(found: &DataType, expected: ColumnType, catalogued: bool) -> bool {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    match expected {
        ColumnType::U64 | ColumnType::I64 | ColumnType::U32 => found.is_integer(),
        ColumnType::Utf8 if !catalogued => true,
        ColumnType::Utf8 => match found {
            DataType::Dictionary(_, v) => text(v),
            t => text(t),
        },
    }
}

/// With `format = "auto"`, a file is Parquet by its `.parquet` extension.
pub(crate) fn looks_like_parquet(path: &Path) -> bool {
    path.to_string_lossy()
        .to_ascii_lowercase()
        .ends_with(".parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_columns_take_integers_only_and_text_takes_text() {
        for t in [
            DataType::Int8,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt16,
            DataType::UInt64,
        ] {
            assert!(accepts(&t, ColumnType::U64, true), "{t}");
            assert!(accepts(&t, ColumnType::I64, true), "{t}");
            assert!(accepts(&t, ColumnType::U32, true), "{t}");
        }
        for t in [
            DataType::Float32,
            DataType::Float64,
            DataType::Utf8,
            DataType::Boolean,
            DataType::Decimal128(38, 0),
        ] {
            assert!(!accepts(&t, ColumnType::U64, true), "{t}");
        }
        assert!(accepts(&DataType::LargeUtf8, ColumnType::Utf8, true));
        assert!(accepts(
            &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            ColumnType::Utf8,
            true
        ));
        assert!(!accepts(&DataType::Int64, ColumnType::Utf8, true));
        // A column the catalogue does not know is carried as text, whatever it holds.
        assert!(accepts(&DataType::Float64, ColumnType::Utf8, false));
    }
}
