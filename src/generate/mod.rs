//! `sweep generate`: synthetic ASX order events and the trades that match them.
//!
//! The orders file has the column layout of the real DRR orders file (and of
//! the benchmark generator `gen_orders.py`, outside this repository); the trades file has the 19
//! columns of docs/domain.md §1.4. The two are
//! consistent with each other: every trade row's `orderid` is an order in the full orders log,
//! each match is a buy row and a sell row with a shared `matchgroupid`, and each order's trade
//! quantities sum to its final `totalmatchedquantity`. See `generate/sim/mod.rs` for the market
//! model and the one documented exception to `quantity == leavesquantity + totalmatchedquantity`.
//!
//! Output is streamed: memory does not grow with `--rows`/`--size`. The same arguments and seed
//! give the same bytes on every platform. `--dirty` replaces a seeded fraction of order rows with
//! malformed variants and lists them (`line,kind,column`) in a side file, so readers' error
//! handling can be tested against known answers. Dirty rows are drawn from a separate random
//! stream, so apart from those rows a dirty file is byte-identical to the clean one. A spoiled row
//! still stands for its event (the trades file is unchanged), so a reader that rejects it loses
//! exactly that one event.
//!
//! `--final-state` and `--centre-point-only` change only which order rows are written, never the
//! simulation: the budget counts the full event log, so with the same seed the final-state file
//! holds exactly the last line of each order of the full log (`row_num` is the full log's line
//! index, as in the real extracts), and the trades file is the same in every view.

mod rows;
mod sim;
mod sink;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

pub(crate) use sim::{Budget, OutputMode};
pub(crate) use sink::Format;

use crate::sinks::atomic::OutputError;
use crate::time::{format_day, parse_day};
use sim::Sim;
use sink::{DirtySpec, Outputs};

/// Order rows made when neither `--rows` nor `--size` is given.
pub(crate) const DEFAULT_ROWS: u64 = 100_000;
/// Most securities `--securities` accepts (ASX lists about 2,200); books are kept per security.
pub(crate) const MAX_SECURITIES: u32 = 20_000;
/// First trading day by default: ten trading days from here cross the 2024-10-06 Sydney switch
/// from AEST (UTC+10) to AEDT (UTC+11).
pub(crate) const DEFAULT_START: &str = "2024-09-30";

/// Arguments of `sweep generate`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Orders output. The format follows the extension: .csv, .csv.gz, .csv.zst or .parquet.
    #[arg(long, value_name = "PATH")]
    pub orders: PathBuf,
    /// Trades output (one row per side per match), in any of the same formats.
    #[arg(long, value_name = "PATH")]
    pub trades: Option<PathBuf>,
    /// Exactly this many order rows [default: 100000 unless --size is given].
    #[arg(long, value_name = "N", conflicts_with = "size")]
    pub rows: Option<u64>,
    /// About this much orders output, measured as uncompressed CSV: 500MB, 1GB, 2GiB, 1.5GB.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<ByteSize>,
    /// Random seed: the same arguments and seed always give the same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Number of trading days (weekdays) to spread the events over.
    #[arg(long, value_name = "D", default_value_t = 10)]
    pub days: u32,
    /// First trading day; a weekend start moves to the following Monday.
    #[arg(long, value_name = "YYYY-MM-DD", default_value = DEFAULT_START, value_parser = parse_start_date)]
    pub start_date: NaiveDate,
    /// Number of securities, with Zipf-distributed popularity.
    #[arg(long, value_name = "K", default_value_t = 50)]
    pub securities: u32,
    /// Fraction (0 to 1) of order rows replaced by malformed variants. CSV outputs only.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub dirty: f64,
    /// Where to list the malformed rows [default: <orders>.dirty.csv].
    #[arg(long, value_name = "PATH")]
    pub dirty_log: Option<PathBuf>,
    /// Write one row per order, its last event (written when the order ends), instead of every
    /// event. --rows and --size still measure the full event log, so the same seed simulates the
    /// same market with or without this flag.
    #[arg(long)]
    pub final_state: bool,
    /// Write only Centre Point orders (exchangeordertype with any of the bits 64, 256, 2048,
    /// 4096) to the orders file. The trades file keeps every match, so the other side of most
    /// matches has no order in the file; row_num keeps the full log's line index.
    #[arg(long)]
    pub centre_point_only: bool,
}

impl GenerateArgs {
    /// The defaults of the command line, writing orders to `orders` and no trades. For tests,
    /// which build arguments without parsing a command line.
    #[cfg(test)]
    pub(crate) fn new(orders: impl Into<PathBuf>) -> Self {
        GenerateArgs {
            orders: orders.into(),
            trades: None,
            rows: None,
            size: None,
            seed: 1,
            days: 10,
            start_date: NaiveDate::from_ymd_opt(2024, 9, 30).unwrap_or_default(),
            securities: 50,
            dirty: 0.0,
            dirty_log: None,
            final_state: false,
            centre_point_only: false,
        }
    }

    /// The dirty log's path: `--dirty-log`, else the orders path with `.dirty.csv` appended.
    pub(crate) fn dirty_log_path(&self) -> PathBuf {
        self.dirty_log.clone().unwrap_or_else(|| {
            let mut p = self.orders.clone().into_os_string();
            p.push(".dirty.csv");
            PathBuf::from(p)
        })
    }
}

fn parse_start_date(s: &str) -> Result<NaiveDate, String> {
    parse_day(s)
        .map(crate::time::date_of_day)
        .map_err(|e| e.to_string())
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a rate between 0 and 1")),
    }
}

/// A byte count written with an optional unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB,
/// GiB, TiB (powers of 1024), case-insensitive, with an optional fraction (`1.5GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a size: use a number with an optional unit, such as 500MB, 1GB or 2GiB")]
pub struct ParseSizeError(String);

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseSizeError(s.to_string());
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let multiplier: u128 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "mb" | "m" => 1_000_000,
            "gb" | "g" => 1_000_000_000,
            "tb" | "t" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() || frac.len() > 12 || frac.contains('.') {
            return Err(bad());
        }
        let digits = |d: &str| -> Result<u128, ParseSizeError> {
            if d.is_empty() {
                Ok(0)
            } else {
                d.parse::<u128>().map_err(|_| bad())
            }
        };
        let scale = 10u128.pow(frac.len() as u32);
        let bytes = digits(whole)?
            .checked_mul(multiplier)
            .and_then(|w| w.checked_add(digits(frac).ok()? * multiplier / scale))
            .ok_or_else(bad)?;
        u64::try_from(bytes).map(ByteSize).map_err(|_| bad())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// Why a generate run failed. Nothing is left under an output's name when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}: unknown output format: name it .csv, .csv.gz, .csv.zst or .parquet")]
    UnknownFormat(PathBuf),
    #[error("--dirty {0} is not a rate between 0 and 1")]
    DirtyRate(f64),
    #[error("--dirty needs CSV output to hold malformed rows, but {0} is parquet")]
    DirtyNeedsCsv(PathBuf),
    #[error("--days must be at least 1")]
    NoDays,
    #[error("--securities must be between 1 and {MAX_SECURITIES}, not {0}")]
    Securities(u32),
    #[error("--rows and --size cannot be used together")]
    RowsAndSize,
    #[error("{0} is named twice among --orders, --trades and --dirty-log")]
    SamePath(PathBuf),
    #[error("{start} plus {days} trading days runs past 2200-01-01")]
    DateRange { start: NaiveDate, days: u32 },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{path}: writing parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: building a record batch: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

/// What a generate run wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateReport {
    /// Order rows written, header excluded (dirty rows included).
    pub orders_rows: u64,
    /// Trade rows written (0 without `--trades`): two per match.
    pub trades_rows: u64,
    /// Uncompressed CSV bytes of the orders output, header included, whatever its format.
    pub orders_bytes: u64,
    /// Order rows replaced by malformed variants.
    pub dirty_rows: u64,
    /// Distinct orders.
    pub orders: u64,
    /// Matches (each is two trade rows when `--trades` is given).
    pub matches: u64,
    /// Sydney dates of the first and last trading day.
    pub first_date: String,
    pub last_date: String,
    /// UTC nanoseconds of the first and last order event, if any.
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    /// The dirty log written, when `--dirty` is above 0.
    pub dirty_log: Option<PathBuf>,
}

impl fmt::Display for GenerateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} order rows ({} bytes as CSV, {} orders), {} trade rows ({} matches), {} to {}",
            self.orders_rows,
            self.orders_bytes,
            self.orders,
            self.trades_rows,
            self.matches,
            self.first_date,
            self.last_date
        )?;
        if let Some(log) = &self.dirty_log {
            write!(
                f,
                "; {} dirty rows listed in {}",
                self.dirty_rows,
                log.display()
            )?;
        }
        Ok(())
    }
}

/// Whether two output paths name the same file, also when spelled differently (`./o.csv`,
/// `dir/../o.csv`) or when the file does not exist yet.
fn same_file(a: &Path, b: &Path) -> bool {
    fn key(p: &Path) -> PathBuf {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        match (abs.parent().map(Path::canonicalize), abs.file_name()) {
            (Some(Ok(dir)), Some(name)) => dir.join(name),
            _ => abs,
        }
    }
    a == b || key(a) == key(b)
}

/// Generates the files `args` names. Nothing appears under an output's name unless every output
/// was completed.
pub fn run(args: &GenerateArgs) -> Result<GenerateReport, GenerateError> {
    let orders_format = Format::of(&args.orders)?;
    if let Some(t) = &args.trades {
        Format::of(t)?;
        if same_file(t, &args.orders) {
            return Err(GenerateError::SamePath(t.clone()));
        }
    }
    if !(0.0..=1.0).contains(&args.dirty) {
        return Err(GenerateError::DirtyRate(args.dirty));
    }
    if args.dirty > 0.0 && !orders_format.is_csv() {
        return Err(GenerateError::DirtyNeedsCsv(args.orders.clone()));
    }
    if args.days == 0 {
        return Err(GenerateError::NoDays);
    }
    if !(1..=MAX_SECURITIES).contains(&args.securities) {
        return Err(GenerateError::Securities(args.securities));
    }
    let budget = match (args.rows, args.size) {
        (Some(_), Some(_)) => return Err(GenerateError::RowsAndSize),
        (Some(n), None) => Budget::Rows(n),
        (None, Some(s)) => Budget::Bytes(s.0),
        (None, None) => Budget::Rows(DEFAULT_ROWS),
    };
    let range_err = || GenerateError::DateRange {
        start: args.start_date,
        days: args.days,
    };
    // Timestamps are i64 nanoseconds, which end in 2262; stop well before.
    if args.start_date.year() < 1970 {
        return Err(range_err());
    }
    let days = sim::trading_days(args.start_date, args.days)
        .filter(|d| {
            d.last()
                .is_some_and(|&l| l < crate::time::day_of_date(max_date()))
        })
        .ok_or_else(range_err)?;

    let dirty_log = (args.dirty > 0.0).then(|| args.dirty_log_path());
    if let Some(log) = &dirty_log
        && (same_file(log, &args.orders)
            || args.trades.as_deref().is_some_and(|t| same_file(log, t)))
    {
        return Err(GenerateError::SamePath(log.clone()));
    }

    let mut out = Outputs::create(
        &args.orders,
        args.trades.as_deref(),
        dirty_log.as_deref().map(|log_path| DirtySpec {
            rate: args.dirty,
            seed: args.seed,
            log_path,
        }),
    )?;
    let mode = OutputMode {
        final_state: args.final_state,
        centre_point_only: args.centre_point_only,
    };
    let mut sim = Sim::new(args.seed, args.securities, budget, mode, &mut out);
    sim.run(&days)?;
    let stats = sim.stats;
    let report = GenerateReport {
        orders_rows: out.orders_rows,
        trades_rows: out.trades_rows,
        orders_bytes: out.orders_bytes,
        dirty_rows: out.dirty_rows,
        orders: stats.orders,
        matches: stats.matches,
        first_date: days.first().map(|&d| format_day(d)).unwrap_or_default(),
        last_date: days.last().map(|&d| format_day(d)).unwrap_or_default(),
        first_timestamp: stats.first_timestamp,
        last_timestamp: stats.last_timestamp,
        dirty_log,
    };
    out.commit()?;
    Ok(report)
}

fn max_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2200, 1, 1).unwrap_or_default()
}
