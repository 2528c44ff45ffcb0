//! The four tables of the sweep analysis, from the reduced orders and their fills: each sweep's
//! figures (`Sweep`), the sums behind every summary line (`Summary`), and a partition's
//! contribution to them (`Finished`), merged across partitions before the tables are put in
//! order. Each float is one division of two exact integers.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use super::state::{Fills, NS_PER_SECOND, Order};
use crate::table::{Cell, Runs, Table, cells_to_batch};
use crate::time::format_day;

/// The tables the analysis produces, in output order.
pub const TABLES: [&str; 4] = ["sweeps", "groups", "scenarios", "security_days"];

/// A state's contribution to the four tables: per-sweep rows and the sums behind every summary
/// line, merged across partitions before the tables are put in order.
#[derive(Default)]
pub struct Finished {
    pub(super) sweeps: Vec<(u64, Vec<Cell>)>,
    pub(super) groups: BTreeMap<(u32, i32, &'static str), Summary>,
    pub(super) scenarios: BTreeMap<(u32, i32, &'static str), Summary>,
    pub(super) days: BTreeMap<(u32, i32), [u64; 12]>,
}

/// The types of `sweeps.csv`'s columns, as its Parquet file and its runs hold them: the order
/// id unsigned (ids use all 64 bits), other integers signed 64-bit, the derived figures floats,
/// and the date and codes text.
pub fn sweep_schema() -> SchemaRef {
    let fields: Vec<Field> = SWEEP_COLUMNS
        .iter()
        .map(|&c| {
            let t = match c {
                "order_id" => DataType::UInt64,
                "date" | "fill_group" | "scenario" => DataType::Utf8,
                "vwap"
                | "arrival_mid"
                | "arrival_spread_bps"
                | "vw_time_to_fill_ns"
                | "cost_vs_arrival_bps"
                | "cost_vs_trade_mid_bps" => DataType::Float64,
                _ => DataType::Int64,
            };
            Field::new(c, t, c != "order_id")
        })
        .collect();
    Arc::new(Schema::new(fields))
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

    /// Takes the sweep rows out as one run for `sweeps`' [`Runs`]: sorted by order id, typed
    /// by [`sweep_schema`]. Fails when a value does not fit its column (a notional beyond 64
    /// bits).
    pub fn take_run(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut sweeps = std::mem::take(&mut self.sweeps);
        sweeps.sort_unstable_by_key(|(id, _)| *id);
        let rows: Vec<Vec<Cell>> = sweeps.into_iter().map(|(_, r)| r).collect();
        cells_to_batch(&sweep_schema(), &rows)
    }

    /// The four tables, each in its order: the sweep rows are `runs` and whatever rows this
    /// holds itself.
    pub fn into_tables(mut self, mut runs: Runs) -> Result<Vec<Table>, ArrowError> {
        if !self.sweeps.is_empty() {
            runs.push_memory(vec![self.take_run()?]);
        }
        let Finished {
            groups,
            scenarios,
            days,
            ..
        } = self;
        Ok(vec![
            Table::from_runs(TABLES[0], runs),
            summary_table(TABLES[1], "fill_group", groups),
            summary_table(TABLES[2], "scenario", scenarios),
            Table::new(
                TABLES[3],
                ["security_code", "date"]
                    .iter()
                    .chain(DAY_COLUMNS.iter())
                    .map(|c| c.to_string())
                    .collect(),
                days.into_iter()
                    .map(|((security, day), c)| {
                        let mut row = vec![Cell::Int(security.into()), Cell::Str(format_day(day))];
                        row.extend(c.iter().map(|&v| Cell::Int(v.into())));
                        row
                    })
                    .collect(),
            ),
        ])
    }
}

/// A [`Finished`]'s summary sums without its sweep rows, as a reduce shard hands them to the
/// merge (`shard::sweeps`): exact integers, keyed as the tables' lines are, so the merge adds
/// them up as the partitions' results are added up on one machine.
#[derive(Serialize, Deserialize)]
pub struct Sums {
    groups: Vec<(u32, i32, String, Summary)>,
    scenarios: Vec<(u32, i32, String, Summary)>,
    days: Vec<(u32, i32, [u64; 12])>,
}

/// The one `'static` spelling of a fill group or scenario code, for sums read back.
fn code(c: &str) -> Option<&'static str> {
    ["G1", "G2", "G3", "A", "B", "C", "U"]
        .into_iter()
        .find(|k| *k == c)
}

impl Finished {
    /// The summary sums, leaving the sweep rows (take them first with [`Finished::take_run`]).
    pub fn into_sums(self) -> Sums {
        let lines = |m: BTreeMap<(u32, i32, &'static str), Summary>| {
            m.into_iter()
                .map(|((s, d, c), v)| (s, d, c.to_string(), v))
                .collect()
        };
        Sums {
            groups: lines(self.groups),
            scenarios: lines(self.scenarios),
            days: self.days.into_iter().map(|((s, d), v)| (s, d, v)).collect(),
        }
    }

    /// Sums read back, as a `Finished` without sweep rows; `Err` names a code no rule gives.
    pub fn from_sums(sums: Sums) -> Result<Finished, String> {
        let lines = |v: Vec<(u32, i32, String, Summary)>| {
            v.into_iter()
                .map(|(s, d, c, v)| {
                    code(&c)
                        .map(|c| ((s, d, c), v))
                        .ok_or_else(|| format!("unknown fill group or scenario {c:?}"))
                })
                .collect::<Result<BTreeMap<_, _>, String>>()
        };
        Ok(Finished {
            sweeps: Vec::new(),
            groups: lines(sums.groups)?,
            scenarios: lines(sums.scenarios)?,
            days: sums.days.into_iter().map(|(s, d, v)| ((s, d), v)).collect(),
        })
    }
}

/// The accounting columns of `security_days.csv`, after the key, in the order counted above.
pub const DAY_COLUMNS: [&str; 12] = [
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

pub(super) fn int(v: impl Into<i128>) -> Cell {
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
pub(super) struct Sweep<'a> {
    order: &'a Order,
    filled: &'a Fills,
    /// The arrival is known, and its quote usable.
    known: bool,
    quote_ok: bool,
    pub(super) group: &'static str,
    pub(super) scenario: &'static str,
    ttf: Option<i128>,
    ttl: Option<i128>,
    /// Σ q·(t − arrival) and Σ q, when the arrival is known and something filled.
    vw: Option<(i128, i128)>,
    /// s·(2·notional − A·filled) and A·filled.
    arrival_cost: Option<(i128, i128)>,
    /// s·(2·Nv − Mv) and Mv.
    trade_mid_cost: Option<(i128, i128)>,
}

impl<'a> Sweep<'a> {
    pub(super) fn new(o: &'a Order, f: &'a Fills, known: bool, quote_ok: bool) -> Self {
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
            order: o,
            filled: f,
            known,
            quote_ok,
            group,
            scenario,
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
        }
    }

    pub(super) fn row(&self, id: u64, day: i32) -> Vec<Cell> {
        let (o, f) = (self.order, self.filled);
        let a = &o.arrival;
        let known_quote = self.known && self.quote_ok;
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
#[derive(Default, Serialize, Deserialize)]
pub(super) struct Summary {
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
    pub(super) fn absorb(&mut self, o: Summary) {
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

    pub(super) fn add(&mut self, s: &Sweep) {
        let f = s.filled;
        self.sweeps += 1;
        self.order_qty += i128::from(s.order.arrival.quantity);
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
    Table::new(
        name,
        ["security_code", "date", key]
            .iter()
            .chain(SUMMARY_COLUMNS.iter())
            .map(|c| c.to_string())
            .collect(),
        lines
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
    )
}
