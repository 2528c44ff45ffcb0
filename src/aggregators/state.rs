//! Mergeable aggregate state for the standard job's tables (docs/standard-job.md).
//!
//! Everything folded per row is an exact integer (sums in 128 or 256 bits, min/max, exact sets of
//! packed id pairs), and floats are only derived in [`AggState::finish`]. So merging partial states
//! in any order equals aggregating the union, to the byte.
//!
//! The local hour slot is the finest time grain kept: by_date, daily and by_hour are rolled up
//! from hourly slots at finish, so the only per-row time work is one `LocalClock::local_hour`.
//! Slots are keyed by the local hour number, not a UTC hour, so the repeated hour when daylight
//! saving ends is one slot, as DuckDB's grouping by local `YYYY-MM-DD HH:00` makes it.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{ArrowPrimitiveType, RecordBatch};
use ethnum::{I256, U256};
use hdrhistogram::Histogram;
use rustc_hash::FxHashSet;

mod snapshot;

pub use snapshot::AggSnapshot;

use super::acc::*;
use super::grouping::Grouping;
use crate::batch::{ColumnError, column};
use crate::config::AggregatorSpec;

use crate::schema::col;
use crate::table::{Cell, Table};
use crate::time::{LocalClock, format_day};

/// Why a batch could not be folded in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggError {
    #[error("the aggregator {0}")]
    Column(#[from] ColumnError),
}

/// The columns a batch is folded from, as plain slices.
struct Cols<'a> {
    ts: &'a [i64],
    security: &'a [u32],
    participant: &'a [u32],
    quantity: &'a [u64],
    price: &'a [i64],
}

fn values<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a [T::Native], AggError> {
    Ok(column::<T>(batch, name)?.values())
}

impl<'a> Cols<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, AggError> {
        Ok(Cols {
            ts: values::<Int64Type>(batch, col::TIMESTAMP)?,
            security: values::<UInt32Type>(batch, col::SECURITY)?,
            participant: values::<UInt32Type>(batch, col::PARTICIPANT)?,
            quantity: values::<UInt64Type>(batch, col::QUANTITY)?,
            price: values::<Int64Type>(batch, col::PRICE)?,
        })
    }
}

/// Which per-row structures the requested tables need.
#[derive(Clone, Copy, Debug)]
struct Needs {
    slots: bool,
    security: bool,
    participant: bool,
    size_sets: bool,
}

/// The mergeable aggregate of kept rows. Partial states built from any split of the input and
/// merged in any order finish into the same tables as one state over all of it.
#[derive(Clone)]
pub struct AggState {
    spec: Arc<AggregatorSpec>,
    needs: Needs,
    clock: LocalClock,
    rows: u64,
    /// Local hour number (local nanoseconds div one hour) → accumulator.
    slots: Groups<i64>,
    securities: Groups<u32>,
    participants: Groups<u32>,
    /// Always kept: five fixed accumulators are cheap and the summary is their merge.
    sizes: [Acc; 5],
    size_hists: Vec<Histogram<u64>>,
    slot_participant: FxHashSet<u64>,
    slot_security: FxHashSet<u64>,
    size_participant: FxHashSet<u64>,
    size_security: FxHashSet<u64>,
    /// (security, participant): distinct participants per security, securities per participant,
    /// and both summary counts.
    security_participant: FxHashSet<u64>,
}

impl fmt::Debug for AggState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggState")
            .field("spec", &self.spec)
            .field("rows", &self.rows)
            .field("slots", &self.slots.keys.len())
            .field("securities", &self.securities.keys.len())
            .field("participants", &self.participants.keys.len())
            .finish_non_exhaustive()
    }
}

impl AggState {
    pub fn new(spec: Arc<AggregatorSpec>) -> Self {
        let wants = |g: Grouping| spec.group_by.contains(&g);
        let needs = Needs {
            slots: [
                Grouping::Date,
                Grouping::Hour,
                Grouping::Hourly,
                Grouping::Daily,
            ]
            .into_iter()
            .any(wants),
            security: wants(Grouping::Security),
            participant: wants(Grouping::Participant),
            size_sets: wants(Grouping::Size),
        };
        let hist = !spec.quantiles.is_empty();
        AggState {
            clock: LocalClock::new(spec.zone),
            needs,
            rows: 0,
            slots: Groups::new(hist),
            securities: Groups::new(hist),
            participants: Groups::new(hist),
            sizes: [const { Acc::EMPTY }; 5],
            size_hists: if hist {
                (0..5).map(|_| new_histogram()).collect()
            } else {
                Vec::new()
            },
            slot_participant: FxHashSet::default(),
            slot_security: FxHashSet::default(),
            size_participant: FxHashSet::default(),
            size_security: FxHashSet::default(),
            security_participant: FxHashSet::default(),
            spec,
        }
    }

    pub(crate) fn spec(&self) -> &Arc<AggregatorSpec> {
        &self.spec
    }

    /// Kept rows folded in so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Folds every row of `rows` in. Columns are found by canonical name; others are ignored.
    /// On error nothing has been folded.
    pub fn update(&mut self, rows: &RecordBatch) -> Result<(), AggError> {
        let c = Cols::of(rows)?;
        if c.ts.is_empty() {
            return Ok(());
        }
        self.rows += c.ts.len() as u64;
        if self.needs.slots {
            self.fold_slots(&c);
        }
        self.fold_sizes(&c);
        if self.needs.security {
            fold_groups(&mut self.securities, c.security, &c);
        }
        if self.needs.participant {
            fold_groups(&mut self.participants, c.participant, &c);
        }
        let pairs = &mut self.security_participant;
        for (&s, &p) in c.security.iter().zip(c.participant) {
            pairs.insert(pack(s, p));
        }
        Ok(())
    }

    fn fold_slots(&mut self, c: &Cols) {
        // No local hour number reaches i64::MIN, so the first row always looks its slot up.
        let mut last_hour = i64::MIN;
        let mut slot = 0;
        let rows = c.ts.iter().zip(c.security).zip(c.participant);
        for (((&ts, &s), &p), (&q, &price)) in rows.zip(c.quantity.iter().zip(c.price)) {
            let hour = self.clock.local_hour(ts);
            if hour != last_hour {
                slot = self.slots.position(hour);
                last_hour = hour;
            }
            self.slots.add(slot, q, price, ts);
            let bits = slot_bits(hour);
            self.slot_participant.insert(pack(bits, p));
            self.slot_security.insert(pack(bits, s));
        }
    }

    fn fold_sizes(&mut self, c: &Cols) {
        let rows = c.ts.iter().zip(c.quantity).zip(c.price);
        for ((&ts, &q), &p) in rows {
            let b = size_bucket(q);
            self.sizes[b].add(q, p, ts);
            if let Some(h) = self.size_hists.get_mut(b) {
                record(h, q);
            }
        }
        if self.needs.size_sets {
            let rows = c.quantity.iter().zip(c.security).zip(c.participant);
            for ((&q, &s), &p) in rows {
                let b = size_bucket(q) as u32;
                self.size_participant.insert(pack(b, p));
                self.size_security.insert(pack(b, s));
            }
        }
    }

    /// Adds `other` in. Both states must come from the same spec.
    pub fn merge(&mut self, other: AggState) {
        debug_assert!(
            Arc::ptr_eq(&self.spec, &other.spec) || *self.spec == *other.spec,
            "merging states of different specs"
        );
        self.rows += other.rows;
        self.slots.merge(&other.slots);
        self.securities.merge(&other.securities);
        self.participants.merge(&other.participants);
        for (a, b) in self.sizes.iter_mut().zip(&other.sizes) {
            a.merge(b);
        }
        for (a, b) in self.size_hists.iter_mut().zip(&other.size_hists) {
            add_histogram(a, b);
        }
        union(&mut self.slot_participant, other.slot_participant);
        union(&mut self.slot_security, other.slot_security);
        union(&mut self.size_participant, other.size_participant);
        union(&mut self.size_security, other.size_security);
        union(&mut self.security_participant, other.security_participant);
    }

    /// The requested tables in output order, then `summary`. Does not consume the state, so a
    /// running job can snapshot it repeatedly.
    pub fn finish(&self) -> Vec<Table> {
        let mut wanted = self.spec.group_by.clone();
        wanted.sort();
        wanted.dedup();
        let mut tables = Vec::with_capacity(wanted.len() + 1);
        let mut day_rows: Option<Vec<Vec<Cell>>> = None;
        for g in wanted {
            let rows = match g {
                Grouping::Security => self.security_rows(),
                Grouping::Participant => self.participant_rows(),
                Grouping::Date | Grouping::Daily => {
                    day_rows.get_or_insert_with(|| self.day_rows()).clone()
                }
                Grouping::Hour => self.hour_rows(),
                Grouping::Size => self.size_rows(),
                Grouping::Hourly => self.hourly_rows(),
            };
            tables.push(Table::new(
                g.table_name(),
                self.header(Some(g.key_column())),
                rows,
            ));
        }
        tables.push(Table::new(
            "summary",
            self.header(None),
            vec![self.summary_row()],
        ));
        tables
    }

    fn header(&self, key: Option<&str>) -> Vec<String> {
        key.into_iter()
            .chain(MEASURES)
            .map(str::to_string)
            .chain(self.spec.quantiles.iter().map(|&q| quantile_column(q)))
            .collect()
    }

    /// One output row for a non-empty group.
    fn row(
        &self,
        key: Option<Cell>,
        acc: &Acc,
        participants: u64,
        securities: u64,
        hist: Option<&Histogram<u64>>,
    ) -> Vec<Cell> {
        let n = u128::from(acc.orders);
        let q_sum = U256::from(acc.q_sum);
        let std = if acc.orders > 1 {
            // n·Σq² − (Σq)² <= n²·2^128 < 2^256, and it is never negative (Cauchy–Schwarz).
            let num = U256::from(n) * acc.q_sq_sum - q_sum * q_sum;
            Cell::Float(unsigned_ratio(num, n * (n - 1)).sqrt())
        } else {
            Cell::Null
        };
        let vwap = if acc.q_sum == 0 {
            Cell::Null
        } else {
            Cell::Float(ratio(acc.pq_sum, acc.q_sum))
        };
        let mut row = Vec::with_capacity(MEASURES.len() + 1 + self.spec.quantiles.len());
        row.extend(key);
        row.extend([
            Cell::Int(i128::from(acc.orders)),
            // Σq reaches 2^127 only past 2^63 rows.
            Cell::Int(i128::try_from(acc.q_sum).unwrap_or(i128::MAX)),
            Cell::Float(unsigned_ratio(q_sum, n)),
            std,
            Cell::Float(ratio(I256::from(acc.p_sum), n)),
            Cell::Int(i128::from(acc.p_min)),
            Cell::Int(i128::from(acc.p_max)),
            vwap,
            Cell::Int(i128::from(participants)),
            Cell::Int(i128::from(securities)),
            Cell::Int(i128::from(acc.ts_min)),
            Cell::Int(i128::from(acc.ts_max)),
        ]);
        for &q in &self.spec.quantiles {
            row.push(hist.map_or(Cell::Null, |h| {
                Cell::Int(i128::from(h.value_at_quantile(q)))
            }));
        }
        row
    }

    fn security_rows(&self) -> Vec<Vec<Cell>> {
        let participants = count_by_group(&self.security_participant);
        let mut groups: Vec<_> = self.securities.iter().collect();
        groups.sort_unstable_by_key(|g| g.0);
        groups
            .into_iter()
            .map(|(s, acc, h)| {
                let np = participants.get(&s).copied().unwrap_or(0);
                self.row(Some(Cell::Int(i128::from(s))), acc, np, 1, h)
            })
            .collect()
    }

    fn participant_rows(&self) -> Vec<Vec<Cell>> {
        let securities = count_by_member(&self.security_participant);
        let mut groups: Vec<_> = self.participants.iter().collect();
        groups.sort_unstable_by_key(|g| g.0);
        groups
            .into_iter()
            .map(|(p, acc, h)| {
                let ns = securities.get(&p).copied().unwrap_or(0);
                self.row(Some(Cell::Int(i128::from(p))), acc, 1, ns, h)
            })
            .collect()
    }

    fn hourly_rows(&self) -> Vec<Vec<Cell>> {
        let participants = count_by_group(&self.slot_participant);
        let securities = count_by_group(&self.slot_security);
        let mut groups: Vec<_> = self.slots.iter().collect();
        groups.sort_unstable_by_key(|g| g.0);
        groups
            .into_iter()
            .map(|(hour, acc, h)| {
                let bits = slot_bits(hour);
                let label = format!(
                    "{} {:02}:00",
                    format_day(hour.div_euclid(24) as i32),
                    hour.rem_euclid(24)
                );
                let np = participants.get(&bits).copied().unwrap_or(0);
                let ns = securities.get(&bits).copied().unwrap_or(0);
                self.row(Some(Cell::Str(label)), acc, np, ns, h)
            })
            .collect()
    }

    fn day_rows(&self) -> Vec<Vec<Cell>> {
        // Day numbers sort like their YYYY-MM-DD labels: i64 nanoseconds stay within 4-digit years.
        let day_of = |hour: i64| hour.div_euclid(24) as i32;
        self.rolled_up_rows(day_of, |d| Cell::Str(format_day(d)))
    }

    fn hour_rows(&self) -> Vec<Vec<Cell>> {
        let hour_of_day = |hour: i64| hour.rem_euclid(24) as u8;
        self.rolled_up_rows(hour_of_day, |h| Cell::Int(i128::from(h)))
    }

    /// Rows of a coarser grouping of the hourly slots.
    fn rolled_up_rows<G: Copy + Ord + Hash>(
        &self,
        group_of: impl Fn(i64) -> G,
        key: impl Fn(G) -> Cell,
    ) -> Vec<Vec<Cell>> {
        let mut groups: BTreeMap<G, (Acc, Option<Histogram<u64>>)> = BTreeMap::new();
        for (hour, acc, h) in self.slots.iter() {
            let (a, gh) = groups
                .entry(group_of(hour))
                .or_insert_with(|| (Acc::EMPTY, None));
            a.merge(acc);
            if let Some(h) = h {
                add_histogram(gh.get_or_insert_with(new_histogram), h);
            }
        }
        let of_bits = |bits: u32| group_of(slot_of_bits(bits));
        let participants = count_by_coarser(&self.slot_participant, of_bits);
        let securities = count_by_coarser(&self.slot_security, of_bits);
        groups
            .iter()
            .map(|(&g, (acc, h))| {
                let np = participants.get(&g).copied().unwrap_or(0);
                let ns = securities.get(&g).copied().unwrap_or(0);
                self.row(Some(key(g)), acc, np, ns, h.as_ref())
            })
            .collect()
    }

    fn size_rows(&self) -> Vec<Vec<Cell>> {
        let participants = count_by_group(&self.size_participant);
        let securities = count_by_group(&self.size_security);
        (0..SIZE_LABELS.len())
            .filter(|&b| self.sizes[b].orders > 0)
            .map(|b| {
                let bits = b as u32;
                let np = participants.get(&bits).copied().unwrap_or(0);
                let ns = securities.get(&bits).copied().unwrap_or(0);
                let key = Cell::Str(SIZE_LABELS[b].to_string());
                self.row(Some(key), &self.sizes[b], np, ns, self.size_hists.get(b))
            })
            .collect()
    }

    fn summary_row(&self) -> Vec<Cell> {
        if self.rows == 0 {
            let mut row = vec![Cell::Null; MEASURES.len() + self.spec.quantiles.len()];
            for i in [0, 1, 8, 9] {
                row[i] = Cell::Int(0);
            }
            return row;
        }
        let mut all = Acc::EMPTY;
        for a in &self.sizes {
            all.merge(a);
        }
        let mut hist = None;
        for h in &self.size_hists {
            add_histogram(hist.get_or_insert_with(new_histogram), h);
        }
        let participants = count_by_member(&self.security_participant).len() as u64;
        let securities = count_by_group(&self.security_participant).len() as u64;
        self.row(None, &all, participants, securities, hist.as_ref())
    }
}

fn fold_groups(groups: &mut Groups<u32>, keys: &[u32], c: &Cols) {
    let rows = keys.iter().zip(c.ts).zip(c.quantity).zip(c.price);
    for (((&k, &ts), &q), &p) in rows {
        let i = groups.position(k);
        groups.add(i, q, p, ts);
    }
}

fn union(into: &mut FxHashSet<u64>, mut from: FxHashSet<u64>) {
    if from.len() > into.len() {
        std::mem::swap(into, &mut from);
    }
    into.extend(from);
}
