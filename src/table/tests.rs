//! Tables' CSV, Parquet and JSON encodings.

use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float64Type, Int64Type};
use arrow_array::{Array, RecordBatchReader};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use std::io::Write;

fn table(name: &'static str, columns: &[&str], rows: Vec<Vec<Cell>>) -> Table {
    Table::new(name, columns.iter().map(|c| c.to_string()).collect(), rows)
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
        String::from_utf8(t.to_csv().unwrap()).unwrap(),
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
