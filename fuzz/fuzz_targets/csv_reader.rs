//! The CSV reader, end to end over an in-memory file: `BlockReader` cuts the bytes into blocks
//! (header first), `ParsePlan::new` plans the header, `parse_block` parses every block, exactly
//! as `readers::actor::read_csv` and its parse workers do.
//!
//! Input layout: byte 0 and byte 1 choose the parameters, the rest is the file.
//! - byte 0: the first block size, 1..=64 bytes;
//! - byte 1, bits 0-5: the second block size, 1..=64 bytes; bits 6-7: the delimiter
//!   (`,` `,` `;` tab).
//!
//! Checked, besides "no panic":
//! - the blocks are non-empty, numbered in order, and put back together are the input after
//!   the header;
//! - per block, rows in the batch + errors == rows read when not stopping at the first error,
//!   and at most one error (the last row read) when stopping;
//! - every error's line is within its block;
//! - the result does not depend on where blocks are cut: two small block sizes and one block
//!   for the whole file give the same rows, the same values, the same errors;
//! - stopping at the first error stops at the same error as reading on.

#![no_main]

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use sweep::config::ColumnNeed;
use sweep::readers::csv::{ParsePlan, RowError, parse_block};
use sweep::readers::source::BlockReader;

/// What reading a whole file gave.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// No bytes at all.
    Empty,
    /// The header did not plan (missing or duplicate column, unreadable header).
    BadHeader(String),
    Read {
        rows_read: u64,
        /// Good rows, concatenated over blocks.
        batch: RecordBatch,
        errors: Vec<RowError>,
        /// A block that failed as a whole (`parse_block` returned `Err`).
        failed: Option<String>,
    },
}

fn read(file: &[u8], block: usize, delimiter: u8, need: &ColumnNeed, stop: bool) -> Outcome {
    // A `Source` is `'static`: the bytes are copied into an in-memory cursor.
    let mut r = BlockReader::new(
        Box::pin(std::io::Cursor::new(file.to_vec())),
        block,
        delimiter,
    );
    let header = match block_on(r.header()).expect("an in-memory read cannot fail") {
        None => {
            assert!(file.is_empty(), "no header, yet {} bytes", file.len());
            return Outcome::Empty;
        }
        Some(h) => h,
    };
    let plan = match ParsePlan::new(
        "fuzz.csv".into(),
        &header,
        delimiter,
        &BTreeMap::new(),
        need,
    ) {
        Ok(p) => p,
        Err(e) => return Outcome::BadHeader(e.to_string()),
    };
    assert_eq!(plan.schema.fields().len(), plan.columns.len());
    let mut rows_read = 0;
    let mut batches = Vec::new();
    let mut errors = Vec::new();
    let mut failed = None;
    let mut body = Vec::new();
    let mut line = r.line();
    while let Some(b) = block_on(r.next_block()).expect("an in-memory read cannot fail") {
        assert!(!b.bytes.is_empty(), "empty block");
        assert_eq!(b.first_line, line, "blocks are numbered in order");
        let newlines = b.bytes.iter().filter(|&&c| c == b'\n').count() as u64;
        line += newlines;
        assert_eq!(r.line(), line);
        body.extend_from_slice(&b.bytes);
        let p = match parse_block(&plan, &b.bytes, b.first_line, stop) {
            Ok(p) => p,
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        };
        assert_eq!(p.batch.num_columns(), plan.columns.len());
        let good = p.batch.num_rows() as u64;
        if stop {
            assert!(
                p.errors.len() <= 1,
                "stopped, yet {} errors",
                p.errors.len()
            );
            assert_eq!(good + p.errors.len() as u64, p.rows_read);
        } else {
            assert_eq!(
                good + p.errors.len() as u64,
                p.rows_read,
                "rows in batch + errors != rows read"
            );
        }
        for e in &p.errors {
            assert!(
                e.line >= b.first_line && e.line <= b.first_line + newlines,
                "error line {} outside its block (lines {}..={})",
                e.line,
                b.first_line,
                b.first_line + newlines
            );
            let _ = e.locate("fuzz.csv");
        }
        rows_read += p.rows_read;
        batches.push(p.batch);
        let stopped = stop && !p.errors.is_empty();
        errors.extend(p.errors);
        if stopped {
            break;
        }
    }
    if failed.is_none() && !(stop && !errors.is_empty()) {
        assert_eq!(r.bytes_read, file.len() as u64, "the whole input was read");
        assert!(
            file.ends_with(&body),
            "the blocks put back together are not the end of the input"
        );
    }
    let batch = arrow_select::concat::concat_batches(&plan.schema, &batches)
        .expect("batches of one plan concatenate");
    Outcome::Read {
        rows_read,
        batch,
        errors,
        failed,
    }
}

fn check(file: &[u8], sizes: [usize; 2], delimiter: u8, need: &ColumnNeed) {
    // One block for the whole file is the reference.
    let whole = read(file, file.len().max(1), delimiter, need, false);
    for size in sizes {
        let got = read(file, size, delimiter, need, false);
        assert_eq!(
            got, whole,
            "block size {size} reads differently from one whole block"
        );
        let stopped = read(file, size, delimiter, need, true);
        match (&stopped, &whole) {
            (
                Outcome::Read {
                    errors: se,
                    failed: None,
                    ..
                },
                Outcome::Read {
                    errors: we,
                    failed: None,
                    ..
                },
            ) => assert_eq!(
                se.first(),
                we.first(),
                "stopping at the first error stops at another error"
            ),
            (Outcome::Read { .. }, Outcome::Read { .. }) => {}
            (a, b) => assert_eq!(a, b),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [b0, b1, file @ ..] = data else {
        return;
    };
    let sizes = [1 + (*b0 as usize % 64), 1 + (*b1 as usize & 63)];
    let delimiter = [b',', b',', b';', b'\t'][(*b1 >> 6) as usize];
    check(
        file,
        sizes,
        delimiter,
        &ColumnNeed::All {
            required: Vec::new(),
        },
    );
    let some: Vec<String> = ["order_id", "timestamp", "quantity", "price"]
        .into_iter()
        .map(String::from)
        .collect();
    check(file, sizes, delimiter, &ColumnNeed::Some(some));
});
