//! The filter's predicate: keeps the rows that satisfy every configured condition, evaluated in
//! one pass over each batch. Order types can be matched exactly (the seed's list) or as a bitset
//! (the field is one, docs/domain.md §1.3); times are local, daylight saving applied, with the
//! offset cached per hour by [`LocalClock`].

use arrow_array::types::{Int64Type, UInt32Type};
use arrow_array::{BooleanArray, RecordBatch};
use arrow_buffer::BooleanBuffer;
use rustc_hash::FxHashSet;

use crate::batch::{ColumnError, column};
use crate::config::{FilterSpec, OrderTypeMatch};
use crate::schema::col;
use crate::time::LocalClock;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter {0}")]
    Column(#[from] ColumnError),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Membership test for u32 codes: a bitmap for small codes (every real order-type and
/// participant code), a hash set beyond.
#[derive(Debug, Clone)]
struct CodeSet {
    small: Box<[u64; 1024]>,
    large: FxHashSet<u32>,
}

impl CodeSet {
    fn new(codes: &[u32]) -> Self {
        let mut small = Box::new([0u64; 1024]);
        let mut large = FxHashSet::default();
        for &c in codes {
            if c < 65536 {
                small[(c >> 6) as usize] |= 1 << (c & 63);
            } else {
                large.insert(c);
            }
        }
        CodeSet { small, large }
    }

    #[inline]
    fn contains(&self, c: u32) -> bool {
        if c < 65536 {
            self.small[(c >> 6) as usize] & (1 << (c & 63)) != 0
        } else {
            self.large.contains(&c)
        }
    }
}

#[derive(Debug, Clone)]
enum TypeTest {
    Exact(CodeSet),
    AnyBit(u32),
}

/// A filter compiled for evaluation.
#[derive(Debug, Clone)]
pub struct Predicate {
    types: Option<TypeTest>,
    securities: Option<CodeSet>,
    participants: Option<CodeSet>,
    dates: Option<(i32, i32, LocalClock)>,
    hours: Option<(i64, i64, LocalClock)>,
}

impl Predicate {
    pub fn new(spec: &FilterSpec) -> Self {
        Predicate {
            types: spec.order_types.as_ref().map(|(mode, codes)| match mode {
                OrderTypeMatch::Exact => TypeTest::Exact(CodeSet::new(codes)),
                OrderTypeMatch::AnyBit => TypeTest::AnyBit(codes.iter().fold(0, |m, c| m | c)),
            }),
            securities: spec.securities.as_deref().map(CodeSet::new),
            participants: spec.participants.as_deref().map(CodeSet::new),
            dates: spec.dates.map(|(from, to)| {
                (
                    from.unwrap_or(i32::MIN),
                    to.unwrap_or(i32::MAX),
                    LocalClock::new(spec.date_zone),
                )
            }),
            hours: spec
                .hours
                .as_ref()
                .map(|h| (h.start, h.end, LocalClock::new(h.zone))),
        }
    }

    /// Which rows of `batch` to keep.
    pub fn evaluate(&mut self, batch: &RecordBatch) -> Result<BooleanArray, FilterError> {
        let n = batch.num_rows();
        let mut keep = BooleanBuffer::new_set(n);
        // Each condition narrows `keep` in its own tight loop over one column.
        if let Some(t) = &self.types {
            let v = column::<UInt32Type>(batch, col::ORDER_TYPE)?.values();
            keep = &keep
                & &match t {
                    TypeTest::Exact(set) => BooleanBuffer::collect_bool(n, |i| set.contains(v[i])),
                    TypeTest::AnyBit(mask) => BooleanBuffer::collect_bool(n, |i| v[i] & mask != 0),
                };
        }
        if let Some(set) = &self.securities {
            let v = column::<UInt32Type>(batch, col::SECURITY)?.values();
            keep = &keep & &BooleanBuffer::collect_bool(n, |i| set.contains(v[i]));
        }
        if let Some(set) = &self.participants {
            let v = column::<UInt32Type>(batch, col::PARTICIPANT)?.values();
            keep = &keep & &BooleanBuffer::collect_bool(n, |i| set.contains(v[i]));
        }
        if self.dates.is_some() || self.hours.is_some() {
            let ts = column::<Int64Type>(batch, col::TIMESTAMP)?.values();
            if let Some((from, to, clock)) = &mut self.dates {
                keep = &keep
                    & &BooleanBuffer::collect_bool(n, |i| {
                        let d = clock.local_day(ts[i]);
                        *from <= d && d <= *to
                    });
            }
            if let Some((start, end, clock)) = &mut self.hours {
                keep = &keep
                    & &BooleanBuffer::collect_bool(n, |i| {
                        let t = clock.time_of_day(ts[i]);
                        *start <= t && t < *end
                    });
            }
        }
        Ok(BooleanArray::new(keep, None))
    }

    /// The kept rows of `batch`.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch, FilterError> {
        let mask = self.evaluate(batch)?;
        if mask.true_count() == batch.num_rows() {
            return Ok(batch.clone());
        }
        Ok(arrow_select::filter::filter_record_batch(batch, &mask)?)
    }
}
