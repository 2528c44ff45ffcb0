//! Where a pipeline writes, and the rule that no output may overwrite an input or another output.
//!
//! Two phases, like the rest of the configuration. [`claims`] lists every path the pipeline
//! writes (each table of each tables sink, the extract, rejects, the run report, the daemon's
//! state and parts) from the resolved pipeline alone, and [`check_lexical`] refuses what can be
//! decided without touching the file system: two outputs at one path, or an output at a path a
//! reader names literally. `sweep validate` reports those with the key's `line:col`.
//! [`Resolved`] then resolves each claim through links, against the real input files, before a
//! run reads or writes anything, and tells discovery which files in a followed folder are this
//! pipeline's own outputs, so a second run never reads the first run's tables as orders.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use super::ConfigError;
use super::spec::{Pipeline, StageKind, TableFormat};

/// One path that a pipeline writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// As configured (relative to the working directory when not absolute).
    pub path: PathBuf,
    /// A folder the output owns whole (a partitioned extract is replaced as a folder, the
    /// daemon's state folder): nothing else may be inside it.
    pub folder: bool,
    /// Who writes it, for messages: `sinks.tables (table summary.csv)`.
    pub owner: String,
    /// The configuration key that names the path, when the pipeline text has it.
    pub span: Option<Range<usize>>,
}

/// The spans of the keys that name output paths, taken from the pipeline text before its stages
/// are resolved (resolved specs carry values, not positions).
#[derive(Debug, Default, Clone)]
pub(crate) struct OutputSpans {
    /// Stage name → span of its `path` (sinks) or `rejects` (readers).
    pub stages: Vec<(String, Range<usize>)>,
    pub report: Option<Range<usize>>,
    pub state: Option<Range<usize>>,
}

impl OutputSpans {
    fn of(&self, stage: &str) -> Option<Range<usize>> {
        self.stages
            .iter()
            .find(|(n, _)| n == stage)
            .map(|(_, s)| s.clone())
    }
}

/// Every path the pipeline writes, in stage order.
pub(crate) fn claims(p: &Pipeline, spans: &OutputSpans) -> Vec<Claim> {
    let mut out = Vec::new();
    for s in &p.stages {
        let span = spans.of(&s.name);
        // Readers write rejects, sinks their outputs; no other kind writes a file.
        if let StageKind::Reader(r) = &s.kind
            && let Some(rejects) = &r.rejects
        {
            out.push(Claim {
                path: rejects.clone(),
                folder: false,
                owner: format!("readers.{}.rejects", s.name),
                span: span.clone(),
            });
            if p.daemon.is_some() {
                out.push(parts_of(
                    rejects,
                    &format!("readers.{}.rejects", s.name),
                    span.clone(),
                ));
            }
        }
        if let StageKind::RowSink(r) = &s.kind {
            out.push(Claim {
                path: r.path.clone(),
                folder: !r.partition_by.is_empty(),
                owner: format!("sinks.{}", s.name),
                span: span.clone(),
            });
            if p.daemon.is_some() && r.partition_by.is_empty() {
                out.push(parts_of(
                    &r.path,
                    &format!("sinks.{}", s.name),
                    span.clone(),
                ));
            }
        }
        if let StageKind::ReportSink(r) = &s.kind {
            out.push(Claim {
                path: r.path.clone(),
                folder: false,
                owner: format!("sinks.{}", s.name),
                span: span.clone(),
            });
        }
        if let StageKind::TableSink(t) = &s.kind {
            for &input in &s.inputs {
                let Some(stems) = p.stages.get(input).and_then(|s| s.kind.tables()) else {
                    continue;
                };
                // As `sinks::tables::write_tables` writes them: each table per tabular format,
                // and one summary document per input, whatever its tables.
                let mut files: Vec<String> = Vec::new();
                for f in &t.formats {
                    match f {
                        TableFormat::Csv => files.extend(stems.iter().map(|t| format!("{t}.csv"))),
                        TableFormat::Parquet => {
                            files.extend(stems.iter().map(|t| format!("{t}.parquet")))
                        }
                        TableFormat::Json => files.push("summary.json".into()),
                    }
                }
                for file in files {
                    out.push(Claim {
                        path: t.path.join(&file),
                        folder: false,
                        owner: format!("sinks.{} ({file} of `{}`)", s.name, p.stages[input].name),
                        span: span.clone(),
                    });
                }
            }
        }
    }
    if let Some(report) = &p.monitor.report {
        out.push(Claim {
            path: report.clone(),
            folder: false,
            owner: "monitor.report".into(),
            span: spans.report.clone(),
        });
    }
    if let Some(d) = &p.daemon {
        out.push(Claim {
            path: d.state.clone(),
            folder: true,
            owner: "daemon.state".into(),
            span: spans.state.clone(),
        });
    }
    out
}

/// The daemon writes a file output per ingested file as parts beside it
/// (`out/orders.csv.gz` → `out/orders.parts/`); that folder is the output's too.
fn parts_of(path: &Path, owner: &str, span: Option<Range<usize>>) -> Claim {
    Claim {
        path: parts_dir(path, false),
        folder: true,
        owner: format!("{owner} (the daemon's parts)"),
        span,
    }
}

/// A file name split at its first dot: `orders.csv.gz` → (`orders`, `.csv.gz`).
pub(crate) fn split_name(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.find('.') {
        Some(i) => (name[..i].to_string(), name[i..].to_string()),
        None => (name, String::new()),
    }
}

/// Where the daemon puts the parts of an output at `path`: beside it, in `NAME.parts`, where
/// NAME is the output's name without extensions (`out/orders.csv.gz` → `out/orders.parts`). A
/// partitioned extract's folder holds its parts itself.
pub(crate) fn parts_dir(path: &Path, partitioned: bool) -> PathBuf {
    if partitioned {
        return path.to_path_buf();
    }
    path.with_file_name(format!("{}.parts", split_name(path).0))
}

/// `path` made absolute against the working directory and with `.` and `..` folded, without
/// touching the file system (links are resolved later, by [`Resolved`]).
pub(crate) fn lexical(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether writing `a` would overwrite `b` or the other way round: the same path, or one inside
/// a folder the other owns.
fn overlaps(a: &Path, a_folder: bool, b: &Path, b_folder: bool) -> bool {
    a == b || (a_folder && b.starts_with(a)) || (b_folder && a.starts_with(b))
}

/// The checks `sweep validate` can make from the text alone: two outputs at one path, and an
/// output at a path a reader names literally (a glob or folder is resolved at run time).
pub(crate) fn check_lexical(p: &Pipeline, claims: &[Claim], errors: &mut Vec<ConfigError>) {
    // In the order they are written, so that the second of two outputs at one path is the one
    // reported.
    let mut claims = claims.to_vec();
    claims.sort_by_key(|c| c.span.as_ref().map_or(usize::MAX, |s| s.start));
    let paths: Vec<PathBuf> = claims.iter().map(|c| lexical(&c.path)).collect();
    for (j, b) in claims.iter().enumerate() {
        for (i, a) in claims[..j].iter().enumerate() {
            if overlaps(&paths[i], a.folder, &paths[j], b.folder) {
                errors.push(place(
                    b,
                    format!(
                        "{} writes {}, which {} also writes; every output needs a path of its own",
                        b.owner,
                        b.path.display(),
                        a.owner
                    ),
                ));
                break;
            }
        }
    }
    for s in &p.stages {
        let StageKind::Reader(r) = &s.kind else {
            continue;
        };
        for entry in &r.paths {
            if entry.contains(['*', '?', '[']) {
                continue;
            }
            let input = lexical(Path::new(entry));
            for (c, path) in claims.iter().zip(&paths) {
                if overlaps(path, c.folder, &input, false) {
                    errors.push(place(
                        c,
                        format!(
                            "{} writes {}, which is the input `readers.{}.path` = \"{entry}\"; \
                             an output must never overwrite an input",
                            c.owner,
                            c.path.display(),
                            s.name
                        ),
                    ));
                }
            }
        }
    }
}

fn place(c: &Claim, msg: String) -> ConfigError {
    match &c.span {
        Some(s) => ConfigError::at(s.clone(), msg),
        None => ConfigError::nowhere(msg),
    }
}

/// The claims resolved through links: the build phase's view, made before anything runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    claims: Vec<(PathBuf, Claim)>,
}

/// `path` through every link: its longest existing ancestor canonicalised, the rest appended
/// (an output usually does not exist yet).
pub(crate) fn canonical(path: &Path) -> PathBuf {
    let abs = lexical(path);
    let mut existing = abs.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return abs,
        }
    }
}

impl Resolved {
    pub(crate) fn new(claims: &[Claim]) -> Self {
        Resolved {
            claims: claims
                .iter()
                .map(|c| (canonical(&c.path), c.clone()))
                .collect(),
        }
    }

    /// Whether `file` is (or lies in a folder that is) one of the pipeline's outputs.
    pub(crate) fn writes(&self, file: &Path) -> bool {
        let file = canonical(file);
        self.claims
            .iter()
            .any(|(p, c)| overlaps(p, c.folder, &file, false))
    }

    /// Every output that, through links, lands on an input file or on another output.
    pub(crate) fn conflicts<'a>(&self, inputs: impl IntoIterator<Item = &'a Path>) -> Vec<String> {
        let mut errors = Vec::new();
        for (j, (pb, b)) in self.claims.iter().enumerate() {
            if let Some((_, a)) = self.claims[..j]
                .iter()
                .find(|(pa, a)| overlaps(pa, a.folder, pb, b.folder))
            {
                errors.push(format!(
                    "{} writes {} ({}), which {} also writes; every output needs a path of its own",
                    b.owner,
                    b.path.display(),
                    pb.display(),
                    a.owner
                ));
            }
        }
        for input in inputs {
            let canon = canonical(input);
            for (p, c) in &self.claims {
                if overlaps(p, c.folder, &canon, false) {
                    errors.push(format!(
                        "{} writes {} ({}), which is the input file {}; an output must never \
                         overwrite an input",
                        c.owner,
                        c.path.display(),
                        p.display(),
                        input.display()
                    ));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_paths_and_folders() {
        let p = |s: &str| PathBuf::from(s);
        assert!(overlaps(&p("/o/a.csv"), false, &p("/o/a.csv"), false));
        assert!(!overlaps(&p("/o/a.csv"), false, &p("/o/b.csv"), false));
        assert!(overlaps(&p("/o/part"), true, &p("/o/part/x/y.csv"), false));
        assert!(overlaps(&p("/o/part/x.csv"), false, &p("/o/part"), true));
        assert!(!overlaps(&p("/o/partition"), false, &p("/o/part"), true));
        assert_eq!(lexical(Path::new("/a/./b/../c")), p("/a/c"));
    }

    #[test]
    fn canonical_follows_links_to_paths_that_do_not_exist_yet() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::os::unix::fs::symlink(d.path().join("data"), d.path().join("link")).unwrap();
        let real = std::fs::canonicalize(d.path().join("data")).unwrap();
        assert_eq!(
            canonical(&d.path().join("link/new/x.csv")),
            real.join("new/x.csv")
        );
        assert_eq!(
            parts_dir(Path::new("out/orders.csv.gz"), false),
            p("out/orders.parts")
        );
        assert_eq!(parts_dir(Path::new("out/ex"), true), p("out/ex"));

        fn p(s: &str) -> PathBuf {
            PathBuf::from(s)
        }
    }
}
