//! Turns a reader's `path` entries (files, folders, globs) into the ordered list of input files.
//! Each file becomes one job. Problems are collected so one run reports every missing input.

use std::path::{Path, PathBuf};

use super::ReaderError;

/// File names a folder scan picks up; anything else in the folder (notes, `.done` markers,
/// temp files) is left alone.
fn is_data_file(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    !name.starts_with('.')
        && [".csv", ".csv.gz", ".csv.zst", ".gz", ".zst", ".parquet"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Files a folder scan or glob passes over: the pipeline's own outputs (see
/// `config::outputs::Resolved::writes`), so that a run never reads what it or an earlier run
/// wrote. A file named explicitly is never skipped: naming an output as an input is an error the
/// build phase reports.
pub(crate) type Skip<'a> = &'a dyn Fn(&Path) -> bool;

/// Expands the entries in order; within a folder or glob, files are sorted by path. A file
/// named twice is read once.
pub(crate) fn discover(entries: &[String], skip: Skip) -> Result<Vec<PathBuf>, Vec<ReaderError>> {
    let (files, errors) = expand(entries, true, skip);
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// What the entries match right now, for a daemon that follows them: a missing file, an empty
/// folder or a glob that matches nothing yet is not a problem, only a malformed glob or an
/// unreadable folder is.
pub(crate) fn scan(entries: &[String], skip: Skip) -> (Vec<PathBuf>, Vec<ReaderError>) {
    expand(entries, false, skip)
}

fn expand(entries: &[String], strict: bool, skip: Skip) -> (Vec<PathBuf>, Vec<ReaderError>) {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let mut found = Vec::new();
        if has_glob_chars(entry) {
            // As a shell does: `*` does not match a leading dot, so temp and hidden files stay out.
            let opts = glob::MatchOptions {
                require_literal_leading_dot: true,
                ..Default::default()
            };
            match glob::glob_with(entry, opts) {
                Err(e) => errors.push(ReaderError::BadGlob {
                    pattern: entry.clone(),
                    reason: e.msg.to_string(),
                }),
                Ok(paths) => {
                    for p in paths {
                        match p {
                            Ok(p) if p.is_file() && !skip(&p) => found.push(p),
                            Ok(_) => {}
                            Err(e) => errors.push(ReaderError::Open {
                                path: e.path().to_path_buf(),
                                source: std::io::Error::new(
                                    e.error().kind(),
                                    e.error().to_string(),
                                ),
                            }),
                        }
                    }
                    if found.is_empty() && strict {
                        errors.push(ReaderError::GlobEmpty(entry.clone()));
                    }
                }
            }
        } else {
            let p = PathBuf::from(entry);
            match std::fs::metadata(&p) {
                Err(e) if !strict && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(ReaderError::Open { path: p, source: e }),
                Ok(m) if m.is_dir() => match folder_files(&p, skip, &mut found) {
                    Err(e) => errors.push(ReaderError::Open { path: p, source: e }),
                    Ok(()) => {
                        if found.is_empty() && strict {
                            errors.push(ReaderError::FolderEmpty(p));
                        }
                    }
                },
                Ok(_) => found.push(p),
            }
        }
        found.sort();
        for f in found {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    (files, errors)
}

/// A folder's data files, and those of its partition folders (`name=value`, as a partitioned
/// rows sink writes them: `date=2024-10-01/part-00000.parquet`), at any depth.
fn folder_files(dir: &Path, skip: Skip, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let p = e.path();
        if p.is_file() && is_data_file(&p) && !skip(&p) {
            found.push(p);
        } else if p.is_dir() && e.file_name().to_string_lossy().contains('=') {
            folder_files(&p, skip, found)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_globs_and_files_expand_in_order() {
        let d = tempfile::tempdir().unwrap();
        for n in ["b.csv", "a.csv.gz", "notes.txt", ".hidden.csv", "c.parquet"] {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        let folder = d.path().to_string_lossy().to_string();
        let files = discover(std::slice::from_ref(&folder), &|_| false).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["a.csv.gz", "b.csv", "c.parquet"]);
        let glob = format!("{folder}/*.csv");
        let one = format!("{folder}/b.csv");
        assert_eq!(
            discover(&[glob.clone(), one.clone()], &|_| false)
                .unwrap()
                .len(),
            1
        );
        // An output of the pipeline in the folder or glob is passed over; named, it is kept
        // (for the build phase to refuse).
        let is_b = |p: &Path| p.ends_with("b.csv");
        let files = discover(std::slice::from_ref(&folder), &is_b).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.iter().all(|f| !f.ends_with("b.csv")));
        assert_eq!(
            discover(std::slice::from_ref(&one), &is_b).unwrap().len(),
            1
        );
        assert!(
            discover(&[glob], &is_b).is_err(),
            "the glob matches only an output"
        );
    }

    #[test]
    fn missing_inputs_are_all_reported() {
        let errs = discover(
            &["/no/such/file.csv".into(), "/no/such/*.csv".into()],
            &|_| false,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].to_string().contains("/no/such/file.csv"));
        assert!(errs[1].to_string().contains("matched no files"));
        let (none, errs) = scan(
            &["/no/such/file.csv".into(), "/no/such/*.csv".into()],
            &|_| false,
        );
        assert!(none.is_empty() && errs.is_empty(), "{errs:?}");
        let (_, errs) = scan(&["/tmp/[".into()], &|_| false);
        assert_eq!(errs.len(), 1, "a malformed glob is still an error");
    }
}
