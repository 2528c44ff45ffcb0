//! Where the report's tables come from: a run's finished tables (the report sink) or an output
//! folder of CSV or Parquet files (`sweep report`). Either way a table is read a row at a time,
//! projected to the columns asked for, and nothing of it is kept here.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ReportError;
use super::model::Row;
use crate::table::{Cell, Table};

/// Batches of a table kept in runs are merged this many rows at a time.
const CHUNK: usize = 8192;

/// What a row is handed to.
pub(crate) type RowFn<'f> = dyn FnMut(&Row<'_>) -> Result<(), ReportError> + 'f;

/// A source of named tables.
pub(crate) trait Tables {
    /// Calls `f` with every row of table `name`, projected to `columns` in that order.
    /// `Ok(false)` when there is no such table; a missing column is an error.
    fn rows(&self, name: &str, columns: &[&str], f: &mut RowFn<'_>) -> Result<bool, ReportError>;
}

/// A run's finished tables, as a stage hands them to its sinks.
pub(crate) struct Finished<'a>(pub &'a [Table]);

impl Tables for Finished<'_> {
    fn rows(&self, name: &str, columns: &[&str], f: &mut RowFn<'_>) -> Result<bool, ReportError> {
        let Some(t) = self.0.iter().find(|t| t.name == name) else {
            return Ok(false);
        };
        let at = positions(name, &t.columns, columns)?;
        let mut values = vec![Cell::Null; columns.len()];
        let mut number = 0u64;
        if let Some(runs) = &t.runs {
            let run_error = |e: crate::table::RunError| ReportError::Run {
                table: name.to_string(),
                source: e,
            };
            for batch in runs.merged(CHUNK).map_err(run_error)? {
                let batch = batch.map_err(run_error)?;
                batch_rows(name, columns, &batch, &at, &mut number, &mut values, f)?;
            }
            return Ok(true);
        }
        for row in &t.rows {
            number += 1;
            for (v, &i) in values.iter_mut().zip(&at) {
                *v = row.get(i).cloned().unwrap_or(Cell::Null);
            }
            f(&Row {
                table: name,
                columns,
                number,
                values: &values,
            })?;
        }
        Ok(true)
    }
}

/// An output folder: each table as `NAME.csv` or, failing that, `NAME.parquet`.
pub(crate) struct Folder<'a>(pub &'a Path);

impl Folder<'_> {
    /// The file that holds table `name`, if any.
    pub(crate) fn file(&self, name: &str) -> Option<PathBuf> {
        ["csv", "parquet"]
            .iter()
            .map(|ext| self.0.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
    }
}

impl Tables for Folder<'_> {
    fn rows(&self, name: &str, columns: &[&str], f: &mut RowFn<'_>) -> Result<bool, ReportError> {
        let Some(path) = self.file(name) else {
            return Ok(false);
        };
        if path.extension().is_some_and(|e| e == "parquet") {
            parquet_rows(name, &path, columns, f)?;
        } else {
            csv_rows(name, &path, columns, f)?;
        }
        Ok(true)
    }
}

/// Where each wanted column is among a table's columns.
fn positions<S: AsRef<str>>(
    table: &str,
    have: &[S],
    want: &[&str],
) -> Result<Vec<usize>, ReportError> {
    want.iter()
        .map(|w| {
            have.iter()
                .position(|h| h.as_ref() == *w)
                .ok_or_else(|| ReportError::MissingColumn {
                    table: table.to_string(),
                    column: w.to_string(),
                })
        })
        .collect()
}

/// A CSV field as a value: empty is null, then an integer, a number, or text.
fn csv_value(field: &[u8]) -> Cell {
    if field.is_empty() {
        return Cell::Null;
    }
    let text = String::from_utf8_lossy(field);
    if let Ok(v) = text.parse::<i128>() {
        Cell::Int(v)
    } else if let Ok(v) = text.parse::<f64>() {
        Cell::Float(v)
    } else {
        Cell::Str(text.into_owned())
    }
}

fn csv_rows(
    name: &str,
    path: &Path,
    columns: &[&str],
    f: &mut RowFn<'_>,
) -> Result<(), ReportError> {
    let csv_error = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .from_path(path)
        .map_err(csv_error)?;
    let header: Vec<String> = reader
        .byte_headers()
        .map_err(csv_error)?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let at = positions(name, &header, columns)?;
    let mut record = csv::ByteRecord::new();
    let mut values = vec![Cell::Null; columns.len()];
    let mut number = 0u64;
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        number += 1;
        for (v, &i) in values.iter_mut().zip(&at) {
            *v = record.get(i).map_or(Cell::Null, csv_value);
        }
        f(&Row {
            table: name,
            columns,
            number,
            values: &values,
        })?;
    }
    Ok(())
}

fn parquet_rows(
    name: &str,
    path: &Path,
    columns: &[&str],
    f: &mut RowFn<'_>,
) -> Result<(), ReportError> {
    let parquet_error = |source| ReportError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?;
    let fields: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let wanted = positions(name, &fields, columns)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(CHUNK)
        .build()
        .map_err(parquet_error)?;
    let mut values = vec![Cell::Null; columns.len()];
    let mut number = 0u64;
    for batch in reader {
        let batch = batch.map_err(|source| ReportError::Arrow {
            table: name.to_string(),
            source,
        })?;
        // The projection keeps the file's column order, so look the columns up again.
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let at = positions(name, &names, columns)?;
        batch_rows(name, columns, &batch, &at, &mut number, &mut values, f)?;
    }
    Ok(())
}

/// Hands each row of `batch` to `f`, the columns at `at` as values.
fn batch_rows(
    name: &str,
    columns: &[&str],
    batch: &RecordBatch,
    at: &[usize],
    number: &mut u64,
    values: &mut [Cell],
    f: &mut RowFn<'_>,
) -> Result<(), ReportError> {
    let arrays: Vec<&dyn Array> = at.iter().map(|&i| batch.column(i).as_ref()).collect();
    for r in 0..batch.num_rows() {
        *number += 1;
        for (j, (v, a)) in values.iter_mut().zip(&arrays).enumerate() {
            *v = Cell::from_array(*a, r).ok_or_else(|| ReportError::Value {
                table: name.to_string(),
                row: *number,
                column: columns[j].to_string(),
                problem: format!("a column of type {} cannot be read", a.data_type()),
            })?;
        }
        f(&Row {
            table: name,
            columns,
            number: *number,
            values,
        })?;
    }
    Ok(())
}
