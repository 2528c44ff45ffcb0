//! The HTML report: one self-contained page (inline SVG charts and CSS, no script, nothing
//! fetched) showing a run's tables and its run report, to open from a mail attachment.
//!
//! `load` reads tables, from a run (the report sink) or from an output folder of CSV or
//! Parquet files (`sweep report`); `model` folds them, row by row, into the few aggregates the
//! page shows; `charts` draws those with plotters; `page` lays the page out with maud. The two
//! ways in meet at [`Report`], so a sink's page and the page of its output folder are the same.

mod charts;
mod load;
mod model;
mod page;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use model::{
    Accounting, FirstFill, KeyRow, PerSweep, RunInfo, RunJob, ScenarioCost, SizeFill, Stacked,
    Standard, Summary, Sweeps, Top, Venues,
};

use crate::sinks::atomic::{OutputError, write_atomic};
use crate::table::Table;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("table `{table}`: {source}")]
    Arrow {
        table: String,
        source: arrow_schema::ArrowError,
    },
    #[error("table `{table}`: {source}")]
    Run {
        table: String,
        source: crate::table::RunError,
    },
    #[error("table `{table}` has no column `{column}`")]
    MissingColumn { table: String, column: String },
    #[error("table `{table}`, row {row}, column `{column}`: {problem}")]
    Value {
        table: String,
        row: u64,
        column: String,
        problem: String,
    },
    #[error("{path}: not a run report: {source}")]
    Metrics {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{0}: no table of the standard job (by_hour, summary, …) or of the sweep analysis \
         (sweeps, groups, …) as CSV or Parquet"
    )]
    NothingToReport(PathBuf),
    #[error("drawing a chart: {0}")]
    Chart(String),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// The tables that make a standard-job section, and a sweep-analysis section.
const STANDARD_TABLES: [&str; 8] = [
    "by_security",
    "by_date",
    "by_participant",
    "by_hour",
    "by_size",
    "hourly",
    "daily",
    "summary",
];

/// One stage's tables on the page.
#[derive(Debug, Clone, PartialEq)]
pub enum Section {
    Standard(Standard),
    Sweeps(Sweeps),
}

impl Section {
    /// The section a stage's finished tables make, by their names; `None` for tables the page
    /// does not show.
    pub(crate) fn from_tables(
        stage: &str,
        tables: &[Table],
    ) -> Result<Option<Section>, ReportError> {
        let has = |names: &[&str]| tables.iter().any(|t| names.contains(&t.name));
        let t = load::Finished(tables);
        Ok(if has(&crate::sweeps::TABLES) {
            Some(Section::Sweeps(Sweeps::read(stage, &t)?))
        } else if has(&STANDARD_TABLES) {
            Some(Section::Standard(Standard::read(stage, &t)?))
        } else {
            None
        })
    }
}

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The page's title: the pipeline's name, or the folder's.
    pub title: String,
    /// Where the numbers come from, in words.
    pub origin: String,
    pub sections: Vec<Section>,
    /// The run report, when known.
    pub run: Option<RunInfo>,
}

impl Report {
    /// The report of an output folder: its standard-job and sweep-analysis tables (each
    /// `NAME.csv`, or `NAME.parquet`) and the run report at `metrics`, by default the folder's
    /// `execution_metrics.json` when there is one.
    pub fn from_dir(dir: &Path, metrics: Option<&Path>) -> Result<Report, ReportError> {
        let folder = load::Folder(dir);
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let has = |names: &[&str]| names.iter().any(|n| folder.file(n).is_some());
        let mut sections = Vec::new();
        if has(&STANDARD_TABLES) {
            sections.push(Section::Standard(Standard::read(&name, &folder)?));
        }
        if has(&crate::sweeps::TABLES) {
            sections.push(Section::Sweeps(Sweeps::read(&name, &folder)?));
        }
        if sections.is_empty() {
            return Err(ReportError::NothingToReport(dir.to_path_buf()));
        }
        let default = dir.join("execution_metrics.json");
        let metrics = match metrics {
            Some(m) => Some(m.to_path_buf()),
            None => default.is_file().then_some(default),
        };
        let run = match metrics {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io {
                    path: path.clone(),
                    source,
                })?;
                let run = serde_json::from_str::<RunInfo>(&text)
                    .map_err(|source| ReportError::Metrics { path, source })?;
                Some(run)
            }
            None => None,
        };
        if let Some(run) = &run {
            name_stages(&mut sections, run);
        }
        Ok(Report {
            title: run
                .as_ref()
                .map(|r| r.pipeline.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or(name),
            origin: format!("the output folder {}", dir.display()),
            sections,
            run,
        })
    }

    /// The page, as HTML text.
    pub fn render(&self) -> Result<String, ReportError> {
        page::page(self)
    }
}

/// Names each section after the stage that made its tables, when the run report has exactly
/// one stage of that kind (a folder's tables do not say which stage wrote them).
fn name_stages(sections: &mut [Section], run: &RunInfo) {
    let only = |kind: &str| {
        let mut of_kind = run.stages.iter().filter(|s| s.kind == kind);
        match (of_kind.next(), of_kind.next()) {
            (Some(s), None) => Some(s.name.clone()),
            _ => None,
        }
    };
    for s in sections {
        match s {
            Section::Standard(s) => s.stage = only("aggregator").unwrap_or(s.stage.clone()),
            Section::Sweeps(s) => s.stage = only("sweep analysis").unwrap_or(s.stage.clone()),
        }
    }
}

/// The run report as the page reads it: through its JSON, as an output folder holds it.
pub(crate) fn run_info(report: &crate::monitor::RunReport) -> Option<RunInfo> {
    serde_json::to_value(report)
        .and_then(serde_json::from_value)
        .ok()
}

/// Writes `html` to `path` atomically: the page appears whole or not at all.
pub fn write(path: &Path, html: &str) -> Result<(), ReportError> {
    Ok(write_atomic(path, html.as_bytes())?)
}
