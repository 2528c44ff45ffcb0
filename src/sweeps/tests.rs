use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, UInt32Array, UInt64Array};

use super::state::{SweepError, SweepState};
use crate::table::{Cell, Table};
use crate::time::Zone;

const T0: i64 = 1_725_494_400_000_000_000;

/// One order event, every field the analysis reads.
#[derive(Clone, Copy)]
struct Ev {
    id: u64,
    ts: i64,
    seq: i64,
    side: u32,
    qty: u64,
    leaves: u64,
    matched: u64,
    order_type: u32,
    reason: u32,
    bid: i64,
    offer: i64,
}

impl Ev {
    /// A buy sweep's insert of 100 at `ts`, quote 3330/3340.
    fn insert(id: u64, ts: i64) -> Self {
        Ev {
            id,
            ts,
            seq: 1,
            side: 1,
            qty: 100,
            leaves: 100,
            matched: 0,
            order_type: 2048,
            reason: 6,
            bid: 3330,
            offer: 3340,
        }
    }

    /// A later event of the same order: `leaves` open and `matched` filled, reason 3 (trade).
    fn then(self, ts: i64, leaves: u64, matched: u64) -> Self {
        Ev {
            ts,
            seq: self.seq + 1,
            leaves,
            matched,
            reason: 3,
            ..self
        }
    }
}

fn events(rows: &[Ev]) -> RecordBatch {
    let col_u64 = |f: fn(&Ev) -> u64| Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)));
    let col_i64 = |f: fn(&Ev) -> i64| Arc::new(Int64Array::from_iter_values(rows.iter().map(f)));
    let col_u32 = |f: fn(&Ev) -> u32| Arc::new(UInt32Array::from_iter_values(rows.iter().map(f)));
    RecordBatch::try_from_iter([
        ("order_id", col_u64(|e| e.id) as ArrayRef),
        ("timestamp", col_i64(|e| e.ts) as _),
        ("sequence", col_i64(|e| e.seq) as _),
        ("security_code", col_u32(|_| 110621) as _),
        ("side", col_u32(|e| e.side) as _),
        ("price", col_i64(|_| 3350) as _),
        ("quantity", col_u64(|e| e.qty) as _),
        ("leavesquantity", col_u64(|e| e.leaves) as _),
        ("totalmatchedquantity", col_u64(|e| e.matched) as _),
        ("exchangeordertype", col_u32(|e| e.order_type) as _),
        ("changereason", col_u32(|e| e.reason) as _),
        ("national_bid", col_i64(|e| e.bid) as _),
        ("national_offer", col_i64(|e| e.offer) as _),
        ("participantid", col_u32(|_| 7) as _),
    ])
    .unwrap()
}

/// Trade rows `(order, time, quantity, dealsource, price)`, quote 3330/3340, aggressive.
type Fill = (u64, i64, u64, u32, i64);

fn trades(fills: &[Fill]) -> RecordBatch {
    let n = fills.len();
    RecordBatch::try_from_iter([
        (
            "orderid",
            Arc::new(UInt64Array::from_iter_values(fills.iter().map(|f| f.0))) as ArrayRef,
        ),
        (
            "tradetime",
            Arc::new(Int64Array::from_iter_values(fills.iter().map(|f| f.1))) as _,
        ),
        (
            "securitycode",
            Arc::new(UInt32Array::from(vec![110621u32; n])) as _,
        ),
        (
            "dealsource",
            Arc::new(UInt32Array::from_iter_values(fills.iter().map(|f| f.3))) as _,
        ),
        (
            "tradeprice",
            Arc::new(Int64Array::from_iter_values(fills.iter().map(|f| f.4))) as _,
        ),
        (
            "quantity",
            Arc::new(UInt64Array::from_iter_values(fills.iter().map(|f| f.2))) as _,
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

/// A state of `evs` and `fills`.
fn state(evs: &[Ev], fills: &[Fill]) -> SweepState {
    let mut s = SweepState::new(Zone::default());
    s.update_orders(&events(evs)).unwrap();
    s.update_trades(&trades(fills)).unwrap();
    s
}

/// The four tables of `evs` and `fills`.
fn analyse(evs: &[Ev], fills: &[Fill]) -> Vec<Table> {
    cells(state(evs, fills).finish().unwrap())
}

/// Tables with their rows as cells, to look into.
fn cells(tables: Vec<Table>) -> Vec<Table> {
    tables.into_iter().map(Table::into_cells).collect()
}

/// Each table's CSV text.
fn csv(tables: &[Table]) -> Vec<String> {
    tables
        .iter()
        .map(|t| String::from_utf8(t.to_csv().unwrap()).unwrap())
        .collect()
}

/// An order's events split across partial states, in any order, reduce as if folded in one:
/// the arrival is the smallest (timestamp, sequence), the final the largest.
#[test]
fn partial_states_merge_to_the_state_of_all_rows() {
    let insert = Ev {
        qty: 300,
        leaves: 300,
        ..Ev::insert(1, T0)
    };
    let evs = [
        insert.then(T0 + 100, 100, 200).then(T0 + 500, 0, 300),
        insert,
        insert.then(T0 + 100, 100, 200),
    ];
    let fills = [
        (1, T0 + 100, 200, 47, 3335),
        (1, T0 + 500, 100, 1, 3335),
        (99, T0, 5, 1, 3335),
    ];
    let whole = analyse(&evs, &fills);
    let mut b = state(&evs[1..], &fills[..2]);
    b.merge(state(&evs[..1], &fills[2..]));
    assert_eq!(csv(&b.finish().unwrap()), csv(&whole));

    assert_eq!(whole[0].rows.len(), 1);
    assert_eq!(cell(&whole, 1, "arrival_ts"), Cell::Int(T0.into()));
    assert_eq!(cell(&whole, 1, "events"), Cell::Int(3));
    assert_eq!(cell(&whole, 1, "final_leaves"), Cell::Int(0));
    assert_eq!(cell(&whole, 1, "fill_group"), Cell::Str("G1".into()));
    assert_eq!(cell(&whole, 1, "cp_qty"), Cell::Int(200));
    assert_eq!(cell(&whole, 1, "lit_qty"), Cell::Int(100));
    // Last fill 500 ns after arrival: immediate.
    assert_eq!(cell(&whole, 1, "scenario"), Cell::Str("A".into()));
    // Bought at 3335 against an arrival mid of 3335: no cost.
    assert_eq!(cell(&whole, 1, "cost_vs_arrival_bps"), Cell::Float(0.0));
    // The trade of order 99, not in the orders, is counted as unmatched.
    assert_eq!(whole[3].rows[0].last(), Some(&Cell::Int(1)));
}

/// Two events of one order at one (timestamp, sequence) are found in the middle of its events
/// too, not only as its arrival or final event, and across partial states.
#[test]
fn a_repeated_position_is_found_wherever_it_is() {
    let second = Ev::insert(5, T0).then(T0 + 10, 100, 0);
    let mut a = state(&[Ev::insert(5, T0), second], &[]);
    a.merge(state(&[second, second.then(T0 + 20, 0, 100)], &[]));
    assert_eq!(
        a.finish().err(),
        Some(SweepError::DuplicateEvent {
            order_id: 5,
            timestamp: T0 + 10,
            sequence: 2
        })
    );
}

/// The value of `column` in the `sweeps` row of `id`.
fn cell(tables: &[Table], id: u64, column: &str) -> Cell {
    let t = &tables[0];
    let c = t.columns.iter().position(|n| n == column).unwrap();
    let row = t
        .rows
        .iter()
        .find(|r| r[0] == Cell::Int(id.into()))
        .unwrap_or_else(|| panic!("no sweep {id}"));
    row[c].clone()
}

const SECOND: i64 = 1_000_000_000;

/// Scenarios from arrival, rules in order: C under 99 % of the arrival quantity (exactly 99 % is
/// full), U full with the arrival unknown, A within 1 s (exactly 1 s is B), B later; and the
/// two amend cases the spec names, where group and scenario differ.
#[test]
fn scenarios_and_groups_follow_the_rules_in_order() {
    let i = |id| Ev::insert(id, T0);
    let evs = [
        // 98 of 100: C, G2.
        i(1),
        i(1).then(T0 + 10, 2, 98),
        // 99 of 100 within 1 s: A, G2.
        i(2),
        i(2).then(T0 + 10, 1, 99),
        // Full, last fill exactly 1 s after arrival: B.
        i(3),
        i(3).then(T0 + SECOND, 0, 100),
        // Full at once, but the first event is an amend (reason 3), not an insert: U.
        Ev {
            reason: 3,
            ..i(4).then(T0, 0, 100)
        },
        // Amended down from 100 to 40, then filled: G1 (no leaves) but C (40 of the arrival's 100).
        i(5),
        Ev {
            qty: 40,
            leaves: 40,
            reason: 5,
            ..i(5).then(T0 + 5, 40, 0)
        },
        Ev {
            qty: 40,
            ..i(5).then(T0 + 5, 0, 40)
        }
        .then(T0 + 20, 0, 40),
        // Filled its arrival 100 at once, then amended up to 200: G2 (leaves 100, matched 100) but A.
        i(6),
        i(6).then(T0 + 10, 0, 100),
        Ev {
            qty: 200,
            reason: 5,
            ..i(6).then(T0 + 10, 0, 100)
        }
        .then(T0 + 30, 100, 100),
    ];
    let fills = [
        (1, T0 + 10, 98, 47, 3335),
        (2, T0 + 10, 99, 47, 3335),
        (3, T0 + SECOND, 100, 1, 3340),
        (4, T0, 100, 47, 3335),
        (5, T0 + 20, 40, 47, 3335),
        (6, T0 + 10, 100, 47, 3335),
    ];
    let t = analyse(&evs, &fills);
    let expect = [
        (1, "G2", "C"),
        (2, "G2", "A"),
        (3, "G1", "B"),
        (4, "G1", "U"),
        (5, "G1", "C"),
        (6, "G2", "A"),
    ];
    for (id, group, scenario) in expect {
        assert_eq!(
            cell(&t, id, "fill_group"),
            Cell::Str(group.into()),
            "order {id}"
        );
        assert_eq!(
            cell(&t, id, "scenario"),
            Cell::Str(scenario.into()),
            "order {id}"
        );
    }
    // Unknown arrival: every metric measured from arrival is empty.
    for c in [
        "arrival_mid",
        "time_to_first_fill_ns",
        "cost_vs_arrival_bps",
    ] {
        assert_eq!(cell(&t, 4, c), Cell::Null, "{c}");
    }
    assert_eq!(cell(&t, 4, "cost_vs_trade_mid_bps"), Cell::Float(0.0));
    assert_eq!(
        cell(&t, 3, "time_to_last_fill_ns"),
        Cell::Int(SECOND.into())
    );
}

/// The quote policy: locked is usable (mid B, spread 0), crossed and zero are not (metrics
/// empty, counted as bad quotes), a half-unit mid is exact; an invalid side empties the costs.
#[test]
fn quotes_and_sides() {
    let i = |id| Ev::insert(id, T0);
    let evs = [
        Ev {
            bid: 3340,
            offer: 3340,
            ..i(1)
        },
        Ev {
            bid: 3345,
            offer: 3340,
            ..i(2)
        },
        Ev {
            bid: 0,
            offer: 3340,
            ..i(3)
        },
        Ev {
            bid: 3335,
            offer: 3336,
            ..i(4)
        },
        Ev { side: 3, ..i(5) },
    ];
    let fills: Vec<_> = (1..=5).map(|id| (id, T0 + 1, 100, 47, 3335)).collect();
    let t = analyse(&evs, &fills);
    assert_eq!(cell(&t, 1, "arrival_mid"), Cell::Float(3340.0));
    assert_eq!(cell(&t, 1, "arrival_spread_bps"), Cell::Float(0.0));
    // A buy at 3335 against a mid of 3340: 5/3340 better, a negative cost.
    assert_eq!(
        cell(&t, 1, "cost_vs_arrival_bps"),
        Cell::Float(10000.0 * -10.0 / 6680.0)
    );
    for id in [2, 3] {
        assert_eq!(cell(&t, id, "arrival_mid"), Cell::Null, "order {id}");
        assert_eq!(
            cell(&t, id, "cost_vs_arrival_bps"),
            Cell::Null,
            "order {id}"
        );
    }
    assert_eq!(cell(&t, 4, "arrival_mid"), Cell::Float(3335.5));
    assert_eq!(cell(&t, 5, "cost_vs_arrival_bps"), Cell::Null);
    assert_eq!(cell(&t, 5, "cost_vs_trade_mid_bps"), Cell::Null);
    assert_eq!(cell(&t, 5, "arrival_mid"), Cell::Float(3335.0));
    // security_days: 5 sweeps, 2 of them with a bad quote (crossed and zero).
    let days = &t[3];
    let col = |name: &str| days.columns.iter().position(|c| c == name).unwrap();
    assert_eq!(days.rows[0][col("sweeps")], Cell::Int(5));
    assert_eq!(days.rows[0][col("sweeps_bad_quote")], Cell::Int(2));
}

/// Dates are Sydney calendar dates of the arrival, across both daylight-saving switches.
#[test]
fn dates_across_both_daylight_saving_switches() {
    let at = |rfc: &str| {
        chrono::DateTime::parse_from_rfc3339(rfc)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    };
    let cases = [
        // AEST (+10) until 2024-10-06 02:00, then AEDT (+11).
        ("2024-10-05T13:59:59Z", "2024-10-05"),
        ("2024-10-05T14:00:00Z", "2024-10-06"),
        ("2024-10-06T12:59:59Z", "2024-10-06"),
        ("2024-10-06T13:00:00Z", "2024-10-07"),
        // AEDT (+11) until 2024-04-07 03:00, then AEST (+10).
        ("2024-04-06T12:59:59Z", "2024-04-06"),
        ("2024-04-06T13:00:00Z", "2024-04-07"),
        ("2024-04-07T13:59:59Z", "2024-04-07"),
        ("2024-04-07T14:00:00Z", "2024-04-08"),
    ];
    let evs: Vec<Ev> = cases
        .iter()
        .enumerate()
        .map(|(k, (ts, _))| Ev::insert(k as u64 + 1, at(ts)))
        .collect();
    let t = analyse(&evs, &[]);
    for (k, (ts, date)) in cases.iter().enumerate() {
        assert_eq!(
            cell(&t, k as u64 + 1, "date"),
            Cell::Str((*date).into()),
            "{ts}"
        );
    }
}

/// A notional beyond 64 bits cannot go in the sweeps table's Int64 column: the analysis fails,
/// naming the column and the value, rather than wrapping it.
#[test]
fn a_notional_beyond_64_bits_fails_naming_the_column() {
    let price = 5_000_000_000_000_000_000i64;
    let e = state(&[Ev::insert(1, T0)], &[(1, T0 + 10, 2, 47, price)])
        .finish()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("column `notional` holds 10000000000000000000, which does not fit Int64"),
        "{e}"
    );
}

/// A reduce shard hands its summaries' sums to the merge as JSON: sums past 64 bits (two
/// sweeps of notional 4·10^18 in one group) come back exact, and the tables finished from the
/// sums of two shards equal those of one state.
#[test]
fn summary_sums_past_64_bits_survive_the_trip_between_shards() {
    use super::tables::{Finished, sweep_schema};
    use crate::table::Runs;
    let price = 2_000_000_000_000_000_000i64;
    let big = |id| Ev {
        qty: 2,
        leaves: 2,
        ..Ev::insert(id, T0)
    };
    let evs = [big(1), big(2), Ev::insert(3, T0)];
    let fills = [
        (1, T0 + 10, 2, 47, price),
        (2, T0 + 10, 2, 47, price),
        (3, T0 + 10, 100, 47, 3335),
    ];
    let whole = csv(&cells(state(&evs, &fills).finish().unwrap()));
    let mut all = Finished::default();
    let mut runs = Runs::new(sweep_schema(), None).unwrap();
    let mut widest = 0i128;
    for (e, f) in [(&evs[..2], &fills[..2]), (&evs[2..], &fills[2..])] {
        let mut part = state(e, f).finish_part().unwrap();
        runs.push_memory(vec![part.take_run().unwrap()]);
        let json = serde_json::to_string(&part.into_sums()).unwrap();
        widest = json
            .split(|c: char| !c.is_ascii_digit() && c != '-')
            .filter_map(|t| t.parse::<i128>().ok())
            .map(i128::abs)
            .fold(widest, i128::max);
        all.merge(Finished::from_sums(serde_json::from_str(&json).unwrap()).unwrap());
    }
    assert!(widest > i128::from(i64::MAX), "the widest sum: {widest}");
    let merged = csv(&cells(all.into_tables(runs).unwrap()));
    assert_eq!(merged, whole);
}
