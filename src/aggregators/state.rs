//! Mergeable aggregate state for the standard job's tables (shared/docs/standard-job.md).
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
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray, RecordBatch};
use arrow_schema::DataType;
use ethnum::{I256, U256};
use hdrhistogram::Histogram;
use rustc_hash::{FxHashMap, FxHashSet};

mod snapshot;

pub use snapshot::{AggSnapshot, SnapshotError};

use crate::schema::col;
use crate::table::{Cell, Table};
use crate::time::{LocalClock, Zone, format_day};

/// One aggregation table of the standard job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grouping {
    Security,
    Date,
    Participant,
    Hour,
    Size,
    Hourly,
    Daily,
}

impl Grouping {
    /// Every grouping, in the order their tables are output.
    pub const ALL: [Grouping; 7] = [
        Grouping::Security,
        Grouping::Date,
        Grouping::Participant,
        Grouping::Hour,
        Grouping::Size,
        Grouping::Hourly,
        Grouping::Daily,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Grouping::Security => "security",
            Grouping::Date => "date",
            Grouping::Participant => "participant",
            Grouping::Hour => "hour",
            Grouping::Size => "size",
            Grouping::Hourly => "hourly",
            Grouping::Daily => "daily",
        }
    }

    /// The output file stem.
    pub fn table_name(self) -> &'static str {
        match self {
            Grouping::Security => "by_security",
            Grouping::Date => "by_date",
            Grouping::Participant => "by_participant",
            Grouping::Hour => "by_hour",
            Grouping::Size => "by_size",
            Grouping::Hourly => "hourly",
            Grouping::Daily => "daily",
        }
    }

    /// The table's key column.
    pub fn key_column(self) -> &'static str {
        match self {
            Grouping::Security => "security_code",
            Grouping::Date | Grouping::Daily => "date",
            Grouping::Participant => "participantid",
            Grouping::Hour => "hour",
            Grouping::Size => "size_bucket",
            Grouping::Hourly => "hour_start",
        }
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A grouping name that is not one of [`Grouping::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown grouping `{0}`: use one of security, date, participant, hour, size, hourly, daily"
)]
pub struct ParseGroupingError(pub String);

impl FromStr for Grouping {
    type Err = ParseGroupingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Grouping::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseGroupingError(s.to_string()))
    }
}

/// What to aggregate: the tables wanted (summary is always produced), the zone that local dates
/// and hours are taken in, and the quantity quantiles to add as columns.
#[derive(Clone, Debug, PartialEq)]
pub struct AggSpec {
    pub groupings: Vec<Grouping>,
    pub zone: Zone,
    /// Quantiles in (0, 1]; each adds a `quantity_p<percent>` column.
    pub quantiles: Vec<f64>,
}

impl AggSpec {
    /// The standard job: every table, Australia/Sydney, no quantiles.
    pub fn standard() -> Self {
        AggSpec {
            groupings: Grouping::ALL.to_vec(),
            zone: Zone::default(),
            quantiles: Vec::new(),
        }
    }
}

/// Why a batch could not be folded in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggError {
    #[error("the aggregator needs column `{name}`, which the batch does not have")]
    MissingColumn { name: &'static str },
    #[error("column `{name}` is {found}, but the aggregator needs {expected}")]
    WrongType {
        name: &'static str,
        expected: DataType,
        found: DataType,
    },
    #[error("column `{name}` has {count} null values; the aggregator needs every value")]
    Nulls { name: &'static str, count: usize },
}

/// The name of the column a quantile adds: 0.5 → `quantity_p50`, 0.999 → `quantity_p99.9`.
pub fn quantile_column(q: f64) -> String {
    // Rounding to a millionth of a percent names 0.999 `p99.9` rather than its binary neighbour.
    let pct = (q * 100.0 * 1e6).round() / 1e6;
    format!("quantity_p{pct}")
}

const MEASURES: [&str; 12] = [
    "orders",
    "quantity_sum",
    "quantity_mean",
    "quantity_std",
    "price_mean",
    "price_min",
    "price_max",
    "vwap",
    "participants",
    "securities",
    "first_ts",
    "last_ts",
];

const SIZE_LABELS: [&str; 5] = ["<=1K", "1K-5K", "5K-10K", "10K-50K", ">50K"];

/// The size bucket of a quantity, as DuckDB's CASE ranks it (so 0 falls in `<=1K`).
#[inline]
fn size_bucket(q: u64) -> usize {
    usize::from(q > 1_000)
        + usize::from(q > 5_000)
        + usize::from(q > 10_000)
        + usize::from(q > 50_000)
}

/// Exact sums of one group. Σq² and Σp·q take 256 bits because a single term can already fill 128.
#[derive(Clone, Debug)]
struct Acc {
    orders: u64,
    q_sum: u128,
    q_sq_sum: U256,
    p_sum: i128,
    pq_sum: I256,
    p_min: i64,
    p_max: i64,
    ts_min: i64,
    ts_max: i64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        orders: 0,
        q_sum: 0,
        q_sq_sum: U256::ZERO,
        p_sum: 0,
        pq_sum: I256::ZERO,
        p_min: i64::MAX,
        p_max: i64::MIN,
        ts_min: i64::MAX,
        ts_max: i64::MIN,
    };

    #[inline(always)]
    fn add(&mut self, q: u64, p: i64, ts: i64) {
        let wide_q = u128::from(q);
        let wide_p = i128::from(p);
        self.orders += 1;
        self.q_sum += wide_q;
        self.q_sq_sum += U256::from(wide_q * wide_q);
        self.p_sum += wide_p;
        // |p| <= 2^63 and q < 2^64, so the product fits i128.
        self.pq_sum += I256::from(wide_p * wide_q as i128);
        self.p_min = self.p_min.min(p);
        self.p_max = self.p_max.max(p);
        self.ts_min = self.ts_min.min(ts);
        self.ts_max = self.ts_max.max(ts);
    }

    fn merge(&mut self, o: &Acc) {
        self.orders += o.orders;
        self.q_sum += o.q_sum;
        self.q_sq_sum += o.q_sq_sum;
        self.p_sum += o.p_sum;
        self.pq_sum += o.pq_sum;
        self.p_min = self.p_min.min(o.p_min);
        self.p_max = self.p_max.max(o.p_max);
        self.ts_min = self.ts_min.min(o.ts_min);
        self.ts_max = self.ts_max.max(o.ts_max);
    }
}

/// num / den correctly rounded to f64, so a mean printed here equals the exact quotient's nearest
/// double, as an exact reference (Python's int / int) gives it. The quotient is taken to 65 or 66
/// significant bits with the remainder folded into a sticky low bit, which leaves the u128 → f64
/// conversion as the only rounding. A denominator of at most 128 bits keeps both shifts inside
/// 256 bits.
fn unsigned_ratio(num: U256, den: u128) -> f64 {
    debug_assert!(den != 0);
    let den = U256::from(den);
    if num == U256::ZERO {
        return 0.0;
    }
    let num_bits = 256 - num.leading_zeros() as i32;
    let den_bits = 256 - den.leading_zeros() as i32;
    let shift = 65 + den_bits - num_bits;
    let (n, d) = if shift >= 0 {
        (num << shift as u32, den)
    } else {
        (num, den << shift.unsigned_abs())
    };
    let sticky = u128::from(n % d != U256::ZERO);
    let q = (n / d).as_u128() | sticky;
    // 2^-shift, exactly: shift stays within -190..=192, far inside the normal exponent range.
    let scale = f64::from_bits(((1023 - shift) as u64) << 52);
    q as f64 * scale
}

fn ratio(num: I256, den: u128) -> f64 {
    let v = unsigned_ratio(num.unsigned_abs(), den);
    if num.is_negative() { -v } else { v }
}

fn new_histogram() -> Histogram<u64> {
    // Three significant figures is always a valid precision, and `new` sizes the range on demand.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

#[inline]
fn record(h: &mut Histogram<u64>, q: u64) {
    // `record` grows the range; only values above i64::MAX / 2 cannot fit and are clamped.
    if h.record(q).is_err() {
        h.saturating_record(q);
    }
}

fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Accumulators for groups of one key, in first-seen order, with a cache of the last key looked
/// up because time-ordered input hits the same slot many rows in a row.
#[derive(Clone)]
struct Groups<K> {
    keys: Vec<K>,
    accs: Vec<Acc>,
    /// Parallel to `accs` when quantiles are configured, empty otherwise.
    hists: Vec<Histogram<u64>>,
    index: FxHashMap<K, usize>,
    last: Option<(K, usize)>,
    with_hist: bool,
}

impl<K: Copy + Eq + Hash> Groups<K> {
    fn new(with_hist: bool) -> Self {
        Groups {
            keys: Vec::new(),
            accs: Vec::new(),
            hists: Vec::new(),
            index: FxHashMap::default(),
            last: None,
            with_hist,
        }
    }

    #[inline]
    fn position(&mut self, key: K) -> usize {
        if let Some((k, i)) = self.last
            && k == key
        {
            return i;
        }
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => self.push(key),
        };
        self.last = Some((key, i));
        i
    }

    #[cold]
    fn push(&mut self, key: K) -> usize {
        let i = self.keys.len();
        self.keys.push(key);
        self.accs.push(Acc::EMPTY);
        if self.with_hist {
            self.hists.push(new_histogram());
        }
        self.index.insert(key, i);
        i
    }

    #[inline(always)]
    fn add(&mut self, i: usize, q: u64, p: i64, ts: i64) {
        self.accs[i].add(q, p, ts);
        if self.with_hist {
            record(&mut self.hists[i], q);
        }
    }

    fn merge(&mut self, other: &Groups<K>) {
        for (j, &key) in other.keys.iter().enumerate() {
            let i = self.position(key);
            self.accs[i].merge(&other.accs[j]);
            if let (Some(into), Some(from)) = (self.hists.get_mut(i), other.hists.get(j)) {
                add_histogram(into, from);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (K, &Acc, Option<&Histogram<u64>>)> {
        self.keys
            .iter()
            .zip(&self.accs)
            .enumerate()
            .map(|(i, (&k, a))| (k, a, self.hists.get(i)))
    }
}

/// Packs a (group, member) pair into one set key: the group's 32 bits high, the member's low.
#[inline(always)]
fn pack(group: u32, member: u32) -> u64 {
    (u64::from(group) << 32) | u64::from(member)
}

/// The 32 bits a local hour number is packed as. Local hours of i64 nanoseconds stay within
/// ±2.6 million, so the low 32 bits hold the whole value.
#[inline(always)]
fn slot_bits(hour: i64) -> u32 {
    hour as i32 as u32
}

fn slot_of_bits(bits: u32) -> i64 {
    i64::from(bits as i32)
}

/// Distinct members per group of a pair set; each pair is unique, so counting suffices.
fn count_by_group(pairs: &FxHashSet<u64>) -> FxHashMap<u32, u64> {
    let mut counts = FxHashMap::default();
    for &k in pairs {
        *counts.entry((k >> 32) as u32).or_insert(0) += 1;
    }
    counts
}

/// Distinct groups per member of a pair set.
fn count_by_member(pairs: &FxHashSet<u64>) -> FxHashMap<u32, u64> {
    let mut counts = FxHashMap::default();
    for &k in pairs {
        *counts.entry(k as u32).or_insert(0) += 1;
    }
    counts
}

/// Distinct members per coarser group, where `coarser` may map several groups to one, so the
/// (coarser group, member) pairs have to be deduplicated first.
fn count_by_coarser<G: Copy + Eq + Hash>(
    pairs: &FxHashSet<u64>,
    coarser: impl Fn(u32) -> G,
) -> FxHashMap<G, u64> {
    let mut seen = FxHashSet::default();
    let mut counts = FxHashMap::default();
    for &k in pairs {
        let g = coarser((k >> 32) as u32);
        if seen.insert((g, k as u32)) {
            *counts.entry(g).or_insert(0) += 1;
        }
    }
    counts
}

/// The columns a batch is folded from, as plain slices.
struct Cols<'a> {
    ts: &'a [i64],
    security: &'a [u32],
    participant: &'a [u32],
    quantity: &'a [u64],
    price: &'a [i64],
}

fn column<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a [T::Native], AggError> {
    let array = batch
        .column_by_name(name)
        .ok_or(AggError::MissingColumn { name })?;
    let Some(typed) = array.as_any().downcast_ref::<PrimitiveArray<T>>() else {
        return Err(AggError::WrongType {
            name,
            expected: T::DATA_TYPE,
            found: array.data_type().clone(),
        });
    };
    // A null slot's value is unspecified, so folding it would make up a number.
    if typed.null_count() > 0 {
        return Err(AggError::Nulls {
            name,
            count: typed.null_count(),
        });
    }
    Ok(typed.values())
}

impl<'a> Cols<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, AggError> {
        Ok(Cols {
            ts: column::<Int64Type>(batch, col::TIMESTAMP)?,
            security: column::<UInt32Type>(batch, col::SECURITY)?,
            participant: column::<UInt32Type>(batch, col::PARTICIPANT)?,
            quantity: column::<UInt64Type>(batch, col::QUANTITY)?,
            price: column::<Int64Type>(batch, col::PRICE)?,
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
    spec: Arc<AggSpec>,
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
    pub fn new(spec: Arc<AggSpec>) -> Self {
        let wants = |g: Grouping| spec.groupings.contains(&g);
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

    pub fn spec(&self) -> &Arc<AggSpec> {
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
        let mut wanted = self.spec.groupings.clone();
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
            tables.push(Table {
                name: g.table_name(),
                columns: self.header(Some(g.key_column())),
                rows,
            });
        }
        tables.push(Table {
            name: "summary",
            columns: self.header(None),
            rows: vec![self.summary_row()],
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, UInt32Array, UInt64Array};
    use arrow_schema::{Field, Schema};

    /// (timestamp, security, participant, quantity, price)
    type Row = (i64, u32, u32, u64, i64);

    /// A batch with the aggregator's columns in a shuffled order plus one it must ignore.
    fn batch(rows: &[Row]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("price", DataType::Int64, false),
            Field::new("exchangeordertype", DataType::UInt32, false),
            Field::new("participantid", DataType::UInt32, false),
            Field::new("timestamp", DataType::Int64, false),
            Field::new("quantity", DataType::UInt64, false),
            Field::new("security_code", DataType::UInt32, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|_| 64))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.1))),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    fn spec_with(groupings: &[Grouping], quantiles: &[f64]) -> Arc<AggSpec> {
        Arc::new(AggSpec {
            groupings: groupings.to_vec(),
            zone: Zone::default(),
            quantiles: quantiles.to_vec(),
        })
    }

    fn standard() -> Arc<AggSpec> {
        Arc::new(AggSpec::standard())
    }

    fn aggregate(spec: &Arc<AggSpec>, rows: &[Row]) -> AggState {
        let mut s = AggState::new(spec.clone());
        s.update(&batch(rows)).unwrap();
        s
    }

    fn csv_of(tables: &[Table], name: &str) -> String {
        let t = tables.iter().find(|t| t.name == name).unwrap();
        String::from_utf8(t.to_csv()).unwrap()
    }

    fn all_csv(state: &AggState) -> Vec<(&'static str, Vec<u8>)> {
        state
            .finish()
            .iter()
            .map(|t| (t.name, t.to_csv()))
            .collect()
    }

    const M: &str = "orders,quantity_sum,quantity_mean,quantity_std,price_mean,price_min,price_max,\
                     vwap,participants,securities,first_ts,last_ts";

    /// Two Sydney trading days either side of the 2024-10-06 switch to daylight saving: Friday
    /// 2024-10-04 (UTC+10) and Monday 2024-10-07 (UTC+11). Timestamps from Python's zoneinfo;
    /// rows 5 and 6 are out of time order on purpose.
    const ROWS: [Row; 12] = [
        (1728000300000000000, 100, 1, 500, 1000),   // 10-04 10:05:00
        (1728001800000000000, 200, 2, 1500, 2000),  // 10-04 10:30:00
        (1728003599999999999, 100, 1, 1000, 1010),  // 10-04 10:59:59.999999999
        (1728003600000000000, 100, 3, 20000, 995),  // 10-04 11:00:00
        (1728021599000000000, 200, 2, 0, 2005),     // 10-04 15:59:59
        (1728015000000000000, 200, 1, 7000, 1990),  // 10-04 14:10:00
        (1728255600000000000, 100, 2, 60000, 1020), // 10-07 10:00:00
        (1728256500000000000, 200, 3, 3000, 2010),  // 10-07 10:15:00
        (1728261900000000000, 100, 1, 12000, 1000), // 10-07 11:45:00
        (1728262200000000000, 100, 1, 800, 1005),   // 10-07 11:50:00
        (1728271200000000000, 200, 2, 5000, 2020),  // 10-07 14:20:00
        (1728275400000000000, 100, 3, 100, 1015),   // 10-07 15:30:00
    ];

    #[test]
    fn standard_tables_match_hand_computed_csv() {
        // Expected values from an independent Python computation: exact Fractions rounded once,
        // stdev checked against statistics.stdev.
        let tables = aggregate(&standard(), &ROWS).finish();
        let names: Vec<_> = tables.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "by_security",
                "by_date",
                "by_participant",
                "by_hour",
                "by_size",
                "hourly",
                "daily",
                "summary"
            ]
        );
        assert_eq!(
            csv_of(&tables, "by_security"),
            format!(
                "security_code,{M}\n\
                 100,7,94400,13485.714285714286,21881.684012847258,1006.4285714285714,995,1020,1011.8167372881356,3,1,1728000300000000000,1728275400000000000\n\
                 200,5,16500,3300,2774.887385102322,2005,1990,2020,2003.6363636363637,3,1,1728001800000000000,1728271200000000000\n"
            )
        );
        let by_date = format!(
            "date,{M}\n\
             2024-10-04,6,30000,5000,7778.174593052023,1500,995,2005,1278,3,2,1728000300000000000,1728021599000000000\n\
             2024-10-07,6,80900,13483.333333333334,23185.54866003103,1345,1000,2020,1115.3955500618047,3,2,1728255600000000000,1728275400000000000\n"
        );
        assert_eq!(csv_of(&tables, "by_date"), by_date);
        assert_eq!(csv_of(&tables, "daily"), by_date);
        assert_eq!(
            csv_of(&tables, "by_participant"),
            format!(
                "participantid,{M}\n\
                 1,5,21300,4260,5102.744359655891,1201,1000,1990,1326.0093896713615,1,2,1728000300000000000,1728262200000000000\n\
                 2,4,66500,16625,28992.45591528941,1761.25,1020,2020,1117.2932330827068,1,2,1728001800000000000,1728271200000000000\n\
                 3,3,23100,7700,10750.348831549607,1340,995,2010,1126.904761904762,1,2,1728003600000000000,1728275400000000000\n"
            )
        );
        assert_eq!(
            csv_of(&tables, "by_hour"),
            format!(
                "hour,{M}\n\
                 10,5,66000,13200,26178.712726182697,1408,1000,2010,1086.969696969697,3,2,1728000300000000000,1728256500000000000\n\
                 11,3,32800,10933.333333333334,9644.342037346732,1000,995,1005,997.0731707317074,2,1,1728003600000000000,1728262200000000000\n\
                 14,2,12000,6000,1414.213562373095,2005,1990,2020,2002.5,2,1,1728015000000000000,1728271200000000000\n\
                 15,2,100,50,70.71067811865476,1510,1015,2005,1015,2,2,1728021599000000000,1728275400000000000\n"
            )
        );
        assert_eq!(
            csv_of(&tables, "by_size"),
            format!(
                "size_bucket,{M}\n\
                 <=1K,5,2400,480,432.43496620879307,1207,1000,2005,1006.4583333333334,3,2,1728000300000000000,1728275400000000000\n\
                 1K-5K,3,9500,3166.6666666666665,1755.9422921421233,2010,2000,2020,2013.6842105263158,2,1,1728001800000000000,1728271200000000000\n\
                 5K-10K,1,7000,7000,,1990,1990,1990,1990,1,1,1728015000000000000,1728015000000000000\n\
                 10K-50K,2,32000,16000,5656.85424949238,997.5,995,1000,996.875,2,1,1728003600000000000,1728261900000000000\n\
                 >50K,1,60000,60000,,1020,1020,1020,1020,1,1,1728255600000000000,1728255600000000000\n"
            )
        );
        // 2024-10-04 15:00 holds only a zero-quantity order: no std (one order), no vwap (Σq = 0).
        assert_eq!(
            csv_of(&tables, "hourly"),
            format!(
                "hour_start,{M}\n\
                 2024-10-04 10:00,3,3000,1000,500,1336.6666666666667,1000,2000,1503.3333333333333,2,2,1728000300000000000,1728003599999999999\n\
                 2024-10-04 11:00,1,20000,20000,,995,995,995,995,1,1,1728003600000000000,1728003600000000000\n\
                 2024-10-04 14:00,1,7000,7000,,1990,1990,1990,1990,1,1,1728015000000000000,1728015000000000000\n\
                 2024-10-04 15:00,1,0,0,,2005,2005,2005,,1,1,1728021599000000000,1728021599000000000\n\
                 2024-10-07 10:00,2,63000,31500,40305.08652763321,1515,1020,2010,1067.142857142857,2,2,1728255600000000000,1728256500000000000\n\
                 2024-10-07 11:00,2,12800,6400,7919.595949289333,1002.5,1000,1005,1000.3125,1,1,1728261900000000000,1728262200000000000\n\
                 2024-10-07 14:00,1,5000,5000,,2020,2020,2020,2020,1,1,1728271200000000000,1728271200000000000\n\
                 2024-10-07 15:00,1,100,100,,1015,1015,1015,1015,1,1,1728275400000000000,1728275400000000000\n"
            )
        );
        assert_eq!(
            csv_of(&tables, "summary"),
            format!(
                "{M}\n\
                 12,110900,9241.666666666666,17072.703270709564,1422.5,995,2020,1159.3823264201983,3,2,1728000300000000000,1728275400000000000\n"
            )
        );
    }

    #[test]
    fn size_bucket_edges_follow_duckdbs_case() {
        let quantities = [0, 1000, 1001, 5000, 5001, 10000, 10001, 50000, 50001];
        let rows: Vec<Row> = quantities
            .iter()
            .enumerate()
            .map(|(i, &q)| (1728000300000000000 + i as i64, 100, 1, q, 1000))
            .collect();
        let spec = spec_with(&[Grouping::Size], &[]);
        let tables = aggregate(&spec, &rows).finish();
        let by_size = &tables[0];
        assert_eq!(by_size.name, "by_size");
        let counts: Vec<(String, Cell, Cell)> = by_size
            .rows
            .iter()
            .map(|r| (r[0].to_string(), r[1].clone(), r[2].clone()))
            .collect();
        let expect =
            |label: &str, n: i128, sum: i128| (label.to_string(), Cell::Int(n), Cell::Int(sum));
        assert_eq!(
            counts,
            [
                expect("<=1K", 2, 1000),
                expect("1K-5K", 2, 6001),
                expect("5K-10K", 2, 15001),
                expect("10K-50K", 2, 60001),
                expect(">50K", 1, 50001),
            ]
        );
    }

    #[test]
    fn merging_any_split_in_any_order_gives_identical_bytes() {
        for quantiles in [&[][..], &[0.5, 0.9][..]] {
            let spec = spec_with(&Grouping::ALL, quantiles);
            let whole = all_csv(&aggregate(&spec, &ROWS));
            let full = batch(&ROWS);
            let splits: [&[usize]; 4] = [
                &[6],
                &[1, 7],
                &[3, 4, 5, 11],
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            ];
            for cuts in splits {
                // RecordBatch::slice exercises arrays with a non-zero offset.
                let bounds: Vec<usize> = [0]
                    .iter()
                    .chain(cuts)
                    .chain([&ROWS.len()])
                    .copied()
                    .collect();
                let parts: Vec<AggState> = bounds
                    .windows(2)
                    .map(|w| {
                        let mut s = AggState::new(spec.clone());
                        s.update(&full.slice(w[0], w[1] - w[0])).unwrap();
                        s
                    })
                    .collect();

                let mut forward = AggState::new(spec.clone());
                for p in parts.iter().cloned() {
                    forward.merge(p);
                }
                let mut backward = AggState::new(spec.clone());
                for p in parts.iter().rev().cloned() {
                    backward.merge(p);
                }
                // Pairwise, as a tree of workers would combine them.
                let mut level = parts.clone();
                while level.len() > 1 {
                    let mut next = Vec::new();
                    let mut it = level.into_iter();
                    while let Some(mut a) = it.next() {
                        if let Some(b) = it.next() {
                            a.merge(b);
                        }
                        next.push(a);
                    }
                    level = next;
                }
                let tree = level.pop().unwrap();
                // One state fed the parts as successive batches.
                let mut streamed = AggState::new(spec.clone());
                for w in bounds.windows(2) {
                    streamed.update(&full.slice(w[0], w[1] - w[0])).unwrap();
                }

                for merged in [forward, backward, tree, streamed] {
                    assert_eq!(merged.rows(), 12);
                    assert_eq!(all_csv(&merged), whole, "split at {cuts:?}");
                }
            }
        }
    }

    #[test]
    fn empty_state_gives_header_only_tables_and_zero_summary() {
        let mut state = AggState::new(standard());
        state.update(&batch(&[])).unwrap();
        assert_eq!(state.rows(), 0);
        let tables = state.finish();
        assert_eq!(tables.len(), 8);
        for t in &tables[..7] {
            let header = format!("{},{M}\n", t.columns[0]);
            assert_eq!(String::from_utf8(t.to_csv()).unwrap(), header, "{}", t.name);
        }
        assert_eq!(
            csv_of(&tables, "summary"),
            format!("{M}\n0,0,,,,,,,0,0,,\n")
        );

        let state = AggState::new(spec_with(&[], &[0.5]));
        let tables = state.finish();
        assert_eq!(tables.len(), 1);
        assert_eq!(
            csv_of(&tables, "summary"),
            format!("{M},quantity_p50\n0,0,,,,,,,0,0,,,\n")
        );
    }

    #[test]
    fn quantiles_only_when_configured_and_close_to_true_values() {
        let plain = aggregate(&standard(), &ROWS).finish();
        for t in &plain {
            assert!(
                t.columns.last().is_some_and(|c| c == "last_ts"),
                "{}",
                t.name
            );
        }

        let qs = [0.5, 0.9, 0.99, 0.999];
        let spec = spec_with(&[Grouping::Security, Grouping::Hourly], &qs);
        // Quantities 1..=100000 in shuffled order over two securities; each security gets every
        // other quantity, so its true quantiles are the overall ones within 1.
        let rows: Vec<Row> = (0..100_000u64)
            .map(|i| {
                let q = (i * 7_919) % 100_000 + 1;
                (
                    1728000300000000000 + i as i64,
                    100 + (q % 2) as u32,
                    1,
                    q,
                    1000,
                )
            })
            .collect();
        let tables = aggregate(&spec, &rows).finish();
        for t in &tables {
            let tail: Vec<&str> = t.columns[t.columns.len() - 5..]
                .iter()
                .map(String::as_str)
                .collect();
            assert_eq!(
                tail,
                [
                    "last_ts",
                    "quantity_p50",
                    "quantity_p90",
                    "quantity_p99",
                    "quantity_p99.9"
                ]
            );
        }
        let truth = [50_000.0, 90_000.0, 99_000.0, 99_900.0];
        let summary = tables.last().unwrap();
        let security = &tables[0];
        assert_eq!(security.rows.len(), 2);
        for row in [&summary.rows[0], &security.rows[0], &security.rows[1]] {
            let values = &row[row.len() - 4..];
            for (v, t) in values.iter().zip(truth) {
                let Cell::Int(v) = v else { panic!("{v:?}") };
                // Three significant figures: within 0.1%, plus 1 for the odd/even split.
                assert!(((*v as f64) - t).abs() <= t * 1e-3 + 1.0, "{v} vs {t}");
            }
        }
        assert_eq!(quantile_column(0.999), "quantity_p99.9");
        assert_eq!(quantile_column(0.5), "quantity_p50");
        assert_eq!(quantile_column(0.25), "quantity_p25");
    }

    #[test]
    fn wrong_missing_or_null_column_is_reported() {
        let mut state = AggState::new(standard());
        let full = batch(&ROWS[..2]);

        let without_price = full.project(&[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(
            state.update(&without_price),
            Err(AggError::MissingColumn { name: "price" })
        );

        let mut columns = full.columns().to_vec();
        let mut fields: Vec<Field> = full
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        columns[4] = Arc::new(Int64Array::from(vec![500, 1500]));
        fields[4] = Field::new("quantity", DataType::Int64, false);
        let signed =
            RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), columns.clone()).unwrap();
        assert_eq!(
            state.update(&signed),
            Err(AggError::WrongType {
                name: "quantity",
                expected: DataType::UInt64,
                found: DataType::Int64
            })
        );

        columns[4] = Arc::new(UInt64Array::from(vec![Some(500), None]));
        fields[4] = Field::new("quantity", DataType::UInt64, true);
        let nulls = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        assert_eq!(
            state.update(&nulls),
            Err(AggError::Nulls {
                name: "quantity",
                count: 1
            })
        );

        assert_eq!(state.rows(), 0);
        assert_eq!(
            csv_of(&state.finish(), "summary"),
            format!("{M}\n0,0,,,,,,,0,0,,\n")
        );
    }

    #[test]
    fn only_requested_tables_in_standard_order() {
        let spec = spec_with(&[Grouping::Daily, Grouping::Security, Grouping::Daily], &[]);
        let names: Vec<_> = aggregate(&spec, &ROWS)
            .finish()
            .iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["by_security", "daily", "summary"]);

        assert_eq!(" Hourly ".parse::<Grouping>(), Ok(Grouping::Hourly));
        for g in Grouping::ALL {
            assert_eq!(g.name().parse::<Grouping>(), Ok(g));
        }
        assert_eq!(
            "weekly".parse::<Grouping>(),
            Err(ParseGroupingError("weekly".to_string()))
        );
    }

    #[test]
    fn repeated_hour_when_daylight_saving_ends_is_one_slot() {
        // 2025-04-06 03:00 AEDT the clocks go back to 02:00 AEST: 02:30 happens twice.
        let first = 1_743_867_000 * 1_000_000_000; // 02:30 AEDT (UTC+11)
        let second = 1_743_870_600 * 1_000_000_000; // 02:30 AEST (UTC+10)
        let spec = spec_with(&[Grouping::Hour, Grouping::Hourly], &[]);
        let tables = aggregate(&spec, &[(first, 1, 1, 10, 5), (second, 1, 2, 30, 7)]).finish();
        assert_eq!(
            csv_of(&tables, "hourly"),
            format!(
                "hour_start,{M}\n2025-04-06 02:00,2,40,20,14.142135623730951,6,5,7,6.5,2,1,{first},{second}\n"
            )
        );
        assert_eq!(tables[0].rows.len(), 1);
        assert_eq!(tables[0].rows[0][0], Cell::Int(2));
    }

    #[test]
    fn extreme_values_are_summed_exactly() {
        let q = u64::MAX;
        let rows = [
            (1, 1, 1, q, i64::MAX),
            (2, 1, 1, q, i64::MAX),
            (3, 1, 1, q, i64::MAX),
            (4, 1, 1, q, i64::MIN),
        ];
        let spec = spec_with(&[], &[]);
        let tables = aggregate(&spec, &rows).finish();
        // Σq = 4·(2^64 − 1); Σp·q overflows i128; the price and vwap mean is (2^64 − 3) / 4.
        assert_eq!(
            csv_of(&tables, "summary"),
            format!(
                "{M}\n4,73786976294838206460,18446744073709552000,0,4611686018427388000,\
                 -9223372036854775808,9223372036854775807,4611686018427388000,1,1,1,4\n"
            )
        );
    }

    #[test]
    fn ratio_is_correctly_rounded() {
        let cases: [(u128, u128); 5] = [(1, 3), (2, 3), (10, 4), (u128::MAX, 7), (1 << 100, 3)];
        for (n, d) in cases {
            // f64 division of two exactly representable values rounds once, correctly.
            let expect = if n < (1 << 53) {
                n as f64 / d as f64
            } else {
                f64::NAN
            };
            let got = unsigned_ratio(U256::from(n), d);
            if expect.is_nan() {
                assert!((got - n as f64 / d as f64).abs() <= got * 2e-16, "{n}/{d}");
            } else {
                assert_eq!(got, expect, "{n}/{d}");
            }
        }
        // 2^100 / 3 rounds to nearest: the exact quotient is 422550200076076467165567735125.33..
        assert_eq!(
            unsigned_ratio(U256::from(1u128 << 100), 3),
            4.2255020007607644e29
        );
        // A quotient just above the midpoint between two doubles must round up, which only the
        // remainder tells: (2^54 + 2 + 1/d) lies between 2^54 and 2^54 + 4.
        let d = (1u128 << 70) + 1;
        let above = U256::from(((1u128 << 54) + 2) * d + 1);
        assert_eq!(unsigned_ratio(above, d), 18014398509481988.0);
        assert_eq!(unsigned_ratio(above - 2, d), 18014398509481984.0);
        assert_eq!(ratio(I256::from(-7), 2), -3.5);
    }

    #[test]
    fn state_is_send_and_static() {
        fn check<T: Send + 'static>() {}
        check::<AggState>();
    }

    /// A checkpoint must finish into the same tables and keep merging exactly, with quantile
    /// histograms and every table on, after a trip through the daemon's binary encoding.
    #[test]
    fn a_restored_snapshot_finishes_and_merges_like_the_original() {
        let spec = spec_with(&Grouping::ALL, &[0.5, 0.99]);
        let (a, b) = ROWS.split_at(5);
        let first = aggregate(&spec, a);
        let bytes = postcard::to_stdvec(&first.snapshot()).unwrap();
        let snap: AggSnapshot = postcard::from_bytes(&bytes).unwrap();
        let mut restored = AggState::restore(spec.clone(), &snap).unwrap();
        assert_eq!(all_csv(&restored), all_csv(&first));
        assert_eq!(restored.snapshot(), first.snapshot());
        restored.merge(aggregate(&spec, b));
        assert_eq!(all_csv(&restored), all_csv(&aggregate(&spec, &ROWS)));
        assert_eq!(restored.rows(), 12);

        let mut broken = snap.clone();
        broken.sizes.pop();
        let err = AggState::restore(spec, &broken).unwrap_err();
        assert!(err.to_string().contains("size buckets"), "{err}");
    }
}
