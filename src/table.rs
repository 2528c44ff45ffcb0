//! Finished tables, as aggregators hand them to sinks, and their encodings: CSV (the standard
//! job's contract), Parquet and the JSON summary. Only bytes and values are produced here;
//! writing files is the sinks' job.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema};
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

/// A finished aggregate table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// File stem, e.g. `by_security`.
    pub name: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TableError {
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
}

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
    /// The CSV bytes: a header line, then one line per row, `\n` line ends.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_field(&mut out, c);
        }
        out.push('\n');
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match cell {
                    Cell::Str(s) => write_field(&mut out, s),
                    // Numbers and nulls never need quoting; writing into a String cannot fail.
                    other => {
                        let _ = write!(out, "{other}");
                    }
                }
            }
            out.push('\n');
        }
        out.into_bytes()
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

    /// The table as a Parquet file.
    pub(crate) fn to_parquet(&self) -> Result<Vec<u8>, TableError> {
        let table = self.name;
        let batch = self
            .to_record_batch()
            .map_err(|source| TableError::Arrow { table, source })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let parquet = |source| TableError::Parquet { table, source };
        let mut writer =
            ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).map_err(parquet)?;
        writer.write(&batch).map_err(parquet)?;
        writer.into_inner().map_err(parquet)
    }
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
            entry.insert("rows".to_string(), Value::from(t.rows.len()));
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
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Float64Type, Int64Type};
    use arrow_array::{Array, RecordBatchReader};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::json;
    use std::io::Write;

    fn table(name: &'static str, columns: &[&str], rows: Vec<Vec<Cell>>) -> Table {
        Table {
            name,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        }
    }

    /// Reads back a Parquet file of at most one row group; an empty file gives an empty batch
    /// with the file's schema.
    fn read_parquet(bytes: &[u8]) -> RecordBatch {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let schema = reader.schema();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert!(batches.len() <= 1, "{} batches", batches.len());
        batches
            .into_iter()
            .next()
            .unwrap_or_else(|| RecordBatch::new_empty(schema))
    }

    #[test]
    fn csv_quotes_only_what_needs_it_and_prints_shortest_floats() {
        let t = table(
            "t",
            &["k", "a,b", "x"],
            vec![
                vec![Cell::Str("plain".into()), Cell::Int(-3), Cell::Float(0.1)],
                vec![
                    Cell::Str("has,comma".into()),
                    Cell::Int(i128::MAX),
                    Cell::Float(5.0),
                ],
                vec![
                    Cell::Str("say \"hi\"".into()),
                    Cell::Null,
                    Cell::Float(1e21),
                ],
                vec![
                    Cell::Str("two\nlines".into()),
                    Cell::Float(-2.5e-7),
                    Cell::Float(1.0 / 3.0),
                ],
                vec![Cell::Str(String::new()), Cell::Null, Cell::Null],
            ],
        );
        assert_eq!(
            String::from_utf8(t.to_csv()).unwrap(),
            "k,\"a,b\",x\n\
             plain,-3,0.1\n\
             \"has,comma\",170141183460469231731687303715884105727,5\n\
             \"say \"\"hi\"\"\",,1000000000000000000000\n\
             \"two\nlines\",-0.00000025,0.3333333333333333\n\
             \"\",,\n"
        );
    }

    #[test]
    fn parquet_columns_are_typed_and_nullable() {
        let t = table(
            "by_date",
            &["date", "orders", "quantity_sum", "vwap", "quantity_std"],
            vec![
                vec![
                    Cell::Str("2024-10-04".into()),
                    Cell::Int(6),
                    Cell::Int(30000),
                    Cell::Float(1278.5),
                    Cell::Null,
                ],
                vec![
                    Cell::Str("2024-10-07".into()),
                    Cell::Int(1),
                    Cell::Int(i128::from(u64::MAX) * 4),
                    Cell::Null,
                    Cell::Float(2.25),
                ],
            ],
        );
        let batch = read_parquet(&t.to_parquet().unwrap());
        let types: Vec<DataType> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                assert!(f.is_nullable(), "{}", f.name());
                f.data_type().clone()
            })
            .collect();
        assert_eq!(
            types,
            [
                DataType::Utf8,
                DataType::Int64,
                DataType::Decimal128(38, 0),
                DataType::Float64,
                DataType::Float64
            ]
        );
        let dates = batch.column(0).as_string::<i32>();
        assert_eq!(
            (dates.value(0), dates.value(1)),
            ("2024-10-04", "2024-10-07")
        );
        let orders = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(orders.values().to_vec(), [6, 1]);
        let sums = batch.column(2).as_primitive::<Decimal128Type>();
        assert_eq!(sums.values().to_vec(), [30000, i128::from(u64::MAX) * 4]);
        let vwap = batch.column(3).as_primitive::<Float64Type>();
        assert_eq!((vwap.value(0), vwap.is_null(1)), (1278.5, true));
        let std = batch.column(4).as_primitive::<Float64Type>();
        assert_eq!((std.is_null(0), std.value(1)), (true, 2.25));
    }

    #[test]
    fn header_only_parquet_keeps_the_real_schema() {
        let t = table(
            "by_security",
            &[
                "security_code",
                "orders",
                "quantity_mean",
                "quantity_p99.9",
                "hour_start",
            ],
            Vec::new(),
        );
        let batch = read_parquet(&t.to_parquet().unwrap());
        assert_eq!(batch.num_rows(), 0);
        let types: Vec<DataType> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Int64,
                DataType::Int64,
                DataType::Float64,
                DataType::Int64,
                DataType::Utf8
            ]
        );
    }

    #[test]
    fn summary_json_carries_summary_row_counts_and_extra() {
        let tables = [
            table(
                "by_security",
                &["security_code", "orders"],
                vec![vec![Cell::Int(1), Cell::Int(2)]; 3],
            ),
            table(
                "summary",
                &[
                    "orders",
                    "quantity_sum",
                    "quantity_mean",
                    "first_ts",
                    "huge",
                ],
                vec![vec![
                    Cell::Int(12),
                    Cell::Int(i128::from(u64::MAX)),
                    Cell::Float(9241.5),
                    Cell::Null,
                    Cell::Int(i128::from(u64::MAX) + 1),
                ]],
            ),
        ];
        let v = summary_json(&tables, json!({"elapsed_s": 1.5, "input": "a.csv"}));
        assert_eq!(
            v,
            json!({
                "summary": {
                    "orders": 12,
                    "quantity_sum": 18446744073709551615u64,
                    "quantity_mean": 9241.5,
                    "first_ts": null,
                    "huge": "18446744073709551616"
                },
                "tables": {"by_security": {"rows": 3}, "summary": {"rows": 1}},
                "elapsed_s": 1.5,
                "input": "a.csv"
            })
        );
        assert_eq!(
            summary_json(&[], serde_json::Value::Null),
            json!({"summary": null, "tables": {}})
        );
    }
}
