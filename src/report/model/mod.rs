//! What the page shows, as numbers: each table folded, row by row, into the few aggregates a
//! chart and its table need. Nothing here holds a table: the sweeps table of a large run has
//! hundreds of thousands of rows, and every figure below is a fixed number of bins or a list
//! bounded by the securities, participants or days of the run.

use super::ReportError;
use super::load::Tables;
use crate::table::Cell;

mod sweeps;

/// How many participants and securities the top lists show.
pub(crate) const TOP: usize = 20;
/// Above this many security-days, the sweeps per security and day are shown per security.
pub(crate) const MAX_SECURITY_DAYS: usize = 24;
/// How many securities the per-security stacked bars show; the rest are summed in one bar.
pub(crate) const TOP_SECURITIES: usize = 15;

/// One key of a standard table with its count and quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub key: String,
    pub orders: u64,
    pub quantity: u128,
}

/// The keys with the most orders, in order, and the sum of the others.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Top {
    pub rows: Vec<KeyRow>,
    /// How many keys the table has.
    pub keys: u64,
    /// The orders and quantity of the keys not shown.
    pub rest_orders: u64,
    pub rest_quantity: u128,
}

impl Top {
    /// Adds a key. Tables come sorted by key, and a key goes after those with as many orders,
    /// so ties keep the table's order.
    fn push(&mut self, row: KeyRow, n: usize) {
        self.keys += 1;
        let at = self.rows.partition_point(|r| r.orders >= row.orders);
        self.rows.insert(at, row);
        if self.rows.len() > n
            && let Some(out) = self.rows.pop()
        {
            self.rest_orders += out.orders;
            self.rest_quantity += out.quantity;
        }
    }
}

/// The summary table's one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub orders: u64,
    pub quantity: u128,
    pub vwap: Option<f64>,
    pub participants: u64,
    pub securities: u64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
}

/// The standard job's tables, folded. A table the output does not have is `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Standard {
    /// The stage that made the tables (the aggregator's name), or the folder's.
    pub stage: String,
    pub summary: Option<Summary>,
    /// Every hour from the first to the last with orders, empty hours included.
    pub hours: Option<Vec<KeyRow>>,
    pub daily: Option<Vec<KeyRow>>,
    pub participants: Option<Top>,
    pub sizes: Option<Vec<KeyRow>>,
    pub securities: Option<Top>,
}

impl Standard {
    /// Whether any order was kept, by the summary or, without one, by the tables.
    pub fn is_empty(&self) -> bool {
        match &self.summary {
            Some(s) => s.orders == 0,
            None => [&self.hours, &self.daily, &self.sizes]
                .iter()
                .all(|t| t.as_ref().is_none_or(|rows| rows.is_empty())),
        }
    }

    pub(crate) fn read(stage: &str, t: &dyn Tables) -> Result<Standard, ReportError> {
        let mut s = Standard {
            stage: stage.to_string(),
            ..Standard::default()
        };
        let key_rows = |name: &str, key: &str| -> Result<Option<Vec<KeyRow>>, ReportError> {
            let mut rows = Vec::new();
            let found = t.rows(name, &[key, "orders", "quantity_sum"], &mut |r| {
                rows.push(KeyRow {
                    key: r.text(0),
                    orders: r.count(1)?,
                    quantity: r.big(2)?,
                });
                Ok(())
            })?;
            Ok(found.then_some(rows))
        };
        s.hours = key_rows("by_hour", "hour")?.map(|rows| {
            let mut by_hour = [(0u64, 0u128); 24];
            let mut present = Vec::new();
            for r in rows {
                if let Ok(h) = r.key.parse::<usize>()
                    && h < 24
                {
                    by_hour[h].0 += r.orders;
                    by_hour[h].1 += r.quantity;
                    present.push(h);
                }
            }
            match (present.iter().min(), present.iter().max()) {
                (Some(&lo), Some(&hi)) => (lo..=hi)
                    .map(|h| KeyRow {
                        key: h.to_string(),
                        orders: by_hour[h].0,
                        quantity: by_hour[h].1,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        });
        s.daily = key_rows("daily", "date")?;
        s.sizes = key_rows("by_size", "size_bucket")?;
        for (name, key, slot) in [
            ("by_participant", "participantid", &mut s.participants),
            ("by_security", "security_code", &mut s.securities),
        ] {
            let mut top = Top::default();
            let found = t.rows(name, &[key, "orders", "quantity_sum"], &mut |r| {
                let row = KeyRow {
                    key: r.text(0),
                    orders: r.count(1)?,
                    quantity: r.big(2)?,
                };
                top.push(row, TOP);
                Ok(())
            })?;
            *slot = found.then_some(top);
        }
        let mut summary = None;
        t.rows(
            "summary",
            &[
                "orders",
                "quantity_sum",
                "vwap",
                "participants",
                "securities",
                "first_ts",
                "last_ts",
            ],
            &mut |r| {
                summary = Some(Summary {
                    orders: r.count(0)?,
                    quantity: r.big(1)?,
                    vwap: r.float(2)?,
                    participants: r.count(3)?,
                    securities: r.count(4)?,
                    first_ts: r.int(5)?.and_then(|v| i64::try_from(v).ok()),
                    last_ts: r.int(6)?.and_then(|v| i64::try_from(v).ok()),
                });
                Ok(())
            },
        )?;
        s.summary = summary;
        Ok(s)
    }
}

pub use sweeps::*;

/// A row's values, projected to the columns a reader asked for, read with the row's place for
/// messages.
pub(crate) struct Row<'a> {
    pub table: &'a str,
    pub columns: &'a [&'a str],
    /// 1-based, counting data rows.
    pub number: u64,
    pub values: &'a [Cell],
}

impl Row<'_> {
    pub(crate) fn bad(&self, i: usize, problem: impl Into<String>) -> ReportError {
        ReportError::Value {
            table: self.table.to_string(),
            row: self.number,
            column: self.columns[i].to_string(),
            problem: problem.into(),
        }
    }

    fn value(&self, i: usize) -> &Cell {
        &self.values[i]
    }

    /// The value as text (a key); empty for a null.
    pub(crate) fn text(&self, i: usize) -> String {
        self.value(i).to_string()
    }

    /// An integer or nothing.
    pub(crate) fn int(&self, i: usize) -> Result<Option<i128>, ReportError> {
        match self.value(i) {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            other => Err(self.bad(i, format!("`{other}` is not an integer"))),
        }
    }

    pub(crate) fn required_int(&self, i: usize) -> Result<i128, ReportError> {
        self.int(i)?.ok_or_else(|| self.bad(i, "empty"))
    }

    /// A count: an integer from 0.
    pub(crate) fn count(&self, i: usize) -> Result<u64, ReportError> {
        let v = self.required_int(i)?;
        u64::try_from(v).map_err(|_| self.bad(i, format!("{v} is not a count")))
    }

    /// A sum that may pass 64 bits.
    pub(crate) fn big(&self, i: usize) -> Result<u128, ReportError> {
        let v = self.required_int(i)?;
        u128::try_from(v).map_err(|_| self.bad(i, format!("{v} is negative")))
    }

    pub(crate) fn float(&self, i: usize) -> Result<Option<f64>, ReportError> {
        match self.value(i) {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v as f64)),
            Cell::Float(v) => Ok(Some(*v)),
            other @ Cell::Str(_) => Err(self.bad(i, format!("`{other}` is not a number"))),
        }
    }
}

/// The run report (`execution_metrics.json`), as far as the page shows it. A sink's page reads
/// its run's report through the same JSON an output folder holds, so the two pages agree; a
/// field an older report lacks keeps its default.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub pipeline: String,
    pub status: String,
    pub started_at: String,
    pub duration_sec: f64,
    pub errors: Vec<String>,
    pub totals: RunTotals,
    pub jobs: Vec<RunJob>,
    pub process: RunProcess,
    pub stages: Vec<RunStage>,
    /// Absent from reports written before the settings were recorded.
    pub settings: Option<RunSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct RunTotals {
    pub bytes_read: u64,
    pub file_bytes: u64,
    pub jobs: u64,
    pub rows_read: u64,
    pub rows_kept: u64,
    pub rows_filtered_out: u64,
    pub rows_rejected: u64,
    pub mb_per_sec: f64,
    pub rows_per_sec: f64,
}

/// One input file's ledger: read = kept + filtered out + rejected.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct RunJob {
    pub file: String,
    pub reader: Option<String>,
    pub status: String,
    pub bytes_read: u64,
    pub file_bytes: u64,
    pub duration_sec: f64,
    pub rows_read: u64,
    pub rows_kept: u64,
    pub rows_filtered_out: u64,
    pub rows_rejected: u64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct RunProcess {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct RunStage {
    pub name: String,
    pub kind: String,
    pub workers: u64,
    pub rows_in: u64,
    pub rows_out: u64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct RunSettings {
    pub block_bytes: u64,
    pub edge_capacity: u64,
    pub workers: u64,
}
