//! Filters: keep the rows that satisfy every configured condition, evaluated in one pass over
//! each batch. Order types can be matched exactly (the seed's list) or as a bitset (the field
//! is one, domain.md §1.3); times are local, daylight saving applied, with the offset cached per
//! hour by [`LocalClock`].

use std::time::Instant;

use actix::prelude::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use arrow_array::{BooleanArray, PrimitiveArray, RecordBatch};
use arrow_buffer::BooleanBuffer;
use arrow_schema::DataType;
use rustc_hash::FxHashSet;

use crate::batch::Batch;
use crate::config::{FilterSpec, OrderTypeMatch};
use crate::runtime::StageCtx;
use crate::runtime::edge::{Envelope, Outlet};
use crate::schema::col;
use crate::time::LocalClock;

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("filter needs column `{0}`, which the input does not have")]
    MissingColumn(&'static str),
    #[error("filter needs column `{name}` as {expected}, but it is {found}")]
    WrongType {
        name: &'static str,
        expected: DataType,
        found: DataType,
    },
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

fn column<'a, T: arrow_array::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a PrimitiveArray<T>, FilterError> {
    let c = batch
        .column_by_name(name)
        .ok_or(FilterError::MissingColumn(name))?;
    c.as_primitive_opt::<T>()
        .ok_or_else(|| FilterError::WrongType {
            name,
            expected: T::DATA_TYPE,
            found: c.data_type().clone(),
        })
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

/// A filter worker on a SyncArbiter thread.
pub struct FilterWorker {
    pub predicate: Predicate,
    /// This filter's position among the pipeline's filters, for per-job counts.
    pub ordinal: usize,
    pub ctx: StageCtx,
    pub out: Outlet<Batch>,
}

impl Actor for FilterWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Envelope<Batch>> for FilterWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Batch>, _: &mut Self::Context) {
        let t0 = Instant::now();
        let Envelope {
            item: batch,
            credit,
        } = msg;
        if self.ctx.control.aborted() {
            return;
        }
        let kept = match self.predicate.apply(&batch.rows) {
            Ok(k) => k,
            Err(e) => {
                return self
                    .ctx
                    .fail("schema", format!("filter `{}`: {e}", self.ctx.name));
            }
        };
        let (n_in, n_out) = (batch.num_rows() as u64, kept.num_rows() as u64);
        if let Some(job) = self.ctx.run.job(batch.job)
            && let Some(c) = job.filters.get(self.ordinal)
        {
            c.kept
                .fetch_add(n_out, std::sync::atomic::Ordering::Relaxed);
            c.dropped
                .fetch_add(n_in - n_out, std::sync::atomic::Ordering::Relaxed);
        }
        self.ctx.stats.batch(n_in, n_out, t0.elapsed());
        self.ctx.stats.metrics.filtered(n_in - n_out);
        drop(credit);
        // Empty batches still go on: ordered sinks count on seeing every sequence number.
        let _ = self.out.send_blocking(Batch {
            rows: kept,
            ..batch
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HoursSpec;
    use crate::time::{self, HOUR_NS, SECOND_NS, Zone};
    use arrow_array::{Int64Array, UInt32Array};
    use std::sync::Arc;

    fn batch(ts: Vec<i64>, types: Vec<u32>) -> RecordBatch {
        let n = ts.len();
        RecordBatch::try_from_iter([
            ("timestamp", Arc::new(Int64Array::from(ts)) as _),
            ("exchangeordertype", Arc::new(UInt32Array::from(types)) as _),
            (
                "security_code",
                Arc::new(UInt32Array::from(vec![1u32; n])) as _,
            ),
        ])
        .unwrap()
    }

    fn spec() -> FilterSpec {
        FilterSpec {
            order_types: Some((OrderTypeMatch::Exact, vec![64, 256, 2048, 4096, 4098])),
            securities: None,
            participants: None,
            dates: None,
            date_zone: Zone::default(),
            hours: Some(HoursSpec {
                start: 10 * HOUR_NS,
                end: 16 * HOUR_NS,
                zone: Zone::default(),
            }),
        }
    }

    /// UTC ns of a Sydney wall time on a day whose offset is `offset_h`.
    fn syd(date: &str, h: i64, min: i64, s: i64, ns: i64, offset_h: i64) -> i64 {
        let day = time::parse_day(date).unwrap() as i64;
        day * time::DAY_NS + h * HOUR_NS + min * 60 * SECOND_NS + s * SECOND_NS + ns
            - offset_h * HOUR_NS
    }

    #[test]
    fn trading_hour_edges_on_aest_and_aedt_days() {
        for (date, off) in [("2024-09-03", 10), ("2024-11-05", 11)] {
            let ts = vec![
                syd(date, 9, 59, 59, 999_999_999, off),
                syd(date, 10, 0, 0, 0, off),
                syd(date, 15, 59, 59, 999_999_999, off),
                syd(date, 16, 0, 0, 0, off),
            ];
            let mut p = Predicate::new(&spec());
            let mask = p.evaluate(&batch(ts, vec![64; 4])).unwrap();
            assert_eq!(
                mask.iter()
                    .map(Option::unwrap_or_default)
                    .collect::<Vec<_>>(),
                [false, true, true, false],
                "{date}"
            );
        }
    }

    #[test]
    fn order_types_exact_versus_bits() {
        let t = syd("2024-09-03", 11, 0, 0, 0, 10);
        let types = vec![64, 66, 2048, 2050, 1, 4098, 0];
        let mut exact = Predicate::new(&spec());
        let kept: Vec<bool> = exact
            .evaluate(&batch(vec![t; 7], types.clone()))
            .unwrap()
            .iter()
            .map(Option::unwrap_or_default)
            .collect();
        assert_eq!(kept, [true, false, true, false, false, true, false]);
        let mut s = spec();
        s.order_types = Some((OrderTypeMatch::AnyBit, vec![64, 256, 2048, 4096]));
        let kept: Vec<bool> = Predicate::new(&s)
            .evaluate(&batch(vec![t; 7], types))
            .unwrap()
            .iter()
            .map(Option::unwrap_or_default)
            .collect();
        assert_eq!(kept, [true, true, true, true, false, true, false]);
    }

    #[test]
    fn legacy_seed_rule_keeps_the_whole_end_hour_at_fixed_plus_10() {
        // The seed: fixed UTC+10, 10 <= hour <= 16. On an AEDT day 16:30 Sydney is 15:30 at +10.
        let mut s = spec();
        s.hours = Some(HoursSpec {
            start: 10 * HOUR_NS,
            end: 17 * HOUR_NS,
            zone: Zone::Fixed(36000),
        });
        let ts = vec![
            syd("2024-11-05", 10, 30, 0, 0, 11), // 09:30 at +10: dropped
            syd("2024-11-05", 17, 30, 0, 0, 11), // 16:30 at +10: kept
            syd("2024-11-05", 18, 0, 0, 0, 11),  // 17:00 at +10: dropped
        ];
        let kept: Vec<bool> = Predicate::new(&s)
            .evaluate(&batch(ts, vec![64; 3]))
            .unwrap()
            .iter()
            .map(Option::unwrap_or_default)
            .collect();
        assert_eq!(kept, [false, true, false]);
    }

    #[test]
    fn dates_are_local_and_inclusive() {
        let mut s = spec();
        s.hours = None;
        s.dates = Some((
            Some(time::parse_day("2024-10-07").unwrap()),
            Some(time::parse_day("2024-10-08").unwrap()),
        ));
        // 2024-10-06T13:30Z is 2024-10-07 00:30 AEDT: inside although its UTC date is the 6th.
        let ts = vec![
            syd("2024-10-06", 23, 59, 59, 0, 11),
            syd("2024-10-07", 0, 30, 0, 0, 11),
            syd("2024-10-08", 23, 59, 59, 999_999_999, 11),
            syd("2024-10-09", 0, 0, 0, 0, 11),
        ];
        let kept: Vec<bool> = Predicate::new(&s)
            .evaluate(&batch(ts, vec![64; 4]))
            .unwrap()
            .iter()
            .map(Option::unwrap_or_default)
            .collect();
        assert_eq!(kept, [false, true, true, false]);
    }

    #[test]
    fn a_missing_column_is_named() {
        let b =
            RecordBatch::try_from_iter([("price", Arc::new(Int64Array::from(vec![1i64])) as _)])
                .unwrap();
        let err = Predicate::new(&spec()).evaluate(&b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "filter needs column `exchangeordertype`, which the input does not have"
        );
    }
}
