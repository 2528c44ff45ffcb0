//! Parquet input: the same canonical, typed batches as CSV, through the parquet crate's Arrow
//! reader. Only the columns downstream stages use are decoded (a projection), and values are
//! cast to the catalogue's types. A value that is null or does not fit its type (a negative
//! quantity, say) is a row error like a bad CSV field; "line" is then the 1-based row number.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ReaderError;
use super::csv::RowError;
use crate::config::ColumnNeed;
use crate::schema::{self, ColumnType};

/// One decoded batch with the row errors found in it.
pub(crate) struct ParquetBatch {
    pub batch: RecordBatch,
    pub rows_read: u64,
    pub errors: Vec<RowError>,
    pub bytes: u64,
}

/// Reads `path`, calling `each` per batch until it returns false.
pub(crate) fn read(
    path: &Path,
    mapping: &BTreeMap<String, String>,
    need: &ColumnNeed,
    batch_rows: usize,
    mut each: impl FnMut(ParquetBatch) -> bool,
) -> Result<(), ReaderError> {
    let file_name = path.display().to_string();
    let perr = |e: &dyn std::fmt::Display| ReaderError::Parquet {
        file: file_name.clone(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(|e| ReaderError::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| perr(&e))?;
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
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| perr(&e))?;
    // The projected batch keeps file order of columns; map each wanted column to its position.
    let mut sorted = roots.clone();
    sorted.sort_unstable();
    let position: Vec<usize> = roots
        .iter()
        .map(|r| sorted.iter().position(|s| s == r).unwrap_or(0))
        .collect();
    let target = schema::arrow_schema(&wanted);
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
                            line: row_base + i as u64 + 1,
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
    Ok(())
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
