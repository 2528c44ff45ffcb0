//! The pipeline digest: which pipeline a state folder belongs to.
//!
//! A state is only ever extended by a pipeline that gives its aggregates the same meaning: the
//! same readers' parsing, the same filters and the same aggregators, wired the same way. Paths,
//! sinks, the monitor and the runtime may change under a running state, so they are left out.
//!
//! Version 2 (`v2:<hex>`) hashes an explicit [`Shape`] of those settings, serialized as JSON with
//! every key spelled out by `#[serde(rename)]` and every collection in a canonical order. Its
//! text therefore depends on this file alone: renaming or regrouping the fields of the config
//! types cannot change it, and a new setting changes it only when it is added here, under a new
//! version if old states must keep opening.
//!
//! Version 1 (bare hex) hashed the `Debug` text of the config types, so any refactor of those
//! types changed it. [`legacy_v1_digest`] rebuilds that text by hand, frozen as the current release
//! wrote it, so a state from that release is recognised and migrated to version 2 once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::aggregators::Grouping;
use crate::config::{
    AggregatorSpec, Compression, FilterSpec, HoursSpec, InputFormat, OnError, OrderTypeMatch,
    Pipeline, ReaderSpec, StageKind,
};
use crate::time::Zone;

/// Bumped, with the prefix, whenever [`Shape`] records something new or records it differently;
/// the previous version is then kept frozen, as version 1 is in [`legacy_v1_digest`], so that
/// states written under it are migrated rather than refused.
const VERSION: u32 = 2;
const PREFIX: &str = "v2:";

/// The digest of what shapes `p`'s aggregates, as stored in a state written by this version.
pub fn digest(p: &Pipeline) -> String {
    let json = serde_json::to_vec(&Shape::of(p))
        .expect("the shape holds only string-keyed maps and plain values, which always serialize");
    format!("{PREFIX}{:032x}", xxhash_rust::xxh3::xxh3_128(&json))
}

/// How the digest stored in a state relates to a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The state was built by this pipeline.
    Same,
    /// The state was built by this pipeline, under the version 1 digest of an older release.
    LegacyV1,
    /// Another pipeline, or one that changed what the aggregates mean.
    Different,
}

/// Whether the state whose digest is `stored` may be extended by `p`.
pub fn compare(stored: &str, p: &Pipeline) -> Verdict {
    if stored == digest(p) {
        Verdict::Same
    } else if stored == legacy_v1_digest(p) {
        Verdict::LegacyV1
    } else {
        Verdict::Different
    }
}

/// Everything the digest covers, by stage name. The maps are `BTreeMap`s so that the JSON lists
/// stages in name order, whatever order the pipeline file declares them in.
#[derive(Serialize)]
struct Shape<'a> {
    #[serde(rename = "version")]
    version: u32,
    #[serde(rename = "readers")]
    readers: BTreeMap<&'a str, ReaderShape<'a>>,
    #[serde(rename = "filters")]
    filters: BTreeMap<&'a str, FilterShape<'a>>,
    #[serde(rename = "aggregators")]
    aggregators: BTreeMap<&'a str, AggregatorShape<'a>>,
    /// Sweep analyses, which only a sharded run's plan digests (the daemon refuses them). Left
    /// out when there are none, so every pipeline without one keeps the digest it had.
    #[serde(rename = "sweeps", skip_serializing_if = "BTreeMap::is_empty")]
    sweeps: BTreeMap<&'a str, SweepsShape<'a>>,
}

/// What a sweep analysis's tables mean: its two inputs by role and the zone of its dates. Its
/// memory budget and spill folder change where rows wait, not a result.
#[derive(Serialize)]
struct SweepsShape<'a> {
    #[serde(rename = "orders")]
    orders: &'a str,
    #[serde(rename = "trades")]
    trades: &'a str,
    #[serde(rename = "timezone")]
    zone: ZoneShape,
}

/// How a reader turns bytes into rows. Its paths and rejects file are not here: they say where
/// files come from and where bad rows go, not what a kept row means.
#[derive(Serialize)]
struct ReaderShape<'a> {
    #[serde(rename = "format")]
    format: &'static str,
    #[serde(rename = "compression")]
    compression: &'static str,
    #[serde(rename = "delimiter")]
    delimiter: u8,
    /// Canonical column → header name in the file.
    #[serde(rename = "columns")]
    columns: &'a BTreeMap<String, String>,
    /// Decides whether a file with a bad row is kept in part or not at all.
    #[serde(rename = "on_error")]
    on_error: &'static str,
}

#[derive(Serialize)]
struct FilterShape<'a> {
    #[serde(rename = "inputs")]
    inputs: Vec<&'a str>,
    #[serde(rename = "order_types")]
    order_types: Option<OrderTypesShape>,
    #[serde(rename = "securities")]
    securities: Option<Vec<u32>>,
    #[serde(rename = "participants")]
    participants: Option<Vec<u32>>,
    #[serde(rename = "dates")]
    dates: Option<DatesShape>,
    #[serde(rename = "trading_hours")]
    hours: Option<HoursShape>,
}

#[derive(Serialize)]
struct OrderTypesShape {
    #[serde(rename = "match")]
    how: &'static str,
    #[serde(rename = "codes")]
    codes: Vec<u32>,
}

/// The date window with the zone it is read in. The filter's zone is only recorded here,
/// because only the date window uses it: a zone set for no window changes no row.
#[derive(Serialize)]
struct DatesShape {
    /// Inclusive local day numbers (days since 1970-01-01); `None` is an open end.
    #[serde(rename = "from_day")]
    from: Option<i32>,
    #[serde(rename = "to_day")]
    to: Option<i32>,
    #[serde(rename = "timezone")]
    zone: ZoneShape,
}

#[derive(Serialize)]
struct HoursShape {
    /// Nanoseconds after local midnight, start inclusive, end exclusive.
    #[serde(rename = "start_ns")]
    start: i64,
    #[serde(rename = "end_ns")]
    end: i64,
    #[serde(rename = "timezone")]
    zone: ZoneShape,
}

#[derive(Serialize)]
enum ZoneShape {
    #[serde(rename = "iana")]
    Iana(&'static str),
    #[serde(rename = "fixed_offset_secs")]
    Fixed(i32),
}

#[derive(Serialize)]
struct AggregatorShape<'a> {
    #[serde(rename = "inputs")]
    inputs: Vec<&'a str>,
    /// In the order written: the state holds one table per grouping, and this module does not
    /// assume that nothing depends on their order.
    #[serde(rename = "group_by")]
    group_by: Vec<&'static str>,
    #[serde(rename = "timezone")]
    zone: ZoneShape,
    /// Shortest round-trip decimal text: exact (two quantiles print alike only when they are the
    /// same `f64`) and independent of how a JSON library prints floats. In the order written,
    /// like `group_by`.
    #[serde(rename = "quantiles")]
    quantiles: Vec<String>,
}

impl<'a> Shape<'a> {
    fn of(p: &'a Pipeline) -> Self {
        // Inputs are a set: batches from several inputs arrive interleaved in whatever order the
        // edges deliver them, so the order they are listed in cannot change a result.
        let inputs = |ix: &[usize]| -> Vec<&'a str> {
            let mut v: Vec<&str> = ix.iter().map(|&i| p.stages[i].name.as_str()).collect();
            v.sort_unstable();
            v
        };
        let mut shape = Shape {
            version: VERSION,
            readers: BTreeMap::new(),
            filters: BTreeMap::new(),
            aggregators: BTreeMap::new(),
            sweeps: BTreeMap::new(),
        };
        for s in &p.stages {
            let name = s.name.as_str();
            // Readers, filters and aggregators shape the committed state, and sweep analyses a
            // sharded run's partials. Sinks only write what the aggregates and rows already
            // are, and every other kind is refused at load (`StageKind::daemon_refusal`,
            // `shard_refusal`): a kind the daemon or a shard comes to run gets its part here.
            if let StageKind::Reader(r) = &s.kind {
                shape.readers.insert(name, ReaderShape::of(r));
            }
            if let StageKind::Filter(f) = &s.kind {
                shape
                    .filters
                    .insert(name, FilterShape::of(f, inputs(&s.inputs)));
            }
            if let StageKind::Aggregator(a) = &s.kind {
                shape
                    .aggregators
                    .insert(name, AggregatorShape::of(a, inputs(&s.inputs)));
            }
            if let StageKind::Sweeps(w) = &s.kind {
                let role = |i: usize| p.stages.get(i).map_or("", |s| s.name.as_str());
                let shape_of = SweepsShape {
                    orders: role(w.orders),
                    trades: role(w.trades),
                    zone: ZoneShape::of(w.zone),
                };
                shape.sweeps.insert(name, shape_of);
            }
        }
        shape
    }
}

impl<'a> ReaderShape<'a> {
    fn of(r: &'a ReaderSpec) -> Self {
        ReaderShape {
            format: match r.format {
                InputFormat::Auto => "auto",
                InputFormat::Csv => "csv",
                InputFormat::Parquet => "parquet",
            },
            compression: match r.compression {
                Compression::Auto => "auto",
                Compression::None => "none",
                Compression::Gzip => "gzip",
                Compression::Zstd => "zstd",
            },
            delimiter: r.delimiter,
            columns: &r.columns,
            on_error: match r.on_error {
                OnError::Fail => "fail",
                OnError::Reject => "reject",
            },
        }
    }
}

/// A list of codes kept by a filter, as the set it is.
fn code_set(codes: &[u32]) -> Vec<u32> {
    let mut v = codes.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

impl<'a> FilterShape<'a> {
    fn of(f: &FilterSpec, inputs: Vec<&'a str>) -> Self {
        FilterShape {
            inputs,
            order_types: f.order_types.as_ref().map(|(how, codes)| OrderTypesShape {
                how: match how {
                    OrderTypeMatch::Exact => "exact",
                    OrderTypeMatch::AnyBit => "any_bit",
                },
                codes: code_set(codes),
            }),
            securities: f.securities.as_deref().map(code_set),
            participants: f.participants.as_deref().map(code_set),
            dates: f.dates.map(|(from, to)| DatesShape {
                from,
                to,
                zone: ZoneShape::of(f.date_zone),
            }),
            hours: f.hours.as_ref().map(|h| HoursShape {
                start: h.start,
                end: h.end,
                zone: ZoneShape::of(h.zone),
            }),
        }
    }
}

impl ZoneShape {
    fn of(z: Zone) -> Self {
        match z {
            Zone::Iana(tz) => ZoneShape::Iana(tz.name()),
            Zone::Fixed(secs) => ZoneShape::Fixed(secs),
        }
    }
}

fn grouping_key(g: Grouping) -> &'static str {
    match g {
        Grouping::Security => "security",
        Grouping::Date => "date",
        Grouping::Participant => "participant",
        Grouping::Hour => "hour",
        Grouping::Size => "size",
        Grouping::Hourly => "hourly",
        Grouping::Daily => "daily",
    }
}

impl<'a> AggregatorShape<'a> {
    fn of(a: &AggregatorSpec, inputs: Vec<&'a str>) -> Self {
        AggregatorShape {
            inputs,
            group_by: a.group_by.iter().map(|&g| grouping_key(g)).collect(),
            zone: ZoneShape::of(a.zone),
            quantiles: a.quantiles.iter().map(|q| q.to_string()).collect(),
        }
    }
}

/// The version 1 digest of `p`, as the release before version 2 computed it: xxh3-128 of one
/// line per reader, filter and aggregator, sorted and joined by newlines, each line the `Debug`
/// text the config types printed then.
///
/// Frozen: this is a file format, not a view of the current types. Each type's text is spelled
/// out here (struct and variant names included) rather than taken from `Debug`, so refactoring
/// the config types cannot change it; when a type changes, this function is adapted to compute
/// the same text from the new one. Only `Debug` of std values (`f64`, strings) is still used,
/// and std keeps that stable.
pub fn legacy_v1_digest(p: &Pipeline) -> String {
    let mut lines: Vec<String> = p
        .stages
        .iter()
        .filter_map(|s| {
            let inputs = v1::list(s.inputs.iter().map(|&i| format!("{:?}", p.stages[i].name)));
            // Version 1 had readers, filters, aggregators and sinks; sinks were not digested.
            if let StageKind::Reader(r) = &s.kind {
                return Some(v1::reader(&s.name, r));
            }
            if let StageKind::Filter(f) = &s.kind {
                return Some(format!("filter {} {inputs} {}", s.name, v1::filter(f)));
            }
            if let StageKind::Aggregator(a) = &s.kind {
                return Some(format!(
                    "aggregator {} {inputs} {}",
                    s.name,
                    v1::aggregator(a)
                ));
            }
            None
        })
        .collect();
    lines.sort();
    format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(lines.join("\n").as_bytes())
    )
}

/// The `Debug` text of version 1, type by type.
mod v1 {
    use super::*;

    /// `[a, b]`, as `Debug` prints a `Vec`.
    pub(super) fn list(items: impl IntoIterator<Item = String>) -> String {
        format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
    }

    /// `Some(x)` or `None`.
    fn option<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
        v.map_or_else(|| "None".to_string(), |x| format!("Some({})", f(x)))
    }

    fn codes(c: &[u32]) -> String {
        list(c.iter().map(u32::to_string))
    }

    fn zone(z: Zone) -> String {
        match z {
            // chrono-tz prints a zone as its IANA name.
            Zone::Iana(tz) => format!("Iana({})", tz.name()),
            Zone::Fixed(secs) => format!("Fixed({secs})"),
        }
    }

    pub(super) fn reader(name: &str, r: &ReaderSpec) -> String {
        let format = match r.format {
            InputFormat::Auto => "Auto",
            InputFormat::Csv => "Csv",
            InputFormat::Parquet => "Parquet",
        };
        let compression = match r.compression {
            Compression::Auto => "Auto",
            Compression::None => "None",
            Compression::Gzip => "Gzip",
            Compression::Zstd => "Zstd",
        };
        let on_error = match r.on_error {
            OnError::Fail => "Fail",
            OnError::Reject => "Reject",
        };
        let mut columns = String::from("{");
        for (n, (k, v)) in r.columns.iter().enumerate() {
            let sep = if n == 0 { "" } else { ", " };
            let _ = write!(columns, "{sep}{k:?}: {v:?}");
        }
        columns.push('}');
        format!(
            "reader {name} format={format} compression={compression} delimiter={} \
             columns={columns} on_error={on_error}",
            r.delimiter
        )
    }

    fn hours(h: &HoursSpec) -> String {
        format!(
            "HoursSpec {{ start: {}, end: {}, zone: {} }}",
            h.start,
            h.end,
            zone(h.zone)
        )
    }

    pub(super) fn filter(f: &FilterSpec) -> String {
        let order_types = option(f.order_types.as_ref(), |(how, c)| {
            let how = match how {
                OrderTypeMatch::Exact => "Exact",
                OrderTypeMatch::AnyBit => "AnyBit",
            };
            format!("({how}, {})", codes(c))
        });
        let day = |d: Option<i32>| option(d, |d| d.to_string());
        format!(
            "FilterSpec {{ order_types: {order_types}, securities: {}, participants: {}, \
             dates: {}, date_zone: {}, hours: {} }}",
            option(f.securities.as_deref(), codes),
            option(f.participants.as_deref(), codes),
            option(f.dates, |(from, to)| format!(
                "({}, {})",
                day(from),
                day(to)
            )),
            zone(f.date_zone),
            option(f.hours.as_ref(), hours),
        )
    }

    pub(super) fn aggregator(a: &AggregatorSpec) -> String {
        let group_by = list(a.group_by.iter().map(|g| {
            match g {
                Grouping::Security => "Security",
                Grouping::Date => "Date",
                Grouping::Participant => "Participant",
                Grouping::Hour => "Hour",
                Grouping::Size => "Size",
                Grouping::Hourly => "Hourly",
                Grouping::Daily => "Daily",
            }
            .to_string()
        }));
        format!(
            "AggregatorSpec {{ group_by: {group_by}, zone: {}, quantiles: {} }}",
            zone(a.zone),
            list(a.quantiles.iter().map(|q| format!("{q:?}"))),
        )
    }
}

#[cfg(test)]
mod tests;
