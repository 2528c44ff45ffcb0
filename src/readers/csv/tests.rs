use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

fn plan(header: &str, need: &[&str]) -> ParsePlan {
    ParsePlan::new(
        "t.csv".into(),
        header.as_bytes(),
        b',',
        &BTreeMap::new(),
        &ColumnNeed::Some(need.iter().map(|s| s.to_string()).collect()),
    )
    .unwrap()
}

#[test]
fn parses_only_planned_columns_with_types() {
    let p = plan(" order_id , quantity ,price,note", &["order_id", "price"]);
    let got = parse_block(
        &p,
        b"18446744073709551615, 5 ,-20,x\n9223372036854775808,1,30,\"a,b\"\n",
        2,
        false,
    )
    .unwrap();
    assert_eq!(got.rows_read, 2);
    assert!(got.errors.is_empty());
    let ids = got.batch.column(0).as_primitive::<UInt64Type>();
    assert_eq!(ids.values().as_ref(), &[u64::MAX, 1 << 63]);
    let prices = got.batch.column(1).as_primitive::<Int64Type>();
    assert_eq!(prices.values().as_ref(), &[-20, 30]);
}

#[test]
fn bad_fields_name_line_and_column() {
    let p = plan("order_id,quantity,price", &["quantity", "price"]);
    let data = b"1,10,5\n2,ten,5\n3,-4,5\n4,99999999999999999999,5\n5,1\n6,1,2,3\n7,,5\n8,3,1.5\n";
    let got = parse_block(&p, data, 10, false).unwrap();
    assert_eq!(got.rows_read, 8);
    assert_eq!(got.batch.num_rows(), 1);
    let lines: Vec<String> = got.errors.iter().map(|e| e.locate("t.csv")).collect();
    assert_eq!(
        lines,
        [
            "t.csv:11:2: column `quantity`: \"ten\" is not a whole number",
            "t.csv:12:2: column `quantity`: \"-4\" is negative, but the column is unsigned",
            "t.csv:13:2: column `quantity`: \"99999999999999999999\" is out of range for u64",
            "t.csv:14: expected 3 fields, found 2",
            "t.csv:15: expected 3 fields, found 4",
            "t.csv:16:2: column `quantity`: empty value",
            "t.csv:17:3: column `price`: \"1.5\" is not a whole number",
        ]
    );
    let stop = parse_block(&p, data, 10, true).unwrap();
    assert_eq!(stop.errors.len(), 1);
}

#[test]
fn header_problems_are_named() {
    let mut m = BTreeMap::new();
    m.insert("order_id".to_string(), "orderid".to_string());
    let need = ColumnNeed::Some(vec!["order_id".into(), "price".into()]);
    let ok = ParsePlan::new("t.csv".into(), b"orderid,price", b',', &m, &need).unwrap();
    assert_eq!(ok.columns[0].name, "order_id");
    let missing = ParsePlan::new("t.csv".into(), b"orderid,qty", b',', &m, &need).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("missing required column `price`"),
        "{missing}"
    );
    let dup = ParsePlan::new("t.csv".into(), b"orderid,price,price", b',', &m, &need).unwrap_err();
    assert!(dup.to_string().contains("columns 2, 3"), "{dup}");
}

/// Found by the `csv_reader` fuzz target: the reader positions a record before skipping the
/// line ends in front of it, so after a blank line or a CRLF line end the error named the
/// line before the row, and the line depended on where the block was cut.
#[test]
fn errors_after_crlf_and_blank_lines_name_the_rows_line() {
    let p = plan("a,b", &[]);
    // Fuzz input (minimised): the file `\n\n1`, an empty header, then `1` on line 3.
    let empty = ParsePlan::new(
        "t.csv".into(),
        b"",
        b',',
        &BTreeMap::new(),
        &ColumnNeed::All {
            required: Vec::new(),
        },
    )
    .unwrap();
    let got = parse_block(&empty, b"\n1", 2, false).unwrap();
    assert_eq!(got.errors[0].line, 3);
    let data = b"1,2\r\nx\r\n\r\n\n3,4\r\ny\r\n\"q\r\n\",\r\nz";
    let got = parse_block(&p, data, 2, false).unwrap();
    assert_eq!(got.rows_read, 6);
    let lines: Vec<u64> = got.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 7, 10]);
    assert_eq!(got.batch.num_rows(), 3);
}

/// Found by the `csv_reader` fuzz target: the file `\n\n\u{feff}` read as one row when the
/// `\u{feff}` was inside a block and as none when a block started at it, because the parser
/// drops a BOM at the start of its input.
#[test]
fn a_bom_at_the_start_of_a_block_is_data() {
    let p = plan("order_id,quantity", &["order_id", "quantity"]);
    let whole = parse_block(&p, b"\n\xEF\xBB\xBF", 2, false).unwrap();
    let cut = parse_block(&p, b"\xEF\xBB\xBF", 3, false).unwrap();
    assert_eq!((whole.rows_read, cut.rows_read), (1, 1));
    assert_eq!(whole.errors, cut.errors);
    assert_eq!(
        cut.errors[0].locate("t.csv"),
        "t.csv:3: expected 2 fields, found 1"
    );
    let bad = parse_block(&p, b"\xEF\xBB\xBF7,1\n8,2\n", 4, false).unwrap();
    assert_eq!(bad.batch.num_rows(), 1);
    assert_eq!(bad.errors[0].line, 4);
    assert_eq!(bad.errors[0].column, Some((1, "order_id".to_string())));
}

#[test]
fn non_utf8_text_is_a_row_error() {
    let p = plan("a,timevaliditydecoded", &["timevaliditydecoded"]);
    let got = parse_block(&p, b"1,ok\n2,\xff\xfe\n", 2, false).unwrap();
    assert_eq!(got.batch.num_rows(), 1);
    assert_eq!(got.errors[0].line, 3);
    assert!(got.errors[0].reason.contains("UTF-8"));
}

/// `parse_block` as it was, over csv-async: the reference both scans must match exactly.
fn reference(
    plan: &ParsePlan,
    bytes: &[u8],
    first_line: u64,
    stop_at_first_error: bool,
) -> Result<Parsed, ReaderError> {
    let estimate = bytes.len() / 128 + 16;
    let mut cols: Vec<ColBuf> = plan
        .columns
        .iter()
        .map(|c| ColBuf::new(c.ty, estimate))
        .collect();
    // The parser drops a UTF-8 BOM at the very start of its input, as it would a file's. A
    // block starts after the header, so a BOM there is data (a row of a concatenated file, say)
    // and must stay, or the row would read differently when the block is cut elsewhere. A
    // leading line end, skipped as a blank line and taken off the line count, keeps it.
    let prefixed;
    let (input, lead) = if bytes.starts_with(b"\xEF\xBB\xBF") {
        prefixed = [b"\n", bytes].concat();
        (&prefixed[..], 1)
    } else {
        (bytes, 0)
    };
    let mut rdr = record_reader(input, plan.delimiter);
    let mut rec = ByteRecord::with_capacity(256, plan.fields);
    let mut rows = 0usize;
    let mut rows_read = 0u64;
    let mut errors = Vec::new();
    let failed = |e: csv_async::Error| ReaderError::Csv {
        file: plan.file.to_string(),
        line: first_line,
        reason: e.to_string(),
    };
    // The reader is over an in-memory slice, so no read ever waits: block_on only drives it.
    futures::executor::block_on(async {
        while rdr.read_byte_record(&mut rec).await.map_err(failed)? {
            rows_read += 1;
            // Only a bad row needs its line number.
            let line = || record_line(&rec, input, first_line) - lead;
            let bad = if rec.len() != plan.fields {
                Some(RowError {
                    line: line(),
                    column: None,
                    reason: format!("expected {} fields, found {}", plan.fields, rec.len()),
                    raw: raw_row(&rec, plan.delimiter),
                })
            } else {
                plan.columns
                    .iter()
                    .zip(cols.iter_mut())
                    .find_map(|(c, buf)| {
                        let f = rec.get(c.index).unwrap_or_default().trim_ascii();
                        buf.push(f).err().map(|reason| RowError {
                            line: line(),
                            column: Some((c.index + 1, c.name.clone())),
                            reason,
                            raw: raw_row(&rec, plan.delimiter),
                        })
                    })
            };
            match bad {
                None => rows += 1,
                Some(e) => {
                    for c in cols.iter_mut() {
                        c.truncate(rows);
                    }
                    errors.push(e);
                    if stop_at_first_error {
                        break;
                    }
                }
            }
        }
        Ok::<(), ReaderError>(())
    })?;
    let arrays: Vec<ArrayRef> = cols.into_iter().map(ColBuf::finish).collect();
    let batch = RecordBatch::try_new_with_options(
        plan.schema.clone(),
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| ReaderError::Csv {
        file: plan.file.to_string(),
        line: first_line,
        reason: e.to_string(),
    })?;
    Ok(Parsed {
        batch,
        rows_read,
        errors,
    })
}

/// The physical line a record starts on. The reader sets a record's position before it skips
/// the line ends in front of the record: the blank lines before it and, in a CRLF file, the
/// `\n` left over from the previous record (the `\r` ended it). Lines are counted as the
/// reader counts them (`source::line_ends`: `\n`, `\r\n` and a lone `\r` each end one), which
/// csv-async does not do for a lone `\r`.
fn record_line(rec: &ByteRecord, bytes: &[u8], first_line: u64) -> u64 {
    let Some(p) = rec.position() else {
        return first_line;
    };
    let mut at = usize::try_from(p.byte()).map_or(bytes.len(), |b| b.min(bytes.len()));
    while at < bytes.len() && matches!(bytes[at], b'\n' | b'\r') {
        at += 1;
    }
    first_line + crate::readers::source::line_ends(&bytes[..at])
}

fn raw_row(rec: &ByteRecord, delimiter: u8) -> String {
    let mut out = Vec::with_capacity(rec.as_slice().len() + rec.len());
    for (i, f) in rec.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        out.extend_from_slice(f);
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Outcome = Result<(RecordBatch, u64, Vec<RowError>), String>;

fn outcome(r: Result<Parsed, ReaderError>) -> Outcome {
    r.map(|p| (p.batch, p.rows_read, p.errors))
        .map_err(|e| e.to_string())
}

/// Field names of every column type: u64, i64, text, u32, u64.
const NAMES: [&str; 5] = ["order_id", "price", "note", "exchange", "quantity"];

/// Bytes that matter to the scans, with digits, signs and letters for values.
const PIECES: [&[u8]; 18] = [
    b"0",
    b"7",
    b"9",
    b"1844674407370955161",
    b"-",
    b"+",
    b"a",
    b"Z",
    b" ",
    b"\t",
    b",",
    b",",
    b";",
    b"\n",
    b"\r",
    b"\r\n",
    b"\xEF\xBB\xBF",
    b"\xFF",
];

fn block(with_quotes: bool) -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&[u8]> = if with_quotes {
        PIECES
            .iter()
            .copied()
            .chain([&b"\""[..], b"\"\""])
            .collect()
    } else {
        PIECES.to_vec()
    };
    vec(select(pieces), 0..120).prop_map(|p| p.concat())
}

fn any_plan() -> impl Strategy<Value = ParsePlan> {
    (1..=NAMES.len(), any::<u8>(), any::<bool>(), any::<bool>()).prop_map(
        |(n, mask, all, semicolon)| {
            let names = &NAMES[..n];
            let need = if all {
                ColumnNeed::All {
                    required: Vec::new(),
                }
            } else {
                ColumnNeed::Some(
                    names
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, s)| s.to_string())
                        .collect(),
                )
            };
            let delimiter = if semicolon { b';' } else { b',' };
            let header = names.join(&char::from(delimiter).to_string());
            ParsePlan::new(
                "t.csv".into(),
                header.as_bytes(),
                delimiter,
                &BTreeMap::new(),
                &need,
            )
            .unwrap()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Without quotes, the plain scan and csv-core read every block exactly as csv-async did.
    #[test]
    fn plain_scan_matches_csv_core_and_csv_async(
        plan in any_plan(),
        bytes in block(false),
        first_line in 2..50u64,
        stop in any::<bool>(),
    ) {
        prop_assume!(plain_scan_applies(plan.delimiter, &bytes));
        let want = outcome(reference(&plan, &bytes, first_line, stop));
        let core = outcome(parse_with(&plan, &bytes, first_line, stop, false));
        let plain = outcome(parse_with(&plan, &bytes, first_line, stop, true));
        prop_assert_eq!(&core, &want);
        prop_assert_eq!(&plain, &want);
    }

    /// With quotes, blocks go to csv-core, which reads them exactly as csv-async did.
    #[test]
    fn quoted_blocks_match_csv_async(
        plan in any_plan(),
        bytes in block(true),
        first_line in 2..50u64,
        stop in any::<bool>(),
    ) {
        let want = outcome(reference(&plan, &bytes, first_line, stop));
        prop_assert_eq!(outcome(parse_block(&plan, &bytes, first_line, stop)), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Digit fields skip lexical-core; every field must still parse, or fail, as with it.
    #[test]
    fn integers_read_as_lexical_core_reads_them(
        f in prop_oneof![
            vec(select(&b"0123456789"[..]), 0..22),
            vec(select(&b"0123456789+- a"[..]), 0..24),
        ],
    ) {
        prop_assert_eq!(
            unsigned::<u64>(&f, "u64"),
            lexical_core::parse::<u64>(&f).map_err(|_| explain(&f, "u64", false))
        );
        prop_assert_eq!(
            unsigned::<u32>(&f, "u32"),
            lexical_core::parse::<u32>(&f).map_err(|_| explain(&f, "u32", false))
        );
        prop_assert_eq!(
            signed(&f),
            lexical_core::parse::<i64>(&f).map_err(|_| explain(&f, "i64", true))
        );
    }
}

#[test]
fn integer_limits_read_as_lexical_core_reads_them() {
    for f in [
        "0",
        "00000000",
        "0000000000000000000",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "9999999999999999999",
        "18446744073709551615",
        "18446744073709551616",
        "12345678",
        "123456789",
        "1234567890123456",
    ] {
        let f = f.as_bytes();
        assert_eq!(
            unsigned::<u64>(f, "u64"),
            lexical_core::parse::<u64>(f).map_err(|_| explain(f, "u64", false))
        );
        assert_eq!(
            unsigned::<u32>(f, "u32"),
            lexical_core::parse::<u32>(f).map_err(|_| explain(f, "u32", false))
        );
        assert_eq!(
            signed(f),
            lexical_core::parse::<i64>(f).map_err(|_| explain(f, "i64", true))
        );
    }
}

/// Long lines and long fields cross the scan's eight-byte words in every alignment.
#[test]
fn long_lines_read_alike() {
    let p = plan("order_id,note,price,exchange", &["price", "note"]);
    let mut data = Vec::new();
    for i in 0..200usize {
        let note = "x".repeat(i % 23);
        let pad = " ".repeat(i % 9);
        let end = ["\n", "\r\n", "\r", "\n\n"][i % 4];
        data.extend_from_slice(format!("{i},{note},{pad}-{i}{pad},{}{end}", i % 7).as_bytes());
    }
    data.extend_from_slice(b"1,2,3\n1,2,3,4,5\n1,a,b,2\n");
    let want = outcome(reference(&p, &data, 2, false));
    assert_eq!(outcome(parse_with(&p, &data, 2, false, true)), want);
    assert_eq!(outcome(parse_with(&p, &data, 2, false, false)), want);
    let (batch, rows_read, errors) = want.unwrap();
    assert_eq!((batch.num_rows(), rows_read, errors.len()), (200, 203, 3));
}
