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

use crate::schema::{col, trade};
use crate::table::{Cell, Table};
use crate::time::{LocalClock, Zone, format_day};

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

/// The tables the analysis produces, in output order.
pub const TABLES: [&str; 4] = ["sweeps", "groups", "scenarios", "security_days"];

/// Any of the Centre Point bits: 64 Centre Point, 256 crossing, 2048 sweep, 4096 block.
const CENTRE_POINT_BITS: u32 = 6464;
const SWEEP_BIT: u32 = 2048;
/// Change reasons of a true arrival: 6 new order, 29 new inactive order.
const ARRIVAL_REASONS: [u32; 2] = [6, 29];
const NS_PER_SECOND: i64 = 1_000_000_000;

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
struct Arrival {
    ts: i64,
    seq: i64,
    security: u32,
    participant: u32,
    side: u32,
    price: i64,
    quantity: u64,
    order_type: u32,
    reason: u32,
    bid: i64,
    offer: i64,
}

/// What the final event says of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Final {
    ts: i64,
    seq: i64,
    reason: u32,
    leaves: u64,
    matched: u64,
}

/// One order, reduced over the events seen so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Order {
    arrival: Arrival,
    last: Final,
    events: u64,
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
struct Fills {
    fills: u64,
    quantity: u64,
    notional: i128,
    first_ts: i64,
    last_ts: i64,
    cp: u64,
    lit: u64,
    auction: u64,
    other: u64,
    aggressive: u64,
    /// Σ quantity · tradetime: with the arrival time, Σ q·(t − arrival) = this − arrival · Σ q.
    quantity_time: i128,
    /// Σ price · quantity and Σ quantity · (bid + offer) over trades with a usable snapshot.
    usable_notional: i128,
    usable_mid_value: i128,
    /// Trade rows by the trade's own security and local date, for the accounting table.
    rows_by_day: Vec<(u32, i32, u64)>,
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
        Ok(self.finish_part()?.into_tables())
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
            sweeps.push((id, s.row(id, o, f, day)));
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

/// A state's contribution to the four tables: per-sweep rows and the sums behind every summary
/// line, merged across partitions before the tables are put in order.
#[derive(Default)]
pub struct Finished {
    sweeps: Vec<(u64, Vec<Cell>)>,
    groups: BTreeMap<(u32, i32, &'static str), Summary>,
    scenarios: BTreeMap<(u32, i32, &'static str), Summary>,
    days: BTreeMap<(u32, i32), [u64; 12]>,
}

impl Finished {
    /// Adds the results of another partition (whose orders are not in this one).
    pub fn merge(&mut self, other: Finished) {
        self.sweeps.extend(other.sweeps);
        for (k, v) in other.groups {
            self.groups.entry(k).or_default().absorb(v);
        }
        for (k, v) in other.scenarios {
            self.scenarios.entry(k).or_default().absorb(v);
        }
        for (k, v) in other.days {
            let d = self.days.entry(k).or_default();
            for (a, b) in d.iter_mut().zip(v) {
                *a += b;
            }
        }
    }

    /// The four tables, each in its order.
    pub fn into_tables(self) -> Vec<Table> {
        let Finished {
            mut sweeps,
            groups,
            scenarios,
            days,
        } = self;
        sweeps.sort_unstable_by_key(|(id, _)| *id);
        vec![
            Table {
                name: TABLES[0],
                columns: SWEEP_COLUMNS.iter().map(|c| c.to_string()).collect(),
                rows: sweeps.into_iter().map(|(_, r)| r).collect(),
            },
            summary_table(TABLES[1], "fill_group", groups),
            summary_table(TABLES[2], "scenario", scenarios),
            Table {
                name: TABLES[3],
                columns: ["security_code", "date"]
                    .iter()
                    .chain(DAY_COLUMNS.iter())
                    .map(|c| c.to_string())
                    .collect(),
                rows: days
                    .into_iter()
                    .map(|((security, day), c)| {
                        let mut row = vec![Cell::Int(security.into()), Cell::Str(format_day(day))];
                        row.extend(c.iter().map(|&v| Cell::Int(v.into())));
                        row
                    })
                    .collect(),
            },
        ]
    }
}

/// The accounting columns of `security_days.csv`, after the key, in the order counted above.
const DAY_COLUMNS: [&str; 12] = [
    "order_events",
    "orders",
    "cp_orders",
    "sweeps",
    "cp_orders_traded",
    "sweeps_traded",
    "sweeps_unknown_arrival",
    "sweeps_bad_quote",
    "trade_rows",
    "cp_trade_rows",
    "sweep_trade_rows",
    "unmatched_trade_rows",
];

const SWEEP_COLUMNS: [&str; 33] = [
    "order_id",
    "security_code",
    "date",
    "participantid",
    "side",
    "arrival_ts",
    "arrival_reason",
    "events",
    "limit_price",
    "order_qty",
    "final_reason",
    "final_leaves",
    "final_matched",
    "fill_group",
    "fills",
    "filled_qty",
    "cp_qty",
    "lit_qty",
    "auction_qty",
    "other_qty",
    "aggressive_qty",
    "notional",
    "vwap",
    "first_fill_ts",
    "last_fill_ts",
    "scenario",
    "arrival_mid",
    "arrival_spread_bps",
    "time_to_first_fill_ns",
    "time_to_last_fill_ns",
    "vw_time_to_fill_ns",
    "cost_vs_arrival_bps",
    "cost_vs_trade_mid_bps",
];

const SUMMARY_COLUMNS: [&str; 15] = [
    "sweeps",
    "order_qty",
    "filled_qty",
    "fills",
    "cp_qty",
    "lit_qty",
    "auction_qty",
    "other_qty",
    "aggressive_qty",
    "fill_ratio",
    "mean_time_to_first_fill_ns",
    "mean_time_to_last_fill_ns",
    "vw_time_to_fill_ns",
    "cost_vs_arrival_bps",
    "cost_vs_trade_mid_bps",
];

/// `scale · num / den` as the spec computes it: both exact integers converted to f64 once.
fn ratio(num: i128, den: i128, scale: f64) -> f64 {
    scale * num as f64 / den as f64
}

fn int(v: impl Into<i128>) -> Cell {
    Cell::Int(v.into())
}

fn opt_int(v: Option<i128>) -> Cell {
    v.map_or(Cell::Null, Cell::Int)
}

fn opt_float(v: Option<f64>) -> Cell {
    v.map_or(Cell::Null, Cell::Float)
}

/// One sweep's derived figures: the exact numerators and denominators its costs and times come
/// from, kept for the summaries, which weight by them.
struct Sweep {
    group: &'static str,
    scenario: &'static str,
    order_qty: u64,
    filled: Fills,
    ttf: Option<i128>,
    ttl: Option<i128>,
    /// Σ q·(t − arrival) and Σ q, when the arrival is known and something filled.
    vw: Option<(i128, i128)>,
    /// s·(2·notional − A·filled) and A·filled.
    arrival_cost: Option<(i128, i128)>,
    /// s·(2·Nv − Mv) and Mv.
    trade_mid_cost: Option<(i128, i128)>,
}

impl Sweep {
    fn new(o: &Order, f: &Fills, known: bool, quote_ok: bool) -> Self {
        let a = &o.arrival;
        let group = if o.last.leaves == 0 {
            "G1"
        } else if o.last.matched > 0 {
            "G2"
        } else {
            "G3"
        };
        let filled = i128::from(f.quantity);
        let scenario = if filled == 0 || 100 * filled < 99 * i128::from(a.quantity) {
            "C"
        } else if !known {
            "U"
        } else if f.last_ts - a.ts < NS_PER_SECOND {
            "A"
        } else {
            "B"
        };
        let sign: Option<i128> = match a.side {
            1 => Some(1),
            2 => Some(-1),
            _ => None,
        };
        let arrival = i128::from(a.ts);
        let twice_mid = i128::from(a.bid) + i128::from(a.offer);
        let fills = known && f.fills > 0;
        Sweep {
            group,
            scenario,
            order_qty: a.quantity,
            ttf: fills.then(|| i128::from(f.first_ts) - arrival),
            ttl: fills.then(|| i128::from(f.last_ts) - arrival),
            vw: (known && filled > 0).then(|| (f.quantity_time - arrival * filled, filled)),
            arrival_cost: match sign {
                Some(s) if known && quote_ok && filled > 0 => Some((
                    s * (2 * f.notional - twice_mid * filled),
                    twice_mid * filled,
                )),
                _ => None,
            },
            trade_mid_cost: match sign {
                Some(s) if f.usable_mid_value > 0 => Some((
                    s * (2 * f.usable_notional - f.usable_mid_value),
                    f.usable_mid_value,
                )),
                _ => None,
            },
            filled: f.clone(),
        }
    }

    fn row(&self, id: u64, o: &Order, f: &Fills, day: i32) -> Vec<Cell> {
        let a = &o.arrival;
        let known_quote = ARRIVAL_REASONS.contains(&a.reason) && usable(a.bid, a.offer);
        let twice_mid = i128::from(a.bid) + i128::from(a.offer);
        let has_fills = f.fills > 0;
        vec![
            int(id),
            int(a.security),
            Cell::Str(format_day(day)),
            int(a.participant),
            int(a.side),
            int(a.ts),
            int(a.reason),
            int(o.events),
            int(a.price),
            int(a.quantity),
            int(o.last.reason),
            int(o.last.leaves),
            int(o.last.matched),
            Cell::Str(self.group.into()),
            int(f.fills),
            int(f.quantity),
            int(f.cp),
            int(f.lit),
            int(f.auction),
            int(f.other),
            int(f.aggressive),
            Cell::Int(f.notional),
            opt_float((f.quantity > 0).then(|| ratio(f.notional, f.quantity.into(), 1.0))),
            opt_int(has_fills.then(|| f.first_ts.into())),
            opt_int(has_fills.then(|| f.last_ts.into())),
            Cell::Str(self.scenario.into()),
            opt_float(known_quote.then(|| twice_mid as f64 / 2.0)),
            opt_float(
                known_quote
                    .then(|| ratio(i128::from(a.offer) - i128::from(a.bid), twice_mid, 20000.0)),
            ),
            opt_int(self.ttf),
            opt_int(self.ttl),
            opt_float(self.vw.map(|(n, d)| ratio(n, d, 1.0))),
            opt_float(self.arrival_cost.map(|(n, d)| ratio(n, d, 10000.0))),
            opt_float(self.trade_mid_cost.map(|(n, d)| ratio(n, d, 10000.0))),
        ]
    }
}

/// The sums behind one line of `groups.csv` or `scenarios.csv`.
#[derive(Default)]
struct Summary {
    sweeps: u64,
    order_qty: i128,
    filled: i128,
    fills: i128,
    cp: i128,
    lit: i128,
    auction: i128,
    other: i128,
    aggressive: i128,
    ttf: (i128, i128),
    ttl: (i128, i128),
    vw: Option<(i128, i128)>,
    arrival_cost: Option<(i128, i128)>,
    trade_mid_cost: Option<(i128, i128)>,
}

fn add_pair(into: &mut Option<(i128, i128)>, v: Option<(i128, i128)>) {
    if let Some((n, d)) = v {
        let e = into.get_or_insert((0, 0));
        e.0 += n;
        e.1 += d;
    }
}

impl Summary {
    /// Adds another line's sums (the same key, from another partition).
    fn absorb(&mut self, o: Summary) {
        self.sweeps += o.sweeps;
        self.order_qty += o.order_qty;
        self.filled += o.filled;
        self.fills += o.fills;
        self.cp += o.cp;
        self.lit += o.lit;
        self.auction += o.auction;
        self.other += o.other;
        self.aggressive += o.aggressive;
        self.ttf = (self.ttf.0 + o.ttf.0, self.ttf.1 + o.ttf.1);
        self.ttl = (self.ttl.0 + o.ttl.0, self.ttl.1 + o.ttl.1);
        add_pair(&mut self.vw, o.vw);
        add_pair(&mut self.arrival_cost, o.arrival_cost);
        add_pair(&mut self.trade_mid_cost, o.trade_mid_cost);
    }

    fn add(&mut self, s: &Sweep) {
        let f = &s.filled;
        self.sweeps += 1;
        self.order_qty += i128::from(s.order_qty);
        self.filled += i128::from(f.quantity);
        self.fills += i128::from(f.fills);
        self.cp += i128::from(f.cp);
        self.lit += i128::from(f.lit);
        self.auction += i128::from(f.auction);
        self.other += i128::from(f.other);
        self.aggressive += i128::from(f.aggressive);
        if let Some(v) = s.ttf {
            self.ttf.0 += v;
            self.ttf.1 += 1;
        }
        if let Some(v) = s.ttl {
            self.ttl.0 += v;
            self.ttl.1 += 1;
        }
        add_pair(&mut self.vw, s.vw);
        add_pair(&mut self.arrival_cost, s.arrival_cost);
        add_pair(&mut self.trade_mid_cost, s.trade_mid_cost);
    }

    fn cells(&self) -> Vec<Cell> {
        let mean = |(sum, n): (i128, i128)| (n > 0).then(|| ratio(sum, n, 1.0));
        vec![
            int(self.sweeps),
            Cell::Int(self.order_qty),
            Cell::Int(self.filled),
            Cell::Int(self.fills),
            Cell::Int(self.cp),
            Cell::Int(self.lit),
            Cell::Int(self.auction),
            Cell::Int(self.other),
            Cell::Int(self.aggressive),
            opt_float((self.order_qty > 0).then(|| ratio(self.filled, self.order_qty, 1.0))),
            opt_float(mean(self.ttf)),
            opt_float(mean(self.ttl)),
            opt_float(self.vw.map(|(n, d)| ratio(n, d, 1.0))),
            opt_float(self.arrival_cost.map(|(n, d)| ratio(n, d, 10000.0))),
            opt_float(self.trade_mid_cost.map(|(n, d)| ratio(n, d, 10000.0))),
        ]
    }
}

fn summary_table(
    name: &'static str,
    key: &str,
    lines: BTreeMap<(u32, i32, &'static str), Summary>,
) -> Table {
    Table {
        name,
        columns: ["security_code", "date", key]
            .iter()
            .chain(SUMMARY_COLUMNS.iter())
            .map(|c| c.to_string())
            .collect(),
        rows: lines
            .into_iter()
            .map(|((security, day, code), s)| {
                let mut row = vec![
                    int(security),
                    Cell::Str(format_day(day)),
                    Cell::Str(code.into()),
                ];
                row.extend(s.cells());
                row
            })
            .collect(),
    }
}
