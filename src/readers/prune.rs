//! Pushdown: the filters a reader's rows go through, turned into row-group and page pruning of
//! a Parquet file before any row is decoded.
//!
//! Each filter condition becomes a test on a column's range of values (`min..=max` from the
//! footer's row-group statistics or the page index): securities, participants and exact order
//! types are lists of codes, `any_bit` order types a bit mask, and local dates and trading hours
//! ranges of UTC timestamps with daylight saving applied (`time::utc_bounds`, loose but never
//! tight). A row group or page is skipped only when no filter of the reader can keep any of its
//! rows, *and* the statistics prove that none of its rows is malformed (no nulls, every value
//! fits the catalogue's type): a bad row must be rejected or fail the run whether or not its
//! neighbours can match. What is read still goes through the filter, so pruning changes what
//! is decoded, never a result. A file in a `date=YYYY-MM-DD` folder, written by a date-
//! partitioned sink (whose footer names the zone of its dates), is pruned whole by its path.

use std::ops::Range;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array};
use arrow_cast::cast;
use arrow_schema::{DataType, Schema};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::metadata::page_index::PageIndexProvider;
use parquet::schema::types::SchemaDescriptor;

use crate::config::{FilterSpec, OrderTypeMatch};
use crate::flow::stats::ParquetScan;
use crate::schema::col;
use crate::time::{self, DAY_NS, Zone};

/// Footer key of a date-partitioned Parquet file: the zone its `date=` folder's date is in.
pub(crate) const DATE_ZONE_KEY: &str = "sweep.date_zone";

/// Days of trading hours a row group may span before its hours are not tested (an unsorted
/// file's row groups span the whole file).
const MAX_DAYS: i64 = 1000;

/// One filter's conditions as tests on column ranges.
#[derive(Debug, Clone)]
struct Conditions {
    tests: Vec<(&'static str, Test)>,
    /// Inclusive local days and their zone, for a date-partitioned file's path.
    dates: Option<(i32, i32, Zone)>,
}

#[derive(Debug, Clone)]
enum Test {
    /// Any of these values (sorted).
    Codes(Vec<i64>),
    /// A value with any of these bits.
    AnyBit(i64),
    /// A timestamp in `[lo, hi)`.
    Span(i64, i64),
    /// A timestamp whose local time of day is in `[start, end)`.
    Hours { start: i64, end: i64, zone: Zone },
}

impl Test {
    /// Whether a column whose values lie in `min..=max` can hold a value that passes.
    fn may_match(&self, min: i64, max: i64) -> bool {
        match self {
            Test::Codes(codes) => {
                let at = codes.partition_point(|&c| c < min);
                codes.get(at).is_some_and(|&c| c <= max)
            }
            Test::AnyBit(mask) => any_bit_between(*mask, min, max),
            Test::Span(lo, hi) => *lo <= max && min < *hi,
            Test::Hours { start, end, zone } => {
                let (first, last) = (
                    min.div_euclid(DAY_NS).saturating_sub(1),
                    max.div_euclid(DAY_NS).saturating_add(1),
                );
                if last - first > MAX_DAYS {
                    return true;
                }
                (first..=last).any(|d| {
                    let d = i32::try_from(d).unwrap_or(i32::MAX);
                    let (lo, _) = time::utc_bounds(*zone, d, *start);
                    let (_, hi) = time::utc_bounds(*zone, d, *end);
                    lo <= max && min <= hi
                })
            }
        }
    }
}

/// Whether some integer in `min..=max` has a bit of `mask`: the least such integer at or above
/// `min` is `min` itself or `min` with one of the mask's bits set and the bits below it cleared.
fn any_bit_between(mask: i64, min: i64, max: i64) -> bool {
    if max < 0 || mask == 0 || max < min {
        // Codes are unsigned: a negative range holds none; and no code has a bit of 0.
        return false;
    }
    let min = min.max(0);
    if min & mask != 0 {
        return true;
    }
    (0..63).filter(|b| mask & (1 << b) != 0).any(|b| {
        let v = (min | (1 << b)) & !((1i64 << b) - 1);
        v <= max
    })
}

impl Conditions {
    fn new(f: &FilterSpec) -> Self {
        let mut tests = Vec::new();
        if let Some((mode, codes)) = &f.order_types {
            tests.push((
                col::ORDER_TYPE,
                match mode {
                    OrderTypeMatch::Exact => codes_test(codes),
                    OrderTypeMatch::AnyBit => {
                        Test::AnyBit(codes.iter().fold(0, |m, &c| m | i64::from(c)))
                    }
                },
            ));
        }
        if let Some(s) = &f.securities {
            tests.push((col::SECURITY, codes_test(s)));
        }
        if let Some(p) = &f.participants {
            tests.push((col::PARTICIPANT, codes_test(p)));
        }
        if let Some((from, to)) = f.dates {
            let lo = from.map_or(i64::MIN, |d| time::utc_bounds(f.date_zone, d, 0).0);
            let hi = to.map_or(i64::MAX, |d| {
                time::utc_bounds(f.date_zone, d.saturating_add(1), 0).1
            });
            tests.push((col::TIMESTAMP, Test::Span(lo, hi)));
        }
        if let Some(h) = &f.hours {
            tests.push((
                col::TIMESTAMP,
                Test::Hours {
                    start: h.start,
                    end: h.end,
                    zone: h.zone,
                },
            ));
        }
        Conditions {
            tests,
            dates: f.dates.map(|(from, to)| {
                (
                    from.unwrap_or(i32::MIN),
                    to.unwrap_or(i32::MAX),
                    f.date_zone,
                )
            }),
        }
    }
}

fn codes_test(codes: &[u32]) -> Test {
    let mut v: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
    v.sort_unstable();
    v.dedup();
    Test::Codes(v)
}

/// A reader's pushdown: one entry per filter its rows go through.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pushdown {
    filters: Vec<Conditions>,
}

impl Pushdown {
    pub(crate) fn new<'a>(filters: impl IntoIterator<Item = &'a FilterSpec>) -> Self {
        Pushdown {
            filters: filters.into_iter().map(Conditions::new).collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }
}

/// A column the reader decodes: its field in the file and the catalogue type it is cast to.
pub(crate) struct Decoded<'a> {
    pub canonical: &'a str,
    pub field: &'a str,
    pub target: &'a DataType,
}

/// What to read of a file: its row groups, the rows within them, and the file rows those are
/// (for naming a bad row by its row number).
#[derive(Debug)]
pub(crate) struct Plan {
    pub row_groups: Vec<usize>,
    pub selection: RowSelection,
    /// The file rows read, as ascending ranges of 0-based row numbers.
    pub rows: Vec<Range<u64>>,
    /// What is read and skipped; `bytes_read` the compressed size of what is to be decoded.
    pub counts: ParquetScan,
}

/// Where a column's statistics are, and how to read them.
struct Stats<'a> {
    conv: StatisticsConverter<'a>,
    /// The column's leaf index in the Parquet schema, when it has one.
    leaf: Option<usize>,
}

/// One span of rows with the statistics of one column over it.
struct Span {
    rows: Range<usize>,
    min: Option<i64>,
    max: Option<i64>,
    nulls: Option<u64>,
    /// min and max fit the catalogue's type (always true for text).
    fits: bool,
}

/// Plans what to read of a file from its footer and page index.
pub(crate) fn plan(
    push: &Pushdown,
    path: &Path,
    meta: &ParquetMetaData,
    arrow: &Schema,
    parquet: &SchemaDescriptor,
    decoded: &[Decoded<'_>],
) -> Result<Plan, ParquetError> {
    let stats = |field: &str| -> Result<Stats<'_>, ParquetError> {
        let conv = StatisticsConverter::try_new(field, arrow, parquet)?
            .with_missing_null_counts_as_zero(false);
        let leaf = conv.parquet_column_index();
        Ok(Stats { conv, leaf })
    };
    let field_of = |canonical: &str| decoded.iter().find(|d| d.canonical == canonical);
    let decoded_stats: Vec<(Stats<'_>, &DataType)> = decoded
        .iter()
        .map(|d| Ok((stats(d.field)?, d.target)))
        .collect::<Result<_, ParquetError>>()?;
    // Per filter, per test: the column's statistics (None: the column is not decoded, so the
    // test cannot be judged and passes).
    let mut tests: Vec<Vec<(Option<Stats<'_>>, &Test)>> = Vec::new();
    let excluded = path_excludes(push, path, meta);
    for f in &push.filters {
        let mut t = Vec::new();
        for (c, test) in &f.tests {
            let s = match field_of(c) {
                Some(d) => Some(stats(d.field)?),
                None => None,
            };
            t.push((s, test));
        }
        tests.push(t);
    }
    let index = meta.page_index().map(|p| p.as_ref());
    let groups = meta.row_groups();
    let mut plan = Plan {
        row_groups: Vec::new(),
        selection: RowSelection::from(Vec::<RowSelector>::new()),
        rows: Vec::new(),
        counts: ParquetScan::default(),
    };
    let mut selectors: Vec<RowSelector> = Vec::new();
    let mut first_row = 0u64;
    for rg in 0..groups.len() {
        let n = usize::try_from(groups[rg].num_rows()).unwrap_or(0);
        let whole = |s: &Stats<'_>, target: &DataType| whole_span(s, rg, n, groups, target);
        let safe = decoded_stats
            .iter()
            .map(|(s, t)| whole(s, t).map(|sp| sp.is_clean()))
            .collect::<Result<Vec<bool>, _>>()?
            .into_iter()
            .all(|c| c);
        let may = rg_may_match(&tests, &excluded, |s| whole(s, &DataType::Int64))?;
        let mut sel: Vec<Range<usize>> = if !may && safe {
            Vec::new()
        } else if let Some(index) = index.filter(|i| i.is_complete()) {
            let mut keep = if may {
                page_selection(&tests, &excluded, index, rg, n, groups)?
            } else {
                Vec::new()
            };
            for (s, t) in &decoded_stats {
                for sp in
                    spans(s, index, rg, n, groups, t)?.unwrap_or_else(|| vec![Span::unknown(0..n)])
                {
                    if !sp.is_clean() {
                        keep.push(sp.rows);
                    }
                }
            }
            normalise(keep)
        } else {
            std::iter::once(0..n).collect()
        };
        sel.retain(|r| !r.is_empty());
        let kept: usize = sel.iter().map(ExactSizeIterator::len).sum();
        match index {
            Some(index) => {
                count_pages(&mut plan.counts, &decoded_stats, index, rg, n, groups, &sel)?
            }
            None if !sel.is_empty() => {
                plan.counts.bytes_read += decoded_stats
                    .iter()
                    .filter_map(|(s, _)| groups[rg].columns().get(s.leaf?))
                    .map(|c| u64::try_from(c.compressed_size()).unwrap_or(0))
                    .sum::<u64>();
            }
            None => {}
        }
        plan.counts.rows_skipped += (n - kept) as u64;
        if kept == 0 {
            plan.counts.row_groups_skipped += 1;
        } else {
            plan.counts.row_groups_read += 1;
            plan.row_groups.push(rg);
            let mut at = 0;
            for r in &sel {
                if r.start > at {
                    selectors.push(RowSelector::skip(r.start - at));
                }
                selectors.push(RowSelector::select(r.len()));
                plan.rows
                    .push(first_row + r.start as u64..first_row + r.end as u64);
                at = r.end;
            }
            if n > at {
                selectors.push(RowSelector::skip(n - at));
            }
        }
        first_row += n as u64;
    }
    plan.selection = RowSelection::from(selectors);
    Ok(plan)
}

/// Per filter: whether the file's `date=` folder rules it out.
fn path_excludes(push: &Pushdown, path: &Path, meta: &ParquetMetaData) -> Vec<bool> {
    let zone = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == DATE_ZONE_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|z| z.parse::<Zone>().ok());
    let day = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("date="))
        .and_then(|d| time::parse_day(d).ok());
    push.filters
        .iter()
        .map(|f| match (f.dates, zone, day) {
            (Some((from, to, z)), Some(file_zone), Some(day)) => {
                z == file_zone && !(from <= day && day <= to)
            }
            _ => false,
        })
        .collect()
}

/// Whether any filter may keep a row of a span whose column statistics `whole` gives.
fn rg_may_match<'a>(
    tests: &[Vec<(Option<Stats<'a>>, &Test)>],
    excluded: &[bool],
    mut whole: impl FnMut(&Stats<'a>) -> Result<Span, ParquetError>,
) -> Result<bool, ParquetError> {
    for (f, t) in tests.iter().enumerate() {
        if excluded[f] {
            continue;
        }
        let mut all = true;
        for (s, test) in t {
            if let Some(s) = s {
                let sp = whole(s)?;
                if let (Some(min), Some(max)) = (sp.min, sp.max)
                    && !test.may_match(min, max)
                {
                    all = false;
                    break;
                }
            }
        }
        if all {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The rows of row group `rg` that some filter may keep, judged page by page: for each filter,
/// the pages of each tested column that may pass, intersected; then the filters' rows united.
fn page_selection(
    tests: &[Vec<(Option<Stats<'_>>, &Test)>],
    excluded: &[bool],
    index: &dyn PageIndexProvider,
    rg: usize,
    n: usize,
    groups: &[parquet::file::metadata::RowGroupMetaData],
) -> Result<Vec<Range<usize>>, ParquetError> {
    let mut union: Option<RowSelection> = None;
    for (f, t) in tests.iter().enumerate() {
        if excluded[f] {
            continue;
        }
        let mut inter = RowSelection::from_consecutive_ranges(std::iter::once(0..n), n);
        for (s, test) in t {
            let Some(s) = s else { continue };
            let Some(pages) = spans(s, index, rg, n, groups, &DataType::Int64)? else {
                continue;
            };
            let may = pages.into_iter().filter_map(|p| match (p.min, p.max) {
                (Some(min), Some(max)) if !test.may_match(min, max) => None,
                _ => Some(p.rows),
            });
            inter = inter.intersection(&RowSelection::from_consecutive_ranges(may, n));
        }
        union = Some(match union {
            None => inter,
            Some(u) => u.union(&inter),
        });
    }
    Ok(union.map(|u| ranges_of(&u)).unwrap_or_default())
}

/// The selected rows of a selection, as ranges.
fn ranges_of(sel: &RowSelection) -> Vec<Range<usize>> {
    let mut at = 0;
    let mut out = Vec::new();
    for s in sel.iter() {
        if !s.skip {
            out.push(at..at + s.row_count);
        }
        at += s.row_count;
    }
    out
}

/// Sorted, merged ranges.
fn normalise(mut r: Vec<Range<usize>>) -> Vec<Range<usize>> {
    r.retain(|x| !x.is_empty());
    r.sort_by_key(|x| x.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(r.len());
    for x in r {
        match out.last_mut() {
            Some(last) if x.start <= last.end => last.end = last.end.max(x.end),
            _ => out.push(x),
        }
    }
    out
}

impl Span {
    fn unknown(rows: Range<usize>) -> Self {
        Span {
            rows,
            min: None,
            max: None,
            nulls: None,
            fits: false,
        }
    }

    /// The statistics prove the span holds no malformed row.
    fn is_clean(&self) -> bool {
        self.nulls == Some(0) && self.fits
    }
}

/// `min` and `max` cast to i64 where they fit, and whether they fit `target` (a value that
/// does not is a bad row; text always fits).
fn bounds(
    mins: &ArrayRef,
    maxes: &ArrayRef,
    target: &DataType,
) -> Result<(Int64Array, Int64Array, Vec<bool>), ParquetError> {
    let i64s = |a: &ArrayRef| -> Result<Int64Array, ParquetError> {
        if a.data_type().is_integer() {
            Ok(cast(a, &DataType::Int64)
                .map_err(|e| ParquetError::General(e.to_string()))?
                .as_primitive::<Int64Type>()
                .clone())
        } else {
            Ok(Int64Array::new_null(a.len()))
        }
    };
    let fits = |a: &ArrayRef| -> Result<Vec<bool>, ParquetError> {
        if !target.is_integer() {
            return Ok(vec![true; a.len()]);
        }
        let c = cast(a, target).map_err(|e| ParquetError::General(e.to_string()))?;
        Ok((0..a.len()).map(|i| !c.is_null(i)).collect())
    };
    let (lo, hi) = (fits(mins)?, fits(maxes)?);
    let both = lo.iter().zip(&hi).map(|(a, b)| *a && *b).collect();
    Ok((i64s(mins)?, i64s(maxes)?, both))
}

fn opt(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

/// The column's statistics over the whole of row group `rg`.
fn whole_span(
    s: &Stats<'_>,
    rg: usize,
    n: usize,
    groups: &[parquet::file::metadata::RowGroupMetaData],
    target: &DataType,
) -> Result<Span, ParquetError> {
    if s.leaf.is_none() {
        return Ok(Span::unknown(0..n));
    }
    let one = std::iter::once(&groups[rg]);
    let mins = s.conv.row_group_mins(one.clone())?;
    let maxes = s.conv.row_group_maxes(one.clone())?;
    let nulls = s.conv.row_group_null_counts(one)?;
    let (mins, maxes, fits) = bounds(&mins, &maxes, target)?;
    Ok(Span {
        rows: 0..n,
        min: opt(&mins, 0),
        max: opt(&maxes, 0),
        nulls: nulls.is_valid(0).then(|| nulls.value(0)),
        fits: fits.first().copied().unwrap_or(false),
    })
}

/// The column's statistics page by page in row group `rg`, or None without a page index.
fn spans(
    s: &Stats<'_>,
    index: &dyn PageIndexProvider,
    rg: usize,
    n: usize,
    groups: &[parquet::file::metadata::RowGroupMetaData],
    target: &DataType,
) -> Result<Option<Vec<Span>>, ParquetError> {
    let Some(leaf) = s.leaf else { return Ok(None) };
    if index.column_index(rg, leaf).is_none() || index.offset_index(rg, leaf).is_none() {
        return Ok(None);
    }
    let at = [rg];
    let Some(counts) = s.conv.data_page_row_counts(index, groups, &at)? else {
        return Ok(None);
    };
    let mins = s.conv.data_page_mins(index, &at)?;
    let maxes = s.conv.data_page_maxes(index, &at)?;
    let nulls = s.conv.data_page_null_counts(index, &at)?;
    if mins.len() != counts.len() || maxes.len() != counts.len() || nulls.len() != counts.len() {
        return Ok(None);
    }
    let (mins, maxes, fits) = bounds(&mins, &maxes, target)?;
    let mut start = 0usize;
    let mut out = Vec::with_capacity(counts.len());
    for (i, &fits) in fits.iter().enumerate() {
        let len = usize::try_from(counts.value(i)).unwrap_or(0);
        let end = (start + len).min(n);
        out.push(Span {
            rows: start..end,
            min: opt(&mins, i),
            max: opt(&maxes, i),
            nulls: nulls.is_valid(i).then(|| nulls.value(i)),
            fits,
        });
        start = end;
    }
    if start != n {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Counts the decoded columns' pages of row group `rg` that the selection `sel` reads.
fn count_pages(
    counts: &mut ParquetScan,
    decoded: &[(Stats<'_>, &DataType)],
    index: &dyn PageIndexProvider,
    rg: usize,
    n: usize,
    groups: &[parquet::file::metadata::RowGroupMetaData],
    sel: &[Range<usize>],
) -> Result<(), ParquetError> {
    for (s, _) in decoded {
        let Some(leaf) = s.leaf else { continue };
        if index.offset_index(rg, leaf).is_none() {
            continue;
        }
        let Some(rows) = s.conv.data_page_row_counts(index, groups, &[rg])? else {
            continue;
        };
        let sizes = index.offset_index(rg, leaf).map(|o| o.page_locations());
        let mut start = 0usize;
        for i in 0..rows.len() {
            let end = (start + usize::try_from(rows.value(i)).unwrap_or(0)).min(n);
            if sel.iter().any(|r| r.start < end && start < r.end) {
                counts.pages_read += 1;
                // Planned bytes: the page as stored (the reader counts what it really reads).
                let size = sizes
                    .and_then(|p| p.get(i))
                    .map_or(0, |p| p.compressed_page_size);
                counts.bytes_read += u64::try_from(size).unwrap_or(0);
            } else {
                counts.pages_skipped += 1;
            }
            start = end;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
