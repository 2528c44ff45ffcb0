//! The build phase: everything decided before any actor starts. Inputs are discovered (every
//! missing file or empty glob reported at once), outputs are resolved against inputs and each
//! other and checked for writability, and the graph facts the wiring needs are worked out.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::{BuildError, RunOptions};
use crate::config::outputs::{Resolved, claims};
use crate::config::{Pipeline, StageKind};
use crate::flow::Kind;
use crate::readers::actor::is_parquet;
use crate::readers::discover::discover;

/// One input file: its reader stage, size (0 for a stream) and whether it is a stream.
pub(crate) struct Input {
    pub reader: usize,
    pub path: PathBuf,
    pub bytes: u64,
    pub stream: bool,
}

/// Discovers every reader's files and checks every output, collecting all problems.
pub(crate) fn inputs(p: &Pipeline, opts: &RunOptions) -> Result<Vec<Input>, BuildError> {
    // Every path the pipeline writes, through links: discovery passes over them, and none may
    // land on an input or on another output.
    let claimed = claims(p, &Default::default());
    let outputs = Resolved::new(&claimed);
    let skip = |f: &Path| outputs.writes(f);
    let mut errors = Vec::new();
    let mut found: Vec<Input> = Vec::new();
    for (i, s) in p.stages.iter().enumerate() {
        let StageKind::Reader(r) = &s.kind else {
            continue;
        };
        let files = match &opts.files {
            Some(given) => given.get(i).cloned().unwrap_or_default(),
            None => match discover(&r.paths, &skip) {
                Ok(f) => f,
                Err(errs) => {
                    errors.extend(errs.iter().map(|e| format!("reader `{}`: {e}", s.name)));
                    continue;
                }
            },
        };
        for f in files {
            // A named pipe must not be opened here: opening and closing it would end its writer
            // (SIGPIPE) before the reader gets to it. A regular file is opened, so that one that
            // cannot be read is reported now, with the others.
            let meta = std::fs::metadata(&f).and_then(|m| {
                if m.is_file() {
                    std::fs::File::open(&f).map(|_| m)
                } else {
                    Ok(m)
                }
            });
            match meta {
                Ok(m) if m.is_file() => found.push(Input {
                    reader: i,
                    path: f,
                    bytes: m.len(),
                    stream: false,
                }),
                Ok(_) if is_parquet(r, &f) => errors.push(format!(
                    "{}: not a regular file (a pipe or device); Parquet needs a seekable file, \
                     so copy it to a file first",
                    f.display()
                )),
                Ok(_) => found.push(Input {
                    reader: i,
                    path: f,
                    bytes: 0,
                    stream: true,
                }),
                Err(e) => errors.push(format!("{}: {e}", f.display())),
            }
        }
    }
    if !errors.is_empty() {
        return Err(BuildError::Inputs(errors));
    }
    let mut errors = outputs.conflicts(found.iter().map(|f| f.path.as_path()));
    let mut dirs = BTreeSet::new();
    for c in &claimed {
        if dirs.insert(parent_of(&c.path).to_path_buf())
            && let Err(e) = check_writable(&c.path)
        {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(BuildError::Outputs(errors));
    }
    Ok(found)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Checks that `path`'s folder exists or can be created, and takes a file.
fn check_writable(path: &Path) -> Result<(), String> {
    let dir = parent_of(path);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    tempfile::Builder::new()
        .prefix(".sweep-check.")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("{}: cannot write there: {e}", dir.display()))
}

/// Each filter stage's position among the pipeline's filters, and the filters' names in that
/// order.
pub(crate) fn filter_ordinals(p: &Pipeline) -> (HashMap<usize, usize>, Vec<String>) {
    let mut ordinal = HashMap::new();
    let mut names = Vec::new();
    for (i, s) in p.stages.iter().enumerate() {
        if s.kind.kind() == Kind::Filter {
            ordinal.insert(i, names.len());
            names.push(s.name.clone());
        }
    }
    (ordinal, names)
}

/// The stages that take `stage`'s output.
pub(crate) fn consumers(p: &Pipeline, stage: usize) -> Vec<usize> {
    (0..p.stages.len())
        .filter(|&j| p.stages[j].inputs.contains(&stage))
        .collect()
}

/// Every maximal path of filters downstream of each reader, as filter ordinals.
pub(crate) fn filter_paths(p: &Pipeline, ordinal: &HashMap<usize, usize>) -> Vec<Vec<Vec<usize>>> {
    fn walk(
        p: &Pipeline,
        at: usize,
        path: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
        ordinal: &HashMap<usize, usize>,
    ) {
        let next: Vec<usize> = consumers(p, at)
            .into_iter()
            .filter(|j| ordinal.contains_key(j))
            .collect();
        if next.is_empty() {
            if !path.is_empty() {
                out.push(path.clone());
            }
            return;
        }
        for n in next {
            path.push(ordinal[&n]);
            walk(p, n, path, out, ordinal);
            path.pop();
        }
    }
    (0..p.stages.len())
        .map(|i| {
            let mut out = Vec::new();
            if p.stages[i].kind.kind() == Kind::Reader {
                walk(p, i, &mut Vec::new(), &mut out, ordinal);
            }
            out
        })
        .collect()
}

/// Which readers feed each stage, directly or through other stages.
pub(crate) fn upstream_readers(p: &Pipeline) -> Vec<Vec<usize>> {
    (0..p.stages.len())
        .map(|stage| {
            let mut seen = vec![false; p.stages.len()];
            let mut stack = vec![stage];
            let mut readers = Vec::new();
            while let Some(i) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                if p.stages[i].kind.kind() == Kind::Reader {
                    readers.push(i);
                }
                stack.extend(p.stages[i].inputs.iter().copied());
            }
            readers.sort_unstable();
            readers
        })
        .collect()
}
