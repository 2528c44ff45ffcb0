//! The pipeline file as written: serde structs, one per section, that refuse unknown keys.
//! Nothing here touches the filesystem; `super::resolve` turns these into a checked plan.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

/// `[runtime]`: how much parallelism and memory the run may use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuntimeConfig {
    /// Worker threads for each CPU stage (parsing, filtering, aggregating): `"auto"` (one per
    /// core) or a number.
    pub workers: Option<Spanned<Workers>>,
    /// Bytes of input per block; each block becomes one record batch. Default 1 MiB.
    pub block_bytes: Option<Spanned<u64>>,
    /// Batches in flight on each data edge before the sender waits. Default 8.
    pub edge_capacity: Option<Spanned<u64>>,
}

/// `"auto"` or a positive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workers {
    Auto,
    Count(u64),
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Workers::Count(n)),
            Raw::S(s) if s == "auto" => Ok(Workers::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "workers must be \"auto\" or a number, not \"{s}\""
            ))),
        }
    }
}

/// One path or several; each may be a file, a folder or a glob.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Paths {
    One(String),
    Many(Vec<String>),
}

impl Paths {
    pub(crate) fn list(&self) -> Vec<String> {
        match self {
            Paths::One(p) => vec![p.clone()],
            Paths::Many(v) => v.clone(),
        }
    }
}

/// `[readers.NAME]`: order files to read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReaderConfig {
    /// A file, a folder (every data file in it) or a glob; or a list of them.
    pub path: Spanned<Paths>,
    /// `"auto"` (by extension), `"csv"` or `"parquet"`.
    pub format: Option<Spanned<String>>,
    /// `"auto"` (by extension), `"none"`, `"gzip"` or `"zstd"`; CSV only.
    pub compression: Option<Spanned<String>>,
    /// The CSV field separator, one ASCII character. Default `,`.
    pub delimiter: Option<Spanned<String>>,
    /// Canonical column name → the name in this file's header, for files that spell columns
    /// differently (docs/domain.md §1.9), e.g. `order_id = "orderid"`.
    #[serde(default)]
    pub columns: BTreeMap<String, Spanned<String>>,
    /// What a malformed row does: `"fail"` the job (default) or `"reject"` it into `rejects`.
    pub on_error: Option<Spanned<String>>,
    /// Where rejected rows are written (CSV of file, line, column, reason, raw row). Required
    /// with `on_error = "reject"`.
    pub rejects: Option<Spanned<String>>,
    /// `"orders"` (order events, the default) or `"trades"`; a reader that only feeds the
    /// `trades` input of a sweep analysis reads trades without saying so.
    pub kind: Option<Spanned<String>>,
}

/// `[filters.NAME]`: keeps the rows that satisfy every condition given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterConfig {
    /// Upstream stages (readers or filters).
    pub inputs: Spanned<Vec<Spanned<String>>>,
    /// Order types to keep (`exchangeordertype`); Centre Point is 64, 256, 2048, 4096, 4098.
    pub exchange_order_types: Option<Spanned<Vec<u32>>>,
    /// `"exact"` (the value is one of the list; the seed's rule) or `"any_bit"` (the value shares
    /// a bit with any listed code; the field is a bitset, so 66 = 64|2 counts as Centre Point).
    pub order_type_match: Option<Spanned<String>>,
    /// Security codes (order book ids) to keep.
    pub securities: Option<Spanned<Vec<u32>>>,
    /// Participant ids to keep.
    pub participants: Option<Spanned<Vec<u32>>>,
    /// Local trade dates to keep, inclusive at both ends.
    pub dates: Option<Spanned<DatesConfig>>,
    /// The timezone of `dates` (and of `trading_hours` unless it names its own). Default
    /// Australia/Sydney.
    pub timezone: Option<Spanned<String>>,
    /// A local time-of-day window.
    pub trading_hours: Option<Spanned<TradingHoursConfig>>,
}

/// `dates = { from = "2024-10-01", to = "2024-10-04" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatesConfig {
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

/// `trading_hours = { start = "10:00", end = "16:00" }`: keeps [start, end) local time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TradingHoursConfig {
    pub start: Spanned<String>,
    pub end: Spanned<String>,
    /// IANA name (daylight saving applied) or a fixed offset like `"+10:00"`.
    pub timezone: Option<Spanned<String>>,
    /// Reproduce the seed system: fixed UTC+10 and the whole end hour included
    /// (`10 <= hour <= 16` keeps until 16:59:59).
    #[serde(default)]
    pub legacy_seed: bool,
}

/// `[aggregators.NAME]`: the standard aggregations over kept rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AggregatorConfig {
    /// Upstream stages (readers or filters).
    pub inputs: Spanned<Vec<Spanned<String>>>,
    /// Which tables: security, date, participant, hour, size, hourly, daily. Default all; the
    /// summary is always produced.
    pub group_by: Option<Spanned<Vec<Spanned<String>>>>,
    /// Timezone of dates and hours. Default Australia/Sydney.
    pub timezone: Option<Spanned<String>>,
    /// Quantiles of quantity per group, e.g. `[0.5, 0.9, 0.99]`; each adds a column.
    pub quantiles: Option<Spanned<Vec<Spanned<f64>>>>,
}

/// `[sinks.NAME]`: writes rows (from a reader or filter), or tables (from an aggregator or a
/// sweep analysis) as files or as the HTML report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkConfig {
    pub inputs: Spanned<Vec<Spanned<String>>>,
    /// Tables: the folder for the table files, or the report's file (`.html`). Rows: the file
    /// (`.csv`, `.csv.gz`, `.csv.zst`, `.parquet`), or the folder when partitioned.
    pub path: Spanned<String>,
    /// Tables only: any of `"csv"` (default), `"parquet"`, `"json"` (a summary document).
    pub formats: Option<Spanned<Vec<Spanned<String>>>>,
    /// Rows: `"csv"`, `"csv.gz"`, `"csv.zst"` or `"parquet"`; default from the extension.
    /// Tables: `"html"` renders them, with the run report, as one self-contained page (the
    /// default for a path ending in `.html`).
    pub format: Option<Spanned<String>>,
    /// Rows only: folder levels, any of `"security_code"`, `"date"`.
    pub partition_by: Option<Spanned<Vec<Spanned<String>>>>,
    /// Rows only: the columns to write, in order. Default every column of the input file.
    pub columns: Option<Spanned<Vec<Spanned<String>>>>,
    /// Rows only: gzip or zstd level. Default the fastest.
    pub compression_level: Option<Spanned<i32>>,
    /// Rows only, partitioned: most part files open at once. Default 64.
    pub max_open_files: Option<Spanned<u64>>,
    /// Timezone of the `date` partition. Default Australia/Sydney.
    pub timezone: Option<Spanned<String>>,
    /// Sleep this many milliseconds per batch: throttles the sink to demonstrate and test
    /// back-pressure. Default 0.
    pub pause_per_batch_ms: Option<Spanned<u64>>,
    /// Rows only: write the rows sorted by security, then timestamp and sequence (within a
    /// `date` partition, by date first), in bounded memory, spilling sorted runs to disk.
    /// Default false: input-file order.
    pub sort: Option<Spanned<bool>>,
    /// Rows only, with `sort`: memory the sort may hold before it spills a run. Default 64.
    pub memory_budget_mib: Option<Spanned<u64>>,
    /// Rows only, with `sort`: where its runs are spilled. Default the system's temporary
    /// folder.
    pub spill_dir: Option<Spanned<String>>,
    /// Rows only, Parquet: rows per row group. Default: row groups cut by size in memory.
    pub row_group_rows: Option<Spanned<u64>>,
}

/// `[monitor]`: progress and the run report.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MonitorConfig {
    /// Where to write `execution_metrics.json`.
    pub report: Option<Spanned<String>>,
    /// `"auto"` (a bar on a terminal, log lines otherwise), `"bar"`, `"log"` or `"off"`.
    pub progress: Option<Spanned<String>>,
    /// Seconds between progress log lines. Default 5.
    pub log_interval_secs: Option<Spanned<f64>>,
    /// Serve Prometheus metrics at `/metrics` on this address, e.g. `"127.0.0.1:9898"`; a bare
    /// port binds loopback.
    pub prometheus: Option<Spanned<String>>,
    /// Keep serving metrics this many seconds after the run ends, so a last scrape sees the
    /// final counts. Default 0.
    pub hold_secs: Option<Spanned<f64>>,
}

/// `[daemon]`: how `sweep daemon` follows the readers' paths and where it keeps its state.
/// `sweep run` ignores this section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonConfig {
    /// The state folder: the registry of files seen and the aggregate state, committed together.
    pub state: Spanned<String>,
    /// When a file counts as complete: `"settle"` (default: its size and modification time have
    /// not changed for `settle_secs`), `"marker"` (a `NAME.done` file sits beside it) or
    /// `"rename"` (writers write under a hidden or temporary name and rename the finished file
    /// in, so any file the paths match is complete).
    pub complete: Option<Spanned<String>>,
    /// Seconds a file must stay unchanged under `complete = "settle"`. Default 2.
    pub settle_secs: Option<Spanned<f64>>,
    /// `"auto"` (default: filesystem events through notify, and polling where they cannot be
    /// had) or `"poll"` (polling only; for network filesystems, which deliver no events).
    pub watch: Option<Spanned<String>>,
    /// Seconds between full rescans of the paths. Events only make a change seen sooner; the
    /// rescan is what guarantees it is seen. Default 1.
    pub poll_secs: Option<Spanned<f64>>,
    /// Least seconds between rewrites of the outputs from the committed state. Default 1.
    pub outputs_interval_secs: Option<Spanned<f64>>,
    /// A file already ingested whose content changes under the same name: `"skip"` (default:
    /// recorded and reported, never counted twice) or `"ingest"` (its new content is a new file,
    /// for feeds that reuse one name for each day's file).
    pub changed_files: Option<Spanned<String>>,
    /// A file that cannot be read (corrupt compression, missing columns, a bad row under
    /// `on_error = "fail"`): `"quarantine"` (default: moved to the quarantine folder) or `"skip"`
    /// (left in place). Either way it is recorded as failed with the reason.
    pub bad_files: Option<Spanned<String>>,
    /// Where quarantined files go. Default `quarantine` in the state folder.
    pub quarantine: Option<Spanned<String>>,
    /// Seconds a shutdown waits for the file being ingested before abandoning it (it is then
    /// ingested again from the start at the next start). Default 30.
    pub shutdown_timeout_secs: Option<Spanned<f64>>,
    /// `[daemon.nats]`: share the work with other daemons through NATS JetStream.
    pub nats: Option<crate::daemon::nats::NatsConfig>,
}
