use super::predicate::*;
use crate::config::HoursSpec;
use crate::config::{FilterSpec, OrderTypeMatch};
use crate::time::{self, HOUR_NS, SECOND_NS, Zone};
use arrow_array::RecordBatch;
use arrow_array::{Int64Array, UInt32Array};
use std::sync::Arc;

fn batch(ts: Vec<i64>, types: Vec<u32>) -> RecordBatch {
    let n = ts.len();
    RecordBatch::try_from_iter([
        ("timestamp", Arc::new(Int64Array::from(ts)) as _),
        ("exchangeordertype", Arc::new(UInt32Array::from(types)) as _),
        (
            "security_code",
            Arc::new(UInt32Array::from(vec![1u32; n])) as _,
        ),
    ])
    .unwrap()
}

fn spec() -> FilterSpec {
    FilterSpec {
        order_types: Some((OrderTypeMatch::Exact, vec![64, 256, 2048, 4096, 4098])),
        securities: None,
        participants: None,
        dates: None,
        date_zone: Zone::default(),
        hours: Some(HoursSpec {
            start: 10 * HOUR_NS,
            end: 16 * HOUR_NS,
            zone: Zone::default(),
        }),
    }
}

/// UTC ns of a Sydney wall time on a day whose offset is `offset_h`.
fn syd(date: &str, h: i64, min: i64, s: i64, ns: i64, offset_h: i64) -> i64 {
    let day = time::parse_day(date).unwrap() as i64;
    day * time::DAY_NS + h * HOUR_NS + min * 60 * SECOND_NS + s * SECOND_NS + ns
        - offset_h * HOUR_NS
}

#[test]
fn trading_hour_edges_on_aest_and_aedt_days() {
    for (date, off) in [("2024-09-03", 10), ("2024-11-05", 11)] {
        let ts = vec![
            syd(date, 9, 59, 59, 999_999_999, off),
            syd(date, 10, 0, 0, 0, off),
            syd(date, 15, 59, 59, 999_999_999, off),
            syd(date, 16, 0, 0, 0, off),
        ];
        let mut p = Predicate::new(&spec());
        let mask = p.evaluate(&batch(ts, vec![64; 4])).unwrap();
        assert_eq!(
            mask.iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>(),
            [false, true, true, false],
            "{date}"
        );
    }
}

#[test]
fn order_types_exact_versus_bits() {
    let t = syd("2024-09-03", 11, 0, 0, 0, 10);
    let types = vec![64, 66, 2048, 2050, 1, 4098, 0];
    let mut exact = Predicate::new(&spec());
    let kept: Vec<bool> = exact
        .evaluate(&batch(vec![t; 7], types.clone()))
        .unwrap()
        .iter()
        .map(Option::unwrap_or_default)
        .collect();
    assert_eq!(kept, [true, false, true, false, false, true, false]);
    let mut s = spec();
    s.order_types = Some((OrderTypeMatch::AnyBit, vec![64, 256, 2048, 4096]));
    let kept: Vec<bool> = Predicate::new(&s)
        .evaluate(&batch(vec![t; 7], types))
        .unwrap()
        .iter()
        .map(Option::unwrap_or_default)
        .collect();
    assert_eq!(kept, [true, true, true, true, false, true, false]);
}

#[test]
fn legacy_seed_rule_keeps_the_whole_end_hour_at_fixed_plus_10() {
    // The seed: fixed UTC+10, 10 <= hour <= 16. On an AEDT day 16:30 Sydney is 15:30 at +10.
    let mut s = spec();
    s.hours = Some(HoursSpec {
        start: 10 * HOUR_NS,
        end: 17 * HOUR_NS,
        zone: Zone::Fixed(36000),
    });
    let ts = vec![
        syd("2024-11-05", 10, 30, 0, 0, 11), // 09:30 at +10: dropped
        syd("2024-11-05", 17, 30, 0, 0, 11), // 16:30 at +10: kept
        syd("2024-11-05", 18, 0, 0, 0, 11),  // 17:00 at +10: dropped
    ];
    let kept: Vec<bool> = Predicate::new(&s)
        .evaluate(&batch(ts, vec![64; 3]))
        .unwrap()
        .iter()
        .map(Option::unwrap_or_default)
        .collect();
    assert_eq!(kept, [false, true, false]);
}

#[test]
fn dates_are_local_and_inclusive() {
    let mut s = spec();
    s.hours = None;
    s.dates = Some((
        Some(time::parse_day("2024-10-07").unwrap()),
        Some(time::parse_day("2024-10-08").unwrap()),
    ));
    // 2024-10-06T13:30Z is 2024-10-07 00:30 AEDT: inside although its UTC date is the 6th.
    let ts = vec![
        syd("2024-10-06", 23, 59, 59, 0, 11),
        syd("2024-10-07", 0, 30, 0, 0, 11),
        syd("2024-10-08", 23, 59, 59, 999_999_999, 11),
        syd("2024-10-09", 0, 0, 0, 0, 11),
    ];
    let kept: Vec<bool> = Predicate::new(&s)
        .evaluate(&batch(ts, vec![64; 4]))
        .unwrap()
        .iter()
        .map(Option::unwrap_or_default)
        .collect();
    assert_eq!(kept, [false, true, true, false]);
}

#[test]
fn a_missing_column_is_named() {
    let b = RecordBatch::try_from_iter([("price", Arc::new(Int64Array::from(vec![1i64])) as _)])
        .unwrap();
    let err = Predicate::new(&spec()).evaluate(&b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "filter needs column `exchangeordertype`, which the input does not have"
    );
}
