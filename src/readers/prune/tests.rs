use std::sync::Arc;

use ::parquet::arrow::ArrowWriter;
use ::parquet::file::properties::WriterProperties;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::{Field, Schema};
use proptest::prelude::*;

use super::*;
use crate::config::{ColumnNeed, HoursSpec};
use crate::filters::Predicate;
use crate::readers::parquet;
use crate::time::{HOUR_NS, LocalClock, MINUTE_NS, SECOND_NS};

const SYDNEY: Zone = Zone::Iana(chrono_tz::Australia::Sydney);
/// 2024-10-03 00:00 UTC: the days around Sydney's change to daylight saving (2024-10-06).
const T0: i64 = 1_727_913_600 * SECOND_NS;
const DAY0: i32 = 19_999; // 2024-10-03

/// `any_bit_between` agrees with trying every value.
#[test]
fn any_bit_between_is_exact() {
    for mask in [0i64, 1, 2, 6, 64, 2048, 6464, 4098] {
        for min in -3i64..90 {
            for max in min..min + 70 {
                let brute = (min.max(0)..=max).any(|v| v & mask != 0);
                assert_eq!(any_bit_between(mask, min, max), brute, "{mask} {min} {max}");
            }
        }
        assert!(!any_bit_between(mask, 5000, 4000));
    }
    assert!(any_bit_between(2048, 4096, 6144));
    assert!(!any_bit_between(2048, 4096, 4096 + 2047));
}

/// A code list passes a range holding one of its codes, and no other.
#[test]
fn codes_pass_ranges_holding_one() {
    let t = codes_test(&[7, 3, 40]);
    assert!(t.may_match(3, 3));
    assert!(t.may_match(8, 40));
    assert!(!t.may_match(8, 39));
    assert!(!t.may_match(41, i64::MAX));
    assert!(!t.may_match(0, 2));
}

/// Trading hours as timestamp ranges never rule out a span holding a timestamp the filter
/// keeps, across the change to daylight saving and in a fixed offset, and rule out spans
/// wholly outside them.
#[test]
fn hours_never_rule_out_a_kept_timestamp() {
    for zone in [SYDNEY, Zone::Fixed(10 * 3600)] {
        let (start, end) = (10 * HOUR_NS, 16 * HOUR_NS);
        let t = Test::Hours { start, end, zone };
        let mut clock = LocalClock::new(zone);
        // Every 20-minute span over six days, checked minute by minute.
        let mut lo = T0;
        while lo < T0 + 6 * DAY_NS {
            let hi = lo + 20 * MINUTE_NS;
            let kept = (0..=20).any(|m| {
                let tod = clock.time_of_day(lo + m * MINUTE_NS);
                start <= tod && tod < end
            });
            if kept {
                assert!(t.may_match(lo, hi), "{zone} {lo}");
            }
            lo += 20 * MINUTE_NS;
        }
        // 02:00 to 03:00 UTC is noon or 1 pm in Sydney; 08:00 to 20:00 UTC is evening and night.
        assert!(t.may_match(T0 + 2 * HOUR_NS, T0 + 3 * HOUR_NS));
        assert!(!t.may_match(T0 + 8 * HOUR_NS, T0 + 20 * HOUR_NS));
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(col::TIMESTAMP, arrow_schema::DataType::Int64, false),
        Field::new(col::SECURITY, arrow_schema::DataType::UInt32, false),
        Field::new(col::PARTICIPANT, arrow_schema::DataType::UInt32, false),
        Field::new(col::ORDER_TYPE, arrow_schema::DataType::UInt32, false),
        // Nullable in the file: a null is a bad row, which pruning must never hide.
        Field::new(col::QUANTITY, arrow_schema::DataType::Int64, true),
        Field::new(col::PRICE, arrow_schema::DataType::Int64, false),
    ]))
}

#[derive(Debug, Clone)]
struct Row {
    ts: i64,
    security: u32,
    participant: u32,
    order_type: u32,
    /// None: a null; negative: does not fit the catalogue's u64.
    quantity: Option<i64>,
}

fn row() -> impl Strategy<Value = Row> {
    (
        0..5 * DAY_NS,
        1u32..30,
        1u32..12,
        prop::sample::select(vec![0u32, 1, 2, 64, 66, 256, 2048, 2050, 4096, 4098]),
        prop_oneof![20 => (1i64..5000).prop_map(Some), 1 => Just(None), 1 => Just(Some(-1))],
    )
        .prop_map(|(dt, security, participant, order_type, quantity)| Row {
            ts: T0 + dt,
            security,
            participant,
            order_type,
            quantity,
        })
}

fn filter() -> impl Strategy<Value = FilterSpec> {
    let codes = |max: u32| prop::option::of(prop::collection::vec(0..max, 1..4));
    (
        prop::option::of((
            any::<bool>(),
            prop::collection::vec(
                prop::sample::select(vec![64u32, 256, 2048, 4096, 4098, 2]),
                1..4,
            ),
        )),
        codes(32),
        codes(14),
        prop::option::of((0i32..6, 0i32..3)),
        prop::option::of((0i64..20, 1i64..8)),
        any::<bool>(),
    )
        .prop_map(|(types, securities, participants, dates, hours, fixed)| {
            let zone = if fixed {
                Zone::Fixed(10 * 3600)
            } else {
                SYDNEY
            };
            FilterSpec {
                order_types: types.map(|(exact, c)| {
                    let mode = if exact {
                        OrderTypeMatch::Exact
                    } else {
                        OrderTypeMatch::AnyBit
                    };
                    (mode, c)
                }),
                securities,
                participants,
                dates: dates.map(|(from, len)| (Some(DAY0 + from), Some(DAY0 + from + len))),
                date_zone: zone,
                hours: hours.map(|(start, len)| HoursSpec {
                    start: start * HOUR_NS,
                    end: (start + len).min(24) * HOUR_NS,
                    zone,
                }),
            }
        })
}

/// Writes rows as Parquet in small row groups and pages.
fn write(path: &Path, rows: &[Row], group: usize, page: usize) {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ts))),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.security),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.participant),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.order_type),
        )),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.quantity))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.ts % 977),
        )),
    ];
    let batch = RecordBatch::try_new(schema(), cols).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .set_data_page_row_count_limit(page)
        .set_write_batch_size(page)
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Per filter, the rows it keeps (as quantity values and timestamps), and the bad rows found
/// (line and reason), reading with `push`.
type Read = (Vec<Vec<(i64, u64)>>, Vec<(u64, String)>, ParquetScan);

fn read_through(path: &Path, filters: &[FilterSpec], push: &Pushdown) -> Read {
    let need = ColumnNeed::Some(
        [
            col::TIMESTAMP,
            col::SECURITY,
            col::PARTICIPANT,
            col::ORDER_TYPE,
            col::QUANTITY,
            col::PRICE,
        ]
        .map(String::from)
        .to_vec(),
    );
    let mut preds: Vec<Predicate> = filters.iter().map(Predicate::new).collect();
    let mut kept = vec![Vec::new(); filters.len()];
    let mut errors = Vec::new();
    let scan = parquet::read(path, &Default::default(), &need, 100, push, |b| {
        errors.extend(b.errors.iter().map(|e| (e.line, e.reason.clone())));
        for (p, k) in preds.iter_mut().zip(&mut kept) {
            let out = p.apply(&b.batch).unwrap();
            let ts = out.column(0).as_primitive::<Int64Type>().clone();
            let q = out
                .column(4)
                .as_primitive::<arrow_array::types::UInt64Type>();
            k.extend(ts.values().iter().zip(q.values()).map(|(t, q)| (*t, *q)));
        }
        true
    })
    .unwrap();
    (kept, errors, scan)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With random filters over random sorted and unsorted files, the rows each filter keeps
    /// and the bad rows found are the same with pruning as without it; and every row is
    /// accounted for (decoded or skipped).
    #[test]
    fn pruning_never_changes_what_a_filter_keeps(
        mut rows in prop::collection::vec(row(), 1..1500),
        filters in prop::collection::vec(filter(), 1..3),
        sorted in any::<bool>(),
        group in 50usize..400,
        page in 8usize..60,
    ) {
        if sorted {
            rows.sort_by_key(|r| (r.security, r.ts));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        write(&path, &rows, group, page);
        let plain = read_through(&path, &filters, &Pushdown::default());
        let pruned = read_through(&path, &filters, &Pushdown::new(&filters));
        prop_assert_eq!(&plain.0, &pruned.0);
        prop_assert_eq!(&plain.1, &pruned.1);
        prop_assert_eq!(plain.2.rows_skipped, 0);
        prop_assert_eq!(plain.2.row_groups_skipped, 0);
        let groups = rows.len().div_ceil(group) as u64;
        prop_assert_eq!(pruned.2.row_groups_read + pruned.2.row_groups_skipped, groups);
    }
}

/// On a file sorted by security, a filter on one security reads only the row groups that hold
/// it, and within them only its pages; the date folder of a partitioned file rules it out
/// whole.
#[test]
fn a_sorted_file_reads_only_what_one_security_needs() {
    let rows: Vec<Row> = (0..3000)
        .map(|i| Row {
            ts: T0 + i64::from(i % 100) * HOUR_NS,
            security: (i / 100) as u32 + 1,
            participant: 1,
            order_type: 64,
            quantity: Some(100),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.parquet");
    write(&path, &rows, 500, 50);
    let f = FilterSpec {
        order_types: None,
        securities: Some(vec![7]),
        participants: None,
        dates: None,
        date_zone: SYDNEY,
        hours: None,
    };
    let (kept, errors, scan) = read_through(&path, std::slice::from_ref(&f), &Pushdown::new([&f]));
    assert_eq!(kept[0].len(), 100);
    assert!(errors.is_empty());
    // Security 7 is rows 600..700: row group 1 (500..1000), pages 600..650 and 650..700.
    assert_eq!(scan.row_groups_read, 1);
    assert_eq!(scan.row_groups_skipped, 5);
    assert_eq!(scan.rows_skipped, 2900);
    assert_eq!(scan.pages_read, 2 * 6);
    assert_eq!(scan.pages_skipped, (60 - 2) * 6);
    assert!(scan.bytes_read > 0);

    // The same file in a date folder, its zone in the footer: a filter on another date skips
    // it whole, however its timestamps look; one on its date reads it.
    let part = dir.path().join("date=2024-10-03");
    std::fs::create_dir(&part).unwrap();
    let in_part = part.join("part-00000.parquet");
    let batch = {
        let f = std::fs::File::open(&path).unwrap();
        let r = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .with_batch_size(100_000)
            .build()
            .unwrap();
        r.map(Result::unwrap).collect::<Vec<_>>()
    };
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![::parquet::file::metadata::KeyValue::new(
            DATE_ZONE_KEY.to_string(),
            "Australia/Sydney".to_string(),
        )]))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&in_part).unwrap(),
        schema(),
        Some(props),
    )
    .unwrap();
    for b in &batch {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    let on = |day: i32| FilterSpec {
        securities: None,
        dates: Some((Some(day), Some(day))),
        ..f.clone()
    };
    let other = on(DAY0 + 1);
    let (kept, _, scan) = read_through(
        &in_part,
        std::slice::from_ref(&other),
        &Pushdown::new([&other]),
    );
    assert!(kept[0].is_empty());
    assert_eq!(scan.rows_skipped, 3000);
    // Its own date is read (its timestamps run over four days, so not every row is kept).
    let own = on(DAY0);
    let (kept, _, scan) =
        read_through(&in_part, std::slice::from_ref(&own), &Pushdown::new([&own]));
    assert!(!kept[0].is_empty());
    assert!(scan.row_groups_read > 0);
}
