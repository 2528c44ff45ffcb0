//! Integrity properties (issue 3, item 3). The tables must not depend on how the input is cut:
//! into files, into blocks parsed by any number of workers, into gzip members or zstd frames, or
//! into partial aggregate states merged in any order. And they must agree with a small reference
//! aggregator written here with plain loops, on inputs that cross both Sydney daylight-saving
//! switches.
//!
//! Case counts are kept small because every case of the binary properties runs `sweep` a few
//! times; together these tests take a few seconds in a debug build on two cores.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Write};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use chrono::{NaiveDate, NaiveTime, TimeDelta, TimeZone, Timelike};
use chrono_tz::Australia::Sydney;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use sweep::aggregators::AggState;
use sweep::config::AggregatorSpec;
use sweep::config::ColumnNeed;
use sweep::readers::csv::{ParsePlan, parse_block};
use sweep::readers::source::BlockReader;

use crate::common::{HEADER, MEASURES, Pipeline, Row, Scratch, TABLES, csv, syd};

// ---------------------------------------------------------------------------------------------
// Random order events
// ---------------------------------------------------------------------------------------------

/// Sydney days around both daylight-saving switches: clocks go forward at 02:00 on 2024-10-06
/// and back at 03:00 on 2025-04-06 (02:00-03:00 happens twice).
const DAYS: [&str; 9] = [
    "2024-09-03",
    "2024-10-04",
    "2024-10-05",
    "2024-10-06",
    "2024-10-07",
    "2025-04-04",
    "2025-04-05",
    "2025-04-06",
    "2025-04-07",
];

/// Local wall times that rows cluster around: the switch hours and the trading-hours edges.
const ANCHORS: [(u32, u32, u32); 13] = [
    (0, 0, 0),
    (1, 59, 59),
    (2, 0, 0),
    (2, 30, 0),
    (3, 0, 0),
    (9, 59, 59),
    (10, 0, 0),
    (11, 0, 0),
    (12, 34, 56),
    (15, 0, 0),
    (15, 59, 59),
    (16, 0, 0),
    (23, 59, 59),
];

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;

const CENTRE_POINT: [u32; 5] = [64, 256, 2048, 4096, 4098];
/// Lit and other codes, including 66 (a bitset sharing 64's bit, which the exact match drops).
const OTHER_TYPES: [u32; 7] = [0, 1, 2, 66, 128, 1024, 8192];
const SECURITIES: [u32; 4] = [5, 70_616, 110_621, u32::MAX];
const PARTICIPANTS: [u32; 6] = [1, 7, 8, 42, 65_535, u32::MAX];
const QUANTITY_EDGES: [u64; 14] = [
    0, 1, 999, 1000, 1001, 4999, 5000, 5001, 9999, 10_000, 10_001, 49_999, 50_000, 50_001,
];
const PRICE_EDGES: [i64; 6] = [0, 1, -1, -1_000_000, i32::MAX as i64, i32::MIN as i64];

/// UTC nanoseconds of a Sydney wall time; `later` picks the second instance of a repeated time,
/// and a time in the spring-forward gap is taken an hour on.
fn sydney_ns(day: &str, (h, m, s): (u32, u32, u32), later: bool) -> i64 {
    let naive = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(h, m, s)
        .unwrap();
    let pick = |n| {
        let mapped = Sydney.from_local_datetime(&n);
        if later {
            mapped.latest()
        } else {
            mapped.earliest()
        }
    };
    let t = pick(naive)
        .or_else(|| pick(naive + TimeDelta::hours(1)))
        .unwrap();
    t.timestamp_nanos_opt().unwrap()
}

fn timestamp() -> impl Strategy<Value = i64> {
    let jitter = prop_oneof![
        3 => Just(0i64),
        3 => -2i64..=2,
        2 => -SECOND..SECOND,
        2 => -HOUR..HOUR,
        // Anywhere in the (up to 25-hour) day after the anchor.
        2 => 0..25 * HOUR,
    ];
    let near = (
        select(&DAYS[..]),
        select(&ANCHORS[..]),
        any::<bool>(),
        jitter,
    )
        .prop_map(|(day, anchor, later, jitter)| sydney_ns(day, anchor, later) + jitter);
    prop_oneof![
        40 => near,
        1 => any::<i64>(),
        1 => (i64::MAX - 2 * 24 * HOUR)..=i64::MAX,
        1 => i64::MIN..=(i64::MIN + 2 * 24 * HOUR),
    ]
}

fn quantity() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => select(&QUANTITY_EDGES[..]),
        3 => 1u64..100_000,
        1 => 0u64..(1 << 40),
    ]
}

fn price() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1000i64..5000,
        1 => select(&PRICE_EDGES[..]),
        1 => i64::from(i32::MIN)..=i64::from(i32::MAX),
    ]
}

fn order_type() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => select(&CENTRE_POINT[..]),
        1 => select(&OTHER_TYPES[..]),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        any::<u64>(),
        timestamp(),
        select(&SECURITIES[..]),
        select(&PARTICIPANTS[..]),
        order_type(),
        quantity(),
        price(),
    )
        .prop_map(|(id, ts, sec, part, typ, qty, price)| Row {
            id,
            ts,
            sec,
            part,
            typ,
            qty,
            price,
        })
}

/// A row whose quantity and price may be anything their types hold, for the aggregator alone (the
/// reference's i128 sums are only sized for [`row`]).
fn wide_row() -> impl Strategy<Value = Row> {
    (
        row(),
        prop_oneof![3 => quantity(), 1 => any::<u64>(), 1 => Just(u64::MAX)],
        prop_oneof![3 => price(), 1 => any::<i64>(), 1 => select(vec![i64::MIN, i64::MAX])],
    )
        .prop_map(|(r, qty, price)| Row { qty, price, ..r })
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// The standard job over `input` with the given parse workers and block size.
fn job(input: &str, workers: u32, block_bytes: Option<u32>) -> Pipeline {
    let p = Pipeline::standard(input).set("runtime", &format!("workers = {workers}"));
    match block_bytes {
        Some(b) => p.set("runtime", &format!("block_bytes = {b}")),
        None => p,
    }
}

/// Runs `pipeline` and returns the eight table files. `out/` is removed first, so nothing an
/// earlier run wrote can be read back as this run's answer.
fn run_tables(s: &Scratch, pipeline: &Pipeline) -> Vec<String> {
    let out = s.path("out");
    if out.exists() {
        std::fs::remove_dir_all(&out).unwrap();
    }
    s.run(pipeline).assert_success();
    TABLES
        .iter()
        .map(|t| s.read(&format!("out/{t}.csv")))
        .collect()
}

fn same_tables(expected: &[String], got: &[String], what: &str) -> Result<(), TestCaseError> {
    for ((t, a), b) in TABLES.iter().zip(expected).zip(got) {
        prop_assert_eq!(a, b, "{}.csv differs: {}", t, what);
    }
    Ok(())
}

/// A quoted text field of about `len` bytes holding separators, escaped quotes and line breaks.
fn filler(len: usize) -> String {
    format!("\"{}\"", "a,\"\"b\"\"\n".repeat(len / 8))
}

/// No padding, or a few hundred bytes a row.
fn padding() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1usize..400]
}

/// An orders file as [`csv`] writes it, or with `pad` > 0 an extra `note` column the job does not
/// read, holding a [`filler`] of about `pad` bytes a row. Padded files outgrow the reader's first
/// 64 KiB read, so blocks are cut while the file streams in, and quote tracking decides where
/// records end.
fn orders_csv(rows: &[Row], pad: usize) -> String {
    if pad == 0 {
        return csv(rows);
    }
    let mut s = format!("{HEADER},note\n");
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!("{},{}\n", r.line(), filler(pad + i % 16)));
    }
    s
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 1).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Any split of the rows into 1-5 files (each with the header, in a random read order, each
    /// plain, gzip or zstd) read as a folder, and any block size and parse-worker count, give the
    /// tables of the single file to the byte.
    #[test]
    fn splitting_into_files_and_blocks_leaves_tables_unchanged(
        rows in vec(row(), 0..300),
        pad in padding(),
        cuts in vec(any::<Index>(), 0..5),
        names in vec(any::<u16>(), 5),
        formats in vec(0..3u8, 5),
    ) {
        check_file_split(rows, pad, cuts, names, formats)?;
    }

    /// The same bytes as plain CSV, gzip, two concatenated gzip members, zstd and two zstd frames
    /// give the same tables. The members are split at a random line end or a random byte.
    #[test]
    fn compression_and_members_leave_tables_unchanged(
        rows in vec(row(), 0..300),
        pad in padding(),
        cut in any::<Index>(),
        at_line_end in any::<bool>(),
        small_blocks in any::<bool>(),
    ) {
        check_compression(rows, pad, cut, at_line_end, small_blocks)?;
    }
}

/// Any split of the rows into files, read as a folder, with any block size and worker count.
fn check_file_split(
    rows: Vec<Row>,
    pad: usize,
    cuts: Vec<Index>,
    names: Vec<u16>,
    formats: Vec<u8>,
) -> Result<(), TestCaseError> {
    let s = Scratch::new();
    s.write("o.csv", orders_csv(&rows, pad));
    let whole = run_tables(&s, &job("o.csv", 2, None));

    let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(rows.len() + 1)).collect();
    bounds.extend([0, rows.len()]);
    bounds.sort_unstable();
    for (i, w) in bounds.windows(2).enumerate() {
        let text = orders_csv(&rows[w[0]..w[1]], pad);
        let (ext, bytes) = match formats[i] {
            0 => ("csv", text.into_bytes()),
            1 => ("csv.gz", gzip(text.as_bytes())),
            _ => ("csv.zst", zstd(text.as_bytes())),
        };
        // The folder is read in name order: a random permutation of the parts.
        s.write(&format!("parts/{:05}-{i}.{ext}", names[i]), bytes);
    }

    for (what, pipeline) in [
        ("folder of parts", job("parts", 2, None)),
        ("4 KiB blocks, 1 worker", job("o.csv", 1, Some(4096))),
        ("4 KiB blocks, 2 workers", job("o.csv", 2, Some(4096))),
        (
            "folder of parts, 4 KiB blocks, 2 workers",
            job("parts", 2, Some(4096)),
        ),
    ] {
        same_tables(
            &whole,
            &run_tables(&s, &pipeline),
            &format!("{what}, cuts {bounds:?}"),
        )?;
    }
    Ok(())
}

/// One input as plain CSV, gzip, two gzip members, zstd and two zstd frames.
fn check_compression(
    rows: Vec<Row>,
    pad: usize,
    cut: Index,
    at_line_end: bool,
    small_blocks: bool,
) -> Result<(), TestCaseError> {
    let s = Scratch::new();
    let text = orders_csv(&rows, pad).into_bytes();
    let c = if at_line_end {
        let ends: Vec<usize> = std::iter::once(0)
            .chain(
                text.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        ends[cut.index(ends.len())]
    } else {
        cut.index(text.len() + 1)
    };
    s.write("o.csv", &text);
    s.write("o.csv.gz", gzip(&text));
    s.write("o2.csv.gz", [gzip(&text[..c]), gzip(&text[c..])].concat());
    s.write("o.csv.zst", zstd(&text));
    s.write("o2.csv.zst", [zstd(&text[..c]), zstd(&text[c..])].concat());

    let whole = run_tables(&s, &job("o.csv", 2, None));
    let blocks = small_blocks.then_some(4096);
    for input in ["o.csv.gz", "o2.csv.gz", "o.csv.zst", "o2.csv.zst"] {
        let got = run_tables(&s, &job(input, 2, blocks));
        same_tables(
            &whole,
            &got,
            &format!("{input}, split at byte {c}, blocks {blocks:?}"),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Byte ranges and partial states, at the library level
// ---------------------------------------------------------------------------------------------

/// Text values for a quoted column: separators, escaped quotes and line breaks inside quotes.
const NOTES: [&str; 8] = [
    "",
    "GTC",
    "\"a,b\"",
    "\"say \"\"hi\"\"\"",
    "\"two\nlines\"",
    "\"cr\r\nlf\"",
    "\"\"",
    "\"\n\"",
];

/// A short tricky value, or a long quoted one.
fn note() -> impl Strategy<Value = String> {
    prop_oneof![
        select(&NOTES[..]).prop_map(String::from),
        (0usize..4000).prop_map(filler),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Cutting a file into blocks of any size (down to one byte, far below the configurable
    /// minimum) never splits a record, numbers every block's first line right, and the blocks
    /// parsed one by one give the rows of the whole body parsed at once, quoted line breaks and
    /// CRLF line ends included.
    #[test]
    fn blocks_of_any_size_parse_to_the_rows_of_the_whole(
        rows in vec((row(), note()), 0..80),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
        block_bytes in prop_oneof![1usize..400, 400usize..100_000],
    ) {
        check_blocks(rows, crlf, final_newline, block_bytes)?;
    }
}

/// Blocks of `block_bytes` against the whole body, parsed.
fn check_blocks(
    rows: Vec<(Row, String)>,
    crlf: bool,
    final_newline: bool,
    block_bytes: usize,
) -> Result<(), TestCaseError> {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut lines = vec![format!("{HEADER},timevaliditydecoded")];
    lines.extend(rows.iter().map(|(r, note)| format!("{},{note}", r.line())));
    let mut text = lines.join(eol);
    if final_newline {
        text.push_str(eol);
    }
    let bytes = text.into_bytes();

    let mut reader = BlockReader::new(Box::pin(Cursor::new(bytes.clone())), block_bytes, b',');
    let header = futures::executor::block_on(reader.header())
        .unwrap()
        .unwrap();
    prop_assert_eq!(&header[..], lines[0].as_bytes());
    // The header has no quotes: the body starts after its line end.
    let body_start = bytes
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    let body = &bytes[body_start..];
    let plan = ParsePlan::new(
        "t.csv".into(),
        &header,
        b',',
        &BTreeMap::new(),
        &ColumnNeed::All {
            required: Vec::new(),
        },
    )
    .unwrap();
    let whole = parse_block(&plan, body, 2, false).unwrap();
    prop_assert!(whole.errors.is_empty(), "{:?}", whole.errors);
    prop_assert_eq!(whole.batch.num_rows(), rows.len());

    let mut seen = Vec::new();
    let mut batches = Vec::new();
    let mut rows_read = 0;
    while let Some(block) = futures::executor::block_on(reader.next_block()).unwrap() {
        let line = 2 + seen.iter().filter(|b| **b == b'\n').count() as u64;
        prop_assert_eq!(block.first_line, line);
        seen.extend_from_slice(&block.bytes);
        // Every block but the last ends a record; the last may lack a final line end.
        let parsed = parse_block(&plan, &block.bytes, block.first_line, false).unwrap();
        prop_assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        rows_read += parsed.rows_read;
        batches.push(parsed.batch);
    }
    prop_assert_eq!(&seen[..], body);
    prop_assert_eq!(rows_read, whole.rows_read);
    let joined = arrow_select::concat::concat_batches(&plan.schema, &batches).unwrap();
    prop_assert_eq!(joined, whole.batch);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Rows split into parts in any way (not only contiguous runs), each part folded as batches
    /// of random sizes (slices with offsets, empty ones included), and the partial states merged
    /// pairwise in a random order, finish into the bytes of one state fed everything at once.
    #[test]
    fn merging_partial_states_in_any_order_equals_one_state(
        rows in vec(wide_row(), 0..200),
        parts in 1usize..=6,
        part_of in vec(any::<Index>(), 200),
        cuts in vec(any::<Index>(), 0..6),
        merges in vec((any::<Index>(), any::<Index>()), 6),
        quantiles in any::<bool>(),
    ) {
        check_merge(rows, parts, part_of, cuts, merges, quantiles)?;
    }
}

/// Partial states over a random split, merged in a random order, against one state.
fn check_merge(
    rows: Vec<Row>,
    parts: usize,
    part_of: Vec<Index>,
    cuts: Vec<Index>,
    merges: Vec<(Index, Index)>,
    quantiles: bool,
) -> Result<(), TestCaseError> {
    let spec = Arc::new(AggregatorSpec {
        quantiles: if quantiles {
            vec![0.5, 0.99]
        } else {
            Vec::new()
        },
        ..AggregatorSpec::standard()
    });
    let mut one = AggState::new(spec.clone());
    one.update(&batch(&rows)).unwrap();

    let mut pool: Vec<AggState> = (0..parts)
        .map(|p| {
            let mine: Vec<Row> = rows
                .iter()
                .zip(&part_of)
                .filter(|(_, i)| i.index(parts) == p)
                .map(|(r, _)| *r)
                .collect();
            let b = batch(&mine);
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(mine.len() + 1)).collect();
            bounds.extend([0, mine.len()]);
            bounds.sort_unstable();
            let mut state = AggState::new(spec.clone());
            for w in bounds.windows(2) {
                state.update(&b.slice(w[0], w[1] - w[0])).unwrap();
            }
            state
        })
        .collect();
    let mut step = 0;
    while pool.len() > 1 {
        let (a, b) = merges[step % merges.len()];
        step += 1;
        let j = b.index(pool.len());
        let from = pool.remove(j);
        let i = a.index(pool.len());
        pool[i].merge(from);
    }
    let merged = pool.pop().unwrap();

    prop_assert_eq!(merged.rows(), one.rows());
    for (m, o) in merged.finish().iter().zip(one.finish().iter()) {
        prop_assert_eq!(m.name, o.name);
        prop_assert_eq!(
            String::from_utf8(m.to_csv().unwrap()).unwrap(),
            String::from_utf8(o.to_csv().unwrap()).unwrap(),
            "{}",
            m.name
        );
    }
    Ok(())
}

/// The aggregator's columns as one batch, plus the order type it must ignore.
fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("timestamp", DataType::Int64, false),
        Field::new("security_code", DataType::UInt32, false),
        Field::new("participantid", DataType::UInt32, false),
        Field::new("exchangeordertype", DataType::UInt32, false),
        Field::new("quantity", DataType::UInt64, false),
        Field::new("price", DataType::Int64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ts))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sec))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.part))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.typ))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.qty))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.price))),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The reference aggregator
// ---------------------------------------------------------------------------------------------

/// One expected cell.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Int(i128),
    Float(f64),
    Null,
}

/// An expected table: (key text, measures) per line, in output order.
type Expected = Vec<(Option<String>, Vec<V>)>;

/// The twelve measures of one non-empty group, by the definitions in standard-job.md.
fn measures(group: &[&Row]) -> Vec<V> {
    let n = group.len();
    let mut q_sum: i128 = 0;
    let mut p_sum: i128 = 0;
    let mut pq_sum: i128 = 0;
    let mut p_min = i64::MAX;
    let mut p_max = i64::MIN;
    let mut ts_min = i64::MAX;
    let mut ts_max = i64::MIN;
    let mut participants = BTreeSet::new();
    let mut securities = BTreeSet::new();
    for r in group {
        q_sum += i128::from(r.qty);
        p_sum += i128::from(r.price);
        pq_sum += i128::from(r.price) * i128::from(r.qty);
        p_min = p_min.min(r.price);
        p_max = p_max.max(r.price);
        ts_min = ts_min.min(r.ts);
        ts_max = ts_max.max(r.ts);
        participants.insert(r.part);
        securities.insert(r.sec);
    }
    let mean = q_sum as f64 / n as f64;
    let std = if n > 1 {
        // Two passes; the second sum corrects for the rounding of the mean (Chan, Golub and
        // LeVeque's corrected two-pass formula), so the result is good to about n ulps.
        let (mut sq, mut dev) = (0.0, 0.0);
        for r in group {
            let d = r.qty as f64 - mean;
            sq += d * d;
            dev += d;
        }
        V::Float(
            ((sq - dev * dev / n as f64) / (n - 1) as f64)
                .max(0.0)
                .sqrt(),
        )
    } else {
        V::Null
    };
    let vwap = if q_sum == 0 {
        V::Null
    } else {
        V::Float(pq_sum as f64 / q_sum as f64)
    };
    vec![
        V::Int(n as i128),
        V::Int(q_sum),
        V::Float(mean),
        std,
        V::Float(p_sum as f64 / n as f64),
        V::Int(p_min.into()),
        V::Int(p_max.into()),
        vwap,
        V::Int(participants.len() as i128),
        V::Int(securities.len() as i128),
        V::Int(ts_min.into()),
        V::Int(ts_max.into()),
    ]
}

fn grouped<K: Ord>(
    rows: &[&Row],
    key: impl Fn(&Row) -> K,
    label: impl Fn(&K) -> String,
) -> Expected {
    let mut groups: BTreeMap<K, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry(key(r)).or_default().push(r);
    }
    groups
        .iter()
        .map(|(k, g)| (Some(label(k)), measures(g)))
        .collect()
}

fn size_bucket(q: u64) -> usize {
    if q <= 1000 {
        0
    } else if q <= 5000 {
        1
    } else if q <= 10_000 {
        2
    } else if q <= 50_000 {
        3
    } else {
        4
    }
}

const SIZE_LABELS: [&str; 5] = ["<=1K", "1K-5K", "5K-10K", "10K-50K", ">50K"];

fn local(ts: i64) -> chrono::NaiveDateTime {
    Sydney.timestamp_nanos(ts).naive_local()
}

/// The standard filter: a Centre Point type, and local time in [10:00, 16:00).
fn standard_filter(r: &Row) -> bool {
    let t = local(r.ts).time();
    CENTRE_POINT.contains(&r.typ)
        && NaiveTime::from_hms_opt(10, 0, 0).unwrap() <= t
        && t < NaiveTime::from_hms_opt(16, 0, 0).unwrap()
}

/// The eight tables, keyed by file stem, with each table's key column.
fn reference(rows: &[&Row]) -> Vec<(&'static str, Option<&'static str>, Expected)> {
    let by_date = grouped(
        rows,
        |r| local(r.ts).format("%Y-%m-%d").to_string(),
        |k| k.clone(),
    );
    let summary = if rows.is_empty() {
        let mut empty = vec![V::Null; 12];
        for i in [0, 1, 8, 9] {
            empty[i] = V::Int(0);
        }
        empty
    } else {
        measures(rows)
    };
    vec![
        (
            "by_security",
            Some("security_code"),
            grouped(rows, |r| r.sec, |k| k.to_string()),
        ),
        ("by_date", Some("date"), by_date.clone()),
        (
            "by_participant",
            Some("participantid"),
            grouped(rows, |r| r.part, |k| k.to_string()),
        ),
        (
            "by_hour",
            Some("hour"),
            grouped(rows, |r| local(r.ts).hour(), |k| k.to_string()),
        ),
        (
            "by_size",
            Some("size_bucket"),
            grouped(
                rows,
                |r| size_bucket(r.qty),
                |k| SIZE_LABELS[*k].to_string(),
            ),
        ),
        (
            "hourly",
            Some("hour_start"),
            grouped(
                rows,
                |r| local(r.ts).format("%Y-%m-%d %H:00").to_string(),
                |k| k.clone(),
            ),
        ),
        ("daily", Some("date"), by_date),
        ("summary", None, vec![(None, summary)]),
    ]
}

/// Equal as integers, or within 1e-9 relative as floats (standard-job.md's rule).
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn check_table(
    name: &str,
    text: &str,
    key: Option<&str>,
    expected: &Expected,
) -> Result<(), TestCaseError> {
    let mut lines = text.lines();
    let header = key
        .into_iter()
        .chain(MEASURES)
        .collect::<Vec<_>>()
        .join(",");
    prop_assert_eq!(lines.next(), Some(header.as_str()), "{} header", name);
    let body: Vec<&str> = lines.collect();
    prop_assert_eq!(
        body.len(),
        expected.len(),
        "{} line count:\n{}\nexpected {:?}",
        name,
        text,
        expected
    );
    for (line, (k, values)) in body.iter().zip(expected) {
        let fields: Vec<&str> = line.split(',').collect();
        let (got_key, cells) = match k {
            Some(_) => (Some(fields[0]), &fields[1..]),
            None => (None, &fields[..]),
        };
        prop_assert_eq!(got_key, k.as_deref(), "{} key:\n{}", name, text);
        prop_assert_eq!(cells.len(), values.len(), "{} fields: {}", name, line);
        for ((cell, v), column) in cells.iter().zip(values).zip(MEASURES) {
            let ok = match v {
                V::Null => cell.is_empty(),
                V::Int(x) => cell.parse::<i128>().ok() == Some(*x),
                V::Float(x) => cell.parse::<f64>().is_ok_and(|y| close(*x, y)),
            };
            prop_assert!(
                ok,
                "{} {:?} {}: got {:?}, expected {:?}\n{}",
                name,
                k,
                column,
                cell,
                v,
                line
            );
        }
    }
    Ok(())
}

/// Rows on both switch days that every differential case includes: the first and last kept
/// nanoseconds of trading, and the repeated 02:30 when the clocks go back.
fn dst_rows() -> Vec<Row> {
    [
        "2024-10-06 10:00:00",
        "2024-10-06 15:59:59.999999999",
        "2024-10-06 16:00:00",
        "2025-04-06 09:59:59.999999999",
        "2025-04-06 10:00:00",
        "2025-04-06 15:59:59.999999999",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| Row {
        id: i as u64,
        qty: 1000 * i as u64,
        part: PARTICIPANTS[i],
        ..Row::new(syd(t))
    })
    .chain([false, true].map(|later| Row {
        typ: 4096,
        ..Row::new(sydney_ns("2025-04-06", (2, 30, 0), later))
    }))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// The pipeline's eight tables equal the reference aggregator's, for the standard job and
    /// for Centre Point rows at any hour (so the switch hours, and the repeated hour as one
    /// local `YYYY-MM-DD HH:00` slot, reach the tables too).
    #[test]
    fn pipeline_agrees_with_a_plain_loop_reference(
        random in vec(row(), 0..400),
        pad in padding(),
        blocks in prop_oneof![Just(None), Just(Some(4096))],
    ) {
        check_reference(random, pad, blocks)?;
    }
}

/// The pipeline's tables against the reference aggregator's.
fn check_reference(random: Vec<Row>, pad: usize, blocks: Option<u32>) -> Result<(), TestCaseError> {
    let mut rows = dst_rows();
    rows.extend(random);
    let s = Scratch::new();
    s.write("o.csv", orders_csv(&rows, pad));
    // Beside the standard job, its Centre Point types at all hours.
    let all_hours = job("o.csv", 2, blocks)
        .section(
            "filters.types",
            &[
                "inputs = [\"orders\"]",
                "exchange_order_types = [64, 256, 2048, 4096, 4098]",
            ],
        )
        .section("aggregators.all_hours", &["inputs = [\"types\"]"])
        .section(
            "sinks.all_hours_tables",
            &["inputs = [\"all_hours\"]", "path = \"out/all_hours\""],
        );
    let out = s.run(&all_hours);
    prop_assert_eq!(out.code, 0, "{}", out.stderr);

    let kept: Vec<&Row> = rows.iter().filter(|r| standard_filter(r)).collect();
    let centre_point: Vec<&Row> = rows
        .iter()
        .filter(|r| CENTRE_POINT.contains(&r.typ))
        .collect();
    for (folder, subset) in [("out", &kept), ("out/all_hours", &centre_point)] {
        for (name, key, expected) in reference(subset) {
            let text = s.read(&format!("{folder}/{name}.csv"));
            check_table(&format!("{folder}/{name}"), &text, key, &expected)?;
        }
    }
    Ok(())
}

/// Regression for a bug the reference comparison found: local time was formed as `ts + offset`
/// in i64, which wraps for timestamps within the offset of i64::MAX, so such a row was dated
/// 1677-09-21 (and judged by a wrong time of day). chrono-tz applies no daylight-saving switches
/// that far ahead, so i64::MAX (2262-04-11 23:47:16.854775807 UTC) is 10:47:16 AEDT on 04-12.
#[test]
fn timestamps_at_the_end_of_i64_keep_their_local_date() {
    let s = Scratch::new();
    let rows = [
        Row::new(i64::MAX),
        // 22:47 local on 04-11: outside trading hours.
        Row::new(i64::MAX - 12 * HOUR),
    ];
    s.write("o.csv", csv(&rows));
    let tables = run_tables(&s, &job("o.csv", 2, None));
    let first_fields = |t: &str, n: usize| -> Vec<String> {
        t.lines()
            .skip(1)
            .map(|l| l.split(',').take(n).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(first_fields(&tables[1], 2), ["2262-04-12,1"]);
    assert_eq!(first_fields(&tables[3], 2), ["10,1"]);
    assert_eq!(first_fields(&tables[5], 2), ["2262-04-12 10:00,1"]);
    assert_eq!(first_fields(&tables[7], 1), ["1"]);
}
