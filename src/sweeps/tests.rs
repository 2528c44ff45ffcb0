use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, UInt32Array, UInt64Array};

use super::state::{SweepError, SweepState};
use crate::table::Cell;
use crate::time::Zone;

/// (order_id, timestamp, sequence, leaves, matched, reason): a sweep of 300 at 3350, quote
/// 3330/3340, security 110621, participant 7, side 1.
fn orders(rows: &[(u64, i64, i64, u64, u64, u32)]) -> RecordBatch {
    let n = rows.len();
    let u32s = |v: u32| Arc::new(UInt32Array::from(vec![v; n])) as ArrayRef;
    let i64s = |v: i64| Arc::new(Int64Array::from(vec![v; n])) as ArrayRef;
    RecordBatch::try_from_iter([
        (
            "order_id",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        (
            "timestamp",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))) as _,
        ),
        (
            "sequence",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))) as _,
        ),
        ("security_code", u32s(110621)),
        ("side", u32s(1)),
        ("price", i64s(3350)),
        (
            "quantity",
            Arc::new(UInt64Array::from(vec![300u64; n])) as _,
        ),
        (
            "leavesquantity",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))) as _,
        ),
        (
            "totalmatchedquantity",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.4))) as _,
        ),
        ("exchangeordertype", u32s(2048)),
        (
            "changereason",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.5))) as _,
        ),
        ("national_bid", i64s(3330)),
        ("national_offer", i64s(3340)),
        ("participantid", u32s(7)),
    ])
    .unwrap()
}

/// (orderid, tradetime, quantity, dealsource) at 3335 with quote 3330/3340.
fn trades(rows: &[(u64, i64, u64, u32)]) -> RecordBatch {
    let n = rows.len();
    RecordBatch::try_from_iter([
        (
            "orderid",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        (
            "tradetime",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))) as _,
        ),
        (
            "securitycode",
            Arc::new(UInt32Array::from(vec![110621u32; n])) as _,
        ),
        (
            "dealsource",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.3))) as _,
        ),
        (
            "tradeprice",
            Arc::new(Int64Array::from(vec![3335i64; n])) as _,
        ),
        (
            "quantity",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))) as _,
        ),
        (
            "passiveaggressive",
            Arc::new(UInt32Array::from(vec![1u32; n])) as _,
        ),
        (
            "nationalbidpricesnapshot",
            Arc::new(Int64Array::from(vec![3330i64; n])) as _,
        ),
        (
            "nationalofferpricesnapshot",
            Arc::new(Int64Array::from(vec![3340i64; n])) as _,
        ),
    ])
    .unwrap()
}

const T0: i64 = 1_725_494_400_000_000_000;

/// An order's events split across partial states, in any order, reduce as if folded in one:
/// the arrival is the smallest (timestamp, sequence), the final the largest.
#[test]
fn partial_states_merge_to_the_state_of_all_rows() {
    let events = [
        (1, T0 + 500, 3, 0, 300, 3),
        (1, T0, 1, 300, 0, 6),
        (1, T0 + 100, 2, 100, 200, 3),
    ];
    let fills = [
        (1, T0 + 100, 200, 47),
        (1, T0 + 500, 100, 1),
        (99, T0, 5, 1),
    ];
    let mut whole = SweepState::new(Zone::default());
    whole.update_orders(&orders(&events)).unwrap();
    whole.update_trades(&trades(&fills)).unwrap();
    let whole = whole.finish().unwrap();

    let mut a = SweepState::new(Zone::default());
    a.update_orders(&orders(&events[..1])).unwrap();
    a.update_trades(&trades(&fills[2..])).unwrap();
    let mut b = SweepState::new(Zone::default());
    b.update_trades(&trades(&fills[..2])).unwrap();
    b.update_orders(&orders(&events[1..])).unwrap();
    b.merge(a);
    let merged = b.finish().unwrap();
    assert_eq!(merged, whole);

    let sweeps = &whole[0];
    assert_eq!(sweeps.rows.len(), 1);
    let row = &sweeps.rows[0];
    let col = |name: &str| &row[sweeps.columns.iter().position(|c| c == name).unwrap()];
    assert_eq!(col("arrival_ts"), &Cell::Int(T0.into()));
    assert_eq!(col("events"), &Cell::Int(3));
    assert_eq!(col("final_leaves"), &Cell::Int(0));
    assert_eq!(col("fill_group"), &Cell::Str("G1".into()));
    assert_eq!(col("cp_qty"), &Cell::Int(200));
    assert_eq!(col("lit_qty"), &Cell::Int(100));
    // Last fill 500 ns after arrival: immediate.
    assert_eq!(col("scenario"), &Cell::Str("A".into()));
    // Bought at 3335 against an arrival mid of 3335: no cost.
    assert_eq!(col("cost_vs_arrival_bps"), &Cell::Float(0.0));
    // The trade of order 99, not in the orders, is counted as unmatched.
    let days = &whole[3];
    assert_eq!(days.rows[0].last(), Some(&Cell::Int(1)));
}

/// Two events of one order at one (timestamp, sequence) are found in the middle of its events
/// too, not only as its arrival or final event, and across partial states.
#[test]
fn a_repeated_position_is_found_wherever_it_is() {
    let mut a = SweepState::new(Zone::default());
    a.update_orders(&orders(&[
        (5, T0, 1, 300, 0, 6),
        (5, T0 + 10, 2, 300, 0, 5),
    ]))
    .unwrap();
    let mut b = SweepState::new(Zone::default());
    b.update_orders(&orders(&[
        (5, T0 + 10, 2, 200, 100, 3),
        (5, T0 + 20, 3, 0, 300, 3),
    ]))
    .unwrap();
    a.merge(b);
    assert_eq!(
        a.finish(),
        Err(SweepError::DuplicateEvent {
            order_id: 5,
            timestamp: T0 + 10,
            sequence: 2
        })
    );
}
