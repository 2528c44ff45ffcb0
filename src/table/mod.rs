//! Finished tables, as aggregators hand them to sinks, and their encodings: CSV (the standard
//! job's contract), Parquet and the JSON summary. Tables are encoded into any writer; choosing
//! and committing files is the sinks' job. A table too large to hold as cells keeps its rows
//! in sorted [`Runs`], merged as it is written.

mod runs;

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::Arc;

use arrow_array::Array;

use arrow_array::{
    ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Number, Value};

/// One value of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Int(i128),
    Float(f64),
    Str(String),
    Null,
}

impl Cell {
    /// One value of an Arrow array as a cell (integers of any width, floats, text); `None` for a
    /// type no table of ours has.
    pub(crate) fn from_array(a: &dyn Array, i: usize) -> Option<Cell> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{
            Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
            UInt8Type, UInt16Type, UInt32Type, UInt64Type,
        };
        if a.is_null(i) {
            return Some(Cell::Null);
        }
        Some(match a.data_type() {
            DataType::Int8 => Cell::Int(a.as_primitive::<Int8Type>().value(i).into()),
            DataType::Int16 => Cell::Int(a.as_primitive::<Int16Type>().value(i).into()),
            DataType::Int32 => Cell::Int(a.as_primitive::<Int32Type>().value(i).into()),
            DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(i).into()),
            DataType::UInt8 => Cell::Int(a.as_primitive::<UInt8Type>().value(i).into()),
            DataType::UInt16 => Cell::Int(a.as_primitive::<UInt16Type>().value(i).into()),
            DataType::UInt32 => Cell::Int(a.as_primitive::<UInt32Type>().value(i).into()),
            DataType::UInt64 => Cell::Int(a.as_primitive::<UInt64Type>().value(i).into()),
            DataType::Decimal128(_, 0) => Cell::Int(a.as_primitive::<Decimal128Type>().value(i)),
            DataType::Float32 => Cell::Float(a.as_primitive::<Float32Type>().value(i).into()),
            DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
            DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i).to_string()),
            DataType::LargeUtf8 => Cell::Str(a.as_string::<i64>().value(i).to_string()),
            DataType::Utf8View => Cell::Str(a.as_string_view().value(i).to_string()),
            _ => return None,
        })
    }
}

impl fmt::Display for Cell {
    /// The CSV text of the value, before quoting: floats in Rust's shortest round-trip form, null
    /// as nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v}"),
            Cell::Str(s) => f.write_str(s),
            Cell::Null => Ok(()),
        }
    }
}

pub use runs::{RunError, RunKey, RunWriter, Runs, read_run, write_run};

/// A finished table.
#[derive(Debug)]
pub struct Table {
    /// File stem, e.g. `by_security`.
    pub name: &'static str,
    pub columns: Vec<String>,
    /// The rows, when they are held as cells; empty when they are in `runs`.
    pub rows: Vec<Vec<Cell>>,
    /// The rows of a table too large to hold as cells: typed batches in sorted runs, merged
    /// by key as the table is written (the columns are the runs' schema).
    pub runs: Option<Runs>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("building the Arrow batch for table `{table}`: {source}")]
    Arrow {
        table: &'static str,
        source: ArrowError,
    },
    #[error("encoding table `{table}` as Parquet: {source}")]
    Parquet {
        table: &'static str,
        source: ParquetError,
    },
    #[error("writing table `{table}`: {source}")]
    Io {
        table: &'static str,
        source: std::io::Error,
    },
    #[error("reading back table `{table}`: {source}")]
    Run {
        table: &'static str,
        source: RunError,
    },
}

/// Rows merged from runs are encoded this many at a time.
const MERGE_CHUNK: usize = 8192;

/// Writes a CSV field, quoted when it holds a separator, quote or line break. An empty string is
/// quoted so that it reads back differently from a null.
fn write_field(out: &mut String, text: &str) {
    let needs_quotes = text.is_empty()
        || text
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if needs_quotes {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// The Parquet type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Int,
    Float,
    Str,
}

/// The type of the columns the aggregators produce, so a header-only table still gets its real
/// schema; other columns are typed by their values.
fn known_kind(column: &str) -> Option<Kind> {
    match column {
        "security_code" | "participantid" | "hour" | "orders" | "quantity_sum" | "price_min"
        | "price_max" | "participants" | "securities" | "first_ts" | "last_ts" => Some(Kind::Int),
        "quantity_mean" | "quantity_std" | "price_mean" | "vwap" => Some(Kind::Float),
        "date" | "hour_start" | "size_bucket" => Some(Kind::Str),
        c if c.starts_with("quantity_p") => Some(Kind::Int),
        _ => None,
    }
}

impl Table {
    /// A table of cells.
    pub fn new(name: &'static str, columns: Vec<String>, rows: Vec<Vec<Cell>>) -> Self {
        Table {
            name,
            columns,
            rows,
            runs: None,
        }
    }

    /// A table whose rows are in sorted runs; its columns are theirs.
    pub fn from_runs(name: &'static str, runs: Runs) -> Self {
        Table {
            name,
            columns: runs
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            rows: Vec::new(),
            runs: Some(runs),
        }
    }

    /// How many rows.
    pub fn len(&self) -> u64 {
        match &self.runs {
            Some(r) => r.rows(),
            None => self.rows.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The CSV text into `out`: a header line, then one line per row, `\n` line ends.
    pub fn write_csv(&self, out: &mut dyn Write) -> Result<(), TableError> {
        let table = self.name;
        let io = |source| TableError::Io { table, source };
        let mut text = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            write_field(&mut text, c);
        }
        text.push('\n');
        if let Some(runs) = &self.runs {
            out.write_all(text.as_bytes()).map_err(io)?;
            let merged = runs
                .merged(MERGE_CHUNK)
                .map_err(|source| TableError::Run { table, source })?;
            for batch in merged {
                let batch = batch.map_err(|source| TableError::Run { table, source })?;
                text.clear();
                batch_csv(&batch, &mut text)
                    .map_err(|source| TableError::Arrow { table, source })?;
                out.write_all(text.as_bytes()).map_err(io)?;
            }
            return Ok(());
        }
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                match cell {
                    Cell::Str(s) => write_field(&mut text, s),
                    // Numbers and nulls never need quoting; writing into a String cannot fail.
                    other => {
                        let _ = write!(text, "{other}");
                    }
                }
            }
            text.push('\n');
            if text.len() > 1 << 20 {
                out.write_all(text.as_bytes()).map_err(io)?;
                text.clear();
            }
        }
        out.write_all(text.as_bytes()).map_err(io)
    }

    /// The same table with its rows as cells (merged from its runs, when it has them), for
    /// tests to look into.
    #[cfg(test)]
    pub fn into_cells(self) -> Table {
        let Some(runs) = &self.runs else {
            return self;
        };
        let mut rows = Vec::new();
        for batch in runs.merged(MERGE_CHUNK).expect("runs merge") {
            let batch = batch.expect("a run's batch");
            for r in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .map(|c| Cell::from_array(c.as_ref(), r).expect("a table type"))
                        .collect(),
                );
            }
        }
        Table::new(self.name, self.columns, rows)
    }

    /// The CSV bytes.
    pub fn to_csv(&self) -> Result<Vec<u8>, TableError> {
        let mut out = Vec::new();
        self.write_csv(&mut out)?;
        Ok(out)
    }

    fn column_kind(&self, i: usize) -> Kind {
        let from_values = self
            .rows
            .iter()
            .filter_map(|r| match r.get(i) {
                Some(Cell::Int(_)) => Some(Kind::Int),
                Some(Cell::Float(_)) => Some(Kind::Float),
                Some(Cell::Str(_)) => Some(Kind::Str),
                Some(Cell::Null) | None => None,
            })
            .max();
        // A wider kind among the values wins: ints read as floats, anything reads as text.
        match (known_kind(&self.columns[i]), from_values) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(Kind::Str),
        }
    }

    fn arrow_column(&self, i: usize) -> Result<(Field, ArrayRef), ArrowError> {
        let cells = self.rows.iter().map(|r| r.get(i).unwrap_or(&Cell::Null));
        let name = &self.columns[i];
        Ok(match self.column_kind(i) {
            Kind::Int => {
                let values: Vec<Option<i128>> = cells
                    .map(|c| match c {
                        Cell::Int(v) => Some(*v),
                        _ => None,
                    })
                    .collect();
                let fits = values.iter().flatten().all(|&v| i64::try_from(v).is_ok());
                if fits {
                    let a: Int64Array = values.into_iter().map(|v| v.map(|v| v as i64)).collect();
                    (Field::new(name, DataType::Int64, true), Arc::new(a))
                } else {
                    let a = Decimal128Array::from(values).with_precision_and_scale(38, 0)?;
                    (
                        Field::new(name, DataType::Decimal128(38, 0), true),
                        Arc::new(a),
                    )
                }
            }
            Kind::Float => {
                let a: Float64Array = cells
                    .map(|c| match c {
                        Cell::Float(v) => Some(*v),
                        Cell::Int(v) => Some(*v as f64),
                        _ => None,
                    })
                    .collect();
                (Field::new(name, DataType::Float64, true), Arc::new(a))
            }
            Kind::Str => {
                let a: StringArray = cells
                    .map(|c| match c {
                        Cell::Null => None,
                        other => Some(other.to_string()),
                    })
                    .collect();
                (Field::new(name, DataType::Utf8, true), Arc::new(a))
            }
        })
    }

    /// The table as an Arrow batch with typed, nullable columns: integers Int64 (Decimal128(38, 0)
    /// when a value exceeds i64), floats Float64, strings Utf8.
    pub(crate) fn to_record_batch(&self) -> Result<RecordBatch, ArrowError> {
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = (0..self.columns.len())
            .map(|i| self.arrow_column(i))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .unzip();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows.len()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
    }

    /// The table as a Parquet file, into `out`.
    pub(crate) fn write_parquet<W: Write + Send>(&self, out: W) -> Result<(), TableError> {
        let table = self.name;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let parquet = |source| TableError::Parquet { table, source };
        if let Some(runs) = &self.runs {
            let mut writer =
                ArrowWriter::try_new(out, runs.schema().clone(), Some(props)).map_err(parquet)?;
            let merged = runs
                .merged(MERGE_CHUNK)
                .map_err(|source| TableError::Run { table, source })?;
            for batch in merged {
                let batch = batch.map_err(|source| TableError::Run { table, source })?;
                writer.write(&batch).map_err(parquet)?;
            }
            writer.close().map_err(parquet)?;
            return Ok(());
        }
        let batch = self
            .to_record_batch()
            .map_err(|source| TableError::Arrow { table, source })?;
        let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(props)).map_err(parquet)?;
        writer.write(&batch).map_err(parquet)?;
        writer.close().map_err(parquet)?;
        Ok(())
    }

    /// The Parquet bytes.
    #[cfg(test)]
    pub(crate) fn to_parquet(&self) -> Result<Vec<u8>, TableError> {
        let mut out = Vec::new();
        self.write_parquet(&mut out)?;
        Ok(out)
    }
}

/// Appends a batch's rows as CSV lines, each value as its cell would print: integers in
/// decimal, floats in Rust's shortest round-trip form, strings quoted when they need it, null
/// as nothing.
fn batch_csv(batch: &RecordBatch, text: &mut String) -> Result<(), ArrowError> {
    use arrow_array::types::{
        Decimal128Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type,
    };
    enum Col<'a> {
        I64(&'a [i64]),
        U64(&'a [u64]),
        I32(&'a [i32]),
        U32(&'a [u32]),
        I128(&'a [i128]),
        F64(&'a [f64]),
        Str(&'a arrow_array::StringArray),
    }
    let cols = batch
        .columns()
        .iter()
        .map(|c| {
            use arrow_array::cast::AsArray;
            Ok(match c.data_type() {
                DataType::Int64 => Col::I64(c.as_primitive::<Int64Type>().values()),
                DataType::UInt64 => Col::U64(c.as_primitive::<UInt64Type>().values()),
                DataType::Int32 => Col::I32(c.as_primitive::<Int32Type>().values()),
                DataType::UInt32 => Col::U32(c.as_primitive::<UInt32Type>().values()),
                DataType::Decimal128(_, 0) => {
                    Col::I128(c.as_primitive::<Decimal128Type>().values())
                }
                DataType::Float64 => Col::F64(c.as_primitive::<Float64Type>().values()),
                DataType::Utf8 => Col::Str(c.as_string::<i32>()),
                other => {
                    return Err(ArrowError::NotYetImplemented(format!(
                        "CSV text of a {other} column"
                    )));
                }
            })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let mut ints = itoa::Buffer::new();
    for row in 0..batch.num_rows() {
        for (i, (col, array)) in cols.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                text.push(',');
            }
            if array.is_null(row) {
                continue;
            }
            match col {
                Col::I64(v) => text.push_str(ints.format(v[row])),
                Col::U64(v) => text.push_str(ints.format(v[row])),
                Col::I32(v) => text.push_str(ints.format(v[row])),
                Col::U32(v) => text.push_str(ints.format(v[row])),
                Col::I128(v) => text.push_str(ints.format(v[row])),
                Col::F64(v) => {
                    let _ = write!(text, "{}", v[row]);
                }
                Col::Str(a) => write_field(text, a.value(row)),
            }
        }
        text.push('\n');
    }
    Ok(())
}

/// Rows of cells as a batch of `schema`'s types: integers into Int64 or UInt64 (failing when
/// one does not fit), floats and integers into Float64, anything into Utf8, nulls as nulls.
pub fn cells_to_batch(schema: &SchemaRef, rows: &[Vec<Cell>]) -> Result<RecordBatch, ArrowError> {
    use arrow_array::UInt64Array;
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let cells = rows.iter().map(|r| r.get(i).unwrap_or(&Cell::Null));
        let misfit = |c: &Cell| {
            ArrowError::InvalidArgumentError(format!(
                "column `{}` holds {c}, which does not fit {}",
                field.name(),
                field.data_type()
            ))
        };
        let array: ArrayRef = match field.data_type() {
            DataType::Int64 => Arc::new(
                cells
                    .map(|c| match c {
                        Cell::Int(v) => i64::try_from(*v).map(Some).map_err(|_| misfit(c)),
                        Cell::Null => Ok(None),
                        other => Err(misfit(other)),
                    })
                    .collect::<Result<Int64Array, _>>()?,
            ),
            DataType::UInt64 => Arc::new(
                cells
                    .map(|c| match c {
                        Cell::Int(v) => u64::try_from(*v).map(Some).map_err(|_| misfit(c)),
                        Cell::Null => Ok(None),
                        other => Err(misfit(other)),
                    })
                    .collect::<Result<UInt64Array, _>>()?,
            ),
            DataType::Float64 => Arc::new(
                cells
                    .map(|c| match c {
                        Cell::Float(v) => Ok(Some(*v)),
                        Cell::Int(v) => Ok(Some(*v as f64)),
                        Cell::Null => Ok(None),
                        other => Err(misfit(other)),
                    })
                    .collect::<Result<Float64Array, _>>()?,
            ),
            DataType::Utf8 => Arc::new(
                cells
                    .map(|c| match c {
                        Cell::Null => None,
                        other => Some(other.to_string()),
                    })
                    .collect::<StringArray>(),
            ),
            other => {
                return Err(ArrowError::NotYetImplemented(format!(
                    "a table column of type {other}"
                )));
            }
        };
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
}

fn json_value(cell: &Cell) -> Value {
    match cell {
        Cell::Int(v) => {
            if let Ok(i) = i64::try_from(*v) {
                Value::from(i)
            } else if let Ok(u) = u64::try_from(*v) {
                Value::from(u)
            } else {
                // JSON numbers beyond 64 bits lose precision in most readers.
                Value::String(v.to_string())
            }
        }
        Cell::Float(v) => Number::from_f64(*v).map_or(Value::Null, Value::Number),
        Cell::Str(s) => Value::String(s.clone()),
        Cell::Null => Value::Null,
    }
}

/// `{"summary": {column: value, ...}, "tables": {name: {"rows": n}, ...}}` plus the keys of
/// `extra` (when it is an object; they win over the two above). `summary` is null when no table
/// is named `summary`.
pub(crate) fn summary_json(tables: &[Table], extra: Value) -> Value {
    let summary = tables
        .iter()
        .rev()
        .find(|t| t.name == "summary")
        .map_or(Value::Null, |t| {
            let row = t.rows.first();
            let fields = t.columns.iter().enumerate().map(|(i, c)| {
                let v = row.and_then(|r| r.get(i)).map_or(Value::Null, json_value);
                (c.clone(), v)
            });
            Value::Object(fields.collect())
        });
    let counts: Map<String, Value> = tables
        .iter()
        .map(|t| {
            let mut entry = Map::new();
            entry.insert("rows".to_string(), Value::from(t.len()));
            (t.name.to_string(), Value::Object(entry))
        })
        .collect();
    let mut out = Map::new();
    out.insert("summary".to_string(), summary);
    out.insert("tables".to_string(), Value::Object(counts));
    if let Value::Object(extra) = extra {
        out.extend(extra);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
