//! The sweep job's aggregates: fill groups and scenarios per security-day, venue classes, the
//! time to first fill, costs per scenario, fill ratio by size, and the accounting totals, each
//! folded from its table row by row.

use std::collections::BTreeMap;

use super::{MAX_SECURITY_DAYS, TOP_SECURITIES};
use crate::report::ReportError;
use crate::report::load::Tables;
use crate::sweeps::DAY_COLUMNS;

/// Sweeps per bar of a stacked chart, one count per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Stacked {
    /// The series' codes, in stacking order: `G1`, `G2`, `G3` or `A`, `B`, `C`, `U`.
    pub series: &'static [&'static str],
    /// One bar per security-day, or per security when there are too many security-days.
    pub bars: Vec<(String, Vec<u64>)>,
    /// The security-days in the table.
    pub security_days: u64,
    /// The securities in the table.
    pub securities: u64,
    /// Bars are per security, summed over days (there were more than [`MAX_SECURITY_DAYS`]).
    pub per_security: bool,
    /// With `per_security`, the securities beyond the shown ones, summed: (count, sweeps).
    pub rest: Option<(u64, Vec<u64>)>,
}

impl Stacked {
    fn read(
        t: &dyn Tables,
        table: &str,
        key: &str,
        series: &'static [&'static str],
    ) -> Result<Option<Stacked>, ReportError> {
        let k = series.len();
        let mut days: Vec<(String, Vec<u64>)> = Vec::new();
        let mut securities: BTreeMap<i128, Vec<u64>> = BTreeMap::new();
        let mut last_day: Option<(i128, String)> = None;
        let mut security_days = 0u64;
        let found = t.rows(table, &["security_code", "date", key, "sweeps"], &mut |r| {
            let (security, date, code) = (r.required_int(0)?, r.text(1), r.text(2));
            let n = r.count(3)?;
            let Some(s) = series.iter().position(|c| *c == code) else {
                return Err(r.bad(2, format!("`{code}` is none of {}", series.join(", "))));
            };
            let day = (security, date);
            if last_day.as_ref() != Some(&day) {
                security_days += 1;
                // Beyond the limit the bars are per security, so the days are not kept.
                if security_days as usize <= MAX_SECURITY_DAYS {
                    days.push((format!("{} {}", day.0, day.1), vec![0; k]));
                } else {
                    days.clear();
                }
                last_day = Some(day);
            }
            if let Some((_, counts)) = days.last_mut() {
                counts[s] += n;
            }
            securities.entry(security).or_insert_with(|| vec![0; k])[s] += n;
            Ok(())
        })?;
        if !found {
            return Ok(None);
        }
        let n_securities = securities.len() as u64;
        if security_days as usize <= MAX_SECURITY_DAYS {
            return Ok(Some(Stacked {
                series,
                bars: days,
                security_days,
                securities: n_securities,
                per_security: false,
                rest: None,
            }));
        }
        let mut ranked: Vec<(i128, Vec<u64>)> = securities.into_iter().collect();
        // Most sweeps first; a stable sort keeps ties in security order.
        ranked.sort_by_key(|(_, c)| std::cmp::Reverse(c.iter().sum::<u64>()));
        let rest: Vec<(i128, Vec<u64>)> = ranked.split_off(ranked.len().min(TOP_SECURITIES));
        let rest = (!rest.is_empty()).then(|| {
            let mut sum = vec![0; k];
            for (_, c) in &rest {
                for (a, b) in sum.iter_mut().zip(c) {
                    *a += b;
                }
            }
            (rest.len() as u64, sum)
        });
        Ok(Some(Stacked {
            series,
            bars: ranked
                .into_iter()
                .map(|(s, c)| (s.to_string(), c))
                .collect(),
            security_days,
            securities: n_securities,
            per_security: true,
            rest,
        }))
    }
}

/// Filled quantity by venue class, summed over every sweep.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Venues {
    pub centre_point: u128,
    pub lit: u128,
    pub auction: u128,
    pub other: u128,
}

impl Venues {
    pub fn total(&self) -> u128 {
        self.centre_point + self.lit + self.auction + self.other
    }

    /// (label, quantity) in display order.
    pub fn classes(&self) -> [(&'static str, &'static str, u128); 4] {
        [
            ("cp_qty", "Centre Point", self.centre_point),
            ("lit_qty", "lit", self.lit),
            ("auction_qty", "auction", self.auction),
            ("other_qty", "other", self.other),
        ]
    }
}

/// The lower edges of the time-to-first-fill bins, in nanoseconds: 1, 2 and 5 of every decade
/// from 1 ns to 50,000 s (about 14 hours); the last bin is open above.
pub(crate) fn first_fill_edges() -> Vec<i64> {
    let mut edges = Vec::new();
    let mut decade = 1i64;
    for _ in 0..=13 {
        edges.extend([decade, 2 * decade, 5 * decade]);
        decade *= 10;
    }
    edges
}

/// The distribution of `time_to_first_fill_ns`: exact counts in bins whose edges are 1, 2 and 5
/// of each decade, so they read evenly on a log axis. A time of 0 (a fill in the arrival's own
/// nanosecond) or below cannot be put on a log axis and is counted apart.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstFill {
    /// Sweeps without a time: no fill, or an unknown arrival.
    pub missing: u64,
    pub negative: u64,
    pub zero: u64,
    /// Lower edges ([`first_fill_edges`]) and the count from each edge to the next.
    pub edges: Vec<i64>,
    pub counts: Vec<u64>,
}

impl FirstFill {
    fn new() -> Self {
        let edges = first_fill_edges();
        FirstFill {
            missing: 0,
            negative: 0,
            zero: 0,
            counts: vec![0; edges.len()],
            edges,
        }
    }

    pub(crate) fn add(&mut self, v: Option<i64>) {
        match v {
            None => self.missing += 1,
            Some(v) if v < 0 => self.negative += 1,
            Some(0) => self.zero += 1,
            Some(v) => {
                let bin = self.edges.partition_point(|&e| e <= v) - 1;
                self.counts[bin] += 1;
            }
        }
    }

    /// The sweeps with a positive time.
    pub fn positive(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The bins from the first to the last that holds a sweep: (lower edge, upper edge or
    /// `None` for the open last bin, count).
    pub fn shown(&self) -> Vec<(i64, Option<i64>, u64)> {
        let first = self.counts.iter().position(|&c| c > 0);
        let last = self.counts.iter().rposition(|&c| c > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return Vec::new();
        };
        (first..=last)
            .map(|i| {
                (
                    self.edges[i],
                    self.edges.get(i + 1).copied(),
                    self.counts[i],
                )
            })
            .collect()
    }
}

/// The bins of `cost_vs_arrival_bps`: (label, test). Exactly 0 is its own bin: a Centre Point
/// fill at the arrival mid costs exactly nothing, and that is most sweeps.
pub(crate) const COST_BINS: [&str; 13] = [
    "< -100",
    "-100 to -50",
    "-50 to -20",
    "-20 to -10",
    "-10 to -5",
    "-5 to 0",
    "0",
    "0 to 5",
    "5 to 10",
    "10 to 20",
    "20 to 50",
    "50 to 100",
    "> 100",
];

/// The bin of a cost: below 0 a bin holds its lower edge (-100 is in -100 to -50), above 0 its
/// upper edge (100 is in 50 to 100), so the bins are symmetric about 0.
pub(crate) fn cost_bin(v: f64) -> usize {
    const EDGES: [f64; 5] = [100.0, 50.0, 20.0, 10.0, 5.0];
    if v == 0.0 {
        return 6;
    }
    let m = v.abs();
    // How many edges the magnitude passes: 0 (5 or less) to 5 (past 100). An edge's own
    // value stays in the bin nearer 0 on either side.
    let reached = EDGES.iter().filter(|&&e| m > e).count();
    if v < 0.0 { 5 - reached } else { 7 + reached }
}

/// `cost_vs_arrival_bps` of one scenario's sweeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioCost {
    pub scenario: &'static str,
    /// Sweeps with a cost.
    pub n: u64,
    pub counts: [u64; 13],
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl ScenarioCost {
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

pub(crate) const SCENARIOS: [&str; 4] = ["A", "B", "C", "U"];
pub(crate) const GROUPS: [&str; 3] = ["G1", "G2", "G3"];

/// The order-size buckets of the fill ratio: the standard job's size buckets (`<=1K` holds 0 to
/// 1,000 shares; each other bucket holds its upper edge), applied to a sweep's `order_qty`.
pub(crate) const SIZE_BUCKETS: [&str; 5] = ["<=1K", "1K-5K", "5K-10K", "10K-50K", ">50K"];

pub(crate) fn size_bucket(qty: i128) -> usize {
    match qty {
        ..=1_000 => 0,
        1_001..=5_000 => 1,
        5_001..=10_000 => 2,
        10_001..=50_000 => 3,
        _ => 4,
    }
}

/// The sweeps of one order-size bucket: how many, and what they asked for and got.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SizeFill {
    pub sweeps: u64,
    pub order_qty: i128,
    pub filled_qty: i128,
}

impl SizeFill {
    /// Σ filled / Σ ordered, as `groups.csv` defines `fill_ratio`; `None` when nothing was
    /// ordered.
    pub fn ratio(&self) -> Option<f64> {
        (self.order_qty != 0).then(|| self.filled_qty as f64 / self.order_qty as f64)
    }
}

/// What the sweeps table gives: one pass over its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PerSweep {
    pub sweeps: u64,
    pub first_fill: FirstFill,
    pub cost: Vec<ScenarioCost>,
    pub sizes: Vec<SizeFill>,
}

impl PerSweep {
    fn read(t: &dyn Tables) -> Result<Option<PerSweep>, ReportError> {
        let mut p = PerSweep {
            sweeps: 0,
            first_fill: FirstFill::new(),
            cost: SCENARIOS
                .iter()
                .map(|&scenario| ScenarioCost {
                    scenario,
                    n: 0,
                    counts: [0; 13],
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                })
                .collect(),
            sizes: vec![SizeFill::default(); SIZE_BUCKETS.len()],
        };
        let columns = [
            "order_qty",
            "filled_qty",
            "scenario",
            "time_to_first_fill_ns",
            "cost_vs_arrival_bps",
        ];
        let found = t.rows("sweeps", &columns, &mut |r| {
            p.sweeps += 1;
            let (order_qty, filled_qty) = (r.required_int(0)?, r.required_int(1)?);
            let size = &mut p.sizes[size_bucket(order_qty)];
            size.sweeps += 1;
            size.order_qty += order_qty;
            size.filled_qty += filled_qty;
            let t = r.int(3)?;
            p.first_fill.add(match t {
                Some(v) => Some(i64::try_from(v).map_err(|_| r.bad(3, "out of range"))?),
                None => None,
            });
            let code = r.text(2);
            let Some(s) = SCENARIOS.iter().position(|c| *c == code) else {
                return Err(r.bad(2, format!("`{code}` is none of A, B, C, U")));
            };
            if let Some(c) = r.float(4)?.filter(|c| c.is_finite()) {
                let sc = &mut p.cost[s];
                sc.n += 1;
                sc.counts[cost_bin(c)] += 1;
                sc.sum += c;
                sc.min = sc.min.min(c);
                sc.max = sc.max.max(c);
            }
            Ok(())
        })?;
        Ok(found.then_some(p))
    }
}

/// `security_days.csv` summed: what was read and how it was counted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Accounting {
    /// (column, total), in the table's order.
    pub totals: Vec<(&'static str, u128)>,
}

impl Accounting {
    pub fn get(&self, column: &str) -> Option<u128> {
        self.totals.iter().find(|(c, _)| *c == column).map(|t| t.1)
    }

    fn read(t: &dyn Tables) -> Result<Option<Accounting>, ReportError> {
        let mut sums = [0u128; 12];
        let found = t.rows("security_days", &DAY_COLUMNS, &mut |r| {
            for (i, s) in sums.iter_mut().enumerate() {
                *s += r.big(i)?;
            }
            Ok(())
        })?;
        Ok(found.then(|| Accounting {
            totals: DAY_COLUMNS.iter().copied().zip(sums).collect(),
        }))
    }
}

/// The sweep analysis's tables, folded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sweeps {
    pub stage: String,
    pub accounting: Option<Accounting>,
    pub groups: Option<Stacked>,
    pub scenarios: Option<Stacked>,
    pub venues: Option<Venues>,
    pub per_sweep: Option<PerSweep>,
}

impl Sweeps {
    /// How many sweeps, from the sweeps table or else the accounting.
    pub fn count(&self) -> u64 {
        match (&self.per_sweep, &self.accounting) {
            (Some(p), _) => p.sweeps,
            (None, Some(a)) => a.get("sweeps").map_or(0, |n| n as u64),
            (None, None) => self
                .groups
                .as_ref()
                .map_or(0, |g| g.bars.iter().flat_map(|b| &b.1).sum()),
        }
    }

    pub(crate) fn read(stage: &str, t: &dyn Tables) -> Result<Sweeps, ReportError> {
        let mut venues = Venues::default();
        let found = t.rows(
            "groups",
            &["cp_qty", "lit_qty", "auction_qty", "other_qty"],
            &mut |r| {
                venues.centre_point += r.big(0)?;
                venues.lit += r.big(1)?;
                venues.auction += r.big(2)?;
                venues.other += r.big(3)?;
                Ok(())
            },
        )?;
        Ok(Sweeps {
            stage: stage.to_string(),
            accounting: Accounting::read(t)?,
            groups: Stacked::read(t, "groups", "fill_group", &GROUPS)?,
            scenarios: Stacked::read(t, "scenarios", "scenario", &SCENARIOS)?,
            venues: found.then_some(venues),
            per_sweep: PerSweep::read(t)?,
        })
    }
}
