//! `sweep plan`: what a run would do, without reading any rows (of a Parquet input it reads the
//! footer and page index, to estimate the row groups and pages its filters skip). It reports the hardware
//! (sysinfo), the settings derived from it and why, the job matrix (every input file and, when a
//! filter names securities and dates, the security × date partitions), an estimate of peak
//! memory, and an ETA from a measured rate: the previous run's report when there is one, else the
//! rate this project measured on its 2-core reference machine.

use serde::Serialize;

use crate::config::{ColumnNeed, Compression, Output, Pipeline, StageKind};
use crate::flow::stats::ParquetScan;
use crate::readers::actor::is_parquet;
use crate::readers::discover::discover;
use crate::readers::parquet::estimate;
use crate::readers::prune::Pushdown;
use crate::readers::source::compression_of;
use crate::runtime;

/// Plain CSV throughput per core of the standard job, measured with peers.py on 2026-11-24
/// (1.06 GB in 0.87 s on 2 cores, the slower of that day's medians). Used when no earlier report
/// gives a better figure.
const REFERENCE_BYTES_PER_SEC_PER_CORE: f64 = 600e6;

#[derive(Debug, Serialize)]
pub struct Hardware {
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    pub total_memory_bytes: u64,
    pub available_memory_bytes: u64,
    /// Free space on the file system of each output folder.
    pub free_disk: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
pub struct Setting {
    pub name: &'static str,
    pub value: String,
    pub why: String,
}

#[derive(Debug, Serialize)]
pub struct InputFile {
    pub reader: String,
    pub path: String,
    pub bytes: u64,
    pub format: String,
    #[serde(skip)]
    pub kind: InputKind,
    /// A Parquet file's row groups and pages its reader's filters let it skip, from its footer
    /// and page index, and the compressed bytes it would decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetScan>,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub pipeline: String,
    pub hardware: Hardware,
    pub settings: Vec<Setting>,
    pub estimated_peak_memory_bytes: u64,
    pub jobs: Vec<InputFile>,
    pub total_input_bytes: u64,
    /// `security_code` × local date partitions named by a filter, if any.
    pub partitions: Vec<(u32, String)>,
    pub rate_bytes_per_sec: f64,
    pub rate_source: String,
    pub eta_secs: f64,
    pub problems: Vec<String>,
}

fn hardware(p: &Pipeline) -> Hardware {
    let mut sys = sysinfo::System::new().ok();
    if let Some(s) = sys.as_mut() {
        s.refresh_memory();
    }
    let disks = sysinfo::Disks::new_with_refreshed_list().ok();
    let mut free_disk = Vec::new();
    for s in &p.stages {
        let Some(out) = s.kind.output_dir().map(std::path::Path::to_path_buf) else {
            continue;
        };
        let abs = std::path::absolute(&out).unwrap_or(out);
        // The disk whose mount point is the longest prefix of the output path.
        let free = disks.as_ref().and_then(|d| {
            d.iter()
                .filter(|d| abs.starts_with(d.mount_point()))
                .max_by_key(|d| d.mount_point().as_os_str().len())
                .map(|d| d.available_space())
        });
        if let Some(f) = free {
            free_disk.push((abs.display().to_string(), f));
        }
    }
    Hardware {
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        physical_cores: sysinfo::System::physical_core_count().ok(),
        total_memory_bytes: sys.as_ref().map_or(0, |s| s.total_memory()),
        available_memory_bytes: sys.as_ref().map_or(0, |s| s.available_memory()),
        free_disk,
    }
}

/// The rate of the last run of this pipeline, from its report.
fn measured_rate(p: &Pipeline) -> Option<(f64, String)> {
    let path = p.monitor.report.as_ref()?;
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let bytes = v["totals"]["file_bytes"].as_f64()?;
    let secs = v["duration_sec"].as_f64()?;
    // Small runs are mostly start-up time and would understate the rate.
    (v["status"] == "ok" && bytes > 50e6 && secs > 0.0).then(|| {
        (
            bytes / secs,
            format!("the last run's report ({})", path.display()),
        )
    })
}

pub fn plan(p: &Pipeline) -> Plan {
    let hardware = hardware(p);
    let workers = runtime::workers(p);
    let mut problems = Vec::new();
    let mut jobs = Vec::new();
    let mut partitions = Vec::new();
    let mut stages_cpu = 0usize;
    let outputs = crate::config::outputs::Resolved::new(&crate::config::outputs::claims(
        p,
        &Default::default(),
    ));
    for s in &p.stages {
        // Every stage but a sink keeps a core busy; sinks write on one thread, mostly waiting
        // on I/O.
        if s.kind.output() != Output::Nothing {
            stages_cpu += 1;
        }
        if let StageKind::Reader(r) = &s.kind {
            match discover(&r.paths, &|f| outputs.writes(f)) {
                Ok(files) => {
                    for f in files {
                        let bytes = std::fs::metadata(&f).map_or(0, |m| m.len());
                        // Classified exactly as the reader will open it.
                        let kind = if is_parquet(r, &f) {
                            InputKind::Parquet
                        } else {
                            InputKind::Csv(compression_of(&f, r.compression))
                        };
                        let parquet = (kind == InputKind::Parquet)
                            .then(|| {
                                let push = Pushdown::new(r.pushdown.iter().map(|(_, f)| f));
                                estimate(&f, &r.columns, &r.need, &push)
                                    .map_err(|e| problems.push(format!("reader `{}`: {e}", s.name)))
                            })
                            .and_then(Result::ok);
                        jobs.push(InputFile {
                            reader: s.name.clone(),
                            path: f.display().to_string(),
                            bytes,
                            format: kind.label().to_string(),
                            kind,
                            parquet,
                        });
                    }
                }
                Err(errs) => {
                    problems.extend(errs.iter().map(|e| format!("reader `{}`: {e}", s.name)))
                }
            }
        }
        if let StageKind::Filter(f) = &s.kind
            && let (Some(secs), Some((Some(from), Some(to)))) = (&f.securities, f.dates)
        {
            for sec in secs {
                for day in from..=to {
                    let date = crate::time::date_of_day(day);
                    // Trading days only: the seed's matrix also listed weekends.
                    if chrono::Datelike::weekday(&date).number_from_monday() <= 5 {
                        partitions.push((*sec, crate::time::format_day(day)));
                    }
                }
            }
        }
    }
    let total_input_bytes: u64 = jobs.iter().map(|j| j.bytes).sum();
    let block = p.runtime.block_bytes as u64;
    let cap = p.runtime.edge_capacity as u64;
    let edges = p.stages.iter().map(|s| s.inputs.len()).sum::<usize>() as u64 + 1;
    let all_columns = p.stages.iter().any(
        |s| matches!(&s.kind, StageKind::Reader(r) if matches!(r.need, ColumnNeed::All { .. })),
    );
    // A parsed batch of the standard job's columns is about a third of its CSV block; whole rows
    // (for an extract of every column) about the block itself.
    let batch = if all_columns { block } else { block / 3 };
    // A sweep analysis holds its waiting rows and partition states within its own budget.
    let analyses: u64 = p
        .stages
        .iter()
        .map(|s| match &s.kind {
            StageKind::Sweeps(w) => w.memory_budget as u64,
            _ => 0,
        })
        .sum();
    let estimate = 24 * 1024 * 1024
        + (cap + workers as u64) * block
        + edges * cap * batch
        + workers as u64 * stages_cpu as u64 * batch
        + analyses;
    let settings = vec![
        Setting {
            name: "runtime.workers",
            value: workers.to_string(),
            why: match p.runtime.workers {
                Some(_) => "set in the pipeline".into(),
                None => format!("auto: one per logical core ({} here); each CPU stage (parse, filter, aggregate) gets that many threads", hardware.logical_cores),
            },
        },
        Setting {
            name: "runtime.block_bytes",
            value: block.to_string(),
            why: "input bytes per batch: large enough that per-batch messaging is negligible (under 1% of the work), small enough to stay in cache and keep memory flat".into(),
        },
        Setting {
            name: "runtime.edge_capacity",
            value: cap.to_string(),
            why: "batches in flight per edge (the mailbox bound): enough to keep every worker busy, few enough that memory does not grow with the input".into(),
        },
        Setting {
            name: "memory budget",
            value: format!("{} MiB estimated peak of {} MiB available", estimate >> 20, hardware.available_memory_bytes >> 20),
            why: format!("{edges} edges × {cap} batches in flight plus one block per worker; independent of input size"),
        },
    ];
    if hardware.available_memory_bytes > 0 && estimate > hardware.available_memory_bytes / 2 {
        problems.push(format!("the estimated peak memory ({} MiB) is over half the available memory; lower block_bytes or edge_capacity", estimate >> 20));
    }
    let (rate, rate_source, eta_secs) = match measured_rate(p) {
        // A rate measured on this pipeline's own inputs applies to their bytes as they are.
        Some((rate, source)) => (rate, source, total_input_bytes as f64 / rate),
        None => {
            let rate =
                REFERENCE_BYTES_PER_SEC_PER_CORE * workers.min(hardware.logical_cores) as f64;
            let source = format!(
                "the project's benchmark: {:.0} MB/s per core on plain CSV (README, Performance)",
                REFERENCE_BYTES_PER_SEC_PER_CORE / 1e6
            );
            // A float sum starts from -0.0, which would print as "-0.0 s" with no inputs.
            let eta = jobs
                .iter()
                .map(|j| j.kind.reference_secs(j.bytes, rate))
                .sum::<f64>()
                + 0.0;
            (rate, source, eta)
        }
    };
    Plan {
        pipeline: p.name.clone(),
        hardware,
        settings,
        estimated_peak_memory_bytes: estimate,
        jobs,
        total_input_bytes,
        partitions,
        rate_bytes_per_sec: rate,
        rate_source,
        eta_secs,
        problems,
    }
}

/// How a file will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Parquet,
    Csv(Compression),
}

impl InputKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            InputKind::Parquet => "parquet",
            InputKind::Csv(Compression::Gzip) => "csv, gzip",
            InputKind::Csv(Compression::Zstd) => "csv, zstd",
            InputKind::Csv(_) => "csv",
        }
    }

    /// Seconds for `bytes` of this kind at the plain-CSV reference rate: compressed files
    /// expand (ratios measured on generated order files: gzip -1 3.2x, zstd 5.9x), and gzip
    /// inflates on one thread at about 850 MB/s.
    fn reference_secs(self, bytes: u64, plain_rate: f64) -> f64 {
        let (expand, cap) = match self {
            InputKind::Csv(Compression::Gzip) => (3.2, 850e6),
            InputKind::Csv(Compression::Zstd) => (5.9, f64::MAX),
            _ => (1.0, f64::MAX),
        };
        bytes as f64 * expand / plain_rate.min(cap)
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.hardware;
        writeln!(f, "pipeline {}", self.pipeline)?;
        writeln!(f, "hardware")?;
        let physical = h
            .physical_cores
            .map_or_else(String::new, |p| format!(" ({p} physical)"));
        writeln!(f, "  cores      {}{physical}", h.logical_cores)?;
        writeln!(
            f,
            "  memory     {} total, {} available",
            mib(h.total_memory_bytes),
            mib(h.available_memory_bytes)
        )?;
        for (path, free) in &h.free_disk {
            writeln!(f, "  disk       {} free for {path}", mib(*free))?;
        }
        writeln!(f, "settings")?;
        for s in &self.settings {
            writeln!(f, "  {:<22} {:<12} {}", s.name, s.value, s.why)?;
        }
        writeln!(
            f,
            "jobs ({} files, {})",
            self.jobs.len(),
            mib(self.total_input_bytes)
        )?;
        for j in &self.jobs {
            writeln!(
                f,
                "  {:>12}  {:<10} {}  [{}]",
                mib(j.bytes),
                j.format,
                j.path,
                j.reader
            )?;
            if let Some(p) = &j.parquet {
                writeln!(
                    f,
                    "  {:>12}  row groups {} read, {} skipped; pages {} read, {} skipped; {} rows skipped; {} to decode",
                    "",
                    p.row_groups_read,
                    p.row_groups_skipped,
                    p.pages_read,
                    p.pages_skipped,
                    p.rows_skipped,
                    mib(p.bytes_read)
                )?;
            }
        }
        if !self.partitions.is_empty() {
            writeln!(
                f,
                "partitions (security × trading date): {}",
                self.partitions.len()
            )?;
            for (s, d) in self.partitions.iter().take(20) {
                writeln!(f, "  security_code={s}/date={d}")?;
            }
            if self.partitions.len() > 20 {
                writeln!(f, "  … {} more", self.partitions.len() - 20)?;
            }
        }
        writeln!(
            f,
            "eta        {:.1} s at {:.0} MB/s, from {}",
            self.eta_secs,
            self.rate_bytes_per_sec / 1e6,
            self.rate_source
        )?;
        for p in &self.problems {
            writeln!(f, "problem    {p}")?;
        }
        Ok(())
    }
}

pub fn write_json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_default()
}
