//! Atomic output: every file a sink produces is written to a temporary name in the destination
//! folder and renamed into place only once it is complete and synced. A run that fails, or is
//! killed, leaves at most a hidden `.*.tmp*` file behind — never a truncated file under the real
//! name that looks complete.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An I/O failure on a named output path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct OutputError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl OutputError {
    pub(crate) fn new(path: impl Into<PathBuf>, source: io::Error) -> Self {
        OutputError {
            path: path.into(),
            source,
        }
    }
}

/// A temp-file builder for outputs. Outputs get the usual modes (less the umask), not the
/// private 0600 of a temporary file: they are results meant to be read by others.
fn builder(prefix: &str, mode: u32) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix).suffix(".tmp");
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    b
}

/// Creates the destination's folder and names the hidden temporary beside it: `.NAME.`.
fn prepare(target: &Path) -> Result<(PathBuf, String), OutputError> {
    let dir = parent_of(target);
    fs::create_dir_all(dir).map_err(|e| OutputError::new(dir, e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((target.to_path_buf(), format!(".{name}.")))
}

/// Removes the temporaries a killed writer of `target` left beside it (`.NAME.XXXXXX.tmp`,
/// files or folders). Only for a process that owns `target` alone, at its start: a live writer's
/// temporary would be removed too. Returns how many were removed.
pub(crate) fn remove_stale_temps(target: &Path) -> usize {
    let (Some(dir), Some(name)) = (Some(parent_of(target)), target.file_name()) else {
        return 0;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.filter_map(Result::ok) {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.len() > prefix.len() + ".tmp".len() && n.starts_with(&prefix) && n.ends_with(".tmp") {
            let path = e.path();
            if fs::remove_file(&path)
                .or_else(|_| fs::remove_dir_all(&path))
                .is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A file being written under a temporary name; [`AtomicFile::commit`] renames it into place.
/// Dropping it uncommitted deletes the temporary file.
pub(crate) struct AtomicFile {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// Creates the destination's folder if needed and a temporary file beside the destination.
    pub(crate) fn create(target: impl AsRef<Path>) -> Result<Self, OutputError> {
        let (target, prefix) = prepare(target.as_ref())?;
        let tmp = builder(&prefix, 0o666)
            .tempfile_in(parent_of(&target))
            .map_err(|e| OutputError::new(&target, e))?;
        Ok(AtomicFile { target, tmp })
    }

    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    pub(crate) fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Syncs the data and renames the file over the destination.
    pub(crate) fn commit(self) -> Result<(), OutputError> {
        let AtomicFile { target, tmp } = self;
        tmp.as_file()
            .sync_all()
            .map_err(|e| OutputError::new(&target, e))?;
        tmp.persist(&target)
            .map_err(|e| OutputError::new(&target, e.error))?;
        Ok(())
    }
}

/// Writes `bytes` to `target` atomically.
pub(crate) fn write_atomic(target: impl AsRef<Path>, bytes: &[u8]) -> Result<(), OutputError> {
    let mut f = AtomicFile::create(target)?;
    let target = f.target().to_path_buf();
    f.file()
        .write_all(bytes)
        .map_err(|e| OutputError::new(&target, e))?;
    f.commit()
}

/// A buffered writer over an [`AtomicFile`], for streaming sinks.
pub(crate) struct AtomicWriter {
    target: PathBuf,
    inner: BufWriter<File>,
    file: AtomicFile,
}

impl AtomicWriter {
    pub(crate) fn create(target: impl AsRef<Path>) -> Result<Self, OutputError> {
        let mut file = AtomicFile::create(target)?;
        let target = file.target().to_path_buf();
        let handle = file
            .file()
            .try_clone()
            .map_err(|e| OutputError::new(&target, e))?;
        Ok(AtomicWriter {
            target,
            inner: BufWriter::with_capacity(1 << 20, handle),
            file,
        })
    }

    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    pub(crate) fn commit(mut self) -> Result<(), OutputError> {
        self.inner
            .flush()
            .map_err(|e| OutputError::new(&self.target, e))?;
        drop(self.inner);
        self.file.commit()
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A folder being filled under a temporary name; [`AtomicDir::commit`] swaps it into place.
/// Used for partitioned outputs, whose many files must appear together or not at all.
pub(crate) struct AtomicDir {
    target: PathBuf,
    tmp: tempfile::TempDir,
}

impl AtomicDir {
    pub(crate) fn create(target: impl AsRef<Path>) -> Result<Self, OutputError> {
        let (target, prefix) = prepare(target.as_ref())?;
        let tmp = builder(&prefix, 0o777)
            .tempdir_in(parent_of(&target))
            .map_err(|e| OutputError::new(&target, e))?;
        Ok(AtomicDir { target, tmp })
    }

    /// The temporary folder to write into.
    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Replaces the destination folder with the finished one. An existing destination is first
    /// moved aside, so the destination name always holds a complete folder.
    pub(crate) fn commit(self) -> Result<(), OutputError> {
        let AtomicDir { target, tmp } = self;
        let new = tmp.keep();
        let err = |e| OutputError::new(&target, e);
        if target.exists() {
            let old = tempfile::Builder::new()
                .prefix(".old.")
                .tempdir_in(parent_of(&target))
                .map_err(err)?
                .keep();
            let aside = old.join("previous");
            fs::rename(&target, &aside).map_err(err)?;
            fs::rename(&new, &target).map_err(err)?;
            fs::remove_dir_all(&old).map_err(err)?;
        } else {
            fs::rename(&new, &target).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b.csv");
        {
            let mut f = AtomicWriter::create(&target).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(fs::read_dir(dir.path().join("a")).unwrap().count(), 0);
        let mut f = AtomicWriter::create(&target).unwrap();
        f.write_all(b"whole\n").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "whole\n");
    }

    #[test]
    fn dir_commit_replaces_previous() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("parts");
        for round in ["one", "two"] {
            let d = AtomicDir::create(&target).unwrap();
            fs::write(d.path().join("x.csv"), round).unwrap();
            d.commit().unwrap();
            assert_eq!(fs::read_to_string(target.join("x.csv")).unwrap(), round);
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
