//! `sweep convert`: order or trade files, in any format the readers accept, into Parquet laid
//! out for querying: the catalogue's typed columns, sorted by security, then timestamp and
//! sequence, in row groups of a fixed row count, with column statistics and the page index, and
//! optionally one folder per local date (`date=YYYY-MM-DD/part-00000.parquet`).
//!
//! A conversion is a pipeline, written here and run by the ordinary runtime: a reader of the
//! inputs (with their column mapping) and a rows sink with `sort = true`. So it reads, accounts
//! for every row (rows read = written + rejected), refuses to write over an input and commits
//! atomically exactly as `sweep run` does, and the same layout is a rows sink's option in any
//! pipeline.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// The file an unpartitioned conversion writes in its folder.
pub const SINGLE_FILE: &str = "part-00000.parquet";

/// Arguments of `sweep convert`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConvertArgs {
    /// Order or trade files, folders or globs (CSV, gzip, zstd, Parquet).
    #[arg(required = true, value_name = "IN")]
    pub inputs: Vec<String>,
    /// The output folder: `DIR/part-00000.parquet`, or `DIR/date=YYYY-MM-DD/part-00000.parquet`
    /// with `--by-date`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// One folder per local date (`--timezone`, default Australia/Sydney).
    #[arg(long)]
    pub by_date: bool,
    /// Rows per row group.
    #[arg(long, default_value_t = 100_000)]
    pub row_group_rows: u64,
    /// Memory the sort holds before it spills a sorted run, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: u64,
    /// Where sorted runs are spilled (default: the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// The inputs hold order events (`orders`) or trades (`trades`).
    #[arg(long, default_value = "orders")]
    pub kind: String,
    /// A column's header name in the inputs: `CANONICAL=HEADER`, e.g. `order_id=orderid`.
    #[arg(long = "column", value_name = "CANONICAL=HEADER")]
    pub columns: Vec<String>,
    /// Timezone of the date folders.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Where to write the run report (`execution_metrics.json`).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Any other pipeline value, as for `sweep run` (the reader is `input`, the sink
    /// `parquet`): e.g. `--set readers.input.delimiter=";"`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Why the conversion's pipeline could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("--column {0}: use CANONICAL=HEADER, e.g. order_id=orderid")]
    Column(String),
    #[error("{0}: the output path is not valid UTF-8")]
    Path(PathBuf),
}

/// Where the conversion writes: the sink's path.
pub fn output_path(args: &ConvertArgs) -> PathBuf {
    if args.by_date {
        args.out.clone()
    } else {
        args.out.join(SINGLE_FILE)
    }
}

/// The conversion as a pipeline's TOML text, for `config::load` (which checks every value as
/// it would a pipeline file's).
pub fn pipeline(args: &ConvertArgs) -> Result<String, ConvertError> {
    let text = |p: &Path| {
        p.to_str()
            .map(|s| Value::String(s.to_string()))
            .ok_or_else(|| ConvertError::Path(p.to_path_buf()))
    };
    let mut reader = Table::new();
    reader.insert(
        "path".into(),
        Value::Array(args.inputs.iter().cloned().map(Value::String).collect()),
    );
    reader.insert("kind".into(), Value::String(args.kind.clone()));
    if !args.columns.is_empty() {
        let mut cols = Table::new();
        for c in &args.columns {
            let (canonical, header) = c
                .split_once('=')
                .filter(|(a, b)| !a.trim().is_empty() && !b.trim().is_empty())
                .ok_or_else(|| ConvertError::Column(c.clone()))?;
            cols.insert(
                canonical.trim().to_string(),
                Value::String(header.trim().to_string()),
            );
        }
        reader.insert("columns".into(), Value::Table(cols));
    }
    let mut sink = Table::new();
    sink.insert("inputs".into(), Value::Array(vec!["input".into()]));
    sink.insert("path".into(), text(&output_path(args))?);
    sink.insert("format".into(), "parquet".into());
    sink.insert("sort".into(), Value::Boolean(true));
    sink.insert("row_group_rows".into(), int(args.row_group_rows));
    sink.insert("memory_budget_mib".into(), int(args.memory_mib));
    if let Some(d) = &args.spill_dir {
        sink.insert("spill_dir".into(), text(d)?);
    }
    if args.by_date {
        sink.insert("partition_by".into(), Value::Array(vec!["date".into()]));
    }
    if let Some(z) = &args.timezone {
        sink.insert("timezone".into(), Value::String(z.clone()));
    }
    let mut root = Table::new();
    root.insert("name".into(), "convert".into());
    root.insert("readers".into(), one("input", reader));
    root.insert("sinks".into(), one("parquet", sink));
    if let Some(r) = &args.report {
        let mut monitor = Table::new();
        monitor.insert("report".into(), text(r)?);
        root.insert("monitor".into(), Value::Table(monitor));
    }
    Ok(toml::to_string(&root).unwrap_or_default())
}

/// A count as a TOML integer; past i64 it saturates, and the pipeline's range check names it.
fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn one(name: &str, t: Table) -> Value {
    let mut m = Table::new();
    m.insert(name.into(), Value::Table(t));
    Value::Table(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StageKind;

    fn args(extra: &[&str]) -> ConvertArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: ConvertArgs,
        }
        let mut v = vec!["convert", "a.csv", "b dir/*.csv.gz", "--out", "/tmp/o"];
        v.extend(extra);
        Cli::parse_from(v).a
    }

    /// The one stage `pick` picks.
    fn find<T>(p: &crate::config::Pipeline, pick: impl Fn(&StageKind) -> Option<T>) -> T {
        p.stages.iter().find_map(|s| pick(&s.kind)).unwrap()
    }

    /// The pipeline written for a conversion loads, and holds what the arguments said.
    #[test]
    fn a_conversion_is_a_checked_pipeline() {
        let a = args(&[
            "--by-date",
            "--row-group-rows",
            "5000",
            "--column",
            "order_id=orderid",
        ]);
        let text = pipeline(&a).unwrap();
        let p = crate::config::load("convert", &text, &[]).unwrap();
        let sink = find(&p, |k| match k {
            StageKind::RowSink(r) => Some(r.clone()),
            _ => None,
        });
        assert_eq!(sink.path, PathBuf::from("/tmp/o"));
        assert_eq!(sink.row_group_rows, Some(5000));
        assert_eq!(sink.sort.as_ref().unwrap().memory_budget, 64 << 20);
        assert_eq!(sink.partition_by.len(), 1);
        let reader = find(&p, |k| match k {
            StageKind::Reader(r) => Some(r.clone()),
            _ => None,
        });
        assert_eq!(reader.paths, vec!["a.csv", "b dir/*.csv.gz"]);
        assert_eq!(reader.columns.get("order_id").unwrap(), "orderid");
        let single = pipeline(&args(&[])).unwrap();
        let p = crate::config::load("convert", &single, &[]).unwrap();
        let sink = find(&p, |k| match k {
            StageKind::RowSink(r) => Some(r.path.clone()),
            _ => None,
        });
        assert_eq!(sink, Path::new("/tmp/o/part-00000.parquet"));
        assert!(matches!(
            pipeline(&args(&["--column", "order_id"])),
            Err(ConvertError::Column(_))
        ));
    }
}
