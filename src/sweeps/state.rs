//! The sweep fill analysis as a mergeable state (docs/sweep-analysis.md).
//!
//! Order events are reduced per order as they arrive, in any order: the arrival event is the
//! smallest (timestamp, sequence) seen and the final event the largest, so neither file position
//! nor the order of batches, files or workers can change the result. Trade rows are folded per
//! order id into exact integer sums (quantities, Σ price·quantity and Σ quantity·time in 128
//! bits); nothing needs the order while trades are read, because every per-sweep figure is a
//! sum over its trades, combined with the order only when tables are finished. Partial states
//! from parallel workers merge exactly (minimum, maximum, sums), and `finish` derives every
//! float from one division of two exact integers, as the spec prescribes.
//!
//! Every (order id, timestamp, sequence) seen is kept, so that two events of one order at the
//! same position are found wherever they are, not only when one of them is the arrival or the
//! final event.

use std::collections::BTreeMap;

use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use arrow_schema::DataType;
use rustc_hash::FxHashMap;

use super::tables::{Finished, Summary, Sweep, sweep_schema};
use crate::schema::{col, trade};
use crate::table::{Cell, Runs, Table};
use crate::time::{LocalClock, Zone};

/// Why a batch could not be folded in, or the analysis could not be finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SweepError {
    #[error("the sweep analysis needs column `{name}`, which the {file} rows do not have")]
    MissingColumn {
        name: &'static str,
        file: &'static str,
    },
    #[error("column `{name}` is {found}, but the sweep analysis needs {expected}")]
    WrongType {
        name: &'static str,
        expected: DataType,
        found: DataType,
    },
    #[error("column `{name}` has {count} null values; the sweep analysis needs every value")]
    Nulls { name: &'static str, count: usize },
    #[error(
        "order {order_id} has two events at timestamp {timestamp}, sequence {sequence}; \
         `sequence` must tell every event of an order apart"
    )]
    DuplicateEvent {
        order_id: u64,
        timestamp: i64,
        sequence: i64,
    },
    #[error("the sweeps table: {0}")]
    Table(String),
}

/// The order columns the analysis reads.
pub const ORDER_COLUMNS: [&str; 14] = [
    col::ORDER_ID,
    col::TIMESTAMP,
    col::SEQUENCE,
    col::SECURITY,
    col::SIDE,
    col::PRICE,
    col::QUANTITY,
    col::LEAVES,
    col::MATCHED,
    col::ORDER_TYPE,
    col::CHANGE_REASON,
    col::NATIONAL_BID,
    col::NATIONAL_OFFER,
    col::PARTICIPANT,
];

/// The trade columns the analysis reads.
pub const TRADE_COLUMNS: [&str; 9] = [
    trade::ORDER_ID,
    trade::TIME,
    trade::SECURITY,
    trade::DEALSOURCE,
    trade::PRICE,
    trade::QUANTITY,
    trade::PASSIVE_AGGRESSIVE,
    trade::NATIONAL_BID,
    trade::NATIONAL_OFFER,
];

/// Any of the Centre Point bits: 64 Centre Point, 256 crossing, 2048 sweep, 4096 block.
const CENTRE_POINT_BITS: u32 = 6464;
const SWEEP_BIT: u32 = 2048;
/// Change reasons of a true arrival: 6 new order, 29 new inactive order.
const ARRIVAL_REASONS: [u32; 2] = [6, 29];
pub(super) const NS_PER_SECOND: i64 = 1_000_000_000;

fn values<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &'static str,
    file: &'static str,
) -> Result<&'a [T::Native], SweepError> {
    let array = batch
        .column_by_name(name)
        .ok_or(SweepError::MissingColumn { name, file })?;
    let Some(typed) = array.as_any().downcast_ref::<PrimitiveArray<T>>() else {
        return Err(SweepError::WrongType {
            name,
            expected: T::DATA_TYPE,
            found: array.data_type().clone(),
        });
    };
    // A null slot's value is unspecified, so folding it would make up a number.
    if typed.null_count() > 0 {
        return Err(SweepError::Nulls {
            name,
            count: typed.null_count(),
        });
    }
    Ok(typed.values())
}

/// What the arrival event says of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Arrival {
    pub(super) ts: i64,
    pub(super) seq: i64,
    pub(super) security: u32,
    pub(super) participant: u32,
    pub(super) side: u32,
    pub(super) price: i64,
    pub(super) quantity: u64,
    pub(super) order_type: u32,
    pub(super) reason: u32,
    pub(super) bid: i64,
    pub(super) offer: i64,
}

/// What the final event says of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Final {
    pub(super) ts: i64,
    pub(super) seq: i64,
    pub(super) reason: u32,
    pub(super) leaves: u64,
    pub(super) matched: u64,
}

/// One order, reduced over the events seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Order {
    pub(super) arrival: Arrival,
    pub(super) last: Final,
    pub(super) events: u64,
}

impl Order {
    fn merge(&mut self, other: &Order) {
        if (other.arrival.ts, other.arrival.seq) < (self.arrival.ts, self.arrival.seq) {
            self.arrival = other.arrival;
        }
        if (other.last.ts, other.last.seq) > (self.last.ts, self.last.seq) {
            self.last = other.last;
        }
        self.events += other.events;
    }
}

/// An order's trade rows, folded into exact sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Fills {
    pub(super) fills: u64,
    pub(super) quantity: u64,
    pub(super) notional: i128,
    pub(super) first_ts: i64,
    pub(super) last_ts: i64,
    pub(super) cp: u64,
    pub(super) lit: u64,
    pub(super) auction: u64,
    pub(super) other: u64,
    pub(super) aggressive: u64,
    /// Σ quantity · tradetime: with the arrival time, Σ q·(t − arrival) = this − arrival · Σ q.
    pub(super) quantity_time: i128,
    /// Σ price · quantity and Σ quantity · (bid + offer) over trades with a usable snapshot.
    pub(super) usable_notional: i128,
    pub(super) usable_mid_value: i128,
    /// Trade rows by the trade's own security and local date, for the accounting table.
    pub(super) rows_by_day: Vec<(u32, i32, u64)>,
}

impl Fills {
    fn add_day(&mut self, security: u32, day: i32, n: u64) {
        match self
            .rows_by_day
            .iter_mut()
            .find(|(s, d, _)| *s == security && *d == day)
        {
            Some(e) => e.2 += n,
            None => self.rows_by_day.push((security, day, n)),
        }
    }

    fn merge(&mut self, o: Fills) {
        if o.fills == 0 {
            return;
        }
        if self.fills == 0 {
            self.first_ts = o.first_ts;
            self.last_ts = o.last_ts;
        } else {
            self.first_ts = self.first_ts.min(o.first_ts);
            self.last_ts = self.last_ts.max(o.last_ts);
        }
        self.fills += o.fills;
        self.quantity += o.quantity;
        self.notional += o.notional;
        self.cp += o.cp;
        self.lit += o.lit;
        self.auction += o.auction;
        self.other += o.other;
        self.aggressive += o.aggressive;
        self.quantity_time += o.quantity_time;
        self.usable_notional += o.usable_notional;
        self.usable_mid_value += o.usable_mid_value;
        for (s, d, n) in o.rows_by_day {
            self.add_day(s, d, n);
        }
    }
}

/// A quote is usable when both sides are positive and it is not crossed (locked is usable).
fn usable(bid: i64, offer: i64) -> bool {
    bid > 0 && offer > 0 && bid <= offer
}

/// The venue class of a trade by its `dealsource` (dd.txt).
fn add_venue(f: &mut Fills, dealsource: u32, q: u64) {
    match dealsource {
        46..=52 => f.cp += q,
        1 | 44 => f.lit += q,
        20 | 45 => f.auction += q,
        _ => f.other += q,
    }
}

/// The analysis of the rows seen so far.
#[derive(Clone, Debug)]
pub struct SweepState {
    zone: Zone,
    clock: LocalClock,
    orders: FxHashMap<u64, Order>,
    fills: FxHashMap<u64, Fills>,
    /// Every (order id, timestamp, sequence), checked for repeats when finished.
    positions: Vec<(u64, i64, i64)>,
    order_rows: u64,
    trade_rows: u64,
}

impl SweepState {
    pub fn new(zone: Zone) -> Self {
        SweepState {
            zone,
            clock: LocalClock::new(zone),
            orders: FxHashMap::default(),
            fills: FxHashMap::default(),
            positions: Vec::new(),
            order_rows: 0,
            trade_rows: 0,
        }
    }

    /// Order rows and trade rows folded in so far.
    pub fn rows(&self) -> (u64, u64) {
        (self.order_rows, self.trade_rows)
    }

    /// Folds in a batch of order events.
    pub fn update_orders(&mut self, batch: &RecordBatch) -> Result<(), SweepError> {
        const F: &str = "orders";
        let id = values::<UInt64Type>(batch, col::ORDER_ID, F)?;
        let ts = values::<Int64Type>(batch, col::TIMESTAMP, F)?;
        let seq = values::<Int64Type>(batch, col::SEQUENCE, F)?;
        let security = values::<UInt32Type>(batch, col::SECURITY, F)?;
        let side = values::<UInt32Type>(batch, col::SIDE, F)?;
        let price = values::<Int64Type>(batch, col::PRICE, F)?;
        let quantity = values::<UInt64Type>(batch, col::QUANTITY, F)?;
        let leaves = values::<UInt64Type>(batch, col::LEAVES, F)?;
        let matched = values::<UInt64Type>(batch, col::MATCHED, F)?;
        let order_type = values::<UInt32Type>(batch, col::ORDER_TYPE, F)?;
        let reason = values::<UInt32Type>(batch, col::CHANGE_REASON, F)?;
        let bid = values::<Int64Type>(batch, col::NATIONAL_BID, F)?;
        let offer = values::<Int64Type>(batch, col::NATIONAL_OFFER, F)?;
        let participant = values::<UInt32Type>(batch, col::PARTICIPANT, F)?;
        self.positions.reserve(id.len());
        for i in 0..id.len() {
            self.positions.push((id[i], ts[i], seq[i]));
            let event = Order {
                arrival: Arrival {
                    ts: ts[i],
                    seq: seq[i],
                    security: security[i],
                    participant: participant[i],
                    side: side[i],
                    price: price[i],
                    quantity: quantity[i],
                    order_type: order_type[i],
                    reason: reason[i],
                    bid: bid[i],
                    offer: offer[i],
                },
                last: Final {
                    ts: ts[i],
                    seq: seq[i],
                    reason: reason[i],
                    leaves: leaves[i],
                    matched: matched[i],
                },
                events: 1,
            };
            self.orders
                .entry(id[i])
                .and_modify(|o| o.merge(&event))
                .or_insert(event);
        }
        self.order_rows += id.len() as u64;
        Ok(())
    }

    /// Folds in a batch of trade rows.
    pub fn update_trades(&mut self, batch: &RecordBatch) -> Result<(), SweepError> {
        const F: &str = "trades";
        let id = values::<UInt64Type>(batch, trade::ORDER_ID, F)?;
        let time = values::<Int64Type>(batch, trade::TIME, F)?;
        let security = values::<UInt32Type>(batch, trade::SECURITY, F)?;
        let dealsource = values::<UInt32Type>(batch, trade::DEALSOURCE, F)?;
        let price = values::<Int64Type>(batch, trade::PRICE, F)?;
        let quantity = values::<UInt64Type>(batch, trade::QUANTITY, F)?;
        let pa = values::<UInt32Type>(batch, trade::PASSIVE_AGGRESSIVE, F)?;
        let bid = values::<Int64Type>(batch, trade::NATIONAL_BID, F)?;
        let offer = values::<Int64Type>(batch, trade::NATIONAL_OFFER, F)?;
        for i in 0..id.len() {
            let (t, q) = (time[i], quantity[i]);
            let day = self.clock.local_day(t);
            let f = self.fills.entry(id[i]).or_default();
            if f.fills == 0 {
                f.first_ts = t;
                f.last_ts = t;
            } else {
                f.first_ts = f.first_ts.min(t);
                f.last_ts = f.last_ts.max(t);
            }
            f.fills += 1;
            f.quantity += q;
            let pq = i128::from(price[i]) * i128::from(q);
            f.notional += pq;
            add_venue(f, dealsource[i], q);
            if pa[i] == 1 {
                f.aggressive += q;
            }
            f.quantity_time += i128::from(q) * i128::from(t);
            if usable(bid[i], offer[i]) {
                f.usable_notional += pq;
                f.usable_mid_value += i128::from(q) * (i128::from(bid[i]) + i128::from(offer[i]));
            }
            f.add_day(security[i], day, 1);
        }
        self.trade_rows += id.len() as u64;
        Ok(())
    }

    /// Adds another partial state (of the same zone): the result is the state of all their
    /// rows together, in whatever order they came.
    pub fn merge(&mut self, other: SweepState) {
        for (id, o) in other.orders {
            self.orders
                .entry(id)
                .and_modify(|mine| mine.merge(&o))
                .or_insert(o);
        }
        for (id, f) in other.fills {
            self.fills.entry(id).or_default().merge(f);
        }
        self.positions.extend(other.positions);
        self.order_rows += other.order_rows;
        self.trade_rows += other.trade_rows;
    }

    /// The four tables, or the first repeated event position.
    pub fn finish(self) -> Result<Vec<Table>, SweepError> {
        let runs = Runs::new(sweep_schema(), None).map_err(|e| SweepError::Table(e.to_string()))?;
        self.finish_part()?
            .into_tables(runs)
            .map_err(|e| SweepError::Table(e.to_string()))
    }

    /// What this state contributes to the tables, before they are put in order: partial results
    /// of states that hold disjoint sets of orders (partitions by order id) merge exactly.
    pub fn finish_part(mut self) -> Result<Finished, SweepError> {
        self.positions.sort_unstable();
        if let Some(w) = self.positions.windows(2).find(|w| w[0] == w[1]) {
            return Err(SweepError::DuplicateEvent {
                order_id: w[0].0,
                timestamp: w[0].1,
                sequence: w[0].2,
            });
        }
        drop(std::mem::take(&mut self.positions));
        let mut clock = LocalClock::new(self.zone);
        let mut days: BTreeMap<(u32, i32), [u64; 12]> = BTreeMap::new();
        let mut groups: BTreeMap<(u32, i32, &'static str), Summary> = BTreeMap::new();
        let mut scenarios: BTreeMap<(u32, i32, &'static str), Summary> = BTreeMap::new();
        let mut sweeps: Vec<(u64, Vec<Cell>)> = Vec::new();
        let empty = Fills::default();
        for (&id, o) in &self.orders {
            let a = &o.arrival;
            let day = clock.local_day(a.ts);
            let is_cp = a.order_type & CENTRE_POINT_BITS != 0;
            let is_sweep = a.order_type & SWEEP_BIT != 0;
            let known = ARRIVAL_REASONS.contains(&a.reason);
            let quote_ok = usable(a.bid, a.offer);
            let traded = self.fills.contains_key(&id);
            let d = days.entry((a.security, day)).or_default();
            d[0] += o.events;
            d[1] += 1;
            d[2] += u64::from(is_cp);
            d[3] += u64::from(is_sweep);
            d[4] += u64::from(is_cp && traded);
            d[5] += u64::from(is_sweep && traded);
            d[6] += u64::from(is_sweep && !known);
            d[7] += u64::from(is_sweep && known && !quote_ok);
            if !is_sweep {
                continue;
            }
            let f = self.fills.get(&id).unwrap_or(&empty);
            let s = Sweep::new(o, f, known, quote_ok);
            groups
                .entry((a.security, day, s.group))
                .or_default()
                .add(&s);
            scenarios
                .entry((a.security, day, s.scenario))
                .or_default()
                .add(&s);
            sweeps.push((id, s.row(id, day)));
        }
        for (id, f) in &self.fills {
            let order = self.orders.get(id);
            let is_cp = order.is_some_and(|o| o.arrival.order_type & CENTRE_POINT_BITS != 0);
            let is_sweep = order.is_some_and(|o| o.arrival.order_type & SWEEP_BIT != 0);
            for &(security, day, n) in &f.rows_by_day {
                let d = days.entry((security, day)).or_default();
                d[8] += n;
                d[9] += if is_cp { n } else { 0 };
                d[10] += if is_sweep { n } else { 0 };
                d[11] += if order.is_none() { n } else { 0 };
            }
        }
        Ok(Finished {
            sweeps,
            groups,
            scenarios,
            days,
        })
    }
}
