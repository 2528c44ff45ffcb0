//! The exact accumulators an aggregate is folded into: per-group sums in 128 and 256 bits,
//! min/max, quantity histograms, and packed id pairs for exact distinct counts. Floats are only
//! derived from them when tables are finished.

use std::hash::Hash;

use ethnum::{I256, U256};
use hdrhistogram::Histogram;
use rustc_hash::{FxHashMap, FxHashSet};

/// The name of the column a quantile adds: 0.5 → `quantity_p50`, 0.999 → `quantity_p99.9`.
pub(crate) fn quantile_column(q: f64) -> String {
    // Rounding to a millionth of a percent names 0.999 `p99.9` rather than its binary neighbour.
    let pct = (q * 100.0 * 1e6).round() / 1e6;
    format!("quantity_p{pct}")
}

pub(super) const MEASURES: [&str; 12] = [
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

pub(super) const SIZE_LABELS: [&str; 5] = ["<=1K", "1K-5K", "5K-10K", "10K-50K", ">50K"];

/// The size bucket of a quantity, as DuckDB's CASE ranks it (so 0 falls in `<=1K`).
#[inline]
pub(super) fn size_bucket(q: u64) -> usize {
    usize::from(q > 1_000)
        + usize::from(q > 5_000)
        + usize::from(q > 10_000)
        + usize::from(q > 50_000)
}

/// Exact sums of one group. Σq² and Σp·q take 256 bits because a single term can already fill 128.
#[derive(Clone, Debug)]
pub(super) struct Acc {
    pub(super) orders: u64,
    pub(super) q_sum: u128,
    pub(super) q_sq_sum: U256,
    pub(super) p_sum: i128,
    pub(super) pq_sum: I256,
    pub(super) p_min: i64,
    pub(super) p_max: i64,
    pub(super) ts_min: i64,
    pub(super) ts_max: i64,
}

impl Acc {
    pub(super) const EMPTY: Acc = Acc {
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
    pub(super) fn add(&mut self, q: u64, p: i64, ts: i64) {
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

    pub(super) fn merge(&mut self, o: &Acc) {
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
pub(super) fn unsigned_ratio(num: U256, den: u128) -> f64 {
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

pub(super) fn ratio(num: I256, den: u128) -> f64 {
    let v = unsigned_ratio(num.unsigned_abs(), den);
    if num.is_negative() { -v } else { v }
}

pub(super) fn new_histogram() -> Histogram<u64> {
    // Three significant figures is always a valid precision, and `new` sizes the range on demand.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

#[inline]
pub(super) fn record(h: &mut Histogram<u64>, q: u64) {
    // `record` grows the range; only values above i64::MAX / 2 cannot fit and are clamped.
    if h.record(q).is_err() {
        h.saturating_record(q);
    }
}

pub(super) fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Accumulators for groups of one key, in first-seen order, with a cache of the last key looked
/// up because time-ordered input hits the same slot many rows in a row.
#[derive(Clone)]
pub(super) struct Groups<K> {
    pub(super) keys: Vec<K>,
    pub(super) accs: Vec<Acc>,
    /// Parallel to `accs` when quantiles are configured, empty otherwise.
    pub(super) hists: Vec<Histogram<u64>>,
    pub(super) index: FxHashMap<K, usize>,
    pub(super) last: Option<(K, usize)>,
    pub(super) with_hist: bool,
}

impl<K: Copy + Eq + Hash> Groups<K> {
    pub(super) fn new(with_hist: bool) -> Self {
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
    pub(super) fn position(&mut self, key: K) -> usize {
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
    pub(super) fn push(&mut self, key: K) -> usize {
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
    pub(super) fn add(&mut self, i: usize, q: u64, p: i64, ts: i64) {
        self.accs[i].add(q, p, ts);
        if self.with_hist {
            record(&mut self.hists[i], q);
        }
    }

    pub(super) fn merge(&mut self, other: &Groups<K>) {
        for (j, &key) in other.keys.iter().enumerate() {
            let i = self.position(key);
            self.accs[i].merge(&other.accs[j]);
            if let (Some(into), Some(from)) = (self.hists.get_mut(i), other.hists.get(j)) {
                add_histogram(into, from);
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (K, &Acc, Option<&Histogram<u64>>)> {
        self.keys
            .iter()
            .zip(&self.accs)
            .enumerate()
            .map(|(i, (&k, a))| (k, a, self.hists.get(i)))
    }
}

/// Packs a (group, member) pair into one set key: the group's 32 bits high, the member's low.
#[inline(always)]
pub(super) fn pack(group: u32, member: u32) -> u64 {
    (u64::from(group) << 32) | u64::from(member)
}

/// The 32 bits a local hour number is packed as. Local hours of i64 nanoseconds stay within
/// ±2.6 million, so the low 32 bits hold the whole value.
#[inline(always)]
pub(super) fn slot_bits(hour: i64) -> u32 {
    hour as i32 as u32
}

pub(super) fn slot_of_bits(bits: u32) -> i64 {
    i64::from(bits as i32)
}

/// Distinct members per group of a pair set; each pair is unique, so counting suffices.
pub(super) fn count_by_group(pairs: &FxHashSet<u64>) -> FxHashMap<u32, u64> {
    let mut counts = FxHashMap::default();
    for &k in pairs {
        *counts.entry((k >> 32) as u32).or_insert(0) += 1;
    }
    counts
}

/// Distinct groups per member of a pair set.
pub(super) fn count_by_member(pairs: &FxHashSet<u64>) -> FxHashMap<u32, u64> {
    let mut counts = FxHashMap::default();
    for &k in pairs {
        *counts.entry(k as u32).or_insert(0) += 1;
    }
    counts
}

/// Distinct members per coarser group, where `coarser` may map several groups to one, so the
/// (coarser group, member) pairs have to be deduplicated first.
pub(super) fn count_by_coarser<G: Copy + Eq + Hash>(
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
